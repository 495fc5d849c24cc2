/**
 * The process against a PostgreSQL that goes away and comes back: 503 problems within 2 s while it
 * is down, serving again within 2 s once it is back, and at boot a bounded wait for it.
 * Each test runs its own embedded cluster, so it can stop and start it on the same port and data.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../src/db/embedded.js';
import { freePort } from './support/database.js';
import { type Server, startServer } from './support/server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, then SIGKILL if it has not drained in time. */
async function stopServer(s: Server) {
  if (s.proc.exitCode !== null || s.proc.signalCode !== null) return;
  s.proc.kill('SIGTERM');
  const killer = setTimeout(() => s.proc.kill('SIGKILL'), 10_000);
  await s.exited;
  clearTimeout(killer);
}

/** The exit code, or 'still running' after `boundMs` (a bound, not a timing assertion). */
async function exitWithin(s: Server, boundMs: number): Promise<number | null | 'still running'> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<'still running'>((r) => { timer = setTimeout(() => r('still running'), boundMs); });
  try {
    return await Promise.race([s.exited, bound]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls until `check` holds; false when `boundMs` ran out first. */
async function eventually(check: () => Promise<boolean> | boolean, boundMs: number, everyMs = 100): Promise<boolean> {
  const deadline = performance.now() + boundMs;
  while (performance.now() < deadline) {
    if (await Promise.resolve().then(check).catch(() => false)) return true;
    await sleep(everyMs);
  }
  return false;
}

const readyStatus = (s: Server) => fetch(`${s.base}/health/ready`).then((r) => r.status);

interface Answer {
  status: number;
  headers: Headers;
  body: string;
  ms: number;
}

/** One request, timed from sending to the end of its body. */
async function timed(url: string, init?: RequestInit): Promise<Answer> {
  const started = performance.now();
  const res = await fetch(url, init);
  const body = await res.text();
  return { status: res.status, headers: res.headers, body, ms: performance.now() - started };
}

/** A data directory the OS user `postgres` can reach when the tests run as root (see embedded.ts). */
async function clusterHome(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wss-outage-'));
  await chmod(dir, 0o755);
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'data');
}

/** Starts (or starts again) the cluster in dataDir; `readyAt` is when PostgreSQL said it accepts connections. */
async function startCluster(dataDir: string, port: number): Promise<EmbeddedPostgres & { readyAt: number }> {
  let readyAt = Number.NaN;
  const pg = await startEmbeddedPostgres({
    dataDir, port, database: 'workflow_state', persistent: true,
    onLog: (line) => { if (line.includes('ready to accept connections')) readyAt = performance.now(); },
  });
  return { ...pg, readyAt: Number.isNaN(readyAt) ? performance.now() : readyAt };
}

/** What matters of an answer while the database is down; `within` is the requirement's 2 s, with slack. */
function outageShape(a: Answer) {
  let doc: Record<string, unknown> = {};
  try {
    doc = JSON.parse(a.body) as Record<string, unknown>;
  } catch {
    // not JSON: the shape below says so
  }
  return { status: a.status, contentType: a.headers.get('content-type'), retryAfter: a.headers.get('retry-after'),
    problemStatus: doc.status, problemType: doc.type, within: a.ms < 2500 };
}
const UNAVAILABLE = { status: 503, contentType: 'application/problem+json; charset=utf-8', retryAfter: '1',
  problemStatus: 503, problemType: 'urn:workflow-state:problem:unavailable', within: true };

const ID = '0f1e2d3c-4b5a-4697-8877-665544332211';
const BODY = { workflow_id: 'wf-1', workflow_name: 'n', status: 'running' };
const json = (method: string, body: unknown): RequestInit =>
  ({ method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

t.test('PostgreSQL stops: 503 problems within 2 s, probes split; it returns: serving again within 2 s, data intact', async (t) => {
  const dataDir = await clusterHome(t);
  const pgPort = await freePort();
  let pg = await startCluster(dataDir, pgPort);
  // A pool smaller than the bursts below, so every connection fails during the outage: afterwards
  // no request can be served by one that never failed (and so never waited out a backoff).
  const server = startServer({ DATABASE_URL: pg.url, DATABASE_POOL_MAX: '4' }, await freePort());
  // Registered after the temp dir's removal, so it runs first (tap runs teardowns last-in first-out).
  t.teardown(async () => {
    await stopServer(server);
    await pg.stop();
  });
  t.ok(await eventually(async () => (await readyStatus(server)) === 200, 60_000), 'ready', { output: server.output() });

  const url = `${server.base}/v1/workflows/${ID}`;
  const created = await timed(url, json('PUT', BODY));
  t.equal(created.status, 201, 'created', { body: created.body });
  // Every connection of the pool open, so the outage breaks them all.
  const warm = await Promise.all(Array.from({ length: 8 }, () => timed(url)));
  t.same(warm.map((a) => a.status), Array(8).fill(200));
  const before = warm[0]!;

  await pg.stop();

  // Rounds of failing requests for a few seconds: one at a time, then 10 at once (reads and writes),
  // which would push a shared, growing reconnect backoff up if there were one.
  const downSince = performance.now();
  let slowest = 0;
  for (let round = 1; performance.now() - downSince < 4000; round++) {
    const one = [await timed(url), await timed(url, json('PUT', { ...BODY, status: 'failed' }))];
    const burst = await Promise.all(Array.from({ length: 10 }, (_, i) =>
      (i % 2 ? timed(url, json('PUT', { ...BODY, status: 'failed' })) : timed(url))));
    const answers = [...one, ...burst];
    slowest = Math.max(slowest, ...answers.map((a) => a.ms));
    t.same(answers.map(outageShape), Array(12).fill(UNAVAILABLE),
      `round ${round}: a GET, a PUT, then 5 GETs and 5 PUTs at once, each a 503 problem with Retry-After within 2.5 s`);
  }
  t.comment(`slowest answer while down: ${Math.round(slowest)} ms`);
  const live = await timed(`${server.base}/health/live`);
  t.same([live.status, JSON.parse(live.body)], [200, { status: 'ok' }], 'liveness stays 200');
  const ready = await timed(`${server.base}/health/ready`);
  t.equal(ready.status, 503, 'readiness is 503');
  t.same(JSON.parse(ready.body).checks.database, { status: 'failing', detail: 'database unreachable' });
  t.equal(ready.headers.get('retry-after'), '5');

  pg = await startCluster(dataDir, pgPort);
  let back: Answer | undefined;
  t.ok(await eventually(async () => (back = await timed(url)).status === 200, 10_000, 50), 'serves again');
  const recoveryMs = performance.now() - pg.readyAt;
  t.ok(recoveryMs < 2000, `a GET answered 200 ${Math.round(recoveryMs)} ms after PostgreSQL accepted connections`);
  t.comment(`recovery: ${Math.round(recoveryMs)} ms`);

  t.same(JSON.parse(back!.body), JSON.parse(before.body), 'the state saved before the outage, unchanged by the failed PUTs');
  t.equal(back!.headers.get('etag'), before.headers.get('etag'));
  t.ok(await eventually(async () => (await readyStatus(server)) === 200, 5000, 50), 'readiness back to 200');
  t.equal(server.proc.exitCode, null, 'the same process throughout');
});

t.test('at boot, the service waits for a database that is not up yet and becomes ready once it is', async (t) => {
  const dataDir = await clusterHome(t);
  const pgPort = await freePort();
  // Started once to make the cluster and learn its URL (with the password kept in the data dir).
  let pg = await startCluster(dataDir, pgPort);
  await pg.stop();
  const server = startServer({ DATABASE_URL: pg.url, DATABASE_CONNECT_TIMEOUT_S: '30' }, await freePort());
  t.teardown(async () => {
    await stopServer(server);
    await pg.stop();
  });

  const retries = () => server.logLines().filter((l) => l.msg === 'database not reachable yet; retrying');
  t.ok(await eventually(() => retries().length >= 2, 20_000), 'retry warnings', { output: server.output() });
  t.match(retries()[0], { level: 40, retry_in_ms: 250, reason: /ECONNREFUSED/ });

  pg = await startCluster(dataDir, pgPort);
  t.ok(await eventually(async () => (await readyStatus(server)) === 200, 15_000), 'ready', { output: server.output() });
  t.equal(server.proc.exitCode, null, 'without a restart');
  t.ok(server.logLines().some((l) => l.msg === 'migrations applied'), 'then migrated the new database');
  const pauses = retries().map((l) => l.retry_in_ms);
  t.same(pauses, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000].slice(0, pauses.length), 'pauses double up to 5 s');

  await stopServer(server);
  t.equal(await server.exited, 0);
});

t.test('at boot, a database that never answers stops the process after DATABASE_CONNECT_TIMEOUT_S with one clear line', async (t) => {
  const closed = await freePort();
  const started = performance.now();
  const server = startServer({ DATABASE_URL: `postgres://nobody:secret@127.0.0.1:${closed}/none`, DATABASE_CONNECT_TIMEOUT_S: '1' },
    await freePort());
  t.teardown(() => stopServer(server));

  const code = await exitWithin(server, 15_000);
  t.equal(code, 1, `exits 1 (after ${Math.round(performance.now() - started)} ms, including the process's start)`);
  const out = server.output();
  t.match(out, 'The database did not answer within DATABASE_CONNECT_TIMEOUT_S=1 s (');
  t.match(out, '): check DATABASE_URL and that PostgreSQL is running.');
  t.notMatch(out, '    at ', 'no stack trace');
  t.notMatch(out, 'secret', 'no password');
  const fatal = server.logLines().filter((l) => l.level === 60).map((l) => l.msg);
  t.equal(fatal.length, 1, 'one fatal line');
  t.match(fatal[0], /^The database did not answer within DATABASE_CONNECT_TIMEOUT_S=1 s \(.*ECONNREFUSED.*\): check DATABASE_URL and that PostgreSQL is running\.$/,
    'naming the cause and the fix');
  const pauses = server.logLines().filter((l) => l.msg === 'database not reachable yet; retrying').map((l) => l.retry_in_ms);
  t.ok(pauses.length >= 1, 'it retried before giving up');
  t.same(pauses, [250, 500].slice(0, pauses.length), 'with pauses that fit in the 1 s');
});

t.test('at boot, a database that refuses the credentials stops the process at once, without waiting', async (t) => {
  const pg = await startCluster(await clusterHome(t), await freePort());
  const wrong = new URL(pg.url);
  wrong.password = 'not-the-password';
  const started = performance.now();
  const server = startServer({ DATABASE_URL: wrong.toString(), DATABASE_CONNECT_TIMEOUT_S: '30' }, await freePort());
  t.teardown(async () => {
    await stopServer(server);
    await pg.stop();
  });

  const code = await exitWithin(server, 15_000);
  t.equal(code, 1, `exits 1 (after ${Math.round(performance.now() - started)} ms, well before the 30 s)`);
  const lines = server.logLines();
  t.same(lines.filter((l) => l.msg === 'database not reachable yet; retrying'), [], 'no retries');
  const fatal = lines.filter((l) => l.level === 60).map((l) => l.msg);
  t.equal(fatal.length, 1, 'one fatal line');
  t.match(fatal[0], /^The database refused the service \(.*password authentication failed.*\): check DATABASE_URL\.$/,
    'naming the cause and the fix');
  t.notMatch(server.output(), 'not-the-password', 'no password');
  t.notMatch(server.output(), '    at ', 'no stack trace');
});
