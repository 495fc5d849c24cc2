/** `npm run openapi`: writes openapi.yaml from the app as it serves it (default config, no database call). */
import { writeFile } from 'node:fs/promises';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createSql } from '../src/db/client.js';
import { loadMigrations } from '../src/db/migrate.js';

export async function servedOpenApiYaml(): Promise<string> {
  // postgres.js connects lazily: building the app and asking for the spec never touches a database.
  const sql = createSql('postgres://openapi@127.0.0.1:1/none', { max: 1 });
  const migrations = await loadMigrations();
  const app = await buildApp(loadConfig({}), { sql, schemaVersion: migrations.at(-1)!.version });
  try {
    const res = await app.inject({ url: '/openapi.yaml' });
    return res.body;
  } finally {
    await app.close();
    await sql.end();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const yaml = await servedOpenApiYaml();
  await writeFile(new URL('../openapi.yaml', import.meta.url), yaml);
  process.stdout.write(`openapi.yaml written (${yaml.length} bytes)\n`);
}
