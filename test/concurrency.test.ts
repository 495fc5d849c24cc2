import { randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { buildTestApp, json, stateBody } from './helper.js';

type Res = LightMyRequestResponse;
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const N = 10;
const TS_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

/** The full step object the service stores for a step input (defaults filled in). */
const storedStep = (stepId: string, s: Json) => ({
  step_id: stepId,
  status: String(s.status).toLowerCase(),
  started_at: s.started_at ?? null,
  completed_at: s.completed_at ?? null,
  outputs: s.outputs ?? null,
  error: s.error ?? null,
  retry_count: s.retry_count ?? 0,
});

const sortedStatuses = (rs: Res[]) => rs.map((r) => r.statusCode).sort((a, b) => a - b);

t.test('optimistic concurrency and partial writes', async (t) => {
  const { app } = await buildTestApp(t);

  const send = (method: 'PUT' | 'PATCH' | 'DELETE' | 'GET', url: string, body?: unknown, headers: Record<string, string> = {}) =>
    app.inject({
      method,
      url,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
    });
  const path = (id: string) => `/v1/workflows/${id}`;
  const stepPath = (id: string, step: string) => `/v1/workflows/${id}/steps/${encodeURIComponent(step)}`;
  const put = (id: string, body: unknown, headers?: Record<string, string>) => send('PUT', path(id), body, headers);
  const patch = (id: string, body: unknown, headers?: Record<string, string>) => send('PATCH', path(id), body, headers);
  const putStep = (id: string, step: string, body: unknown, headers?: Record<string, string>) =>
    send('PUT', stepPath(id, step), body, headers);
  const del = (id: string, headers?: Record<string, string>) => send('DELETE', path(id), undefined, headers);
  const get = (id: string) => send('GET', path(id));
  const load = async (id: string): Promise<Json> => {
    const res = await get(id);
    if (res.statusCode !== 200) throw new Error(`GET ${id}: ${res.statusCode} ${res.body}`);
    return res.json();
  };

  /** A fresh state at version 1. */
  const create = async (over: Record<string, unknown> = {}) => {
    const id = randomUUID();
    const res = await put(id, stateBody(over));
    if (res.statusCode !== 201) throw new Error(`create: ${res.statusCode} ${res.body}`);
    return { id, state: res.json() as Json };
  };

  const isProblem = (t: Test, res: Res, status: number, title: string) => {
    t.equal(res.statusCode, status, `status ${status}`);
    t.match(res.headers['content-type'], /^application\/problem\+json/, 'problem+json');
    const p = res.json();
    t.equal(p.status, status);
    t.equal(p.title, title);
    t.type(p.type, 'string');
    t.type(p.detail, 'string');
    t.equal(p.instance, res.headers['x-request-id']);
    return p;
  };
  const is412 = (t: Test, res: Res) => isProblem(t, res, 412, 'Precondition Failed');
  /** Exactly one response has `ok`, every other is a 412 problem; returns the winner's index. */
  const oneWinner = (t: Test, results: Res[], ok: number) => {
    t.same(sortedStatuses(results), [ok, ...Array(results.length - 1).fill(412)]);
    for (const r of results.filter((r) => r.statusCode !== ok)) is412(t, r);
    return results.findIndex((r) => r.statusCode === ok);
  };

  t.test(`If-Match "1": ${N} concurrent PUTs, exactly one wins`, async (t) => {
    const { id } = await create({ steps: { old: { status: 'pending' } } });
    const results = await Promise.all(Array.from({ length: N }, (_, i) => put(id, stateBody({
      workflow_name: `writer ${i}`, context: { writer: i }, steps: { [`w${i}`]: { status: 'running', outputs: i } },
    }), { 'if-match': '"1"' })));
    const winner = oneWinner(t, results, 200);
    t.equal(results[winner]!.headers.etag, '"2"');
    t.equal(results[winner]!.json().version, 2);
    const stored = await load(id);
    t.equal(stored.version, 2);
    t.equal(stored.workflow_name, `writer ${winner}`);
    t.same(stored.context, { writer: winner });
    t.same(stored.steps, { [`w${winner}`]: storedStep(`w${winner}`, { status: 'running', outputs: winner }) },
      'only the winner\'s steps: no loser wrote any step, the old step is gone');
  });

  t.test(`version in the PUT body: ${N} concurrent PUTs with version 1, exactly one wins`, async (t) => {
    const { id } = await create();
    const results = await Promise.all(Array.from({ length: N }, (_, i) => put(id, stateBody({
      version: 1, workflow_name: `body writer ${i}`, steps: { [`b${i}`]: { status: 'pending' } },
    }))));
    const winner = oneWinner(t, results, 200);
    t.equal(results[winner]!.headers.etag, '"2"');
    const stored = await load(id);
    t.equal(stored.version, 2);
    t.equal(stored.workflow_name, `body writer ${winner}`);
    t.same(Object.keys(stored.steps), [`b${winner}`]);
  });

  t.test(`If-Match "1": ${N} concurrent PATCHes, exactly one wins`, async (t) => {
    const { id } = await create({ user_id: 'keep-me', steps: { keep: { status: 'pending' } } });
    const results = await Promise.all(Array.from({ length: N }, (_, i) => patch(id, {
      workflow_name: `patcher ${i}`, context: { patcher: i }, steps: { [`p${i}`]: { status: 'completed' } },
    }, { 'if-match': '"1"' })));
    const winner = oneWinner(t, results, 200);
    t.equal(results[winner]!.headers.etag, '"2"');
    t.equal(results[winner]!.json().version, 2);
    const stored = await load(id);
    t.equal(stored.version, 2);
    t.equal(stored.workflow_name, `patcher ${winner}`);
    t.same(stored.context, { patcher: winner });
    t.equal(stored.user_id, 'keep-me');
    t.same(Object.keys(stored.steps), ['keep', `p${winner}`], 'no loser upserted its step');
  });

  t.test(`If-Match "1": ${N} concurrent step PUTs, exactly one wins`, async (t) => {
    const { id } = await create({ steps: { base: { status: 'running' } } });
    const results = await Promise.all(Array.from({ length: N }, (_, i) =>
      putStep(id, `s${i}`, { status: 'completed', outputs: { by: i } }, { 'if-match': '"1"' })));
    const winner = oneWinner(t, results, 201);
    t.equal(results[winner]!.headers.etag, '"2"');
    t.same(results[winner]!.json(), { ...storedStep(`s${winner}`, { status: 'completed', outputs: { by: winner } }), version: 2 });
    const stored = await load(id);
    t.equal(stored.version, 2);
    t.same(Object.keys(stored.steps), ['base', `s${winner}`], 'no loser inserted its step');
  });

  t.test(`If-Match "1": ${N} concurrent step PUTs on the same existing step, exactly one wins`, async (t) => {
    const { id } = await create({ steps: { same: { status: 'running' } } });
    const results = await Promise.all(Array.from({ length: N }, (_, i) =>
      putStep(id, 'same', { status: 'failed', error: `e${i}`, retry_count: i }, { 'if-match': '"1"' })));
    const winner = oneWinner(t, results, 200);
    const stored = await load(id);
    t.equal(stored.version, 2);
    t.same(stored.steps, { same: storedStep('same', { status: 'failed', error: `e${winner}`, retry_count: winner }) });
  });

  t.test(`If-Match "1": ${N} concurrent DELETEs, exactly one wins`, async (t) => {
    const { id } = await create();
    const results = await Promise.all(Array.from({ length: N }, () => del(id, { 'if-match': '"1"' })));
    t.equal(results[oneWinner(t, results, 204)]!.body, '');
    t.equal((await get(id)).statusCode, 404);
  });

  t.test(`If-None-Match: *: ${N} concurrent creating PUTs, exactly one creates`, async (t) => {
    const id = randomUUID();
    const results = await Promise.all(Array.from({ length: N }, (_, i) =>
      put(id, stateBody({ workflow_name: `creator ${i}` }), { 'if-none-match': '*' })));
    const winner = oneWinner(t, results, 201);
    t.equal(results[winner]!.headers.etag, '"1"');
    t.equal(results[winner]!.headers.location, path(id));
    const stored = await load(id);
    t.equal(stored.version, 1);
    t.equal(stored.workflow_name, `creator ${winner}`);
  });

  t.test('preconditions on an absent state', async (t) => {
    const id = randomUUID();
    is412(t, await put(id, stateBody(), { 'if-match': '"1"' }));
    is412(t, await put(id, stateBody({ version: 1 })));
    is412(t, await put(id, stateBody(), { 'if-match': '*' }));
    is412(t, await patch(id, { workflow_name: 'x' }, { 'if-match': '"1"' }));
    is412(t, await patch(id, { workflow_name: 'x' }, { 'if-match': '*' }));
    is412(t, await patch(id, { workflow_name: 'x', version: 1 }));
    is412(t, await putStep(id, 's', { status: 'pending' }, { 'if-match': '"1"' }));
    is412(t, await putStep(id, 's', { status: 'pending' }, { 'if-match': '*' }));
    is412(t, await del(id, { 'if-match': '"1"' }));
    is412(t, await del(id, { 'if-match': '*' }));
    t.equal((await get(id)).statusCode, 404, 'nothing was created');
    const created = await put(id, stateBody(), { 'if-none-match': '*' });
    t.equal(created.statusCode, 201);
    t.equal(created.headers.etag, '"1"');
    t.equal(created.json().version, 1);
  });

  t.test('preconditions on a present state', async (t) => {
    const { id } = await create();
    is412(t, await put(id, stateBody({ workflow_name: 'nope' }), { 'if-none-match': '*' }));
    t.equal((await load(id)).workflow_name, 'Test workflow', 'If-None-Match: * did not overwrite');

    const star = await put(id, stateBody({ workflow_name: 'star' }), { 'if-match': '*' });
    t.equal(star.statusCode, 200);
    t.equal(star.headers.etag, '"2"');
    t.equal(star.json().workflow_name, 'star');

    const starPatch = await patch(id, { error: 'e' }, { 'if-match': '*' });
    t.equal(starPatch.statusCode, 200);
    t.equal(starPatch.headers.etag, '"3"');

    const starStep = await putStep(id, 'z', { status: 'skipped' }, { 'if-match': '*' });
    t.equal(starStep.statusCode, 201);
    t.equal(starStep.headers.etag, '"4"');

    // Entity tags that can never match a version: strong comparison, so W/"4" too (RFC 9110).
    for (const tag of ['"abc"', '"-1"', '""', 'W/"4"', '"4.0"', '"3", W/"4"']) {
      is412(t, await put(id, stateBody({ workflow_name: 'bad tag' }), { 'if-match': tag }));
      is412(t, await patch(id, { workflow_name: 'bad tag' }, { 'if-match': tag }));
      is412(t, await putStep(id, 'z', { status: 'failed' }, { 'if-match': tag }));
      is412(t, await del(id, { 'if-match': tag }));
    }
    // Not entity tags at all: a 400 naming the header and showing the form.
    for (const tag of ['4', 'abc', '"4', '4"', '"4",5']) {
      for (const res of [await put(id, stateBody({ workflow_name: 'no tag' }), { 'if-match': tag }),
        await patch(id, { workflow_name: 'no tag' }, { 'if-match': tag }),
        await putStep(id, 'z', { status: 'failed' }, { 'if-match': tag }),
        await del(id, { 'if-match': tag })]) {
        t.equal(res.statusCode, 400, `If-Match: ${tag}`);
        t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
        t.match(res.json(), { detail: /If-Match takes entity tags: the version in double quotes \(If-Match: "3"\), or \*/,
          errors: [{ path: 'headers.if-match', message: 'expected "<version>" in double quotes, or *' }] });
      }
    }
    is412(t, await put(id, stateBody({ workflow_name: 'stale' }), { 'if-match': '"3"' }));
    is412(t, await put(id, stateBody({ workflow_name: 'ahead' }), { 'if-match': '"5"' }));
    is412(t, await put(id, stateBody({ workflow_name: 'mismatch', version: 3 }), { 'if-match': '"4"' }),
    );
    const stored = await load(id);
    t.equal(stored.version, 4, 'no failed precondition wrote anything');
    t.equal(stored.workflow_name, 'star');
    t.same(Object.keys(stored.steps), ['z']);

    const list = await put(id, stateBody({ workflow_name: 'listed' }), { 'if-match': '"1", "4", "7"' });
    t.equal(list.statusCode, 200, 'a list of tags matches when one of them is the version');
    t.equal(list.headers.etag, '"5"');

    const both = await put(id, stateBody({ workflow_name: 'both', version: 5 }), { 'if-match': '"5"' });
    t.equal(both.statusCode, 200, 'If-Match and body version agreeing');
    t.equal(both.headers.etag, '"6"');

    const patched = await patch(id, { workflow_name: 'body version', version: 6 });
    t.equal(patched.statusCode, 200, 'PATCH with the current version in the body');
    t.equal(patched.headers.etag, '"7"');
    is412(t, await patch(id, { workflow_name: 'stale body version', version: 6 }));

    t.same((await load(id)).steps, {}, 'the full PUTs without steps deleted step z');
    const stepOk = await putStep(id, 'z', { status: 'completed' }, { 'if-match': '"7"' });
    t.equal(stepOk.statusCode, 201);
    t.equal(stepOk.headers.etag, '"8"');

    is412(t, await del(id, { 'if-match': '"7"' }));
    const gone = await del(id, { 'if-match': '"8"' });
    t.equal(gone.statusCode, 204);
    t.equal((await get(id)).statusCode, 404);
  });

  t.test('a stale If-Match on every write: 412 naming the current version, in the body and the ETag; nothing written', async (t) => {
    const { id } = await create({ steps: { a: { status: 'running' } } });
    t.equal((await patch(id, { workflow_name: 'v2' })).headers.etag, '"2"');
    const cid = randomUUID();
    const cp = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json({ id: cid, step_id: 'a' }) });
    t.equal(cp.statusCode, 201);
    const restore = (headers: Record<string, string>) =>
      app.inject({ method: 'POST', url: `/v1/checkpoints/${cid}/restore`, headers: { 'content-type': 'application/json', ...headers }, payload: '{"mode":"apply"}' });
    const stale = { 'if-match': '"1"' };
    const writes: Array<[string, () => Promise<Res>]> = [
      ['PUT', () => put(id, stateBody({ workflow_name: 'stale' }), stale)],
      ['PUT with a body version', () => put(id, stateBody({ workflow_name: 'stale', version: 1 }))],
      ['PATCH', () => patch(id, { workflow_name: 'stale' }, stale)],
      ['step PUT', () => putStep(id, 'a', { status: 'failed' }, stale)],
      ['DELETE', () => del(id, stale)],
      ['restore apply', () => restore(stale)],
    ];
    for (const [name, write] of writes) {
      const res = await write();
      const p = is412(t, res);
      t.equal(p.version, 2, `${name}: the current version in the problem`);
      t.equal(res.headers.etag, '"2"', `${name}: and as the ETag`);
      t.match(p.detail, /It is at version 2\.$/, name);
    }
    const after = await load(id);
    t.equal(after.version, 2, 'nothing was written');
    t.equal(after.workflow_name, 'v2');
    t.equal(after.steps.a.status, 'running');

    // A state that does not exist has no version to name.
    const absent = await put(randomUUID(), stateBody(), stale);
    const p = is412(t, absent);
    t.equal(p.version, undefined);
    t.equal(absent.headers.etag, undefined);
  });

  t.test('without preconditions the last write wins', async (t) => {
    const { id } = await create();
    const [a, b] = await Promise.all([
      put(id, stateBody({ workflow_name: 'A', steps: { a: { status: 'pending' } } })),
      put(id, stateBody({ workflow_name: 'B', steps: { b: { status: 'pending' } } })),
    ]);
    t.equal(a!.statusCode, 200);
    t.equal(b!.statusCode, 200);
    t.same([a!.headers.etag, b!.headers.etag].sort(), ['"2"', '"3"']);
    const last = a!.headers.etag === '"3"' ? 'A' : 'B';
    const stored = await load(id);
    t.equal(stored.version, 3);
    t.equal(stored.workflow_name, last);
    t.same(Object.keys(stored.steps), [last.toLowerCase()]);
  });

  t.test(`without preconditions: ${N} concurrent PUTs on a new id, one creates, each gets its own version`, async (t) => {
    const id = randomUUID();
    const results = await Promise.all(Array.from({ length: N }, (_, i) =>
      put(id, stateBody({ workflow_name: `w${i}`, steps: { [`s${i}`]: { status: 'pending', outputs: i } } }))));
    t.same(results.map((r) => r.statusCode).sort(), [...Array(N - 1).fill(200), 201], 'one 201, the others 200');
    const versions = results.map((r) => Number(JSON.parse(String(r.headers.etag))));
    t.same([...versions].sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i + 1), 'versions 1..N, once each');
    const created = results.find((r) => r.statusCode === 201)!;
    t.equal(created.headers.etag, '"1"', 'the creating PUT has version 1');
    const last = results[versions.indexOf(N)]!.json();
    const stored = await load(id);
    t.equal(stored.version, N);
    t.equal(stored.workflow_name, last.workflow_name, 'the last writer\'s state is stored');
    t.same(Object.keys(stored.steps), Object.keys(last.steps), 'with its steps only');
  });

  t.test('GET, modify, PUT the body back: safe by default', async (t) => {
    const { id } = await create({
      context: { n: 1 }, steps: { s1: { status: 'running', retry_count: 1 }, s2: { status: 'pending' } },
    });
    const before = await load(id);
    t.equal(before.version, 1);
    const modified = structuredClone(before);
    modified.workflow_name = 'modified';
    modified.context = { n: 2 };
    modified.steps.s1.status = 'completed';
    modified.steps.s3 = { step_id: 's3', status: 'pending' };
    delete modified.steps.s2;

    // Meanwhile another client reads the same version.
    const other = structuredClone(before);
    other.workflow_name = 'other client';

    const ok = await put(id, modified);
    t.equal(ok.statusCode, 200);
    t.equal(ok.headers.etag, '"2"');
    const body = ok.json();
    t.equal(body.version, 2);
    t.equal(body.workflow_name, 'modified');
    t.same(body.context, { n: 2 });
    t.same(Object.keys(body.steps), ['s1', 's3']);
    t.equal(body.steps.s1.status, 'completed');
    t.equal(body.steps.s1.retry_count, 1);

    const again = await put(id, modified);
    is412(t, again);
    is412(t, await put(id, other)); // the other client's stale copy is refused
    const stored = await load(id);
    t.equal(stored.version, 2);
    t.equal(stored.workflow_name, 'modified');
    t.same(stored.steps, body.steps);
  });

  t.test('PATCH changes only the given fields', async (t) => {
    const { id, state: v1 } = await create({
      workflow_name: 'original', status: 'running', user_id: 'u1', context: { a: 1 }, error: 'old error',
      started_at: '2025-01-01T00:00:00.000001Z',
      steps: {
        s1: { status: 'running', outputs: { o: 1 } },
        s2: { status: 'pending' },
        s3: { status: 'completed', retry_count: 3, outputs: [1, 2, 3] },
      },
    });

    const r1 = await patch(id, { workflow_name: 'renamed' });
    t.equal(r1.statusCode, 200);
    t.equal(r1.headers.etag, '"2"');
    const v2 = r1.json();
    t.equal(v2.version, 2);
    t.equal(v2.workflow_name, 'renamed');
    t.equal(v2.workflow_id, v1.workflow_id);
    t.equal(v2.status, 'running');
    t.equal(v2.user_id, 'u1');
    t.same(v2.context, { a: 1 });
    t.equal(v2.error, 'old error');
    t.equal(v2.started_at, '2025-01-01T00:00:00.000001Z');
    t.equal(v2.completed_at, null);
    t.same(v2.steps, v1.steps, 'steps untouched');
    t.match(v2.updated_at, TS_RE);
    t.ok(v2.updated_at > v1.updated_at, `updated_at bumped (${v1.updated_at} -> ${v2.updated_at})`);
    t.same(await load(id), v2, 'the response is what is stored');

    const r2 = await patch(id, { context: { b: [2] }, error: null, user_id: null });
    t.equal(r2.statusCode, 200);
    const v3 = r2.json();
    t.equal(v3.version, 3);
    t.same(v3.context, { b: [2] }, 'context replaced as a whole');
    t.equal(v3.error, null);
    t.equal(v3.user_id, null);
    t.equal(v3.workflow_name, 'renamed');
    t.ok(v3.updated_at > v2.updated_at);

    const r3 = await patch(id, {
      error: 'with steps',
      steps: { s1: { status: 'Completed', outputs: { o: 'done' } }, s2: null, s4: { status: 'pending', retry_count: 1 } },
    });
    t.equal(r3.statusCode, 200);
    const v4 = r3.json();
    t.equal(v4.version, 4);
    t.equal(v4.error, 'with steps', 'a field patched with steps is in the document too');
    t.same(v4.steps, {
      s1: storedStep('s1', { status: 'completed', outputs: { o: 'done' } }),
      s3: v1.steps.s3,
      s4: storedStep('s4', { status: 'pending', retry_count: 1 }),
    }, 's1 upserted, s2 deleted, s3 kept, s4 added');
    t.same(await load(id), v4, 'the response is what is stored');
    t.ok(v4.updated_at > v3.updated_at);

    const r4 = await patch(id, { status: 'completed' });
    t.equal(r4.statusCode, 200);
    const v5 = r4.json();
    t.equal(v5.status, 'completed');
    t.match(v5.completed_at, TS_RE);
    t.equal(v5.completed_at, v5.updated_at, 'completed_at set to the time of this write');
    t.ok(v5.completed_at > v4.updated_at, 'completed_at is after the previous write');
    t.same(v5.steps, v4.steps);

    const r5 = await patch(id, { status: 'failed', completed_at: '2024-06-01T12:00:00.654321Z', error: 'boom' });
    t.equal(r5.statusCode, 200);
    const v6 = r5.json();
    t.equal(v6.status, 'failed');
    t.equal(v6.completed_at, '2024-06-01T12:00:00.654321Z', 'a given completed_at is kept');
    t.equal(v6.error, 'boom');
    t.equal(v6.version, 6);
    t.same(await load(id), v6);
  });

  t.test('PATCH status failed (any case) without completed_at sets it', async (t) => {
    const { id, state } = await create();
    const res = await patch(id, { status: 'FAILED' });
    t.equal(res.statusCode, 200);
    const body = res.json();
    t.equal(body.status, 'failed');
    t.equal(body.completed_at, body.updated_at);
    t.ok(body.completed_at > state.updated_at);
  });

  t.test('PATCH on an unknown id is a 404; workflow_id is not patchable', async (t) => {
    const missing = await patch(randomUUID(), { workflow_name: 'x' });
    isProblem(t, missing, 404, 'Not Found');

    const { id } = await create();
    const bad = await patch(id, { workflow_id: 'other', workflow_name: 'x' });
    const p = isProblem(t, bad, 400, 'Bad Request');
    t.ok(p.errors.some((e: Json) => /workflow_id/.test(e.path)), 'the error names workflow_id');
    const stored = await load(id);
    t.equal(stored.version, 1, 'nothing written');
    t.equal(stored.workflow_id, 'wf-1');
    t.equal(stored.workflow_name, 'Test workflow');
  });

  t.test('step PUT: create, replace, version and updated_at of the state', async (t) => {
    const { id, state: v1 } = await create({ steps: { other: { status: 'pending' } } });

    const created = await putStep(id, 'fetch', {
      status: 'Running', started_at: '2025-03-04T05:06:07.000008Z', retry_count: 2, outputs: { partial: true },
    });
    t.equal(created.statusCode, 201);
    t.equal(created.headers.etag, '"2"', 'the ETag is the state\'s new version');
    t.equal(created.headers.location, `/v1/workflows/${id}/steps/fetch`, 'a created step says where it is');
    t.same(created.json(), {
      ...storedStep('fetch', { status: 'running', started_at: '2025-03-04T05:06:07.000008Z', retry_count: 2, outputs: { partial: true } }),
      version: 2,
    }, 'the step, with the state\'s new version as in the ETag');
    const v2 = await load(id);
    t.equal(v2.version, 2);
    t.ok(v2.updated_at > v1.updated_at, 'updated_at bumped');
    const { version: _v2, ...createdStep } = created.json();
    t.same(v2.steps.fetch, createdStep);
    t.same(v2.steps.other, v1.steps.other, 'other steps kept');

    const replaced = await putStep(id, 'fetch', { step_id: 'fetch', status: 'completed', outputs: 'done' });
    t.equal(replaced.statusCode, 200);
    t.equal(replaced.headers.etag, '"3"');
    t.same(replaced.json(), { ...storedStep('fetch', { status: 'completed', outputs: 'done' }), version: 3 },
      'replaced as a whole: fields not given are back to their defaults');
    const v3 = await load(id);
    t.equal(v3.version, 3);
    t.ok(v3.updated_at > v2.updated_at);
    const { version: _v3, ...replacedStep } = replaced.json();
    t.same(v3.steps, { fetch: replacedStep, other: v1.steps.other });

    isProblem(t, await putStep(randomUUID(), 'fetch', { status: 'pending' }), 404, 'Not Found');

    const mismatch = await putStep(id, 'fetch', { step_id: 'other', status: 'pending' });
    const p = isProblem(t, mismatch, 400, 'Bad Request');
    t.ok(p.errors.some((e: Json) => e.path === 'body.step_id'));
    const v3b = await load(id);
    t.equal(v3b.version, 3, 'the refused step PUT wrote nothing');
    t.same(v3b.steps, v3.steps);
  });

  /**
   * Replays successful writes in version order: a full PUT replaces the steps, a step PUT upserts one,
   * a PATCH upserts or deletes the given ones. Returns the steps the state must hold.
   */
  type Op =
    | { kind: 'put'; name: string; steps: Record<string, Json> }
    | { kind: 'step'; stepId: string; step: Json }
    | { kind: 'patch'; steps: Record<string, Json | null> };
  const replay = (initial: Record<string, Json>, done: { op: Op; version: number }[]) => {
    let steps: Record<string, Json> = { ...initial };
    let name: string | undefined;
    for (const { op } of [...done].sort((a, b) => a.version - b.version)) {
      if (op.kind === 'put') {
        name = op.name;
        steps = Object.fromEntries(Object.entries(op.steps).map(([k, s]) => [k, storedStep(k, s)]));
      } else if (op.kind === 'step') {
        steps[op.stepId] = storedStep(op.stepId, op.step);
      } else {
        for (const [k, s] of Object.entries(op.steps)) {
          if (s === null) delete steps[k];
          else steps[k] = storedStep(k, s);
        }
      }
    }
    return { steps: Object.fromEntries(Object.entries(steps).sort(([a], [b]) => (a < b ? -1 : 1))), name };
  };

  const runMix = async (t: Test, ops: Op[], initial: Record<string, Json>) => {
    const { id } = await create({ workflow_name: 'initial', steps: initial });
    const results = await Promise.all(ops.map((op) => {
      if (op.kind === 'put') return put(id, stateBody({ workflow_name: op.name, steps: op.steps }));
      if (op.kind === 'step') return putStep(id, op.stepId, op.step);
      return patch(id, { steps: op.steps });
    }));
    const done: { op: Op; version: number }[] = [];
    results.forEach((r, i) => {
      const op = ops[i]!;
      const ok = op.kind === 'step' ? [200, 201] : [200];
      t.ok(ok.includes(r.statusCode), `op ${i} (${op.kind}) succeeded: ${r.statusCode} ${r.statusCode >= 300 ? r.body : ''}`);
      t.match(r.headers.etag, /^"\d+"$/, `op ${i} has an ETag`);
      const version = Number(JSON.parse(String(r.headers.etag)));
      if (op.kind !== 'step') t.equal(r.json().version, version, `op ${i}: body version equals the ETag`);
      if (op.kind === 'put') {
        t.same(Object.keys(r.json().steps).sort(), Object.keys(op.steps).sort(), `op ${i}: PUT answers its own steps`);
      }
      if (r.statusCode < 300) done.push({ op, version });
    });
    t.same(done.map((d) => d.version).sort((a, b) => a - b), Array.from({ length: done.length }, (_, i) => i + 2),
      'every successful write got its own version, 2..1+n, none skipped or repeated');
    const stored = await load(id);
    t.equal(stored.version, 1 + done.length, 'version = 1 + number of successful writes');
    const expected = replay(
      Object.fromEntries(Object.entries(initial).map(([k, s]) => [k, storedStep(k, s)])), done);
    t.same(stored.steps, expected.steps,
      'steps = those of the last full PUT plus the step writes ordered after it; none lost, none left behind');
    t.equal(stored.workflow_name, expected.name ?? 'initial', 'the last full PUT\'s name');
  };

  t.test('30 concurrent unconditional writes of distinct steps and fields on one state: every one lands, once', async (t) => {
    // Writes race on one row: the optimistic attempts lose to each other and retry under the row's lock.
    const { id } = await create();
    const results = await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => putStep(id, `fan-${i}`, { status: 'completed', outputs: { i } })),
      ...Array.from({ length: 10 }, (_, i) => patch(id, { steps: { [`patched-${i}`]: { status: 'running' } } })),
    ]);
    t.same(sortedStatuses(results), [...Array(10).fill(200), ...Array(20).fill(201)]);
    const versions = results.map((r) => Number(JSON.parse(r.headers.etag as string))).sort((a, b) => a - b);
    t.same(versions, Array.from({ length: 30 }, (_, i) => i + 2), 'each write got its own version, 2 to 31');
    const stored = await load(id);
    t.equal(stored.version, 31);
    t.same(Object.keys(stored.steps).sort(), [
      ...Array.from({ length: 20 }, (_, i) => `fan-${i}`), ...Array.from({ length: 10 }, (_, i) => `patched-${i}`),
    ].sort(), 'no write lost another\'s step');
    for (let i = 0; i < 20; i++) t.same(stored.steps[`fan-${i}`].outputs, { i });
  });

  t.test('20 concurrent full PUTs and step PUTs on one state: nothing lost, nothing left behind', async (t) => {
    for (let round = 0; round < 3; round++) {
      const ops: Op[] = Array.from({ length: 20 }, (_, i): Op => {
        if (i % 2 === 0) {
          return {
            kind: 'put', name: `put ${i}`,
            steps: { [`p${i}a`]: { status: 'pending', outputs: i }, [`p${i}b`]: { status: 'running' }, shared: { status: 'pending', outputs: `put ${i}` } },
          };
        }
        // Some step writes hit a step every full PUT writes, some a step of one PUT, some their own step.
        const stepId = i % 3 === 0 ? 'shared' : i % 3 === 1 ? `p${i - 1}a` : `x${i}`;
        return { kind: 'step', stepId, step: { status: 'completed', outputs: { by: i }, retry_count: i } };
      });
      await t.test(`round ${round}`, (t) => runMix(t, ops, { initial: { status: 'pending' } }));
    }
  });

  t.test('20 concurrent full PUTs, step PUTs and step PATCHes on one state', async (t) => {
    for (let round = 0; round < 3; round++) {
      const ops: Op[] = Array.from({ length: 20 }, (_, i): Op => {
        if (i % 3 === 0) {
          return { kind: 'put', name: `put ${i}`, steps: { [`p${i}`]: { status: 'pending' }, shared: { status: 'running', outputs: i } } };
        }
        if (i % 3 === 1) return { kind: 'step', stepId: i % 2 ? 'shared' : `x${i}`, step: { status: 'failed', error: `e${i}` } };
        return { kind: 'patch', steps: { [`q${i}`]: { status: 'skipped', retry_count: i }, shared: null, [`p${i - 2}`]: null } };
      });
      await t.test(`round ${round}`, (t) => runMix(t, ops, { initial: { status: 'pending' } }));
    }
  });
});
