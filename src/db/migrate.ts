import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sql } from './client.js';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../sql/', import.meta.url));
/** Any fixed 64-bit key: every replica takes the same lock before looking at the schema. */
const MIGRATION_LOCK_KEY = 7_310_250_421_905_113n;

export interface Migration {
  version: number;
  name: string;
  checksum: string;
  sql: string;
}

export class MigrationError extends Error {
  override name = 'MigrationError';
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (name) => {
      const sql = await readFile(join(dir, name), 'utf8');
      return { version: Number(name.slice(0, 4)), name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    }),
  );
}

export interface MigrateResult {
  applied: string[];
  schemaVersion: number;
}

/**
 * Applies pending migrations in one transaction under an advisory lock, so replicas that boot
 * together wait for each other instead of racing; an applied migration whose file changed stops boot.
 */
export async function migrate(sql: Sql, migrations: Migration[]): Promise<MigrateResult> {
  return sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    await tx`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        checksum TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
      )`;
    const recorded = await tx<{ version: number; name: string; checksum: string }[]>`
      SELECT version, name, checksum FROM schema_migrations ORDER BY version`;
    const known = new Map(migrations.map((m) => [m.version, m]));
    for (const row of recorded) {
      const m = known.get(row.version);
      if (m && m.name !== row.name) {
        throw new MigrationError(
          `This database was created by a pre-release build of the service (it has migration ${row.name}; this build's ` +
            `${String(m.version).padStart(4, '0')} is ${m.name}). Databases of 0.1 builds are not upgraded: recreate it ` +
            '(drop it, or set DATABASE_URL to an empty database) and the service builds its schema at boot.',
        );
      }
      if (!m) {
        throw new MigrationError(
          `The database has migration ${row.name} applied, which this build does not know: it is newer than this service.`,
        );
      }
      if (m.checksum !== row.checksum) {
        throw new MigrationError(
          `Migration ${m.name} was edited after it was applied (recorded checksum ${row.checksum.slice(0, 12)}, ` +
            `file ${m.checksum.slice(0, 12)}). Migrations are forward-only: restore the file and add a new migration.`,
        );
      }
    }
    const done = new Set(recorded.map((r) => r.version));
    const applied: string[] = [];
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      // Migration files are part of the build, never request input.
      await tx.unsafe(m.sql);
      await tx`INSERT INTO schema_migrations (version, name, checksum) VALUES (${m.version}, ${m.name}, ${m.checksum})`;
      applied.push(m.name);
    }
    return { applied, schemaVersion: migrations.at(-1)?.version ?? 0 };
  });
}

/** The highest applied migration (0 when none is), for the readiness and health checks: one query. */
export async function appliedSchemaVersion(sql: Sql): Promise<number> {
  try {
    const [row] = await sql<{ v: number | null }[]>`SELECT max(version) AS v FROM schema_migrations`;
    return row?.v ?? 0;
  } catch (err) {
    if ((err as { code?: string }).code === '42P01') return 0; // undefined_table: nothing migrated yet
    throw err;
  }
}
