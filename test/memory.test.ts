import { randomUUID } from 'node:crypto';
import t from 'tap';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createSql } from '../src/db/client.js';
import { loadMigrations, migrate } from '../src/db/migrate.js';
import { freshDatabase, json, stateBody } from './helper.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('full collections around large bodies, at most one per interval', async (t) => {
  const url = await freshDatabase(t);
  const sql = createSql(url, { max: 4 });
  const migrations = await loadMigrations();
  await migrate(sql, migrations);
  let collections = 0;
  const app = await buildApp(loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent' }), {
    sql, schemaVersion: migrations.at(-1)!.version,
    largeBodyGc: { gc: () => { collections++; }, thresholdBytes: 1024 * 1024, intervalMs: 2000 },
  });
  t.teardown(async () => {
    await app.close();
    await sql.end({ timeout: 5 });
  });
  const until = async (n: number) => {
    for (let i = 0; i < 600 && collections < n; i++) await sleep(10);
    return collections;
  };

  const small = await app.inject({ method: 'PUT', url: `/v1/workflows/${randomUUID()}`, ...json(stateBody()) });
  t.equal(small.statusCode, 201);
  await sleep(100);
  t.equal(collections, 0, 'none after a small body');

  const id = randomUUID();
  const big = json(stateBody({ context: { blob: 'x'.repeat(1024 * 1024 + 1) } }));
  t.equal((await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...big })).statusCode, 201);
  t.equal(collections, 1, 'one before the handler of a large request');
  await sleep(50);
  t.equal(collections, 1, 'the one after its large answer waits for the interval');

  for (let i = 0; i < 3; i++) {
    t.equal((await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...big })).statusCode, 200);
  }
  await sleep(50);
  t.equal(collections, 1, 'the next waits for the interval');
  t.equal(await until(2), 2, 'then one for the four large bodies');
  await sleep(300);
  t.equal(collections, 2, 'and no more');

  const get = await app.inject({ url: `/v1/workflows/${id}` });
  t.equal(get.statusCode, 200);
  t.ok(get.body.length > 1024 * 1024);
  t.equal(await until(3), 3, 'a large answer counts too');
});
