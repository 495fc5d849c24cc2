import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import t from 'tap';
import { buildTestApp, json, stateBody } from './helper.js';

const fixture = JSON.parse(readFileSync(new URL('./fixtures/seed-workflow-state.json', import.meta.url), 'utf8'));

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TS_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const UNKNOWN = '00000000-0000-4000-8000-000000000000';

interface CheckpointBody {
  id: string;
  workflow_state_id: string;
  step_id: string;
  timestamp: string;
  parent_id: string | null;
  snapshot?: unknown;
}

async function putState(app: FastifyInstance, id: string, over: Record<string, unknown> = {}) {
  const res = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(stateBody(over)) });
  if (res.statusCode !== 200 && res.statusCode !== 201) throw new Error(`PUT ${id}: ${res.statusCode} ${res.body}`);
  return res.json();
}

async function checkpoint(app: FastifyInstance, id: string, body: Record<string, unknown> = { step_id: 's1' }) {
  const res = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json(body) });
  if (res.statusCode !== 201) throw new Error(`POST checkpoint ${id}: ${res.statusCode} ${res.body}`);
  return res.json() as CheckpointBody;
}

async function listIds(app: FastifyInstance, id: string): Promise<string[]> {
  const res = await app.inject({ url: `/v1/workflows/${id}/checkpoints?limit=1000` });
  if (res.statusCode !== 200) throw new Error(`list ${id}: ${res.statusCode} ${res.body}`);
  return (res.json().items as CheckpointBody[]).map((c) => c.id);
}

const restore = (app: FastifyInstance, cid: string, body: unknown = {}, headers: Record<string, string> = {}) =>
  app.inject({
    method: 'POST',
    url: `/v1/checkpoints/${cid}/restore`,
    headers: { 'content-type': 'application/json', ...headers },
    payload: JSON.stringify(body),
  });

interface Asserts {
  equal(found: unknown, wanted: unknown): boolean;
  match(found: unknown, pattern: unknown): boolean;
}
interface Reply {
  statusCode: number;
  headers: Record<string, unknown>;
  json(): any;
}

/** An application/problem+json answer with this status; returns the problem. */
function assertProblem(t: Asserts, res: Reply, status: number) {
  t.equal(res.statusCode, status);
  t.match(res.headers['content-type'], /^application\/problem\+json/);
  const p = res.json();
  t.equal(p.status, status);
  t.equal(p.instance, res.headers['x-request-id']);
  return p;
}

