import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import postgres from 'postgres';
import t from 'tap';
import { buildApp } from '../src/app.js';
import { loadMigrations } from '../src/db/migrate.js';
import { stateOf } from '../src/repositories/render.js';
import { DEFAULT_TENANT } from '../src/auth.js';
import { insertStates } from '../src/repositories/workflows.js';
import { buildTestApp, json, prepare, stateBody } from './helper.js';

/** A deterministic uuid: the order of these ids is the order of n (PostgreSQL compares uuids byte-wise). */
const uid = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;

async function put(app: FastifyInstance, id: string, over: Record<string, unknown>) {
  const res = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(stateBody(over)) });
  if (res.statusCode !== 201 && res.statusCode !== 200) throw new Error(`PUT ${id}: ${res.statusCode} ${res.body}`);
  return res.json();
}

const list = (app: FastifyInstance, query: Record<string, string | number> = {}) => {
  const qs = new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)])).toString();
  return app.inject({ url: `/v1/workflows${qs ? `?${qs}` : ''}` });
};

/** Follows next_cursor to the end; every item of every page, and the number of pages. */
async function walk(app: FastifyInstance, query: Record<string, string | number>) {
  const ids: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const res = await list(app, cursor === null ? query : { ...query, cursor });
    if (res.statusCode !== 200) throw new Error(`list: ${res.statusCode} ${res.body}`);
    const body = res.json();
    ids.push(...body.items.map((s: { id: string }) => s.id));
    cursor = body.next_cursor;
    pages++;
    if (pages > 100) throw new Error('pagination does not end');
  } while (cursor !== null);
  return { ids, pages };
}

const ids = (res: { json(): { items: { id: string }[] } }) => res.json().items.map((s) => s.id);

interface Row { id: string; workflow_id: string; user_id: string | null; status: string; updated_at: string }

