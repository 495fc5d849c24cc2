import t from 'tap';
import { loadConfig } from '../src/config.js';
import { createSql } from '../src/db/client.js';
import { loadMigrations, migrate } from '../src/db/migrate.js';
import { freshDatabase, prepare } from './helper.js';
import { freePort } from './support/database.js';
import { type Server, startServer } from './support/server.js';

/** Polls until the server answers ready; the bound is generous, it is not a timing assertion. */
async function waitReady(s: Server, boundMs = 60_000): Promise<number> {
  const deadline = Date.now() + boundMs;
  while (Date.now() < deadline) {
    if (s.proc.exitCode !== null) return -1;
    try {
      const res = await fetch(`http://127.0.0.1:${s.port}/health/ready`);
      if (res.status === 200) return 200;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return 0;
}

t.test('three replicas started at once on an empty database all come up, then drain on SIGTERM', async (t) => {
  const url = await freshDatabase(t);
  const servers = await Promise.all([0, 1, 2].map(async () => startServer({ DATABASE_URL: url }, await freePort())));
  t.teardown(() => servers.forEach((s) => s.proc.exitCode === null && s.proc.kill('SIGKILL')));

  const ready = await Promise.all(servers.map((s) => waitReady(s)));
  t.same(ready, [200, 200, 200], `all ready:\n${servers.map((s) => s.output()).join('\n')}`);
  const applied = servers.filter((s) => s.output().includes('"msg":"migrations applied"')).length;
  const upToDate = servers.filter((s) => s.output().includes('"msg":"schema up to date"')).length;
  t.equal(applied, 1, 'exactly one replica applied the migrations');
  t.equal(upToDate, 2, 'the others found the schema up to date');

  const sql = createSql(url, { max: 1, prepare });
  t.teardown(() => sql.end());
  const rows = await sql`SELECT name FROM schema_migrations ORDER BY version`;
  t.same(rows.map((r) => r.name), (await loadMigrations()).map((m) => m.name));

  // A write acknowledged just before SIGTERM is kept; readiness turns 503 while the process drains.
  const [first] = servers;
  const id = '44444444-2222-4333-8444-555555555555';
  const write = fetch(`http://127.0.0.1:${first!.port}/v1/workflows/${id}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ workflow_id: 'w', workflow_name: 'n', context: { big: 'x'.repeat(1_000_000) } }),
  });
  const writeStatus = (await write).status;
  first!.proc.kill('SIGTERM');
  let sawDraining = false;
  for (let i = 0; i < 50 && first!.proc.exitCode === null; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${first!.port}/health/ready`);
      if (res.status === 503) { sawDraining = true; break; }
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  // Still serving while draining (SHUTDOWN_DRAIN_S, 1 s here): only readiness has changed.
  const duringDrain = await fetch(`http://127.0.0.1:${first!.port}/v1/workflows/${id}`).then((r) => r.status, () => 'closed');
  t.equal(writeStatus, 201);
  t.ok(sawDraining, 'readiness answered 503 after SIGTERM');
  t.equal(duringDrain, 200, 'requests are still served while readiness is 503');
  t.equal(await first!.exited, 0, 'exits 0 after draining');
  t.match(first!.output(), /"msg":"stopped"/);
  const [kept] = await sql`SELECT length(doc->'context'->>'big') AS n FROM workflow_states WHERE id = ${id}`;
  t.equal(kept?.n, 1_000_000);

  for (const s of servers.slice(1)) s.proc.kill('SIGTERM');
  t.same(await Promise.all(servers.slice(1).map((s) => s.exited)), [0, 0]);
});

t.test('concurrent migrate() calls serialise on the advisory lock', async (t) => {
  const url = await freshDatabase(t);
  const pools = [0, 1, 2, 3].map(() => createSql(url, { max: 1, prepare }));
  t.teardown(() => Promise.all(pools.map((p) => p.end())));
  const migrations = await loadMigrations();
  const results = await Promise.all(pools.map((p) => migrate(p, migrations)));
  t.equal(results.filter((r) => r.applied.length === migrations.length).length, 1);
  t.equal(results.filter((r) => r.applied.length === 0).length, 3);
});

t.test('an applied migration that was edited stops boot with a clear message', async (t) => {
  const url = await freshDatabase(t);
  const sql = createSql(url, { max: 1, prepare });
  t.teardown(() => sql.end());
  const migrations = await loadMigrations();
  await migrate(sql, migrations);
  const edited = migrations.map((m, i) => (i === 0 ? { ...m, sql: `${m.sql}\n-- edited`, checksum: 'f'.repeat(64) } : m));
  await t.rejects(migrate(sql, edited), { name: 'MigrationError' });
  await t.rejects(migrate(sql, edited), { message: /Migration 0001_seed_schema\.sql was edited after it was applied/ });
  const unknown = await migrate(sql, migrations.slice(0, 1)).catch((e: Error) => e);
  t.match(unknown, { message: /applied, which this build does not know/ });

  // The process refuses to serve on such a database: exit 1 and the message in its log.
  await sql`UPDATE schema_migrations SET checksum = ${'0'.repeat(64)} WHERE version = 2`;
  const server = startServer({ DATABASE_URL: url }, await freePort());
  t.equal(await server.exited, 1);
  t.match(server.output(), /was edited after it was applied/);
});

t.test('a database of a pre-release 0.1 build is refused at boot with a message to recreate it', async (t) => {
  const url = await freshDatabase(t);
  const sql = createSql(url, { max: 1, prepare });
  t.teardown(() => sql.end());
  const migrations = await loadMigrations();
  // What a 0.1 build left: the seed's schema, then its own 0002-0006 (only the records matter here).
  await migrate(sql, migrations.slice(0, 1));
  const prerelease = ['0002_jsonb_versions_indexes.sql', '0003_state_documents.sql', '0004_single_round_trip_writes.sql',
    '0005_replace_state_with_client_document.sql', '0006_steps_live_in_the_document.sql'];
  for (const [i, name] of prerelease.entries()) {
    await sql`INSERT INTO schema_migrations (version, name, checksum) VALUES (${i + 2}, ${name}, ${'a'.repeat(64)})`;
  }
  await t.rejects(migrate(sql, migrations), {
    name: 'MigrationError',
    message: /created by a pre-release build .*0002_jsonb_versions_indexes\.sql.*0002_state_documents\.sql.*not upgraded: recreate it/,
  });
  const [left] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM schema_migrations`;
  t.equal(left!.n, 6, 'nothing was applied');

  const server = startServer({ DATABASE_URL: url }, await freePort());
  t.equal(await server.exited, 1);
  t.match(server.output(), /Databases of 0\.1 builds are not upgraded: recreate it/);
});

t.test('configuration is parsed once and fails fast naming the variable', async (t) => {
  t.throws(() => loadConfig({ PORT: 'eighty' }), { name: 'ConfigError', message: /PORT/ });
  t.throws(() => loadConfig({ PORT: 'eighty', DATABASE_POOL_MAX: '0' }), { message: /PORT[\s\S]*DATABASE_POOL_MAX/ });
  t.throws(() => loadConfig({ DATABASE_URL: 'mysql://x' }), { message: /DATABASE_URL/ });
  const defaults = loadConfig({});
  t.same(
    [defaults.PORT, defaults.HOST, defaults.DATABASE_POOL_MAX, defaults.CHECKPOINT_RETENTION, defaults.BODY_LIMIT_BYTES,
      defaults.LOG_LEVEL, defaults.DATABASE_URL],
    [8080, '127.0.0.1', 20, 10, 10_485_760, 'info', undefined],
  );
  const server = startServer({ CHECKPOINT_RETENTION: '-1' }, await freePort());
  t.equal(await server.exited, 1);
  t.match(server.output(), /Invalid configuration:\s+CHECKPOINT_RETENTION/);
});

t.test('a bad token list stops the process before the database starts, naming the entry', async (t) => {
  const server = startServer({ AUTH_TOKENS: '[{"token":"x","tenant":"a","scopes":["root"],"name":"n"}]' }, await freePort());
  t.equal(await server.exited, 1);
  t.match(server.output(), /Invalid configuration:\s+AUTH_TOKENS\[0\.scopes\.0\]/);
  t.notMatch(server.output(), /    at /, 'no stack trace');
  t.notMatch(server.output(), /embedded PostgreSQL/, 'nothing was started');
});

t.test('bound beyond loopback without a credential, the service refuses to start and names the fix', async (t) => {
  const server = startServer({ HOST: '0.0.0.0', AUTH_TOKENS: '', AUTH_DISABLED: '' }, await freePort());
  t.equal(await server.exited, 1);
  t.match(server.output(), /HOST: 0\.0\.0\.0 is reachable from a network and no credential is configured; set AUTH_TOKENS/);
  t.notMatch(server.output(), /    at /, 'no stack trace');
});