t.test('creating checkpoints', async (t) => {
  const { app } = await buildTestApp(t);
  const id = randomUUID();
  await putState(app, id, { context: { n: 1 }, steps: { s1: { status: 'running', outputs: { a: [1] } } } });
  let first: CheckpointBody;

  t.test('without snapshot: 201, Location, the stored state as snapshot, parent null', async (t) => {
    const res = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json({ step_id: 's1' }) });
    t.equal(res.statusCode, 201);
    t.match(res.headers['content-type'], /^application\/json/);
    const body = res.json();
    first = body;
    t.match(body.id, UUID_RE);
    t.equal(res.headers.location, `/v1/checkpoints/${body.id}`);
    t.equal(body.workflow_state_id, id);
    t.equal(body.step_id, 's1');
    t.match(body.timestamp, TS_RE);
    t.equal(body.parent_id, null);
    const state = (await app.inject({ url: `/v1/workflows/${id}` })).json();
    t.same(body.snapshot, state, 'the snapshot is the stored state as GET shows it');
    t.equal(body.snapshot.version, 1);
    t.same(Object.keys(body.snapshot.steps), ['s1']);
    t.same(body.snapshot.steps.s1.outputs, { a: [1] });
    const loaded = await app.inject({ url: res.headers.location as string });
    t.equal(loaded.statusCode, 200);
    t.same(loaded.json(), body, 'the Location answers the same checkpoint');
  });

  t.test('the next checkpoint has the previous one as parent and snapshots the newer state', async (t) => {
    await putState(app, id, { context: { n: 2 }, steps: { s1: { status: 'completed' }, s2: { status: 'pending' } } });
    const res = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json({ step_id: 's2' }) });
    t.equal(res.statusCode, 201);
    const body = res.json();
    t.not(body.id, first.id);
    t.equal(body.parent_id, first.id);
    t.equal(body.step_id, 's2');
    t.equal(body.snapshot.version, 2);
    t.same(body.snapshot.context, { n: 2 });
    t.same(Object.keys(body.snapshot.steps).sort(), ['s1', 's2']);
    t.same(body.snapshot, (await app.inject({ url: `/v1/workflows/${id}` })).json());
  });

  t.test('with a client snapshot: stored as given', async (t) => {
    const snapshot = { anything: [1, 'two', { three: null }], nested: { deep: true } };
    const res = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`,
      ...json({ step_id: 'custom', snapshot }) });
    t.equal(res.statusCode, 201);
    const body = res.json();
    t.same(body.snapshot, snapshot);
    t.equal(body.step_id, 'custom');
    t.same((await app.inject({ url: `/v1/checkpoints/${body.id}` })).json().snapshot, snapshot);
    const scalar = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`,
      ...json({ step_id: 'scalar', snapshot: 'just a string' }) });
    t.equal(scalar.statusCode, 201);
    t.equal(scalar.json().snapshot, 'just a string');
    t.equal(scalar.json().parent_id, body.id);
  });

  t.test('concurrent checkpoints of one workflow form one chain', async (t) => {
    const cid = randomUUID();
    await putState(app, cid);
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) =>
      app.inject({ method: 'POST', url: `/v1/workflows/${cid}/checkpoints`, ...json({ step_id: `c${i}` }) })));
    t.same(answers.map((r) => r.statusCode), Array(8).fill(201));
    const items = (await app.inject({ url: `/v1/workflows/${cid}/checkpoints` })).json().items as CheckpointBody[];
    t.equal(items.length, 8);
    for (let i = 0; i < items.length - 1; i++) t.equal(items[i]!.parent_id, items[i + 1]!.id);
    t.equal(items.at(-1)!.parent_id, null, 'exactly one root');
  });

  t.test('unknown state: 404 problem', async (t) => {
    const res = await app.inject({ method: 'POST', url: `/v1/workflows/${UNKNOWN}/checkpoints`, ...json({ step_id: 's1' }) });
    assertProblem(t, res, 404);
    t.equal(res.headers.location, undefined);
  });

  t.test('invalid bodies: 400', async (t) => {
    const missing = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json({}) });
    assertProblem(t, missing, 400);
    const unknown = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`,
      ...json({ step_id: 's1', extra: 1 }) });
    const p = assertProblem(t, unknown, 400);
    t.match(p.errors, [{ path: 'body.extra', message: 'unknown field' }]);
  });
});

t.test('client-chosen ids make retries safe', async (t) => {
  const { app } = await buildTestApp(t);
  const id = randomUUID();
  const other = randomUUID();
  await putState(app, id, { steps: { s1: { status: 'running' } } });
  await putState(app, other);
  const cid = randomUUID();
  const snapshot = { a: 1, b: [true] };

  const created = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`,
    ...json({ id: cid, step_id: 's1', snapshot }) });
  t.equal(created.statusCode, 201);
  t.equal(created.json().id, cid);
  t.equal(created.headers.location, `/v1/checkpoints/${cid}`);

  t.test('same id, same content: 200 with the stored checkpoint', async (t) => {
    const again = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`,
      ...json({ id: cid, step_id: 's1', snapshot }) });
    t.equal(again.statusCode, 200);
    t.same(again.json(), created.json(), 'same timestamp, parent and snapshot');
    t.equal(again.json().timestamp, created.json().timestamp);
    t.same(await listIds(app, id), [cid], 'no second checkpoint was made');
  });

  t.test('same id, other step_id: 409', async (t) => {
    const res = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`,
      ...json({ id: cid, step_id: 's2', snapshot }) });
    assertProblem(t, res, 409);
  });

  t.test('same id, other snapshot: 409', async (t) => {
    const res = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`,
      ...json({ id: cid, step_id: 's1', snapshot: { a: 2, b: [true] } }) });
    assertProblem(t, res, 409);
  });

  t.test('same id on another workflow state: 409', async (t) => {
    const res = await app.inject({ method: 'POST', url: `/v1/workflows/${other}/checkpoints`,
      ...json({ id: cid, step_id: 's1', snapshot }) });
    assertProblem(t, res, 409);
    t.same(await listIds(app, other), []);
  });

  t.test('the stored checkpoint is unchanged by the conflicts', async (t) => {
    const res = await app.inject({ url: `/v1/checkpoints/${cid}` });
    t.equal(res.statusCode, 200);
    t.same(res.json(), created.json());
  });

  const sid = randomUUID();
  t.test('a server-snapshot checkpoint retried after the state changed: 200 with the original', async (t) => {
    const first = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`,
      ...json({ id: sid, step_id: 's1' }) });
    t.equal(first.statusCode, 201);
    t.equal(first.json().parent_id, cid);
    await putState(app, id, { status: 'paused' });
    const retry = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`,
      ...json({ id: sid, step_id: 's1' }) });
    t.equal(retry.statusCode, 200);
    t.same(retry.json(), first.json());
    t.equal(retry.json().snapshot.status, 'running');
    t.equal(retry.json().snapshot.version, 1);
    t.same(await listIds(app, id), [sid, cid]);
  });

  t.test('concurrent retries of one id: one 201, the others 200 with the same checkpoint', async (t) => {
    const rid = randomUUID();
    const body = { id: rid, step_id: 's1', snapshot: { concurrent: true } };
    const answers = await Promise.all(Array.from({ length: 6 }, () =>
      app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json(body) })));
    t.same(answers.map((r) => r.statusCode).sort(), [200, 200, 200, 200, 200, 201]);
    const stored = (await app.inject({ url: `/v1/checkpoints/${rid}` })).json();
    for (const r of answers) t.same(r.json(), stored);
    t.same(await listIds(app, id), [rid, sid, cid]);
  });
});

t.test('retention (the seed scenario: 15 checkpoints keep 10)', async (t) => {
  t.test('default CHECKPOINT_RETENTION keeps the newest 10', async (t) => {
    const { app, config } = await buildTestApp(t);
    t.equal(config.CHECKPOINT_RETENTION, 10);
    const id = randomUUID();
    await putState(app, id);
    const ids: string[] = [];
    for (let i = 0; i < 15; i++) ids.push((await checkpoint(app, id, { step_id: `step-${i}` })).id);
    t.same(await listIds(app, id), ids.slice(5).reverse(), 'the newest 10, newest first');
    for (const gone of ids.slice(0, 5)) {
      t.equal((await app.inject({ url: `/v1/checkpoints/${gone}` })).statusCode, 404, `${gone} pruned`);
    }
    for (const kept of ids.slice(5)) {
      t.equal((await app.inject({ url: `/v1/checkpoints/${kept}` })).statusCode, 200, `${kept} kept`);
    }
    const latest = (await app.inject({ url: `/v1/workflows/${id}/checkpoints/latest` })).json();
    t.equal(latest.id, ids[14]);
    t.equal(latest.parent_id, ids[13]);
    t.equal(latest.step_id, 'step-14');
  });

  t.test('CHECKPOINT_RETENTION=0 keeps all 15', async (t) => {
    const { app } = await buildTestApp(t, { CHECKPOINT_RETENTION: '0' });
    const id = randomUUID();
    await putState(app, id);
    const ids: string[] = [];
    for (let i = 0; i < 15; i++) ids.push((await checkpoint(app, id)).id);
    t.same(await listIds(app, id), [...ids].reverse());
    t.equal((await app.inject({ url: `/v1/checkpoints/${ids[0]}` })).statusCode, 200);
  });

  t.test('CHECKPOINT_RETENTION=3 keeps only 3', async (t) => {
    const { app } = await buildTestApp(t, { CHECKPOINT_RETENTION: '3' });
    const id = randomUUID();
    const other = randomUUID();
    await putState(app, id);
    await putState(app, other);
    const otherIds = [(await checkpoint(app, other)).id, (await checkpoint(app, other)).id];
    const ids: string[] = [];
    for (let i = 0; i < 15; i++) ids.push((await checkpoint(app, id)).id);
    t.same(await listIds(app, id), ids.slice(12).reverse());
    t.equal((await app.inject({ url: `/v1/checkpoints/${ids[11]}` })).statusCode, 404);
    t.same(await listIds(app, other), [...otherIds].reverse(), 'another workflow\'s checkpoints are not pruned');
  });
});

t.test('listing, latest, get one, prune', async (t) => {
  const { app } = await buildTestApp(t, { CHECKPOINT_RETENTION: '0' });
  const id = randomUUID();
  const empty = randomUUID();
  await putState(app, id, { steps: { s1: { status: 'running' } } });
  await putState(app, empty);
  const made: CheckpointBody[] = [];
  for (let i = 0; i < 7; i++) made.push(await checkpoint(app, id, { step_id: `s${i}` }));
  const newestFirst = made.map((c) => c.id).reverse();

  t.test('newest first, without snapshots by default', async (t) => {
    const res = await app.inject({ url: `/v1/workflows/${id}/checkpoints` });
    t.equal(res.statusCode, 200);
    const body = res.json();
    t.equal(body.next_cursor, null);
    t.same(body.items.map((c: CheckpointBody) => c.id), newestFirst);
    for (const item of body.items) {
      t.notOk('snapshot' in item, 'no snapshot field');
      t.same(Object.keys(item).sort(), ['id', 'parent_id', 'step_id', 'timestamp', 'workflow_state_id']);
      t.equal(item.workflow_state_id, id);
      t.match(item.timestamp, TS_RE);
    }
    for (let i = 0; i < body.items.length - 1; i++) {
      t.equal(body.items[i].parent_id, body.items[i + 1].id, 'each links to the one before');
      t.ok(body.items[i].timestamp >= body.items[i + 1].timestamp, 'timestamps descend');
    }
    t.equal(body.items.at(-1).parent_id, null);
  });

  t.test('include_snapshot=true adds the snapshots', async (t) => {
    const res = await app.inject({ url: `/v1/workflows/${id}/checkpoints?include_snapshot=true` });
    t.equal(res.statusCode, 200);
    const items = res.json().items as CheckpointBody[];
    t.equal(items.length, 7);
    for (const item of items) {
      const original = made.find((c) => c.id === item.id);
      t.same(item, original, 'the full checkpoint, as created');
    }
    const off = await app.inject({ url: `/v1/workflows/${id}/checkpoints?include_snapshot=false` });
    t.notOk('snapshot' in off.json().items[0]);
    assertProblem(t, await app.inject({ url: `/v1/workflows/${id}/checkpoints?include_snapshot=yes` }), 400);
  });

  t.test('limit + next_cursor walk all checkpoints once, in order', async (t) => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
      const res = await app.inject({ url: `/v1/workflows/${id}/checkpoints?limit=3${q}` });
      t.equal(res.statusCode, 200);
      const body = res.json();
      t.ok(body.items.length <= 3);
      seen.push(...body.items.map((c: CheckpointBody) => c.id));
      cursor = body.next_cursor;
      pages++;
    } while (cursor !== null && pages < 10);
    t.equal(pages, 3);
    t.same(seen, newestFirst, 'all 7, newest first, no duplicates');
    t.equal(new Set(seen).size, 7);

    const exact = await app.inject({ url: `/v1/workflows/${id}/checkpoints?limit=7` });
    t.equal(exact.json().items.length, 7);
    t.equal(exact.json().next_cursor, null, 'no cursor when nothing follows');
    assertProblem(t, await app.inject({ url: `/v1/workflows/${id}/checkpoints?cursor=not-a-cursor` }), 400);
    assertProblem(t, await app.inject({ url: `/v1/workflows/${id}/checkpoints?limit=0` }), 400);
  });

  t.test('unknown state: 404; known state with none: 200 and no items', async (t) => {
    assertProblem(t, await app.inject({ url: `/v1/workflows/${UNKNOWN}/checkpoints` }), 404);
    const res = await app.inject({ url: `/v1/workflows/${empty}/checkpoints` });
    t.equal(res.statusCode, 200);
    t.same(res.json(), { items: [], next_cursor: null });
  });

  t.test('latest: the newest, with its snapshot; 404 when there is none', async (t) => {
    const res = await app.inject({ url: `/v1/workflows/${id}/checkpoints/latest` });
    t.equal(res.statusCode, 200);
    t.same(res.json(), made.at(-1));
    t.ok('snapshot' in res.json());
    t.equal(res.json().snapshot.id, id);
    assertProblem(t, await app.inject({ url: `/v1/workflows/${empty}/checkpoints/latest` }), 404);
    assertProblem(t, await app.inject({ url: `/v1/workflows/${UNKNOWN}/checkpoints/latest` }), 404);
  });

  t.test('get one: 200 with snapshot; 404 unknown; 400 not a uuid', async (t) => {
    const res = await app.inject({ url: `/v1/checkpoints/${made[2]!.id}` });
    t.equal(res.statusCode, 200);
    t.same(res.json(), made[2]);
    assertProblem(t, await app.inject({ url: `/v1/checkpoints/${UNKNOWN}` }), 404);
    assertProblem(t, await app.inject({ url: '/v1/checkpoints/not-a-uuid' }), 400);
  });

  t.test('DELETE ?keep=2: 200 {deleted}, only the newest 2 remain', async (t) => {
    const res = await app.inject({ method: 'DELETE', url: `/v1/workflows/${id}/checkpoints?keep=2` });
    t.equal(res.statusCode, 200);
    t.same(res.json(), { deleted: 5 });
    t.same(await listIds(app, id), newestFirst.slice(0, 2));
    t.equal((await app.inject({ url: `/v1/checkpoints/${made[0]!.id}` })).statusCode, 404);
    const again = await app.inject({ method: 'DELETE', url: `/v1/workflows/${id}/checkpoints?keep=2` });
    t.same(again.json(), { deleted: 0 });
    const none = await app.inject({ method: 'DELETE', url: `/v1/workflows/${empty}/checkpoints?keep=2` });
    t.equal(none.statusCode, 200);
    t.same(none.json(), { deleted: 0 });
  });

  t.test('DELETE without keep (or a bad keep): 400; unknown state: 404', async (t) => {
    const p = assertProblem(t, await app.inject({ method: 'DELETE', url: `/v1/workflows/${id}/checkpoints` }), 400);
    t.match(p.errors, [{ path: 'query.keep' }]);
    assertProblem(t, await app.inject({ method: 'DELETE', url: `/v1/workflows/${id}/checkpoints?keep=-1` }), 400);
    assertProblem(t, await app.inject({ method: 'DELETE', url: `/v1/workflows/${id}/checkpoints?keep=x` }), 400);
    t.equal((await listIds(app, id)).length, 2, 'nothing deleted by the refused requests');
    assertProblem(t, await app.inject({ method: 'DELETE', url: `/v1/workflows/${UNKNOWN}/checkpoints?keep=2` }), 404);
  });

  t.test('keep=0 deletes them all', async (t) => {
    const res = await app.inject({ method: 'DELETE', url: `/v1/workflows/${id}/checkpoints?keep=0` });
    t.same(res.json(), { deleted: 2 });
    t.same(await listIds(app, id), []);
    assertProblem(t, await app.inject({ url: `/v1/workflows/${id}/checkpoints/latest` }), 404);
  });
});

t.test('restore', async (t) => {
  const { app } = await buildTestApp(t);
  const id = randomUUID();
  const v1 = await putState(app, id, {
    context: { n: 1 },
    user_id: 'u-1',
    steps: { s1: { status: 'running', outputs: { partial: true }, retry_count: 1 } },
  });
  const cp = await checkpoint(app, id, { step_id: 's1' });
  const snap = cp.snapshot as Record<string, any>;
  t.same(snap, v1);
  // Moves on after the checkpoint: a new step, other context, other status.
  await putState(app, id, {
    status: 'paused', context: { n: 2 }, user_id: 'u-2',
    steps: { s1: { status: 'completed', outputs: { done: true } }, s2: { status: 'pending' } },
  });

  t.test('apply (default, body {}): 200, the snapshot\'s content, steps replaced, version bumped, ETag', async (t) => {
    const res = await restore(app, cp.id, {});
    t.equal(res.statusCode, 200);
    t.equal(res.headers.etag, '"3"');
    const body = res.json();
    t.equal(body.id, id);
    t.equal(body.version, 3, 'past the current version 2, not the snapshot\'s 1');
    t.equal(body.status, 'running');
    t.equal(body.user_id, 'u-1');
    t.same(body.context, { n: 1 });
    t.same(Object.keys(body.steps), ['s1'], 'the step added after the checkpoint is gone');
    t.same(body.steps.s1, snap.steps.s1);
    t.equal(body.started_at, snap.started_at);
    t.equal(body.workflow_id, snap.workflow_id);
    t.equal(body.workflow_name, snap.workflow_name);
    t.equal(body.completed_at, snap.completed_at);
    t.equal(body.error, snap.error);
    t.match(body.updated_at, TS_RE);
    const loaded = await app.inject({ url: `/v1/workflows/${id}` });
    t.equal(loaded.headers.etag, '"3"');
    t.same(loaded.json(), body, 'stored as answered');
  });

  t.test('apply with If-Match: stale version 412, current version 200', async (t) => {
    await putState(app, id, { status: 'paused', steps: { s3: { status: 'running' } } });
    const stale = await restore(app, cp.id, { mode: 'apply' }, { 'if-match': '"3"' });
    assertProblem(t, stale, 412);
    const current = (await app.inject({ url: `/v1/workflows/${id}` })).json();
    t.equal(current.version, 4, 'nothing written by the refused restore');
    t.same(Object.keys(current.steps), ['s3']);
    const ok = await restore(app, cp.id, { mode: 'apply' }, { 'if-match': '"4"' });
    t.equal(ok.statusCode, 200);
    t.equal(ok.json().version, 5);
    t.equal(ok.headers.etag, '"5"');
    t.same(Object.keys(ok.json().steps), ['s1']);
    t.equal(ok.json().status, 'running');
  });

  t.test('concurrent applies with the same If-Match: exactly one wins', async (t) => {
    const v = (await app.inject({ url: `/v1/workflows/${id}` })).json().version as number;
    const answers = await Promise.all(Array.from({ length: 5 }, () =>
      restore(app, cp.id, { mode: 'apply' }, { 'if-match': `"${v}"` })));
    t.same(answers.map((r) => r.statusCode).sort(), [200, 412, 412, 412, 412]);
    t.equal((await app.inject({ url: `/v1/workflows/${id}` })).json().version, v + 1);
  });

  t.test('fork: 201, Location, a new id, original unchanged', async (t) => {
    const before = (await app.inject({ url: `/v1/workflows/${id}` })).json();
    const res = await restore(app, cp.id, { mode: 'fork' });
    t.equal(res.statusCode, 201);
    const body = res.json();
    t.match(body.id, UUID_RE);
    t.not(body.id, id);
    t.equal(res.headers.location, `/v1/workflows/${body.id}`);
    t.equal(res.headers.etag, '"1"');
    t.equal(body.version, 1);
    t.equal(body.workflow_id, snap.workflow_id);
    t.equal(body.status, 'running');
    t.same(body.context, { n: 1 });
    t.same(body.steps, snap.steps);
    const loaded = await app.inject({ url: `/v1/workflows/${body.id}` });
    t.equal(loaded.statusCode, 200);
    t.same(loaded.json(), body);
    t.same((await app.inject({ url: `/v1/workflows/${id}` })).json(), before, 'the original is unchanged');
  });

  const forkId = randomUUID();
  t.test('fork with new_id and workflow_id: both applied', async (t) => {
    const res = await restore(app, cp.id, { mode: 'fork', new_id: forkId, workflow_id: 'wf-forked' });
    t.equal(res.statusCode, 201);
    t.equal(res.headers.location, `/v1/workflows/${forkId}`);
    const body = res.json();
    t.equal(body.id, forkId);
    t.equal(body.workflow_id, 'wf-forked');
    t.equal(body.workflow_name, snap.workflow_name);
    t.same(body.steps, snap.steps);
    const loaded = (await app.inject({ url: `/v1/workflows/${forkId}` })).json();
    t.equal(loaded.workflow_id, 'wf-forked');
    t.equal((await app.inject({ url: `/v1/workflows/${id}` })).json().workflow_id, snap.workflow_id);
  });

  t.test('fork onto an existing new_id: 409, nothing changed', async (t) => {
    const before = (await app.inject({ url: `/v1/workflows/${forkId}` })).json();
    assertProblem(t, await restore(app, cp.id, { mode: 'fork', new_id: forkId, workflow_id: 'again' }), 409);
    t.same((await app.inject({ url: `/v1/workflows/${forkId}` })).json(), before);
    const original = (await app.inject({ url: `/v1/workflows/${id}` })).json();
    assertProblem(t, await restore(app, cp.id, { mode: 'fork', new_id: id }), 409);
    t.same((await app.inject({ url: `/v1/workflows/${id}` })).json(), original);
  });

  t.test('preview: 200 with the parsed state, nothing written', async (t) => {
    await putState(app, id, { status: 'failed', error: 'boom', steps: { s9: { status: 'failed' } } });
    const before = await app.inject({ url: `/v1/workflows/${id}` });
    const res = await restore(app, cp.id, { mode: 'preview' });
    t.equal(res.statusCode, 200);
    const body = res.json();
    t.equal(body.id, id);
    t.equal(body.status, 'running');
    t.same(body.context, { n: 1 });
    t.same(body.steps, snap.steps);
    t.equal(body.version, snap.version);
    t.equal(body.user_id, 'u-1');
    t.equal(body.error, null);
    const after = await app.inject({ url: `/v1/workflows/${id}` });
    t.equal(after.headers.etag, before.headers.etag, 'version unchanged');
    t.same(after.json(), before.json(), 'state unchanged');
    t.same(Object.keys(after.json().steps), ['s9']);
  });

  t.test('a snapshot that is not a WorkflowState: 422 with errors, in every mode', async (t) => {
    const bad = await checkpoint(app, id, { step_id: 'x', snapshot: { foo: 1 } });
    const before = (await app.inject({ url: `/v1/workflows/${id}` })).json();
    const p = assertProblem(t, await restore(app, bad.id, {}), 422);
    t.ok(Array.isArray(p.errors) && p.errors.length > 0, 'errors listed');
    const paths = (p.errors as { path: string }[]).map((e) => e.path);
    t.ok(paths.includes('snapshot.foo'), 'names the unknown field');
    t.ok(paths.includes('snapshot.workflow_id'), 'names the missing workflow_id');
    assertProblem(t, await restore(app, bad.id, { mode: 'preview' }), 422);
    const forkTarget = randomUUID();
    assertProblem(t, await restore(app, bad.id, { mode: 'fork', new_id: forkTarget }), 422);
    t.equal((await app.inject({ url: `/v1/workflows/${forkTarget}` })).statusCode, 404);
    t.same((await app.inject({ url: `/v1/workflows/${id}` })).json(), before, 'nothing written');
    const scalar = await checkpoint(app, id, { step_id: 'x', snapshot: 42 });
    assertProblem(t, await restore(app, scalar.id, {}), 422);
  });

  t.test('a snapshot in the Rust crate\'s serde format restores with lowercase statuses', async (t) => {
    const rid = randomUUID();
    await putState(app, rid, { steps: { other: { status: 'pending' } } });
    const serde = await checkpoint(app, rid, { step_id: 'generate_answer', snapshot: fixture });
    t.same(serde.snapshot, fixture, 'stored as given');
    const preview = await restore(app, serde.id, { mode: 'preview' });
    t.equal(preview.statusCode, 200);
    t.equal(preview.json().status, 'running');
    t.equal(preview.json().steps.search_docs.status, 'completed');
    const res = await restore(app, serde.id, {});
    t.equal(res.statusCode, 200);
    const body = res.json();
    t.equal(body.id, rid, 'applied to the checkpoint\'s state, not the id inside the snapshot');
    t.equal(body.version, 2);
    t.equal(body.status, 'running');
    t.equal(body.workflow_id, fixture.workflow_id);
    t.equal(body.user_id, 'user-456');
    t.same(Object.keys(body.steps).sort(), ['generate_answer', 'search_docs']);
    t.equal(body.steps.search_docs.status, 'completed');
    t.equal(body.steps.generate_answer.status, 'running');
    t.equal(body.steps.generate_answer.retry_count, 1);
    t.same(body.steps.search_docs.outputs, fixture.steps.search_docs.outputs);
    t.same(body.context, fixture.context);
    t.equal(body.started_at, '2025-11-14T10:00:00.123457Z');
    t.equal(body.steps.search_docs.completed_at, '2025-11-14T10:00:02.500000Z');
    t.equal((await app.inject({ url: `/v1/workflows/${fixture.id}` })).statusCode, 404,
      'no state was written under the snapshot\'s own id');
  });

  t.test('preview answers timestamps as apply would store them: UTC, Z, microseconds', async (t) => {
    const pid = randomUUID();
    await putState(app, pid);
    const snapshot = {
      workflow_id: 'wf-p', workflow_name: 'P', status: 'Completed',
      started_at: '2025-01-02T03:04:05.123456+02:00',
      completed_at: '2025-01-02T03:04:06.1234567Z',
      steps: { a: { status: 'Skipped', started_at: '2025-01-02T05:00:00+05:00' } },
    };
    const c = await checkpoint(app, pid, { step_id: 'a', snapshot });
    const preview = await restore(app, c.id, { mode: 'preview' });
    t.equal(preview.statusCode, 200);
    const p = preview.json();
    t.equal(p.status, 'completed');
    t.equal(p.steps.a.status, 'skipped');
    t.equal(p.steps.a.step_id, 'a');
    t.equal(p.started_at, '2025-01-02T01:04:05.123456Z');
    t.equal(p.completed_at, '2025-01-02T03:04:06.123457Z');
    t.equal(p.steps.a.started_at, '2025-01-02T00:00:00.000000Z');
    t.equal(p.updated_at, null, 'absent from the snapshot');
    t.equal(p.version, null, 'absent from the snapshot');
    const applied = (await restore(app, c.id, {})).json();
    t.equal(applied.started_at, '2025-01-02T01:04:05.123456Z', 'apply stores the same instants');
    t.equal(applied.completed_at, '2025-01-02T03:04:06.123457Z');
    t.equal(applied.steps.a.started_at, '2025-01-02T00:00:00.000000Z');
  });

  t.test('unknown checkpoint: 404 in every mode', async (t) => {
    assertProblem(t, await restore(app, UNKNOWN, {}), 404);
    assertProblem(t, await restore(app, UNKNOWN, { mode: 'fork' }), 404);
    assertProblem(t, await restore(app, UNKNOWN, { mode: 'preview' }), 404);
  });

  t.test('fork-only fields with apply or preview, an unknown mode, unknown fields: 400', async (t) => {
    const before = (await app.inject({ url: `/v1/workflows/${id}` })).json();
    const p = assertProblem(t, await restore(app, cp.id, { mode: 'apply', new_id: randomUUID() }), 400);
    t.match(p.errors, [{ path: 'body.new_id' }]);
    assertProblem(t, await restore(app, cp.id, { new_id: randomUUID() }), 400);
    assertProblem(t, await restore(app, cp.id, { mode: 'preview', workflow_id: 'x' }), 400);
    assertProblem(t, await restore(app, cp.id, { mode: 'rewind' }), 400);
    assertProblem(t, await restore(app, cp.id, { mode: 'fork', new_id: 'not-a-uuid' }), 400);
    const unknown = assertProblem(t, await restore(app, cp.id, { mode: 'apply', bogus: 1 }), 400);
    t.match(unknown.errors, [{ path: 'body.bogus', message: 'unknown field' }]);
    t.same((await app.inject({ url: `/v1/workflows/${id}` })).json(), before, 'nothing written');
  });
});

t.test('a restore with no body at all (as curl -X POST sends it) applies', async (t) => {
  const { app } = await buildTestApp(t);
  const id = randomUUID();
  await putState(app, id, { steps: { s1: { status: 'running' } } });
  const cp = await checkpoint(app, id, { step_id: 's1' });
  await putState(app, id, { steps: { s2: { status: 'pending' } } });
  const res = await app.inject({ method: 'POST', url: `/v1/checkpoints/${cp.id}/restore` });
  t.equal(res.statusCode, 200);
  t.same(Object.keys(res.json().steps), ['s1']);
  t.equal(res.json().version, 3);
  const empty = await app.inject({ method: 'POST', url: `/v1/checkpoints/${cp.id}/restore`,
    headers: { 'content-type': 'application/json' }, payload: '' });
  t.equal(empty.statusCode, 200, 'an empty JSON body is the same as none');
  t.equal(empty.json().version, 4);
});