t.test('GET /v1/workflows', async (t) => {
  const { app } = await buildTestApp(t);
  const TIE = '2025-01-01T12:30:00.123456Z';
  const rows: Row[] = [
    { id: uid(1), workflow_id: 'wf-a', user_id: 'u1', status: 'running', updated_at: '2025-01-01T10:00:00.000000Z' },
    { id: uid(2), workflow_id: 'wf-a', user_id: 'u2', status: 'completed', updated_at: '2025-01-01T11:00:00.000000Z' },
    { id: uid(3), workflow_id: 'wf-b', user_id: 'u1', status: 'failed', updated_at: '2025-01-01T12:00:00.000000Z' },
    { id: uid(4), workflow_id: 'wf-b', user_id: null, status: 'paused', updated_at: '2025-01-01T13:00:00.000000Z' },
    { id: uid(5), workflow_id: 'wf-c', user_id: 'u1', status: 'pending', updated_at: '2025-01-01T14:00:00.000000Z' },
    { id: uid(6), workflow_id: 'wf-c', user_id: 'u2', status: 'running', updated_at: '2025-01-01T15:00:00.000000Z' },
    // four states sharing one updated_at: only the id orders them
    { id: uid(7), workflow_id: 'wf-tie', user_id: 'u3', status: 'completed', updated_at: TIE },
    { id: uid(8), workflow_id: 'wf-tie', user_id: 'u3', status: 'completed', updated_at: TIE },
    { id: uid(9), workflow_id: 'wf-tie', user_id: 'u3', status: 'completed', updated_at: TIE },
    { id: uid(10), workflow_id: 'wf-tie', user_id: 'u3', status: 'completed', updated_at: TIE },
  ];
  // Written in an order unrelated to the expected one, so that insertion order cannot pass for sorting.
  for (const r of [rows[8], rows[2], rows[0], rows[6], rows[5], rows[9], rows[3], rows[1], rows[7], rows[4]] as Row[]) {
    await put(app, r.id, {
      workflow_id: r.workflow_id, user_id: r.user_id, status: r.status, updated_at: r.updated_at,
      ...(r.id === uid(1) ? { context: { k: 'v' }, steps: { s1: { status: 'completed', outputs: { x: 1 }, retry_count: 1 }, s2: { status: 'pending' } } } : {}),
    });
  }
  const expected = (keep: (r: Row) => boolean = () => true) => rows
    .filter(keep)
    .sort((a, b) => (a.updated_at === b.updated_at ? (a.id < b.id ? 1 : -1) : a.updated_at < b.updated_at ? 1 : -1))
    .map((r) => r.id);

  t.test('newest updated_at first, ties by id descending, full states, next_cursor null', async (t) => {
    const res = await list(app);
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^application\/json/);
    const body = res.json();
    t.strictSame(Object.keys(body).sort(), ['items', 'next_cursor']);
    t.strictSame(ids(res), [uid(6), uid(5), uid(4), uid(10), uid(9), uid(8), uid(7), uid(3), uid(2), uid(1)]);
    t.strictSame(ids(res), expected());
    t.equal(body.next_cursor, null);
    const withSteps = body.items.find((s: { id: string }) => s.id === uid(1));
    const loaded = (await app.inject({ url: `/v1/workflows/${uid(1)}` })).json();
    t.strictSame(withSteps, loaded, 'an item is the full state, as GET by id answers it');
    t.strictSame(Object.keys(withSteps.steps).sort(), ['s1', 's2']);
    t.strictSame(withSteps.steps.s1, {
      step_id: 's1', status: 'completed', started_at: null, completed_at: null, outputs: { x: 1 }, error: null, retry_count: 1,
    });
    t.strictSame(withSteps.context, { k: 'v' });
    t.equal(withSteps.updated_at, '2025-01-01T10:00:00.000000Z');
    const other = body.items.find((s: { id: string }) => s.id === uid(4));
    t.strictSame(other.steps, {}, 'a state without steps has steps {}');
    t.equal(other.user_id, null);
    t.equal(other.version, 1);
  });

  t.test('a page that ends exactly at the last state has next_cursor null', async (t) => {
    const res = await list(app, { limit: rows.length });
    t.equal(res.statusCode, 200);
    t.equal(res.json().items.length, rows.length);
    t.equal(res.json().next_cursor, null);
    const short = await list(app, { limit: rows.length - 1 });
    t.equal(short.json().items.length, rows.length - 1);
    t.type(short.json().next_cursor, 'string');
  });

  t.test('limit + cursor walk every state exactly once, across ties', async (t) => {
    for (const limit of [1, 2, 3, 4, 5, 9]) {
      const { ids: walked, pages } = await walk(app, { limit });
      t.strictSame(walked, expected(), `limit ${limit}: every state once, in order`);
      t.equal(pages, Math.ceil(rows.length / limit), `limit ${limit}: page count`);
    }
    const first = await list(app, { limit: 4 });
    t.strictSame(ids(first), [uid(6), uid(5), uid(4), uid(10)]);
    const second = await list(app, { limit: 2, cursor: first.json().next_cursor });
    t.strictSame(ids(second), [uid(9), uid(8)], 'the cursor resumes inside a run of equal updated_at');
  });

  t.test('cursor pagination keeps the filters', async (t) => {
    const { ids: walked } = await walk(app, { status: 'completed', limit: 2 });
    t.strictSame(walked, [uid(10), uid(9), uid(8), uid(7), uid(2)]);
    const { ids: walked2 } = await walk(app, { user_id: 'u1', limit: 1 });
    t.strictSame(walked2, [uid(5), uid(3), uid(1)]);
  });

  t.test('status filters', async (t) => {
    const running = await list(app, { status: 'running' });
    t.equal(running.statusCode, 200);
    t.strictSame(ids(running), [uid(6), uid(1)]);
    t.ok(running.json().items.every((s: { status: string }) => s.status === 'running'));

    const finished = await list(app, { status: 'completed,failed' });
    t.strictSame(ids(finished), [uid(10), uid(9), uid(8), uid(7), uid(3), uid(2)]);
    t.strictSame(ids(finished), expected((r) => r.status === 'completed' || r.status === 'failed'));

    // the seed's list_active_workflows: an active list excludes completed (and failed) states
    const active = await list(app, { status: 'active' });
    t.equal(active.statusCode, 200);
    t.strictSame(ids(active), [uid(6), uid(5), uid(4), uid(1)]);
    t.strictSame(active.json().items.map((s: { status: string }) => s.status), ['running', 'pending', 'paused', 'running']);
    t.notOk(ids(active).includes(uid(2)), 'the completed state is not active');

    const mixed = await list(app, { status: 'active,failed' });
    t.strictSame(ids(mixed), [uid(6), uid(5), uid(4), uid(3), uid(1)]);

    const anyCase = await list(app, { status: 'Running,PAUSED' });
    t.equal(anyCase.statusCode, 200, 'status values are case-insensitive');
    t.strictSame(ids(anyCase), [uid(6), uid(4), uid(1)]);

    const none = await list(app, { status: 'pending', workflow_id: 'wf-a' });
    t.strictSame(none.json(), { items: [], next_cursor: null });
  });

  t.test('an unknown status is a 400 naming query.status', async (t) => {
    for (const status of ['done', 'running,bogus', '']) {
      const res = await list(app, { status });
      t.equal(res.statusCode, 400, `status=${status}`);
      t.match(res.headers['content-type'], /^application\/problem\+json/);
      t.ok(res.json().errors.some((e: { path: string }) => e.path === 'query.status'), `status=${status} names query.status`);
    }
  });

  t.test('workflow_id and user_id filters', async (t) => {
    t.strictSame(ids(await list(app, { workflow_id: 'wf-a' })), [uid(2), uid(1)]);
    t.strictSame(ids(await list(app, { workflow_id: 'wf-tie' })), [uid(10), uid(9), uid(8), uid(7)]);
    t.strictSame(ids(await list(app, { workflow_id: 'nope' })), []);
    t.strictSame(ids(await list(app, { user_id: 'u1' })), [uid(5), uid(3), uid(1)]);
    t.strictSame(ids(await list(app, { user_id: 'u2' })), [uid(6), uid(2)]);
    t.strictSame(ids(await list(app, { user_id: 'nobody' })), []);
  });

  t.test('updated_before and updated_after', async (t) => {
    t.strictSame(ids(await list(app, { updated_before: '2025-01-01T12:00:01Z' })), [uid(3), uid(2), uid(1)]);
    t.strictSame(ids(await list(app, { updated_after: '2025-01-01T13:30:00Z' })), [uid(6), uid(5)]);
    t.strictSame(
      ids(await list(app, { updated_after: '2025-01-01T11:30:00Z', updated_before: '2025-01-01T14:30:00Z' })),
      [uid(5), uid(4), uid(10), uid(9), uid(8), uid(7), uid(3)],
    );
    // microsecond precision: the tied states are at .123456
    t.strictSame(ids(await list(app, { updated_after: '2025-01-01T12:30:00.123455Z', updated_before: '2025-01-01T12:30:00.123457Z' })),
      [uid(10), uid(9), uid(8), uid(7)]);
    t.strictSame(ids(await list(app, { updated_after: '2025-01-01T12:30:00.123457Z', updated_before: '2025-01-01T13:00:00.5Z' })),
      [uid(4)]);
    // offsets are honoured: 13:30+01:00 is 12:30Z, just before the ties
    t.strictSame(ids(await list(app, { updated_before: '2025-01-01T13:30:00+01:00' })), [uid(3), uid(2), uid(1)]);
    const bad = await list(app, { updated_before: 'yesterday' });
    t.equal(bad.statusCode, 400);
    t.ok(bad.json().errors.some((e: { path: string }) => e.path === 'query.updated_before'));
  });

  t.test('combined filters', async (t) => {
    t.strictSame(ids(await list(app, { status: 'running,paused', user_id: 'u1' })), [uid(1)]);
    t.strictSame(ids(await list(app, { status: 'active', workflow_id: 'wf-c', user_id: 'u2' })), [uid(6)]);
    t.strictSame(ids(await list(app, { workflow_id: 'wf-b', updated_after: '2025-01-01T12:00:30Z' })), [uid(4)]);
    t.strictSame(ids(await list(app, {
      status: 'completed', workflow_id: 'wf-tie', user_id: 'u3',
      updated_after: '2025-01-01T12:00:00Z', updated_before: '2025-01-01T13:00:00Z', limit: 3,
    })), [uid(10), uid(9), uid(8)]);
    t.strictSame(ids(await list(app, { status: 'completed', user_id: 'u1' })), []);
  });

  t.test('limit bounds, bad cursors and unknown parameters are 400s', async (t) => {
    for (const limit of [0, 1001, -1]) {
      const res = await list(app, { limit });
      t.equal(res.statusCode, 400, `limit=${limit}`);
      t.ok(res.json().errors.some((e: { path: string }) => e.path === 'query.limit'), `limit=${limit} names query.limit`);
    }
    t.equal((await list(app, { limit: 1000 })).statusCode, 200);
    for (const cursor of ['garbage', Buffer.from('["x","y"]').toString('base64url')]) {
      const res = await list(app, { cursor });
      t.equal(res.statusCode, 400, `cursor ${cursor}`);
      t.ok(res.json().errors.some((e: { path: string }) => e.path === 'query.cursor'));
    }
    const unknown = await list(app, { sort: 'asc' });
    t.equal(unknown.statusCode, 400);
    t.ok(unknown.json().errors.some((e: { path: string }) => e.path === 'query.sort'));
  });
});

