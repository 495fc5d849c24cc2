/**
 * A whole-state save renders its steps in the service (render.ts) and PostgreSQL joins the rest of
 * the document around them (wss_replace_state). These tests hold that document to what PostgreSQL
 * itself renders: the state from its row (wss_state_json), the steps from the same step records
 * (wss_render_steps, which the other write paths use), timestamps included.
 */
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { canonicalTimestamp, stepRecord } from '../src/repositories/render.js';
import { WorkflowStateInput } from '../src/schemas/workflows.js';
import { buildTestApp, json, stateBody } from './helper.js';

/** A deterministic pseudo-random source, so a failure can be replayed. */
function prng(seed: number) {
  let s = seed >>> 0;
  return (n: number) => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    return s % n;
  };
}

const two = (n: number) => String(n).padStart(2, '0');
const leap = (y: number) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
const daysIn = (y: number, m: number) => [31, leap(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]!;

/** Timestamps the schema accepts: any year, offset within ±15:59, fractions of 0 to 12 digits. */
function randomTimestamps(count: number): string[] {
  const r = prng(20261126);
  const out: string[] = [];
  const edgeFractions = ['', '.0', '.5', '.0000005', '.0000015', '.0000025', '.9999995', '.9999994999',
    '.12345650', '.1234565', '.000001', '.999999', '.4999995', '.00000050000001'];
  for (let i = 0; i < count; i++) {
    const y = [1, 2, 9999, 9998, 1970, 2000][r(12)] ?? 1 + r(9999);
    const m = 1 + r(12);
    const d = 1 + r(daysIn(y, m));
    const time = `${two(r(24))}:${two(r(60))}:${two(r(60))}`;
    const fraction = i % 3 === 0 ? edgeFractions[r(edgeFractions.length)]!
      : r(2) ? `.${String(r(1e9)).padStart(9, '0').slice(0, 1 + r(9))}${'0123456789'.slice(0, r(4))}` : '';
    const offset = r(3) === 0 ? 'Z' : `${r(2) ? '+' : '-'}${two(r(16))}:${two(r(60))}`;
    out.push(`${String(y).padStart(4, '0')}-${two(m)}-${two(d)}T${time}${fraction}${offset}`);
  }
  return out;
}

t.test('canonicalTimestamp prints what PostgreSQL stores, for 3,000 timestamps', async (t) => {
  const { sql } = await buildTestApp(t);
  const edges = ['0001-01-01T00:00:00+00:01', '0001-01-01T00:00:00-00:01', '0001-01-01T00:00:00Z',
    '9999-12-31T23:59:59-00:01', '9999-12-31T23:59:59+00:01', '9999-12-31T23:59:59.9999995Z',
    '9999-12-31T23:59:59.9999994Z', '2024-02-29T23:59:59.9999999-15:59', '1970-01-01T00:00:00.0000005+00:00'];
  const inputs = [...edges, ...randomTimestamps(3000)];
  const rows = await sql<{ input: string; printed: string; year: number }[]>`
    SELECT x AS input, wss_ts(x::timestamptz) AS printed,
           extract(year FROM x::timestamptz AT TIME ZONE 'UTC')::int AS year
    FROM unnest(${inputs}::text[]) AS x`;
  t.equal(rows.length, inputs.length);
  let same = 0;
  let declined = 0;
  const wrong: string[] = [];
  for (const row of rows) {
    const mine = canonicalTimestamp(row.input);
    if (row.year < 1 || row.year > 9999) {
      if (mine === undefined) declined++;
      else wrong.push(`${row.input}: ${mine}, PostgreSQL year ${row.year}`);
    } else if (mine === row.printed) {
      same++;
    } else {
      wrong.push(`${row.input}: ${mine} != ${row.printed}`);
    }
  }
  t.same(wrong.slice(0, 10), [], 'no timestamp printed differently');
  t.ok(same > 2900, `${same} printed the same`);
  t.equal(declined, 3, 'the three edges outside years 1-9999 in UTC are left to PostgreSQL');
  t.equal(canonicalTimestamp('2026-01-01T00:00:00.9999995Z'), '2026-01-01T00:00:01.000000Z', 'rounding carries');
  t.equal(canonicalTimestamp('2026-03-01T01:30:00+05:30'), '2026-02-28T20:00:00.000000Z', 'offset crosses a month');
  t.equal(canonicalTimestamp('2026-01-01T00:00:00.000001Z'), '2026-01-01T00:00:00.000001Z');
  t.equal(canonicalTimestamp('0001-01-01T00:30:00+01:00'), undefined, 'year 0 in UTC');
});

t.test('a saved document is the one PostgreSQL renders from the row and the step records', async (t) => {
  const { app, sql } = await buildTestApp(t);
  const deepSorted = (v: unknown): unknown => (Array.isArray(v) ? v.map(deepSorted)
    : v && typeof v === 'object'
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, deepSorted((v as Record<string, unknown>)[k])]))
      : v);
  const cases: Array<[string, Record<string, unknown>]> = [
    ['minimal', stateBody()],
    ['every field, offsets, long fractions, odd strings', stateBody({
      status: 'Completed',
      user_id: 'u-"quoted"\n',
      started_at: '2026-03-01T01:30:00.1234565+05:30',
      updated_at: '2026-03-02T00:00:00Z',
      completed_at: '2026-03-02T00:00:00.9999995-03:00',
      error: 'failed: "x"\t\u2028 ünïcødé 𝄞',
      context: { nested: { deep: [1, 2.5, -0.001, 1e21, true, null, 'ß'] }, empty: {}, list: [] },
      steps: {
        10: { status: 'running', started_at: '2026-01-01T00:00:00+00:00', outputs: 42 },
        9: { status: 'completed', outputs: [{ b: 1, a: 2 }], error: null, retry_count: 3 },
        'z-last': { status: 'FAILED', error: 'boom', completed_at: '9999-12-31T23:59:59.999999Z' },
        'ä-step': { status: 'skipped', outputs: 'text' },
      },
    })],
    ['a step timestamp PostgreSQL renders itself (year 0 in UTC)', stateBody({
      steps: { early: { status: 'completed', started_at: '0001-01-01T00:30:00+01:00' } },
    })],
  ];
  for (const [name, body] of cases) {
    const id = randomUUID();
    for (const pass of ['create', 'replace']) {
      const put = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(body) });
      t.equal(put.statusCode, pass === 'create' ? 201 : 200, `${name}: ${pass} status`);
      const [row] = await sql<{ rendered: string; stored: string }[]>`
        SELECT wss_state_json(w)::text AS rendered, w.doc::text AS stored FROM workflow_states w WHERE w.id = ${id}::uuid`;
      t.equal(put.body, row!.stored, `${name}: ${pass} answers the stored document`);
      t.same(deepSorted(put.json()), deepSorted(JSON.parse(row!.rendered)), `${name}: ${pass} equals wss_state_json`);
      const parsed = WorkflowStateInput.parse(body);
      const records = Object.entries(parsed.steps ?? {}).map(([stepId, st]) => stepRecord(stepId, st));
      const [steps] = await sql<{ text: string }[]>`SELECT wss_render_steps(${JSON.stringify(records)}) AS text`;
      t.same(deepSorted(put.json().steps), deepSorted(JSON.parse(steps!.text)),
        `${name}: ${pass} steps equal what PostgreSQL renders from the same records`);
      const get = await app.inject({ url: `/v1/workflows/${id}` });
      t.equal(get.body, put.body, `${name}: GET answers the same bytes`);
    }
  }
});

