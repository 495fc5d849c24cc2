import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import postgres from 'postgres';
import t from 'tap';
import { createSql } from '../src/db/client.js';
import { RequestWork } from '../src/db/work.js';
import { createLogger } from '../src/logger.js';
import { buildTestApp, json, prepare, stateBody, type TestApp } from './helper.js';

type Holder = { release: () => Promise<void> };

/** Another client holding a lock in an open transaction until release(): `lockSql` runs first. */
async function holdLock(t: { teardown(fn: () => unknown): void }, url: string, lockSql: string): Promise<Holder> {
  const sql = postgres(url, { max: 1, prepare, onnotice: () => {} });
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => { locked = r; });
  const done = sql.begin(async (tx) => {
    await tx.unsafe(lockSql);
    locked();
    await released;
  });
  await isLocked;
  const holder = {
    release: async () => {
      release();
      await done;
      await sql.end();
    },
  };
  t.teardown(holder.release);
  return holder;
}

async function createState(app: TestApp['app']) {
  const id = randomUUID();
  const res = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(stateBody()) });
  if (res.statusCode !== 201) throw new Error(res.body);
  return id;
}

/** Settles a request; the test asks which ones had settled at a given moment, not how long they took. */
function track<T>(p: Promise<T>) {
  const s = { done: false, value: undefined as T | undefined, promise: p };
  void p.then((v) => { s.done = true; s.value = v; });
  return s;
}

t.test('a row held locked by another client: writers to it wait, unrelated reads and health do not', async (t) => {
  // Writes have a pool of their own: 12 writes stuck on the locked row, more than its 4 connections,
  // hold none of the connections reads use.
  const { app, url } = await buildTestApp(t, { DATABASE_POOL_MAX: '4', DATABASE_LOCK_TIMEOUT_MS: '20000' });
  const locked = await createState(app);
  const other = await createState(app);
  const holder = await holdLock(t, url, `SELECT 1 FROM workflow_states WHERE id = '${locked}' FOR UPDATE`);

  const patches = Array.from({ length: 12 }, (_, i) =>
    track(app.inject({ method: 'PATCH', url: `/v1/workflows/${locked}`, ...json({ context: { i } }) })));
  await new Promise((r) => setTimeout(r, 300)); // the writers reach the lock
  for (const url of ['/v1/workflows', `/v1/workflows/${other}`, `/v1/workflows/${other}/checkpoints`]) {
    t.equal((await app.inject({ url })).statusCode, 200, `${url} answered while the writers wait`);
  }
  t.equal((await app.inject({ url: '/health/live' })).statusCode, 200);
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200, 'a row lock does not make the service unready');
  t.equal(patches.filter((p) => p.done).length, 0, 'every write to the locked state was still waiting');

  await holder.release();
  const answers = await Promise.all(patches.map((p) => p.promise));
  t.same(answers.map((r) => r.statusCode), Array(12).fill(200), 'each write lands once the lock is gone');
  t.equal((await app.inject({ url: `/v1/workflows/${locked}` })).headers.etag, '"13"');
});

t.test('LOCK TABLE: statements give up after DATABASE_LOCK_TIMEOUT_MS with 503, readiness fails, liveness holds', async (t) => {
  const { app, url } = await buildTestApp(t, { DATABASE_LOCK_TIMEOUT_MS: '300' });
  const id = await createState(app);
  const holder = await holdLock(t, url, 'LOCK TABLE workflow_states IN ACCESS EXCLUSIVE MODE');

  const read = await app.inject({ url: `/v1/workflows/${id}` });
  t.equal(read.statusCode, 503);
  t.equal(read.headers['retry-after'], '1');
  t.equal(read.headers['content-type'], 'application/problem+json; charset=utf-8');
  t.match(read.json(), { status: 503, detail: /did not complete the request in time/ });
  const write = await app.inject({ method: 'PATCH', url: `/v1/workflows/${id}`, ...json({ status: 'paused' }) });
  t.equal(write.statusCode, 503);
  const ready = await app.inject({ url: '/health/ready' });
  t.equal(ready.statusCode, 503, 'readiness probes the state table');
  t.same(ready.json().checks.database, { status: 'failing', detail: 'database unreachable' });
  t.equal((await app.inject({ url: '/health/live' })).statusCode, 200, 'liveness is about the process only');

  await holder.release();
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200);
  const after = await app.inject({ url: `/v1/workflows/${id}` });
  t.equal(after.statusCode, 200);
  t.equal(after.json().status, 'running', 'the PATCH answered 503 did not land');
});