t.test('GET /v1/workflows: default limit 100', async (t) => {
  const { app, sql } = await buildTestApp(t);
  // 150 states, one second apart: many rows are faster to set up in one statement than through 150 PUTs.
  await insertStates(sql, DEFAULT_TENANT, Array.from({ length: 150 }, (_, k) => {
    const at = new Date(Date.UTC(2025, 0, 1) + (k + 1) * 1000).toISOString().replace('.000Z', '.000000Z');
    return stateOf(uid(k + 1), { workflow_id: 'bulk', workflow_name: 'Bulk', status: 'running' },
      { version: 1, started_at: '2025-01-01T00:00:00.000000Z', updated_at: at });
  }));
  const res = await list(app);
  t.equal(res.statusCode, 200);
  const body = res.json();
  t.equal(body.items.length, 100);
  t.strictSame(ids(res), Array.from({ length: 100 }, (_, i) => uid(150 - i)), 'the newest 100');
  t.type(body.next_cursor, 'string');
  const rest = await list(app, { cursor: body.next_cursor });
  t.equal(rest.statusCode, 200);
  t.strictSame(ids(rest), Array.from({ length: 50 }, (_, i) => uid(50 - i)));
  t.equal(rest.json().next_cursor, null);
  t.equal(rest.json().items[0].updated_at, '2025-01-01T00:00:50.000000Z');
});

