/**
 * One renderer: the same logical state reads back as the same bytes whichever request wrote it
 * (PUT, PATCH, step PUTs, restore apply, restore fork), on a database with a language's collation;
 * pages and checkpoints embed those bytes as they are.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import t from 'tap';
import { nowTimestamp, utcTimestamp } from '../src/schemas/common.js';
import { buildTestApp, json } from './helper.js';

/** Step ids whose orders differ: C collation, ICU's, and the service's (UTF-16 code units, integers first). */
const STEP_IDS = ['b', 'B', 'a', 'A', '_x', 'ä', 'z', 'Z', '10', '9', 'step-2', 'step-10', '😀', 'ｚ'];
const SERVICE_ORDER = ['9', '10', 'A', 'B', 'Z', '_x', 'a', 'b', 'step-10', 'step-2', 'z', 'ä', '😀', 'ｚ'];

const step = (i: number) => ({
  status: i % 2 ? 'completed' : 'running',
  started_at: '2025-03-01T10:00:00.5+02:00',
  completed_at: i % 2 ? `2025-03-01T08:00:0${i % 10}.1234567Z` : null,
  outputs: { n: i, big: 1e21, small: 1.5e-7, text: 'What is PostgreSQL?', nested: { z: 1, a: [true, null] } },
  error: i % 3 ? null : `failed ${i}`,
  retry_count: i,
});
const steps = Object.fromEntries(STEP_IDS.map((k, i) => [k, step(i)]));

/** The logical state every path reaches (in the order a client might send it). */
const target = {
  workflow_id: 'wf-bytes',
  workflow_name: 'Same bytes',
  status: 'Running',
  user_id: 'user-1',
  started_at: '2025-03-01T09:59:59.000001+01:00',
  completed_at: null,
  context: { query: 'What is PostgreSQL?', big: 1e21, zeta: 'ω', alpha: [1, 2.5, -0.0001], '2': 'two' },
  error: null,
  steps,
};

/** A body with what every path sets by itself (its id, updated_at, version) masked. */
const masked = (body: string, id: string) => body
  .replace(`{"id":"${id}",`, '{"id":"*",')
  .replace(/"updated_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"/, '"updated_at":"*"')
  .replace(/,"version":\d+\}$/, ',"version":*}');

async function send(app: FastifyInstance, method: 'PUT' | 'PATCH' | 'POST', url: string, body: unknown, status: number) {
  const res = await app.inject({ method, url, ...json(body) });
  if (res.statusCode !== status) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
  return res;
}

t.test('the same state reads back as the same bytes whichever request wrote it', async (t) => {
  const { app, sql } = await buildTestApp(t, {}, { icuLocale: 'und' });
  const [db] = await sql<{ provider: string; a_before_b: boolean }[]>`
    SELECT datlocprovider AS provider, 'a' < 'B' AS a_before_b FROM pg_database WHERE datname = current_database()`;
  t.equal(db!.provider, 'i', 'the database uses an ICU collation');
  t.equal(db!.a_before_b, true, 'under which text sorts otherwise than by bytes');

  const bodies = new Map<string, { id: string; body: string }>();
  const get = async (id: string) => (await app.inject({ url: `/v1/workflows/${id}` })).body;

  // PUT, in one request.
  const put = randomUUID();
  await send(app, 'PUT', `/v1/workflows/${put}`, target, 201);
  bodies.set('PUT', { id: put, body: await get(put) });

  // Another state first, then one PATCH: every field, the steps upserted and a stale one deleted.
  const patched = randomUUID();
  await send(app, 'PUT', `/v1/workflows/${patched}`, {
    workflow_id: 'wf-bytes', workflow_name: 'before', status: 'paused', user_id: null, error: 'old',
    completed_at: '2024-01-01T00:00:00Z', context: { old: true }, steps: { stale: { status: 'failed' }, a: { status: 'pending' } },
  }, 201);
  const { workflow_id: _, ...patch } = target;
  await send(app, 'PATCH', `/v1/workflows/${patched}`, { ...patch, steps: { ...steps, stale: null } }, 200);
  bodies.set('PATCH', { id: patched, body: await get(patched) });

  // No steps, then one step PUT per step, in reverse order.
  const stepwise = randomUUID();
  await send(app, 'PUT', `/v1/workflows/${stepwise}`, { ...target, steps: {} }, 201);
  for (const k of [...STEP_IDS].reverse()) {
    await send(app, 'PUT', `/v1/workflows/${stepwise}/steps/${encodeURIComponent(k)}`, steps[k], 201);
  }
  bodies.set('step PUTs', { id: stepwise, body: await get(stepwise) });

  // A checkpoint holding the target as a client snapshot, applied to another state and forked.
  const applied = randomUUID();
  await send(app, 'PUT', `/v1/workflows/${applied}`, { ...target, workflow_name: 'other', steps: { only: { status: 'failed' } } }, 201);
  const cp = (await send(app, 'POST', `/v1/workflows/${applied}/checkpoints`, { step_id: 'a', snapshot: target }, 201)).json();
  await send(app, 'POST', `/v1/checkpoints/${cp.id}/restore`, { mode: 'apply' }, 200);
  bodies.set('restore apply', { id: applied, body: await get(applied) });
  const forked = randomUUID();
  await send(app, 'POST', `/v1/checkpoints/${cp.id}/restore`, { mode: 'fork', new_id: forked }, 201);
  bodies.set('restore fork', { id: forked, body: await get(forked) });

  const reference = masked(bodies.get('PUT')!.body, put);
  for (const [path, { id, body }] of bodies) t.equal(masked(body, id), reference, `${path}: the same bytes as PUT`);

  const state = JSON.parse(bodies.get('PUT')!.body);
  t.same(Object.keys(state.steps), SERVICE_ORDER, 'steps in the order of their ids, not the collation\'s');
  t.equal(state.started_at, '2025-03-01T08:59:59.000001Z', 'timestamps in UTC with six digits');
  t.equal(state.steps.B.completed_at, '2025-03-01T08:00:01.123457Z', 'rounded to the microsecond');
  t.match(bodies.get('PATCH')!.body, '"big":1e+21', 'numbers as JSON.stringify writes them, after a PATCH too');
  t.match(bodies.get('step PUTs')!.body, '"query":"What is PostgreSQL?","big"', 'compact JSON');
  t.equal(Object.keys(state.context).join(), '2,query,big,zeta,alpha', 'the context\'s members in the order sent');
});