t.test('steps live in the document: a PUT replaces them exactly, the step_states view shows them', async (t) => {
  const { app, sql } = await buildTestApp(t);
  const id = randomUUID();
  const steps = { a: { status: 'completed', outputs: { n: 1 } }, b: { status: 'running' }, c: { status: 'pending' } };
  t.equal((await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(stateBody({ steps })) })).statusCode, 201);
  const put = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(stateBody({
    steps: { a: steps.a, b: { status: 'completed', started_at: '2026-01-01T01:00:00+01:00' }, d: { status: 'pending' } },
  })) });
  t.equal(put.statusCode, 200);
  t.same(Object.keys(put.json().steps), ['a', 'b', 'd']);
  const rows = await sql<{ step_id: string; status: string; started_at: string | null; outputs: unknown; retry_count: number }[]>`
    SELECT step_id, status, wss_ts(started_at) AS started_at, outputs, retry_count FROM step_states WHERE workflow_state_id = ${id}::uuid ORDER BY step_id`;
  t.same(rows.map((r) => [r.step_id, r.status, r.started_at, r.outputs, r.retry_count]), [
    ['a', 'completed', null, { n: 1 }, 0],
    ['b', 'completed', '2026-01-01T00:00:00.000000Z', null, 0],
    ['d', 'pending', null, null, 0],
  ]);
  const [view] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_class WHERE relname = 'step_states' AND relkind = 'v'`;
  t.equal(view!.n, 1, 'step_states is a view');
});

t.test('writes by SQL and by the previous release keep a state\'s document whole', async (t) => {
  const { app, sql } = await buildTestApp(t);
  const id = randomUUID();
  const steps = { a: { status: 'completed', outputs: { n: 1 } }, b: { status: 'running' } };
  t.equal((await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(stateBody({ steps })) })).statusCode, 201);

  // The previous release's PATCH: the row with doc NULL, then wss_write_steps, then the document.
  await sql.begin(async (tx) => {
    await tx`UPDATE workflow_states SET status = 'failed', error = 'boom', version = version + 1, doc = NULL WHERE id = ${id}::uuid`;
    await tx`SELECT wss_write_steps(${id}::uuid, ${JSON.stringify([{ step_id: 'c', status: 'failed', started_at: null,
      completed_at: '2026-01-02T00:00:00Z', outputs: [1, 'x'], error: 'e', retry_count: 2 }])}, false, ${['b']}::text[])`;
    await tx`UPDATE workflow_states w SET doc = wss_state_json(w) WHERE w.id = ${id}::uuid`;
  });
  const got = await app.inject({ url: `/v1/workflows/${id}` });
  t.equal(got.statusCode, 200);
  t.equal(got.headers.etag, '"2"');
  const doc = got.json();
  t.equal(doc.status, 'failed');
  t.equal(doc.error, 'boom');
  t.equal(doc.version, 2);
  t.strictSame(doc.steps, {
    a: { step_id: 'a', status: 'completed', started_at: null, completed_at: null, outputs: { n: 1 }, error: null, retry_count: 0 },
    c: { step_id: 'c', status: 'failed', started_at: null, completed_at: '2026-01-02T00:00:00.000000Z', outputs: [1, 'x'],
      error: 'e', retry_count: 2 },
  }, 'a kept, b deleted, c written');

  // A row written by SQL without a document gets one, without steps.
  const other = randomUUID();
  await sql`INSERT INTO workflow_states (id, workflow_id, workflow_name, status, started_at, updated_at, context)
    VALUES (${other}::uuid, 'by-sql', 'By SQL', 'running', '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z', '{"k":[1]}')`;
  const made = await app.inject({ url: `/v1/workflows/${other}` });
  t.equal(made.statusCode, 200);
  t.strictSame(made.json(), { id: other, workflow_id: 'by-sql', workflow_name: 'By SQL', status: 'running', user_id: null,
    started_at: '2026-01-01T00:00:00.000000Z', updated_at: '2026-01-01T00:00:01.000000Z', completed_at: null,
    context: { k: [1] }, error: null, steps: {}, version: 1 });
});

t.test('a __proto__ key inside context and outputs is kept, as any other key', async (t) => {
  const { app } = await buildTestApp(t);
  const id = randomUUID();
  const put = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, headers: { 'content-type': 'application/json' },
    payload: '{"workflow_id":"w","workflow_name":"n","context":{"__proto__":{"x":1}},' +
      '"steps":{"a":{"status":"completed","outputs":{"__proto__":[2]}}}}' });
  t.equal(put.statusCode, 201);
  const got = JSON.parse((await app.inject({ url: `/v1/workflows/${id}` })).body);
  t.ok(Object.hasOwn(got.context, '__proto__'), 'context keeps its __proto__ key');
  t.same(Object.getOwnPropertyDescriptor(got.context, '__proto__')?.value, { x: 1 });
  t.same(Object.getOwnPropertyDescriptor(got.steps.a.outputs, '__proto__')?.value, [2], 'outputs too');
});