t.test('GET /v1/workflows: one SQL statement per page, whatever the number of matches', async (t) => {
  const { app, url, config } = await buildTestApp(t);
  for (let i = 1; i <= 30; i++) {
    await put(app, uid(i), {
      workflow_id: i % 2 ? 'odd' : 'even',
      updated_at: `2025-02-01T00:00:${String(i).padStart(2, '0')}.000000Z`,
      steps: { a: { status: 'completed' }, b: { status: 'running' }, c: { status: 'pending' } },
    });
  }
  // The same app, on a real client of the same database whose documented `debug` hook sees every
  // statement sent. One connection, so its start-up statements are over after the warm-up request.
  const statements: string[] = [];
  const counted = postgres(url, {
    max: 1, prepare, onnotice: () => {}, connection: { TimeZone: 'UTC' },
    debug: (_conn: number, query: string) => { statements.push(query); },
  });
  const countedApp = await buildApp(config, { sql: counted, schemaVersion: (await loadMigrations()).at(-1)!.version });
  t.teardown(async () => {
    await countedApp.close();
    await counted.end({ timeout: 5 });
  });
  t.equal((await list(countedApp, { limit: 1 })).statusCode, 200, 'warm-up');

  const cases: Record<string, string | number>[] = [
    { workflow_id: 'none' }, { limit: 1 }, {}, { workflow_id: 'odd' }, { status: 'active', limit: 1000 },
  ];
  for (const query of cases) {
    statements.length = 0;
    const res = await list(countedApp, query);
    t.equal(res.statusCode, 200);
    t.equal(statements.length, 1, `${JSON.stringify(query)}: ${res.json().items.length} states, one statement`);
  }
  t.equal((await list(countedApp)).json().items.length, 30);
  t.ok(
    (await list(countedApp)).json().items.every((s: { steps: object }) => Object.keys(s.steps).length === 3),
    'the steps come with the states in that one statement',
  );

  statements.length = 0;
  const { ids: walked, pages } = await walk(countedApp, { limit: 7 });
  t.equal(walked.length, 30);
  t.equal(pages, 5);
  t.equal(statements.length, 5, 'one statement per page while paginating');
});

