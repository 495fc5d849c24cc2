import { readFileSync } from 'node:fs';
import t from 'tap';
import { buildTestApp, json, stateBody } from './helper.js';

const fixture = JSON.parse(readFileSync(new URL('./fixtures/seed-workflow-state.json', import.meta.url), 'utf8'));

t.test('workflow states', async (t) => {
  const { app } = await buildTestApp(t);
  const id = '11111111-2222-4333-8444-555555555555';

  t.test('PUT creates: 201, Location, ETag "1", the stored state', async (t) => {
    const res = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(stateBody({
      context: { a: 1 },
      steps: { s1: { status: 'Completed', outputs: { x: [1, 2] }, retry_count: 2 } },
    })) });
    t.equal(res.statusCode, 201);
    t.equal(res.headers.location, `/v1/workflows/${id}`);
    t.equal(res.headers.etag, '"1"');
    t.match(res.headers['content-type'], /^application\/json/);
    const body = res.json();
    t.equal(body.id, id);
    t.equal(body.status, 'running');
    t.equal(body.version, 1);
    t.same(body.context, { a: 1 });
    t.same(body.steps.s1, {
      step_id: 's1', status: 'completed', started_at: null, completed_at: null,
      outputs: { x: [1, 2] }, error: null, retry_count: 2,
    });
    t.match(body.started_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  });

  t.test('GET loads it with ETag; If-None-Match with that ETag is 304', async (t) => {
    const res = await app.inject({ url: `/v1/workflows/${id}` });
    t.equal(res.statusCode, 200);
    t.equal(res.headers.etag, '"1"');
    t.equal(res.json().steps.s1.retry_count, 2);
    const cached = await app.inject({ url: `/v1/workflows/${id}`, headers: { 'if-none-match': '"1"' } });
    t.equal(cached.statusCode, 304);
    t.equal(cached.headers.etag, '"1"');
    t.equal(cached.body, '');
    const stale = await app.inject({ url: `/v1/workflows/${id}`, headers: { 'if-none-match': '"0"' } });
    t.equal(stale.statusCode, 200);
    // If-None-Match compares weakly (RFC 9110): W/"1" names the same version, where If-Match would refuse it.
    const weak = await app.inject({ url: `/v1/workflows/${id}`, headers: { 'if-none-match': 'W/"1"' } });
    t.equal(weak.statusCode, 304);
    t.equal(weak.headers.etag, '"1"');
  });

  t.test('PUT replaces: 200, version 2, steps absent from the body are deleted', async (t) => {
    const res = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(stateBody({
      status: 'paused', steps: { s2: { status: 'pending' } },
    })) });
    t.equal(res.statusCode, 200);
    t.equal(res.headers.location, undefined);
    t.equal(res.headers.etag, '"2"');
    const body = res.json();
    t.equal(body.version, 2);
    t.equal(body.status, 'paused');
    t.same(Object.keys(body.steps), ['s2']);
    const loaded = (await app.inject({ url: `/v1/workflows/${id}` })).json();
    t.same(Object.keys(loaded.steps), ['s2'], 'the deleted step is gone from storage too');
    t.same(loaded.context, {}, 'context defaults to {}');
  });

  t.test('GET of an unknown state is a 404 problem', async (t) => {
    const res = await app.inject({ url: '/v1/workflows/00000000-0000-4000-8000-000000000000' });
    t.equal(res.statusCode, 404);
    t.match(res.headers['content-type'], /^application\/problem\+json/);
    const p = res.json();
    t.equal(p.status, 404);
    t.equal(p.title, 'Not Found');
    t.equal(p.instance, res.headers['x-request-id']);
  });

  t.test('the seed fixture (Rust serde JSON) is accepted as is and round-trips', async (t) => {
    const res = await app.inject({ method: 'PUT', url: `/v1/workflows/${fixture.id}`, ...json(fixture) });
    t.equal(res.statusCode, 201);
    const body = res.json();
    t.equal(body.status, 'running', 'status is lowercased');
    t.equal(body.steps.search_docs.status, 'completed');
    t.equal(body.updated_at, '2025-11-14T10:00:05.987654Z', 'microseconds kept');
    t.equal(body.started_at, '2025-11-14T10:00:00.123457Z', 'nanoseconds rounded to the microsecond the service keeps');
    t.equal(body.steps.search_docs.completed_at, '2025-11-14T10:00:02.500000Z');
    t.same(body.context, fixture.context);
    t.same(body.steps.search_docs.outputs, fixture.steps.search_docs.outputs);
    t.equal(body.steps.generate_answer.retry_count, 1);
  });

  t.test('timestamps with offsets are stored in UTC with a Z at microsecond precision', async (t) => {
    const tid = '22222222-2222-4333-8444-555555555555';
    const res = await app.inject({ method: 'PUT', url: `/v1/workflows/${tid}`, ...json(stateBody({
      started_at: '2025-01-02T03:04:05.123456+02:00',
      completed_at: '2025-01-02T03:04:05.000001Z',
    })) });
    t.equal(res.statusCode, 201);
    t.equal(res.json().started_at, '2025-01-02T01:04:05.123456Z');
    t.equal(res.json().completed_at, '2025-01-02T03:04:05.000001Z');
  });

  t.test('updated_at: kept as given on create; on replace only when later, so a state never moves back', async (t) => {
    const uid = '66666666-2222-4333-8444-555555555555';
    const old = '2020-01-01T00:00:00.000001Z';
    const created = await app.inject({ method: 'PUT', url: `/v1/workflows/${uid}`, ...json(stateBody({ updated_at: old })) });
    t.equal(created.json().updated_at, old);
    const echoed = await app.inject({ method: 'PUT', url: `/v1/workflows/${uid}`, ...json(created.json()) });
    t.equal(echoed.statusCode, 200, 'a GET body sent back is accepted (its version matches)');
    t.ok(echoed.json().updated_at > old, `an echoed, older updated_at is stamped now (${echoed.json().updated_at})`);
    const later = '2099-01-01T00:00:00.000002Z';
    const moved = await app.inject({ method: 'PUT', url: `/v1/workflows/${uid}`, ...json(stateBody({ updated_at: later })) });
    t.equal(moved.json().updated_at, later, 'a later client value is kept');
  });

  t.test('DELETE removes the state with its steps and checkpoints', async (t) => {
    const did = '33333333-2222-4333-8444-555555555555';
    await app.inject({ method: 'PUT', url: `/v1/workflows/${did}`, ...json(stateBody({ steps: { a: { status: 'running' } } })) });
    const cp = await app.inject({ method: 'POST', url: `/v1/workflows/${did}/checkpoints`, ...json({ step_id: 'a' }) });
    t.equal(cp.statusCode, 201);
    const del = await app.inject({ method: 'DELETE', url: `/v1/workflows/${did}` });
    t.equal(del.statusCode, 204);
    t.equal(del.body, '');
    t.equal((await app.inject({ url: `/v1/workflows/${did}` })).statusCode, 404);
    t.equal((await app.inject({ url: `/v1/checkpoints/${cp.json().id}` })).statusCode, 404);
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/workflows/${did}` })).statusCode, 404);
  });
});
