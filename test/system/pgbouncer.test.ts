/**
 * The service process behind PgBouncer (Debian's `pgbouncer`, 1.18 on bookworm) in transaction
 * mode. Needs the binary: without it these tests fail, naming the package (npm run test:system).
 */
import { randomUUID } from 'node:crypto';
import postgres from 'postgres';
import t from 'tap';
import { loadMigrations } from '../../src/db/migrate.js';
import { freshDatabase } from '../helper.js';
import { freePort } from '../support/database.js';
import { startPgBouncer } from '../support/pgbouncer.js';
import { type Server, startServer } from '../support/server.js';

interface Teardown { teardown(fn: () => unknown): void }

/**
 * A fresh, empty database: its URL through PgBouncer (the runner's, TEST_POOLER_URL, which
 * freshDatabase uses; else one started here in front of the test cluster), and on PostgreSQL itself.
 */
async function pooledDatabase(t: Teardown): Promise<{ url: string; direct: string }> {
  const url = await freshDatabase(t);
  if (process.env.TEST_POOLER_URL) {
    const direct = new URL(process.env.TEST_DATABASE_URL!);
    direct.pathname = new URL(url).pathname;
    return { url, direct: direct.toString() };
  }
  const bouncer = await startPgBouncer(url);
  t.teardown(() => bouncer.stop());
  return { url: bouncer.url, direct: url };
}

/** A client of the database that bypasses the pooler, for the test's own look at it. */
function directly(t: Teardown, direct: string) {
  const sql = postgres(direct, { max: 1, onnotice: () => {} });
  t.teardown(() => sql.end());
  return sql;
}

async function stop(s: Server) {
  if (s.proc.exitCode === null) s.proc.kill('SIGTERM');
  await s.exited;
}

async function exitWithin(s: Server, ms: number): Promise<number | null> {
  const timer = setTimeout(() => s.proc.kill('SIGKILL'), ms);
  const code = await s.exited;
  clearTimeout(timer);
  return code;
}

async function waitReady(s: Server, boundMs = 60_000): Promise<number> {
  for (const deadline = Date.now() + boundMs; Date.now() < deadline;) {
    if (s.proc.exitCode !== null) return -1;
    const status = await fetch(`${s.base}/health/ready`).then((r) => r.status, () => 0);
    if (status === 200) return 200;
    await new Promise((r) => setTimeout(r, 100));
  }
  return 0;
}

const FIX = "ALTER ROLE postgres SET statement_timeout = '10s'; ALTER ROLE postgres SET lock_timeout = '2s'; " +
  "ALTER ROLE postgres SET idle_in_transaction_session_timeout = '30s';";

t.test('DATABASE_PREPARE=false through PgBouncer on an empty database: migrated at boot, a save/load round trip, ready, one warning naming the role fix', async (t) => {
  const { url, direct } = await pooledDatabase(t);
  const server = startServer({ DATABASE_URL: url, DATABASE_PREPARE: 'false' }, await freePort());
  t.teardown(() => stop(server));

  t.equal(await waitReady(server), 200, `ready:\n${server.output()}`);
  const lines = server.logLines();
  const files = (await loadMigrations()).map((m) => m.name);
  t.equal(files.length, 4, 'sql/ has the four migrations');
  t.same(lines.find((l) => l.msg === 'migrations applied')?.applied, files, 'every migration applied at boot');
  const warnings = lines.filter((l) => l.level === 40 && String(l.msg).startsWith('DATABASE_PREPARE')).map((l) => l.msg);
  t.same(warnings, [
    "DATABASE_PREPARE=false: the sessions' timeouts are not sent at connect time and PostgreSQL's differ from the " +
      `configured ones; set them on the role (new server connections pick them up): ${FIX}`,
  ], 'one warning, naming the statements that fix it');

  const id = randomUUID();
  const body = { workflow_id: 'wf-pooled', workflow_name: 'Through PgBouncer', status: 'running', context: { n: 1 } };
  const put = await fetch(`${server.base}/v1/workflows/${id}`, {
    method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  t.equal(put.status, 201, await put.clone().text());
  for (let i = 0; i < 5; i++) { // several reads, on whichever server connections PgBouncer gives them
    const got = await fetch(`${server.base}/v1/workflows/${id}`);
    t.equal(got.status, 200);
    t.match(await got.json(), { id, workflow_id: 'wf-pooled', status: 'running', context: { n: 1 }, version: 1 });
  }

  const sql = directly(t, direct);
  const rows = await sql`SELECT name FROM schema_migrations ORDER BY version`;
  t.same(rows.map((r) => r.name), files, 'every migration is recorded in the database behind the pooler');
  server.proc.kill('SIGTERM');
  t.equal(await exitWithin(server, 15_000), 0, 'stops cleanly');
});

t.test('DATABASE_PREPARE=false with the timeouts set where the server connections get them: no warning', async (t) => {
  const { url, direct } = await pooledDatabase(t);
  const sql = directly(t, direct);
  const name = new URL(direct).pathname.slice(1);
  // The database's defaults stand in for the role's (ALTER ROLE would change every other test's sessions).
  for (const [setting, value] of [['statement_timeout', '10s'], ['lock_timeout', '2s'], ['idle_in_transaction_session_timeout', '30s']]) {
    await sql`ALTER DATABASE ${sql(name)} SET ${sql(setting!)} = ${sql.unsafe(`'${value}'`)}`;
  }
  const server = startServer({ DATABASE_URL: url, DATABASE_PREPARE: 'false' }, await freePort());
  t.teardown(() => stop(server));

  t.equal(await waitReady(server), 200, `ready:\n${server.output()}`);
  t.same(server.logLines().filter((l) => l.level === 40 && String(l.msg).startsWith('DATABASE_PREPARE')), [], 'no warning');
});

t.test('without DATABASE_PREPARE=false PgBouncer refuses the session settings: the process exits 1 at once, naming the setting', async (t) => {
  const { url } = await pooledDatabase(t);
  const started = performance.now();
  const server = startServer({ DATABASE_URL: url, DATABASE_PREPARE: 'true', DATABASE_CONNECT_TIMEOUT_S: '30' }, await freePort());
  t.teardown(() => stop(server));

  const code = await exitWithin(server, 20_000);
  t.equal(code, 1, `exits 1 (after ${Math.round(performance.now() - started)} ms, well before the 30 s)`);
  const lines = server.logLines();
  t.same(lines.filter((l) => l.msg === 'database not reachable yet; retrying'), [], 'no retries: waiting does not fix it');
  t.same(lines.filter((l) => l.level === 60).map((l) => l.msg), [
    'The database refused the session settings sent at connect time (unsupported startup parameter: statement_timeout): ' +
      'behind a transaction-mode pooler (PgBouncer) set DATABASE_PREPARE=false, and the timeouts on the role.',
  ], 'one fatal line with the cause and the fix');
  t.notMatch(server.output(), '    at ', 'no stack trace');
});