t.test('GET /v1/workflows/by-workflow-id/{workflow_id}', async (t) => {
  const { app } = await buildTestApp(t);
  await put(app, uid(1), { workflow_id: 'job-1', status: 'completed', updated_at: '2025-03-01T10:00:00.000000Z' });
  await put(app, uid(2), { workflow_id: 'job-1', status: 'running', updated_at: '2025-03-01T12:00:00.000000Z', steps: { s: { status: 'running' } } });
  // written last but updated earliest: recency is by updated_at, not by write order
  await put(app, uid(3), { workflow_id: 'job-1', status: 'failed', updated_at: '2025-03-01T11:00:00.000000Z' });
  await put(app, uid(9), { workflow_id: 'job-2', updated_at: '2025-03-02T00:00:00.000000Z' });

  t.test('the most recently updated state with that workflow_id', async (t) => {
    const res = await app.inject({ url: '/v1/workflows/by-workflow-id/job-1' });
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^application\/json/);
    const body = res.json();
    t.equal(body.id, uid(2));
    t.equal(body.status, 'running');
    t.equal(body.updated_at, '2025-03-01T12:00:00.000000Z');
    t.strictSame(body, (await app.inject({ url: `/v1/workflows/${uid(2)}` })).json(), 'the full state with steps');
  });

  t.test('an update makes another state the latest', async (t) => {
    const patched = await app.inject({ method: 'PATCH', url: `/v1/workflows/${uid(1)}`, ...json({ error: 'retried' }) });
    t.equal(patched.statusCode, 200);
    const res = await app.inject({ url: '/v1/workflows/by-workflow-id/job-1' });
    t.equal(res.statusCode, 200);
    t.equal(res.json().id, uid(1));
    t.equal(res.json().error, 'retried');
  });

  t.test('ties on updated_at are broken by id, as in the list', async (t) => {
    const at = '2025-04-01T00:00:00.000000Z';
    await put(app, uid(20), { workflow_id: 'job-tie', updated_at: at });
    await put(app, uid(22), { workflow_id: 'job-tie', updated_at: at });
    await put(app, uid(21), { workflow_id: 'job-tie', updated_at: at });
    const res = await app.inject({ url: '/v1/workflows/by-workflow-id/job-tie' });
    t.equal(res.json().id, uid(22));
    t.equal(ids(await list(app, { workflow_id: 'job-tie', limit: 1 }))[0], uid(22), 'the same state as the list\'s first');
  });

  t.test('a workflow_id with spaces and a slash, URL-encoded', async (t) => {
    const wf = 'team a/nightly run';
    await put(app, uid(30), { workflow_id: wf });
    const res = await app.inject({ url: `/v1/workflows/by-workflow-id/${encodeURIComponent(wf)}` });
    t.equal(res.statusCode, 200);
    t.equal(res.json().id, uid(30));
    t.equal(res.json().workflow_id, wf);
  });

  t.test('an unknown workflow_id is a 404 problem', async (t) => {
    const res = await app.inject({ url: '/v1/workflows/by-workflow-id/no-such-workflow' });
    t.equal(res.statusCode, 404);
    t.match(res.headers['content-type'], /^application\/problem\+json/);
    t.equal(res.json().status, 404);
    t.equal(res.json().title, 'Not Found');
    t.equal(res.json().instance, res.headers['x-request-id']);
    t.equal((await app.inject({ url: '/v1/workflows/by-workflow-id/JOB-1' })).statusCode, 404, 'workflow_id is matched exactly');
  });
});