t.test('REQUEST_TIMEOUT_MS: a write past its deadline answers 503 and does not land later', async (t) => {
  const { app, url, sql } = await buildTestApp(t, { REQUEST_TIMEOUT_MS: '400', DATABASE_LOCK_TIMEOUT_MS: '0' });
  const id = await createState(app);
  const holder = await holdLock(t, url, `SELECT 1 FROM workflow_states WHERE id = '${id}' FOR UPDATE`);

  const cases = [
    { method: 'PUT' as const, url: `/v1/workflows/${id}`, ...json(stateBody({ status: 'paused' })) },
    { method: 'PATCH' as const, url: `/v1/workflows/${id}`, ...json({ status: 'paused' }) },
    { method: 'PUT' as const, url: `/v1/workflows/${id}/steps/late`, ...json({ status: 'running' }) },
    { method: 'POST' as const, url: `/v1/workflows/${id}/checkpoints`, ...json({ step_id: 'late' }) },
    { method: 'DELETE' as const, url: `/v1/workflows/${id}` },
  ];
  const answers = await Promise.all(cases.map((c) => app.inject(c)));
  for (const [i, res] of answers.entries()) {
    t.equal(res.statusCode, 503, `${cases[i]!.method} ${cases[i]!.url}`);
    t.equal(res.headers['retry-after'], '1');
    t.match(res.json(), { type: 'urn:workflow-state:problem:deadline-exceeded', detail: /within 400 ms \(REQUEST_TIMEOUT_MS\)/ });
  }
  const waiting = await sql`
    SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event_type = 'Lock' AND application_name LIKE 'workflow-state-service%'`;
  t.equal(waiting[0]!.n, 0, 'no statement of theirs still waits in PostgreSQL');

  await holder.release();
  await new Promise((r) => setTimeout(r, 300)); // what was not cancelled would land now
  const state = await app.inject({ url: `/v1/workflows/${id}` });
  t.equal(state.statusCode, 200, 'the DELETE did not land');
  t.equal(state.headers.etag, '"1"', 'no write landed after its 503');
  t.same(state.json().steps, {});
  t.equal(state.json().status, 'running');
  t.same(await sql`SELECT count(*)::int AS n FROM checkpoints`, [{ n: 0 }]);
  // The pool was left usable: writes go through again.
  t.equal((await app.inject({ method: 'PATCH', url: `/v1/workflows/${id}`, ...json({ status: 'paused' }) })).statusCode, 200);
});

t.test('a client that goes away: its waiting write is cancelled and does not land', async (t) => {
  const lines: { level: number; msg: string }[] = [];
  const sink = new Writable({ write(chunk, _enc, done) { lines.push(...chunk.toString().split('\n').filter(Boolean).map((l: string) => JSON.parse(l))); done(); } });
  const { app, url } = await buildTestApp(t, { DATABASE_POOL_MAX: '1', DATABASE_LOCK_TIMEOUT_MS: '20000' }, {},
    { logger: createLogger('info', sink) as FastifyBaseLogger });
  const id = await createState(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const holder = await holdLock(t, url, `SELECT 1 FROM workflow_states WHERE id = '${id}' FOR UPDATE`);

  const gone = new AbortController();
  const abandoned = fetch(`${base}/v1/workflows/${id}`, {
    method: 'PATCH', headers: { 'content-type': 'application/json' }, body: '{"status":"paused"}', signal: gone.signal,
  }).catch((err: Error) => err.name);
  await new Promise((r) => setTimeout(r, 300)); // the write waits on the lock
  gone.abort();
  t.equal(await abandoned, 'AbortError');
  await new Promise((r) => setTimeout(r, 200));
  await holder.release();
  await new Promise((r) => setTimeout(r, 300)); // what was not cancelled would land now
  t.equal((await app.inject({ url: `/v1/workflows/${id}` })).headers.etag, '"1"', 'the abandoned write did not land');
  const next = await app.inject({ method: 'PATCH', url: `/v1/workflows/${id}`, ...json({ status: 'failed' }) });
  t.equal(next.statusCode, 200, 'the write pool\'s one connection serves the next write');
  t.ok(lines.some((l) => l.level === 30 && l.msg === 'client closed the connection: its write was cancelled'));
  t.same(lines.filter((l) => l.level >= 50), [], 'a client going away is not logged as a failure');
});

t.test('at the deadline, a statement running is cancelled; one pipelined behind another request\'s is left to end', async (t) => {
  // One connection shared by two requests' statements, as postgres.js pipelines them on a busy
  // pool. A cancel would reach whatever the connection runs when it arrives, so the pipelined
  // statement is not cancelled: it ends with its own answer, and the other request's is untouched.
  const { url } = await buildTestApp(t);
  const sql = createSql(url, { max: 1 });
  t.teardown(() => sql.end({ timeout: 1 }));
  await sql`SELECT 1`;

  const other = sql`SELECT pg_sleep(0.3), 'other' AS who`.execute(); // another request's, running
  const work = new RequestWork(60_000);
  const mine = work.track(sql)`SELECT 'mine' AS who`.execute(); // pipelined behind it
  await new Promise((r) => setTimeout(r, 50));
  work.expire();
  t.equal(work.uncancelled.size, 1, 'the pipelined statement is left to run, and recorded');
  t.same((await other).map((r) => r.who), ['other'], 'the other request\'s statement was not cancelled');
  t.same(await mine, [{ who: 'mine' }], 'the pipelined statement ended with its own answer');
  await new Promise((r) => setImmediate(r));
  t.equal(work.uncancelled.size, 0);
  t.throws(() => work.track(sql)`SELECT 1`, { code: 'deadline-exceeded' }, 'no statement starts after the deadline');

  // Alone on the connection, the running statement is cancelled in PostgreSQL.
  const alone = new RequestWork(60_000);
  const running = alone.track(sql)`SELECT pg_sleep(5)`.execute();
  await new Promise((r) => setTimeout(r, 100));
  alone.expire();
  await t.rejects(running, { code: '57014' });
  t.equal(alone.uncancelled.size, 0);
  t.same(await sql`SELECT 2 AS two`, [{ two: 2 }], 'the connection is in step');
});