t.test('pages and checkpoints embed the stored bytes as they are', async (t) => {
  const { app } = await buildTestApp(t);
  const id = randomUUID();
  await send(app, 'PUT', `/v1/workflows/${id}`, target, 201);
  const state = (await app.inject({ url: `/v1/workflows/${id}` })).body;

  const page = await app.inject({ url: '/v1/workflows?limit=1' });
  t.equal(page.statusCode, 200);
  const cursor = page.json().next_cursor;
  t.equal(cursor, null);
  t.equal(page.body, `{"items":[${state}],"next_cursor":null}`);

  const made = await send(app, 'POST', `/v1/workflows/${id}/checkpoints`, { step_id: 'a' }, 201);
  const fields = { id: made.json().id, workflow_state_id: id, step_id: 'a', timestamp: made.json().timestamp, parent_id: null };
  const expected = `${JSON.stringify(fields).slice(0, -1)},"snapshot":${state}}`;
  t.equal(made.body, expected, 'a server snapshot is the state\'s stored bytes');
  t.equal((await app.inject({ url: `/v1/checkpoints/${fields.id}` })).body, expected);
  t.equal((await app.inject({ url: `/v1/workflows/${id}/checkpoints/latest` })).body, expected);
  t.equal((await app.inject({ url: `/v1/workflows/${id}/checkpoints?include_snapshot=true` })).body,
    `{"items":[${expected}],"next_cursor":null}`);
  t.equal((await app.inject({ url: `/v1/workflows/${id}/checkpoints` })).body,
    `{"items":[${JSON.stringify(fields)}],"next_cursor":null}`);

  const step = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}/steps/a`, ...json(steps.a) });
  t.equal(step.statusCode, 200);
  const stored = JSON.parse((await app.inject({ url: `/v1/workflows/${id}` })).body);
  t.equal(step.body, JSON.stringify({ ...stored.steps.a, version: stored.version }),
    'a step PUT answers the step as its state stores it, and the state\'s new version');

  const preview = await app.inject({ method: 'POST', url: `/v1/checkpoints/${fields.id}/restore`, ...json({ mode: 'preview' }) });
  t.equal(preview.statusCode, 200);
  t.equal(preview.body, state, 'a preview of a server snapshot is the state it was taken of');
});

t.test('timestamps are normalised once, at the edge: UTC, six digits, Z', async (t) => {
  const cases: [string, string | undefined][] = [
    ['2025-11-14T10:00:00Z', '2025-11-14T10:00:00.000000Z'],
    ['2025-11-14T10:00:00.1Z', '2025-11-14T10:00:00.100000Z'],
    ['2025-11-14T10:00:00.1234565Z', '2025-11-14T10:00:00.123457Z'],
    ['2025-11-14T10:00:00.1234564999Z', '2025-11-14T10:00:00.123456Z'],
    ['2025-12-31T23:59:59.9999995Z', '2026-01-01T00:00:00.000000Z'],
    ['2025-01-01T00:00:00+20:00', '2024-12-31T04:00:00.000000Z'],
    ['2025-01-01T00:00:00-23:59', '2025-01-01T23:59:00.000000Z'],
    ['2024-02-29T12:00:00+01:00', '2024-02-29T11:00:00.000000Z'],
    ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000000Z'],
    ['9999-12-31T23:59:59.9999994Z', '9999-12-31T23:59:59.999999Z'],
    ['0001-01-01T00:30:00+01:00', undefined],
    ['9999-12-31T23:59:59.9999995Z', undefined],
    ['9999-12-31T23:00:00-01:00', undefined],
    ['2025-02-29T00:00:00Z', undefined],
    ['2025-04-31T00:00:00Z', undefined],
  ];
  for (const [given, stored] of cases) t.equal(utcTimestamp(given), stored, given);

  const { app } = await buildTestApp(t);
  const id = randomUUID();
  const res = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json({
    workflow_id: 'w', workflow_name: 'n', started_at: '2025-01-01T00:00:00+20:00', updated_at: '2025-01-01T00:00:00.0000005-23:59',
  }) });
  t.equal(res.statusCode, 201);
  t.equal(res.json().started_at, '2024-12-31T04:00:00.000000Z', 'an offset beyond ±15:59 is accepted and stored in UTC');
  t.equal(res.json().updated_at, '2025-01-01T23:59:00.000001Z');
  const listed = await app.inject({ url: `/v1/workflows?updated_after=${encodeURIComponent('2025-01-01T23:59:00+00:00')}` });
  t.same(listed.json().items.map((s: { id: string }) => s.id), [id], 'filters compare the same instants');
  t.equal(nowTimestamp() < nowTimestamp(), true, 'the clock the service stamps with never repeats');
});