const daysAgo = (d: number) => new Date(Date.now() - d * 86_400_000).toISOString();
const purge = (app: FastifyInstance, body: unknown) => app.inject({ method: 'POST', url: '/v1/purge', ...json(body) });
const exists = async (app: FastifyInstance, id: string) => {
  const code = (await app.inject({ url: `/v1/workflows/${id}` })).statusCode;
  if (code !== 200 && code !== 404) throw new Error(`GET ${id}: ${code}`);
  return code === 200;
};

t.test('POST /v1/purge', async (t) => {
  const { app, sql } = await buildTestApp(t);
  const oldCompleted = uid(1);
  const oldRunning = uid(2);
  const newCompleted = uid(3);
  const oldFailed = uid(4);
  const oldState = { workflow_id: 'old-done', status: 'Completed', updated_at: daysAgo(30),
    steps: { s1: { status: 'completed' }, s2: { status: 'failed' } } };
  await put(app, oldCompleted, oldState);
  const cp = await app.inject({ method: 'POST', url: `/v1/workflows/${oldCompleted}/checkpoints`, ...json({ step_id: 's1' }) });
  t.equal(cp.statusCode, 201);
  const cpId: string = cp.json().id;
  const reloaded = (await app.inject({ url: `/v1/workflows/${oldCompleted}` })).json();
  t.equal(reloaded.updated_at.slice(0, 10), daysAgo(30).slice(0, 10), 'a checkpoint leaves updated_at alone: still 30 days old');
  await put(app, oldRunning, { workflow_id: 'old-running', status: 'running', updated_at: daysAgo(30) });
  await put(app, newCompleted, { workflow_id: 'new-done', status: 'completed' });
  await put(app, oldFailed, { workflow_id: 'old-failed', status: 'failed', updated_at: daysAgo(30) });
  const stepCount = async (id: string) =>
    (await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM workflow_states w, json_object_keys(w.doc -> 'steps') k WHERE w.id = ${id}::uuid`)[0]!.n;

  t.test('invalid bodies are 400s that name the field, and delete nothing', async (t) => {
    const cases: [unknown, string][] = [
      [{}, 'body.older_than'],
      [{ statuses: ['completed'] }, 'body.older_than'],
      [{ older_than: 'last week' }, 'body.older_than'],
      [{ older_than: daysAgo(1), statuses: ['running'] }, 'body.statuses'],
      [{ older_than: daysAgo(1), statuses: ['completed', 'Paused'] }, 'body.statuses'],
      [{ older_than: daysAgo(1), statuses: ['pending'] }, 'body.statuses'],
      [{ older_than: daysAgo(1), statuses: ['active'] }, 'body.statuses'],
      [{ older_than: daysAgo(1), statuses: 'completed' }, 'body.statuses'],
      [{ older_than: daysAgo(1), dry_run: 'yes' }, 'body.dry_run'],
      [{ older_than: daysAgo(1), force: true }, 'body.force'],
    ];
    for (const [body, path] of cases) {
      const res = await purge(app, body);
      t.equal(res.statusCode, 400, JSON.stringify(body));
      t.match(res.headers['content-type'], /^application\/problem\+json/);
      const p = res.json();
      t.equal(p.status, 400);
      t.ok(p.errors.some((e: { path: string }) => e.path === path || e.path.startsWith(`${path}.`)),
        `${JSON.stringify(body)} names ${path}: ${JSON.stringify(p.errors)}`);
    }
    for (const id of [oldCompleted, oldRunning, newCompleted, oldFailed]) t.ok(await exists(app, id), `${id} kept`);
  });

  t.test('dry_run counts and deletes nothing', async (t) => {
    const res = await purge(app, { older_than: daysAgo(7), dry_run: true });
    t.equal(res.statusCode, 200);
    t.strictSame(res.json(), { matched: 2, dry_run: true, threads_matched: 0 });
    const only = await purge(app, { older_than: daysAgo(7), dry_run: true, statuses: ['completed'] });
    t.strictSame(only.json(), { matched: 1, dry_run: true, threads_matched: 0 });
    const none = await purge(app, { older_than: daysAgo(60), dry_run: true });
    t.strictSame(none.json(), { matched: 0, dry_run: true, threads_matched: 0 });
    for (const id of [oldCompleted, oldRunning, newCompleted, oldFailed]) t.ok(await exists(app, id), `${id} kept`);
    t.equal(await stepCount(oldCompleted), 2);
  });

  t.test('statuses ["failed"] deletes only failed states', async (t) => {
    const res = await purge(app, { older_than: daysAgo(7), statuses: ['failed'] });
    t.equal(res.statusCode, 200);
    t.strictSame(res.json(), { deleted: 1, threads_deleted: 0 });
    t.notOk(await exists(app, oldFailed));
    t.ok(await exists(app, oldCompleted), 'the old completed state is kept');
    t.ok(await exists(app, oldRunning));
  });

  t.test('the seed scenario: the 30-day-old completed state goes with its steps and checkpoints', async (t) => {
    t.equal(await stepCount(oldCompleted), 2, 'it has steps before');
    t.equal((await app.inject({ url: `/v1/checkpoints/${cpId}` })).statusCode, 200, 'and a checkpoint');
    const res = await purge(app, { older_than: daysAgo(7) });
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^application\/json/);
    t.strictSame(res.json(), { deleted: 1, threads_deleted: 0 });
    t.notOk(await exists(app, oldCompleted), 'the old completed state is deleted');
    t.ok(await exists(app, oldRunning), 'the old running state is kept');
    t.ok(await exists(app, newCompleted), 'the recent completed state is kept');
    t.equal(await stepCount(oldCompleted), 0, 'its steps are gone');
    t.equal((await app.inject({ url: `/v1/checkpoints/${cpId}` })).statusCode, 404, 'its checkpoint is gone');
    t.strictSame((await purge(app, { older_than: daysAgo(7) })).json(), { deleted: 0, threads_deleted: 0 }, 'a second purge finds nothing');
  });

  t.test('statuses in any case are accepted', async (t) => {
    await put(app, uid(5), { workflow_id: 'old-done-2', status: 'completed', updated_at: daysAgo(10) });
    await put(app, uid(6), { workflow_id: 'old-failed-2', status: 'failed', updated_at: daysAgo(10) });
    const dry = await purge(app, { older_than: daysAgo(7), statuses: ['COMPLETED'], dry_run: true });
    t.equal(dry.statusCode, 200);
    t.strictSame(dry.json(), { matched: 1, dry_run: true, threads_matched: 0 });
    const res = await purge(app, { older_than: daysAgo(7), statuses: ['Completed'] });
    t.equal(res.statusCode, 200);
    t.strictSame(res.json(), { deleted: 1, threads_deleted: 0 });
    t.notOk(await exists(app, uid(5)));
    t.ok(await exists(app, uid(6)), 'failed is not purged when only Completed is asked');
    const both = await purge(app, { older_than: daysAgo(7), statuses: ['Failed', 'failed', 'cOmPlEtEd'] });
    t.equal(both.statusCode, 200);
    t.strictSame(both.json(), { deleted: 1, threads_deleted: 0 });
    t.notOk(await exists(app, uid(6)));
    t.ok(await exists(app, oldRunning));
    t.ok(await exists(app, newCompleted));
  });

  t.test('older_than with an offset is the same instant', async (t) => {
    // 2025-05-01T12:00:00Z; older_than 13:00+02:00 is 11:00Z (not older), 15:00+02:00 is 13:00Z (older)
    await put(app, uid(7), { workflow_id: 'offset', status: 'completed', updated_at: '2025-05-01T12:00:00Z' });
    t.strictSame((await purge(app, { older_than: '2025-05-01T13:00:00+02:00' })).json(), { deleted: 0, threads_deleted: 0 });
    t.ok(await exists(app, uid(7)));
    t.strictSame((await purge(app, { older_than: '2025-05-01T15:00:00+02:00' })).json(), { deleted: 1, threads_deleted: 0 });
    t.notOk(await exists(app, uid(7)));
  });
});

t.test('POST /v1/purge deletes more than one batch (500) of states', async (t) => {
  const { app, sql } = await buildTestApp(t);
  // Many states written in one statement, each with one step.
  const bulk = async (n: number, status: 'completed' | 'running' | 'failed', days: number) => {
    const steps = { only: { status: 'completed' as const, outputs: { ok: true } } };
    await insertStates(sql, DEFAULT_TENANT, Array.from({ length: n }, (_, k) => {
      const at = new Date(Date.now() - days * 86_400_000 - (k + 1) * 1000).toISOString().replace('Z', '000Z');
      return stateOf(randomUUID(), { workflow_id: `bulk-${status}-${k + 1}`, workflow_name: 'Bulk', status,
        context: { n: k + 1 }, steps }, { version: 1, started_at: at, updated_at: at });
    }));
  };
  await bulk(1200, 'completed', 30);
  await bulk(3, 'running', 30);
  await put(app, uid(1), { workflow_id: 'recent', status: 'completed' });
  const count = async (status: string) =>
    (await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM workflow_states WHERE status = ${status}`)[0]!.n;
  t.equal(await count('completed'), 1201);

  t.strictSame((await purge(app, { older_than: daysAgo(7), dry_run: true })).json(), { matched: 1200, dry_run: true, threads_matched: 0 });
  const res = await purge(app, { older_than: daysAgo(7) });
  t.equal(res.statusCode, 200);
  t.strictSame(res.json(), { deleted: 1200, threads_deleted: 0 });
  t.equal(await count('completed'), 1, 'only the recent completed state is left');
  t.equal(await count('running'), 3, 'the old running states are kept');
  t.strictSame(ids(await list(app, { status: 'completed' })), [uid(1)]);
  t.equal((await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM workflow_states w, json_object_keys(w.doc -> 'steps') k`)[0]!.n, 3,
    'the states left keep their steps: one each for the three running ones');
  t.strictSame((await purge(app, { older_than: daysAgo(7), dry_run: true })).json(), { matched: 0, dry_run: true, threads_matched: 0 });

  t.test('exactly one batch (500) is deleted in full and the loop ends', async (t) => {
    await bulk(500, 'failed', 20);
    const again = await purge(app, { older_than: daysAgo(7), statuses: ['failed'] });
    t.equal(again.statusCode, 200);
    t.strictSame(again.json(), { deleted: 500, threads_deleted: 0 });
    t.equal(await count('failed'), 0);
  });
});
