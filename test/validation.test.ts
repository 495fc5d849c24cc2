import { randomUUID } from 'node:crypto';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import t, { type Test as TapTest } from 'tap';
import { buildTestApp, json, stateBody } from './helper.js';

type Test = TapTest;
type Res = LightMyRequestResponse;

const PROBLEM_CT = /^application\/problem\+json/;
/** Every status seen by this file, so the last test can state that none was a 5xx. */
const seen: { label: string; status: number }[] = [];

/** A JSON body given as raw text, for escapes and numbers JSON.stringify cannot produce. */
const raw = (payload: string | Buffer, contentType = 'application/json') => ({
  headers: { 'content-type': contentType },
  payload,
});

/**
 * The response is an RFC 9457 problem with this exact status, and (when given) its errors[]
 * name each of `paths` exactly.
 */
function expectProblem(t: Test, res: Res, status: number, paths: string[] = [], label = t.name) {
  seen.push({ label, status: res.statusCode });
  t.equal(res.statusCode, status, `status ${status}`);
  t.match(res.headers['content-type'], PROBLEM_CT, 'content-type is application/problem+json');
  let p: Record<string, unknown>;
  try {
    p = res.json();
  } catch {
    t.fail(`the problem body is JSON: ${res.body.slice(0, 200)}`);
    return undefined;
  }
  t.equal(p.status, status, 'problem.status');
  t.match(p.type, /^\S+$/, 'problem.type is a non-empty URI-ish string');
  t.match(p.title, /\S/, 'problem.title');
  t.match(p.detail, /\S/, 'problem.detail');
  const rid = res.headers['x-request-id'];
  t.type(rid, 'string', 'x-request-id header is set');
  t.ok(rid, 'x-request-id header is non-empty');
  t.equal(p.instance, rid, 'problem.instance is the request id');
  if (paths.length) {
    const errors = p.errors as { path: unknown; message: unknown }[] | undefined;
    t.ok(Array.isArray(errors) && errors.length > 0, 'problem.errors is a non-empty array');
    for (const e of errors ?? []) {
      t.type(e.path, 'string', 'every error has a path');
      t.match(e.message, /\S/, 'every error has a message');
    }
    const named = (errors ?? []).map((e) => e.path);
    for (const path of paths) t.ok(named.includes(path), `errors[] names ${JSON.stringify(path)} (got ${JSON.stringify(named)})`);
  }
  return p;
}

const put = (id: string, body: unknown): InjectOptions => ({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(body) });
const putRaw = (id: string, payload: string | Buffer, contentType?: string): InjectOptions =>
  ({ method: 'PUT', url: `/v1/workflows/${id}`, ...raw(payload, contentType) });

/** A raw state body whose `extra` is spliced in verbatim after the required fields. */
const rawState = (extra: string) => `{"workflow_id":"wf-raw","workflow_name":"Raw","status":"running",${extra}}`;

async function expectAbsent(t: Test, app: FastifyInstance, id: string) {
  const res = await app.inject({ url: `/v1/workflows/${id}` });
  t.equal(res.statusCode, 404, 'nothing was stored: GET is 404');
}

interface CreateCase {
  name: string;
  /** Built for a fresh id, so the case can prove nothing was stored under it. */
  req: (id: string) => InjectOptions;
  status?: number;
  paths: string[];
}

t.test('validation of request bodies, paths and queries', async (t) => {
  const { app } = await buildTestApp(t);

  t.test('bad bodies on PUT /v1/workflows/{id} (create): exact 400 naming the field, nothing stored', async (t) => {
    const cases: CreateCase[] = [
      // unknown fields
      { name: 'unknown top-level field', req: (id) => put(id, stateBody({ extra_field: 1 })), paths: ['body.extra_field'] },
      { name: 'two unknown top-level fields are both named',
        req: (id) => put(id, stateBody({ extra_field: 1, another: 'x' })), paths: ['body.extra_field', 'body.another'] },
      { name: 'unknown field inside a step',
        req: (id) => put(id, stateBody({ steps: { s1: { status: 'pending', colour: 'red' } } })),
        paths: ['body.steps.s1.colour'] },
      // "__proto__" keys, which zod would drop silently
      { name: 'a step named __proto__', paths: ['body.steps.__proto__'], req: (id) => putRaw(id,
        '{"workflow_id":"w","workflow_name":"n","steps":{"a":{"status":"pending"},"__proto__":{"status":"pending"}}}') },
      { name: 'a top-level __proto__ key', paths: ['body.__proto__'],
        req: (id) => putRaw(id, '{"workflow_id":"w","workflow_name":"n","__proto__":{"x":1}}') },
      { name: 'a __proto__ key inside a step', paths: ['body.steps.a.__proto__'],
        req: (id) => putRaw(id, '{"workflow_id":"w","workflow_name":"n","steps":{"a":{"status":"pending","__proto__":{}}}}') },
      // NUL characters anywhere
      { name: 'NUL nested deep inside context',
        req: (id) => put(id, stateBody({ context: { a: { b: ['ok', 'x\u0000y'] } } })), paths: ['body.context.a.b.1'] },
      { name: 'NUL in a context key', req: (id) => put(id, stateBody({ context: { 'k\u0000': 1 } })),
        paths: ['body.context.k\u0000'] },
      { name: 'NUL inside a step\'s outputs',
        req: (id) => put(id, stateBody({ steps: { s1: { status: 'completed', outputs: { text: ['a', { t: '\u0000' }] } } } })),
        paths: ['body.steps.s1.outputs.text.1.t'] },
      { name: 'NUL in workflow_name', req: (id) => put(id, stateBody({ workflow_name: 'bad\u0000name' })),
        paths: ['body.workflow_name'] },
      { name: 'NUL in error', req: (id) => put(id, stateBody({ error: 'boom\u0000' })), paths: ['body.error'] },
      { name: 'NUL in a step\'s error',
        req: (id) => put(id, stateBody({ steps: { s1: { status: 'failed', error: '\u0000' } } })),
        paths: ['body.steps.s1.error'] },
      { name: 'NUL in workflow_id', req: (id) => put(id, stateBody({ workflow_id: 'wf\u0000' })), paths: ['body.workflow_id'] },
      { name: 'NUL in user_id', req: (id) => put(id, stateBody({ user_id: '\u0000' })), paths: ['body.user_id'] },
      // lone surrogates, as JSON escapes in the raw payload
      { name: 'lone high surrogate in workflow_name', req: (id) => putRaw(id,
        '{"workflow_id":"wf","workflow_name":"\\ud800","status":"running"}'), paths: ['body.workflow_name'] },
      { name: 'lone low surrogate nested in context', req: (id) => putRaw(id, rawState('"context":{"a":["\\uDC00"]}')),
        paths: ['body.context.a.0'] },
      { name: 'lone surrogate in a step\'s outputs',
        req: (id) => putRaw(id, rawState('"steps":{"s1":{"status":"running","outputs":"x\\ud83dy"}}')),
        paths: ['body.steps.s1.outputs'] },
      // numbers a JSON number cannot carry
      { name: '1e400 in context', req: (id) => putRaw(id, rawState('"context":{"n":1e400}')), paths: ['body.context.n'] },
      { name: '-1E+400 in a step\'s outputs',
        req: (id) => putRaw(id, rawState('"steps":{"s1":{"status":"running","outputs":[-1E+400]}}')),
        paths: ['body.steps.s1.outputs.0'] },
      { name: 'a 400-digit integer in context', req: (id) => putRaw(id, rawState(`"context":{"big":${'9'.repeat(400)}}`)),
        paths: ['body.context.big'] },
      // schema
      { name: 'invalid status value', req: (id) => put(id, stateBody({ status: 'bogus' })), paths: ['body.status'] },
      { name: 'status of the wrong type', req: (id) => put(id, stateBody({ status: 1 })), paths: ['body.status'] },
      { name: 'step status "paused" (not a step status)',
        req: (id) => put(id, stateBody({ steps: { s1: { status: 'paused' } } })), paths: ['body.steps.s1.status'] },
      { name: 'step without a status', req: (id) => put(id, stateBody({ steps: { s1: {} } })), paths: ['body.steps.s1.status'] },
      { name: 'retry_count -1', req: (id) => put(id, stateBody({ steps: { s1: { status: 'pending', retry_count: -1 } } })),
        paths: ['body.steps.s1.retry_count'] },
      { name: 'retry_count 2147483648',
        req: (id) => put(id, stateBody({ steps: { s1: { status: 'pending', retry_count: 2147483648 } } })),
        paths: ['body.steps.s1.retry_count'] },
      { name: 'retry_count 1.5', req: (id) => put(id, stateBody({ steps: { s1: { status: 'pending', retry_count: 1.5 } } })),
        paths: ['body.steps.s1.retry_count'] },
      { name: 'retry_count as a string',
        req: (id) => put(id, stateBody({ steps: { s1: { status: 'pending', retry_count: '3' } } })),
        paths: ['body.steps.s1.retry_count'] },
      { name: 'workflow_id of 256 chars', req: (id) => put(id, stateBody({ workflow_id: 'w'.repeat(256) })),
        paths: ['body.workflow_id'] },
      { name: 'empty workflow_id', req: (id) => put(id, stateBody({ workflow_id: '' })), paths: ['body.workflow_id'] },
      { name: 'missing workflow_id', req: (id) => put(id, { workflow_name: 'n', status: 'running' }), paths: ['body.workflow_id'] },
      { name: 'workflow_name of 256 chars', req: (id) => put(id, stateBody({ workflow_name: 'n'.repeat(256) })),
        paths: ['body.workflow_name'] },
      { name: 'empty workflow_name', req: (id) => put(id, stateBody({ workflow_name: '' })), paths: ['body.workflow_name'] },
      { name: 'user_id of 256 chars', req: (id) => put(id, stateBody({ user_id: 'u'.repeat(256) })), paths: ['body.user_id'] },
      { name: 'error that is not a string', req: (id) => put(id, stateBody({ error: { msg: 'x' } })), paths: ['body.error'] },
      { name: 'version 0', req: (id) => put(id, stateBody({ version: 0 })), paths: ['body.version'] },
      { name: 'steps as an array', req: (id) => put(id, stateBody({ steps: [{ status: 'pending' }] })), paths: ['body.steps'] },
      { name: 'a step given as null (only PATCH deletes with null)', req: (id) => put(id, stateBody({ steps: { s1: null } })),
        paths: ['body.steps.s1'] },
      { name: 'empty step key', req: (id) => put(id, stateBody({ steps: { '': { status: 'pending' } } })), paths: ['body.steps'] },
      // timestamps
      { name: 'started_at "yesterday"', req: (id) => put(id, stateBody({ started_at: 'yesterday' })), paths: ['body.started_at'] },
      { name: 'completed_at with month 13', req: (id) => put(id, stateBody({ completed_at: '2025-13-01T00:00:00Z' })),
        paths: ['body.completed_at'] },
      { name: 'updated_at on Feb 30', req: (id) => put(id, stateBody({ updated_at: '2025-02-30T00:00:00Z' })),
        paths: ['body.updated_at'] },
      { name: 'started_at with hour 25', req: (id) => put(id, stateBody({ started_at: '2025-01-01T25:00:00Z' })),
        paths: ['body.started_at'] },
      { name: 'started_at without an offset (RFC 3339 requires one)',
        req: (id) => put(id, stateBody({ started_at: '2025-01-01T00:00:00' })), paths: ['body.started_at'] },
      { name: 'started_at as a number', req: (id) => put(id, stateBody({ started_at: 1700000000 })), paths: ['body.started_at'] },
      { name: 'a step\'s started_at "2025-13-01T00:00:00Z"',
        req: (id) => put(id, stateBody({ steps: { s1: { status: 'running', started_at: '2025-13-01T00:00:00Z' } } })),
        paths: ['body.steps.s1.started_at'] },
      { name: 'started_at on a day that does not exist',
        req: (id) => put(id, stateBody({ started_at: '2025-02-29T00:00:00Z' })), paths: ['body.started_at'] },
      { name: 'started_at that is year 10000 in UTC once rounded to the microsecond',
        req: (id) => put(id, stateBody({ started_at: '9999-12-31T23:59:59.9999995Z' })), paths: ['body.started_at'] },
      { name: 'a step\'s completed_at with a -24:00 offset (RFC 3339 offsets end at ±23:59)',
        req: (id) => put(id, stateBody({ steps: { s1: { status: 'completed', completed_at: '2025-01-01T00:00:00-24:00' } } })),
        paths: ['body.steps.s1.completed_at'] },
      { name: 'started_at in year 0000',
        req: (id) => put(id, stateBody({ started_at: '0000-01-01T00:00:00Z' })), paths: ['body.started_at'] },
      // ids that must agree with where they are
      { name: 'body.id different from the path id',
        req: (id) => put(id, stateBody({ id: '99999999-9999-4999-8999-999999999999' })), paths: ['body.id'] },
      { name: 'body.id not a uuid', req: (id) => put(id, stateBody({ id: 'nope' })), paths: ['body.id'] },
      { name: 'steps.<key>.step_id different from its key',
        req: (id) => put(id, stateBody({ steps: { s1: { step_id: 's2', status: 'pending' } } })),
        paths: ['body.steps.s1.step_id'] },
      // documents that are not a JSON object
      { name: 'invalid JSON (truncated)', req: (id) => putRaw(id, '{"workflow_id":'), paths: ['body'] },
      { name: 'invalid JSON (single quotes)', req: (id) => putRaw(id, "{'workflow_id':'wf'}"), paths: ['body'] },
      { name: 'invalid JSON (trailing comma)', req: (id) => putRaw(id, `${JSON.stringify(stateBody()).slice(0, -1)},}`),
        paths: ['body'] },
      { name: 'invalid JSON (raw NUL byte between tokens)', req: (id) => putRaw(id, `{"workflow_id":"w",\u0000"workflow_name":"n"}`),
        paths: ['body'] },
      { name: 'empty body with content-type application/json', req: (id) => putRaw(id, ''), paths: ['body'] },
      { name: 'JSON null', req: (id) => putRaw(id, 'null'), paths: ['body'] },
      { name: 'JSON array', req: (id) => putRaw(id, '[]'), paths: ['body'] },
      { name: 'JSON string', req: (id) => putRaw(id, '"hello"'), paths: ['body'] },
      // bytes that are not UTF-8
      { name: 'invalid UTF-8 bytes (0xff 0xfe) in a string', req: (id) => putRaw(id, Buffer.concat([
        Buffer.from('{"workflow_id":"'), Buffer.from([0xff, 0xfe]), Buffer.from('","workflow_name":"n"}')])),
      paths: ['body'] },
      { name: 'overlong UTF-8 encoding of NUL (0xc0 0x80)', req: (id) => putRaw(id, Buffer.concat([
        Buffer.from('{"workflow_id":"w","workflow_name":"'), Buffer.from([0xc0, 0x80]), Buffer.from('"}')])),
      paths: ['body'] },
      { name: 'CESU-8 encoded lone surrogate bytes (0xed 0xa0 0x80)', req: (id) => putRaw(id, Buffer.concat([
        Buffer.from('{"workflow_id":"w","workflow_name":"n","context":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')])),
      paths: ['body'] },
      { name: 'truncated UTF-8 sequence at the end of a string', req: (id) => putRaw(id, Buffer.concat([
        Buffer.from('{"workflow_id":"w","workflow_name":"'), Buffer.from([0xe2, 0x82]), Buffer.from('"}')])),
      paths: ['body'] },
      // media types
      { name: 'text/plain body (even if it holds JSON)', req: (id) => putRaw(id, JSON.stringify(stateBody()), 'text/plain'),
        status: 415, paths: [] },
      { name: 'form-encoded body', req: (id) => putRaw(id, 'workflow_id=wf&workflow_name=n', 'application/x-www-form-urlencoded'),
        status: 415, paths: [] },
      { name: 'application/octet-stream body', req: (id) => putRaw(id, Buffer.from(JSON.stringify(stateBody())),
        'application/octet-stream'), status: 415, paths: [] },
    ];
    for (const c of cases) {
      t.test(c.name, async (t) => {
        const id = randomUUID();
        const res = await app.inject(c.req(id));
        expectProblem(t, res, c.status ?? 400, c.paths, c.name);
        await expectAbsent(t, app, id);
      });
    }
  });

  t.test('JSON values JSON.parse cannot keep exactly are refused or stored exactly, never silently changed', async (t) => {
    const cases = [
      { name: '1e-400 (underflows to 0 in a double)', literal: '1e-400', path: 'body.context.n' },
      { name: 'an integer beyond 2^53 (12345678901234567890)', literal: '12345678901234567890', path: 'body.context.n' },
    ];
    for (const c of cases) {
      t.test(c.name, async (t) => {
        const id = randomUUID();
        const res = await app.inject(putRaw(id, rawState(`"context":{"n":${c.literal}}`)));
        if (res.statusCode === 400) {
          expectProblem(t, res, 400, [c.path], c.name);
          await expectAbsent(t, app, id);
        } else {
          seen.push({ label: c.name, status: res.statusCode });
          t.equal(res.statusCode, 201, 'when accepted, it is created');
          const loaded = await app.inject({ url: `/v1/workflows/${id}` });
          t.match(loaded.body, new RegExp(`"n"\\s*:\\s*${c.literal.replace(/[-+]/g, '\\$&')}\\b`),
            `the stored number is ${c.literal}, not a rounded value (got ${/"n"\s*:\s*[^,}]+/.exec(loaded.body)?.[0]})`);
        }
      });
    }
  });

  t.test('a context nested 10000 deep is stored as sent or refused with 400, never a 500', async (t) => {
    const depth = 10_000;
    const id = randomUUID();
    const res = await app.inject(putRaw(id, rawState(`"context":${'['.repeat(depth)}${']'.repeat(depth)}`)));
    if (res.statusCode === 201) {
      seen.push({ label: 'deep context', status: res.statusCode });
      const loaded = await app.inject({ url: `/v1/workflows/${id}` });
      t.equal(loaded.statusCode, 200);
      t.equal((/"context"\s*:\s*(\[+)/.exec(loaded.body)?.[1] ?? '').length, depth, 'the nesting is kept');
    } else {
      expectProblem(t, res, 400, ['body.context'], 'deep context');
      await expectAbsent(t, app, id);
    }
  });

  t.test('a NUL at the bottom of a context nested 100000 deep is a 400, not a crash or a 500', async (t) => {
    const depth = 100_000;
    const id = randomUUID();
    const res = await app.inject(putRaw(id, rawState(`"context":${'['.repeat(depth)}"\\u0000"${']'.repeat(depth)}`)));
    expectProblem(t, res, 400, [], 'deep NUL');
    await expectAbsent(t, app, id);
  });

  t.test('bad input against an existing state: 400 naming the field, the state unchanged', async (t) => {
    const id = randomUUID();
    const created = await app.inject(put(id, stateBody({
      context: { keep: true }, steps: { s1: { status: 'running', outputs: { v: 1 }, retry_count: 1 } },
    })));
    t.equal(created.statusCode, 201);
    const before = await app.inject({ url: `/v1/workflows/${id}` });
    t.equal(before.statusCode, 200);
    t.equal(before.headers.etag, '"1"');

    const cases: { name: string; req: InjectOptions; status?: number; paths: string[] }[] = [
      { name: 'PUT with NUL in context', req: put(id, stateBody({ context: { note: 'x\u0000' } })), paths: ['body.context.note'] },
      { name: 'PUT with NUL in a step\'s outputs',
        req: put(id, stateBody({ steps: { s1: { status: 'completed', outputs: { deep: ['\u0000'] } } } })),
        paths: ['body.steps.s1.outputs.deep.0'] },
      { name: 'PUT with an unknown field', req: put(id, stateBody({ extra_field: true })), paths: ['body.extra_field'] },
      { name: 'PUT with an unknown field inside a step',
        req: put(id, stateBody({ steps: { s1: { status: 'running', retries: 2 } } })), paths: ['body.steps.s1.retries'] },
      { name: 'PUT with body.id different from the path id', req: put(id, stateBody({ id: randomUUID() })), paths: ['body.id'] },
      { name: 'PUT with steps.s1.step_id = "s2"',
        req: put(id, stateBody({ steps: { s1: { step_id: 's2', status: 'running' } } })), paths: ['body.steps.s1.step_id'] },
      { name: 'PUT with a lone surrogate in error', req: putRaw(id, rawState('"error":"\\udfff"')), paths: ['body.error'] },
      { name: 'PATCH with NUL in workflow_name',
        req: { method: 'PATCH', url: `/v1/workflows/${id}`, ...json({ workflow_name: '\u0000' }) }, paths: ['body.workflow_name'] },
      { name: 'PATCH with NUL nested in context',
        req: { method: 'PATCH', url: `/v1/workflows/${id}`, ...json({ context: { a: [{ b: '\u0000' }] } }) },
        paths: ['body.context.a.0.b'] },
      { name: 'PATCH with an unknown field',
        req: { method: 'PATCH', url: `/v1/workflows/${id}`, ...json({ colour: 'red' }) }, paths: ['body.colour'] },
      { name: 'PATCH with status bogus',
        req: { method: 'PATCH', url: `/v1/workflows/${id}`, ...json({ status: 'bogus' }) }, paths: ['body.status'] },
      { name: 'PATCH with a step retry_count of -1',
        req: { method: 'PATCH', url: `/v1/workflows/${id}`, ...json({ steps: { s1: { status: 'running', retry_count: -1 } } }) },
        paths: ['body.steps.s1.retry_count'] },
      { name: 'PATCH with NUL in a step\'s outputs',
        req: { method: 'PATCH', url: `/v1/workflows/${id}`, ...json({ steps: { s1: { status: 'running', outputs: '\u0000' } } }) },
        paths: ['body.steps.s1.outputs'] },
      { name: 'PATCH with an invalid completed_at',
        req: { method: 'PATCH', url: `/v1/workflows/${id}`, ...json({ status: 'completed', completed_at: 'yesterday' }) },
        paths: ['body.completed_at'] },
      { name: 'PATCH with a text/plain body',
        req: { method: 'PATCH', url: `/v1/workflows/${id}`, ...raw('{"status":"paused"}', 'text/plain') }, status: 415, paths: [] },
      { name: 'step PUT with NUL in outputs',
        req: { method: 'PUT', url: `/v1/workflows/${id}/steps/s1`, ...json({ status: 'completed', outputs: { deep: [0, '\u0000'] } }) },
        paths: ['body.outputs.deep.1'] },
      { name: 'step PUT with an unknown field',
        req: { method: 'PUT', url: `/v1/workflows/${id}/steps/s1`, ...json({ status: 'completed', colour: 'red' }) },
        paths: ['body.colour'] },
      { name: 'step PUT with step_id different from the path',
        req: { method: 'PUT', url: `/v1/workflows/${id}/steps/s1`, ...json({ step_id: 'other', status: 'completed' }) },
        paths: ['body.step_id'] },
      { name: 'step PUT with retry_count 2147483648',
        req: { method: 'PUT', url: `/v1/workflows/${id}/steps/s1`, ...json({ status: 'running', retry_count: 2147483648 }) },
        paths: ['body.retry_count'] },
      { name: 'step PUT with a NUL step_id in the path (%00)',
        req: { method: 'PUT', url: `/v1/workflows/${id}/steps/%00`, ...json({ status: 'running' }) }, paths: ['params.step_id'] },
      { name: 'step PUT with a NUL inside the path step_id (a%00b)',
        req: { method: 'PUT', url: `/v1/workflows/${id}/steps/a%00b`, ...json({ status: 'running' }) }, paths: ['params.step_id'] },
      { name: 'step PUT with a 256-char path step_id',
        req: { method: 'PUT', url: `/v1/workflows/${id}/steps/${'s'.repeat(256)}`, ...json({ status: 'running' }) },
        paths: ['params.step_id'] },
      { name: 'checkpoint POST with NUL in snapshot',
        req: { method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json({ step_id: 's1', snapshot: { x: 'a\u0000' } }) },
        paths: ['body.snapshot.x'] },
      { name: 'checkpoint POST with NUL in step_id',
        req: { method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json({ step_id: 's\u0000' }) }, paths: ['body.step_id'] },
      { name: 'checkpoint POST with an unknown field',
        req: { method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json({ step_id: 's1', extra: 1 }) }, paths: ['body.extra'] },
      { name: 'checkpoint POST with an empty step_id',
        req: { method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json({ step_id: '' }) }, paths: ['body.step_id'] },
      { name: 'checkpoint POST with a bad id',
        req: { method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json({ step_id: 's1', id: 'nope' }) }, paths: ['body.id'] },
      { name: 'checkpoint POST with 1e400 in snapshot',
        req: { method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...raw('{"step_id":"s1","snapshot":{"n":1e400}}') },
        paths: ['body.snapshot.n'] },
      { name: 'DELETE with a NUL in the id (%00)', req: { method: 'DELETE', url: `/v1/workflows/${id}%00` }, paths: ['params.id'] },
    ];
    for (const c of cases) {
      t.test(c.name, async (t) => {
        const res = await app.inject(c.req);
        expectProblem(t, res, c.status ?? 400, c.paths, c.name);
        const after = await app.inject({ url: `/v1/workflows/${id}` });
        t.equal(after.statusCode, 200, 'the state is still there');
        t.equal(after.headers.etag, '"1"', 'version unchanged');
        t.equal(after.body, before.body, 'stored state byte-for-byte unchanged');
      });
    }

    t.test('no checkpoint was made by the refused requests', async (t) => {
      const latest = await app.inject({ url: `/v1/workflows/${id}/checkpoints/latest` });
      t.equal(latest.statusCode, 404);
      const list = await app.inject({ url: `/v1/workflows/${id}/checkpoints` });
      t.equal(list.statusCode, 200);
      t.same(list.json().items, []);
    });
  });

  t.test('bad path parameters: 400 naming params.*', async (t) => {
    const uuid = randomUUID();
    const cases: { name: string; req: InjectOptions; paths: string[] }[] = [
      { name: 'GET with a non-uuid id', req: { url: '/v1/workflows/not-a-uuid' }, paths: ['params.id'] },
      { name: 'GET with a uuid missing a digit', req: { url: `/v1/workflows/${uuid.slice(0, -1)}` }, paths: ['params.id'] },
      { name: 'GET with a NUL after a valid uuid', req: { url: `/v1/workflows/${uuid}%00` }, paths: ['params.id'] },
      { name: 'PUT with a non-uuid id and a valid body', req: put('1234', stateBody()), paths: ['params.id'] },
      { name: 'PATCH with a non-uuid id', req: { method: 'PATCH', url: '/v1/workflows/zzz', ...json({ status: 'paused' }) },
        paths: ['params.id'] },
      { name: 'DELETE with a non-uuid id', req: { method: 'DELETE', url: '/v1/workflows/zzz' }, paths: ['params.id'] },
      { name: 'step PUT with a non-uuid id',
        req: { method: 'PUT', url: '/v1/workflows/zzz/steps/s1', ...json({ status: 'running' }) }, paths: ['params.id'] },
      { name: 'checkpoint POST with a non-uuid id',
        req: { method: 'POST', url: '/v1/workflows/zzz/checkpoints', ...json({ step_id: 's1' }) }, paths: ['params.id'] },
      { name: 'GET checkpoint with a non-uuid cid', req: { url: '/v1/checkpoints/nope' }, paths: ['params.cid'] },
      { name: 'restore with a non-uuid cid',
        req: { method: 'POST', url: '/v1/checkpoints/nope/restore', ...json({ mode: 'preview' }) }, paths: ['params.cid'] },
      { name: 'by-workflow-id with a NUL', req: { url: '/v1/workflows/by-workflow-id/%00' }, paths: ['params.workflow_id'] },
      { name: 'by-workflow-id with 256 chars', req: { url: `/v1/workflows/by-workflow-id/${'w'.repeat(256)}` },
        paths: ['params.workflow_id'] },
    ];
    for (const c of cases) {
      t.test(c.name, async (t) => {
        expectProblem(t, await app.inject(c.req), 400, c.paths, c.name);
      });
    }
    t.test('path ids of 101..255 chars are valid (step_id and workflow_id are 1..255): not refused by the router', async (t) => {
      const id = randomUUID();
      const longWf = 'w'.repeat(200);
      const longStep = 's'.repeat(150);
      t.equal((await app.inject(put(id, stateBody({ workflow_id: longWf })))).statusCode, 201);
      const step = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}/steps/${longStep}`, ...json({ status: 'running' }) });
      seen.push({ label: 'long step_id', status: step.statusCode });
      t.equal(step.statusCode, 201, 'a 150-char step_id in the path is created');
      const loaded = await app.inject({ url: `/v1/workflows/${id}` });
      t.same(Object.keys(loaded.json().steps), step.statusCode === 201 ? [longStep] : [], 'stored under that key');
      const byWf = await app.inject({ url: `/v1/workflows/by-workflow-id/${longWf}` });
      seen.push({ label: 'long workflow_id', status: byWf.statusCode });
      t.equal(byWf.statusCode, 200, 'a 200-char workflow_id in the path is found');
    });
    t.test('a path that is not valid percent-encoding (%ff) is a 400 problem too', async (t) => {
      expectProblem(t, await app.inject({ url: '/v1/workflows/%ff' }), 400, [], 'bad percent-encoding');
    });
  });

  t.test('bad query strings: 400 naming query.*', async (t) => {
    const cursor = (keys: unknown) => Buffer.from(JSON.stringify(keys)).toString('base64url');
    const cid = randomUUID();
    const wid = randomUUID();
    t.equal((await app.inject(put(wid, stateBody({ workflow_id: 'wf-query-ok' })))).statusCode, 201);
    const cases: { name: string; url: string; paths: string[] }[] = [
      { name: 'unknown query parameter', url: '/v1/workflows?foo=1', paths: ['query.foo'] },
      { name: 'misspelt query parameter (statuses)', url: '/v1/workflows?statuses=running', paths: ['query.statuses'] },
      { name: 'limit=0', url: '/v1/workflows?limit=0', paths: ['query.limit'] },
      { name: 'limit=1001', url: '/v1/workflows?limit=1001', paths: ['query.limit'] },
      { name: 'limit=-1', url: '/v1/workflows?limit=-1', paths: ['query.limit'] },
      { name: 'limit=abc', url: '/v1/workflows?limit=abc', paths: ['query.limit'] },
      { name: 'limit=1.5', url: '/v1/workflows?limit=1.5', paths: ['query.limit'] },
      { name: 'limit given twice', url: '/v1/workflows?limit=1&limit=2', paths: ['query.limit'] },
      { name: 'garbage cursor', url: '/v1/workflows?cursor=not-a-cursor!!', paths: ['query.cursor'] },
      { name: 'cursor that is base64 of non-JSON', url: `/v1/workflows?cursor=${Buffer.from('hello').toString('base64url')}`,
        paths: ['query.cursor'] },
      { name: 'cursor with the wrong shape', url: `/v1/workflows?cursor=${cursor({ a: 1 })}`, paths: ['query.cursor'] },
      { name: 'cursor with a non-uuid id', url: `/v1/workflows?cursor=${cursor(['2025-01-01T00:00:00.000000Z', 'x'])}`,
        paths: ['query.cursor'] },
      { name: 'cursor with an impossible timestamp',
        url: `/v1/workflows?cursor=${cursor(['2025-13-45T00:00:00.000000Z', cid])}`, paths: ['query.cursor'] },
      { name: 'cursor longer than any issued', url: `/v1/workflows?cursor=${'A'.repeat(300)}`, paths: ['query.cursor'] },
      { name: 'status=bogus', url: '/v1/workflows?status=bogus', paths: ['query.status'] },
      { name: 'status=running,bogus', url: '/v1/workflows?status=running,bogus', paths: ['query.status'] },
      { name: 'updated_before=yesterday', url: '/v1/workflows?updated_before=yesterday', paths: ['query.updated_before'] },
      { name: 'updated_after with month 13',
        url: `/v1/workflows?updated_after=${encodeURIComponent('2025-13-01T00:00:00Z')}`, paths: ['query.updated_after'] },
      { name: 'updated_before in year 0 once in UTC',
        url: `/v1/workflows?updated_before=${encodeURIComponent('0001-01-01T00:00:00+20:00')}`, paths: ['query.updated_before'] },
      { name: 'workflow_id with a NUL', url: '/v1/workflows?workflow_id=a%00b', paths: ['query.workflow_id'] },
      { name: 'empty workflow_id', url: '/v1/workflows?workflow_id=', paths: ['query.workflow_id'] },
      { name: 'workflow_id of 256 chars', url: `/v1/workflows?workflow_id=${'w'.repeat(256)}`, paths: ['query.workflow_id'] },
      { name: 'user_id with a NUL', url: '/v1/workflows?user_id=%00', paths: ['query.user_id'] },
      { name: 'checkpoints: limit=0', url: `/v1/workflows/${wid}/checkpoints?limit=0`, paths: ['query.limit'] },
      { name: 'checkpoints: include_snapshot=yes', url: `/v1/workflows/${wid}/checkpoints?include_snapshot=yes`,
        paths: ['query.include_snapshot'] },
      { name: 'checkpoints: unknown parameter', url: `/v1/workflows/${wid}/checkpoints?foo=1`, paths: ['query.foo'] },
      { name: 'checkpoints: garbage cursor', url: `/v1/workflows/${wid}/checkpoints?cursor=zzz`, paths: ['query.cursor'] },
    ];
    for (const c of cases) {
      t.test(c.name, async (t) => {
        expectProblem(t, await app.inject({ url: c.url }), 400, c.paths, c.name);
      });
    }
    for (const [name, url, path] of [
      ['prune without keep', `/v1/workflows/${wid}/checkpoints`, 'query.keep'],
      ['prune with keep=-1', `/v1/workflows/${wid}/checkpoints?keep=-1`, 'query.keep'],
      ['prune with keep=abc', `/v1/workflows/${wid}/checkpoints?keep=abc`, 'query.keep'],
    ] as const) {
      t.test(name, async (t) => {
        expectProblem(t, await app.inject({ method: 'DELETE', url }), 400, [path], name);
      });
    }
    t.test('a valid list query still works (the cases above fail for the named reason only)', async (t) => {
      const res = await app.inject({ url: '/v1/workflows?limit=1000&status=active,RUNNING&workflow_id=wf-query-ok' });
      t.equal(res.statusCode, 200);
      t.same(res.json().items.map((s: { id: string }) => s.id), [wid]);
    });
  });

  t.test('purge: bad bodies are 400 naming the field, nothing deleted', async (t) => {
    const id = randomUUID();
    t.equal((await app.inject(put(id, stateBody({ status: 'completed', updated_at: '2000-01-01T00:00:00Z' })))).statusCode, 201);
    const cases: { name: string; body: unknown; paths: string[] }[] = [
      { name: 'older_than "yesterday"', body: { older_than: 'yesterday' }, paths: ['body.older_than'] },
      { name: 'missing older_than', body: {}, paths: ['body.older_than'] },
      { name: 'unknown field', body: { older_than: '2030-01-01T00:00:00Z', force: true }, paths: ['body.force'] },
      { name: 'dry_run as a string', body: { older_than: '2030-01-01T00:00:00Z', dry_run: 'no' }, paths: ['body.dry_run'] },
    ];
    for (const c of cases) {
      t.test(c.name, async (t) => {
        expectProblem(t, await app.inject({ method: 'POST', url: '/v1/purge', ...json(c.body) }), 400, c.paths, c.name);
        t.equal((await app.inject({ url: `/v1/workflows/${id}` })).statusCode, 200, 'the old completed state is still there');
      });
    }
  });

  t.test('x-request-id', async (t) => {
    t.test('an incoming x-request-id is echoed and is the problem instance', async (t) => {
      const res = await app.inject({ url: '/v1/workflows/not-a-uuid', headers: { 'x-request-id': 'abc-123' } });
      t.equal(res.headers['x-request-id'], 'abc-123');
      const p = expectProblem(t, res, 400, ['params.id']);
      t.equal(p?.instance, 'abc-123');
    });
    t.test('echoed on a 415 and on a 404 too', async (t) => {
      const r415 = await app.inject({ ...putRaw(randomUUID(), '{}', 'text/plain'), headers: {
        'content-type': 'text/plain', 'x-request-id': 'abc-123' } });
      t.equal(r415.statusCode, 415);
      t.equal(r415.headers['x-request-id'], 'abc-123');
      t.equal(r415.json().instance, 'abc-123');
      const r404 = await app.inject({ url: `/v1/workflows/${randomUUID()}`, headers: { 'x-request-id': 'abc-123' } });
      t.equal(r404.statusCode, 404);
      t.equal(r404.headers['x-request-id'], 'abc-123');
      t.equal(r404.json().instance, 'abc-123');
    });
    t.test('echoed on a success', async (t) => {
      const res = await app.inject({ url: '/v1/workflows?limit=1', headers: { 'x-request-id': 'abc-123' } });
      t.equal(res.statusCode, 200);
      t.equal(res.headers['x-request-id'], 'abc-123');
    });
    t.test('without one, a fresh id is made per request and used as instance', async (t) => {
      const a = await app.inject({ url: '/v1/workflows/not-a-uuid' });
      const b = await app.inject({ url: '/v1/workflows/not-a-uuid' });
      const pa = expectProblem(t, a, 400, ['params.id']);
      expectProblem(t, b, 400, ['params.id']);
      t.match(a.headers['x-request-id'], /\S/);
      t.not(a.headers['x-request-id'], b.headers['x-request-id'], 'ids differ between requests');
      t.equal(pa?.instance, a.headers['x-request-id']);
    });
    t.test('an x-request-id that does not look like an id is replaced, not echoed', async (t) => {
      for (const given of ['has space', 'x'.repeat(129), '<script>']) {
        const res = await app.inject({ url: '/v1/workflows/not-a-uuid', headers: { 'x-request-id': given } });
        const p = expectProblem(t, res, 400, ['params.id']);
        t.not(res.headers['x-request-id'], given, `${JSON.stringify(given.slice(0, 20))} is not echoed`);
        t.match(res.headers['x-request-id'], /\S/);
        t.equal(p?.instance, res.headers['x-request-id']);
      }
    });
  });
});

t.test('BODY_LIMIT_BYTES=2048', async (t) => {
  const { app } = await buildTestApp(t, { BODY_LIMIT_BYTES: '2048' });

  t.test('a body just under the limit is accepted', async (t) => {
    const id = randomUUID();
    const body = JSON.stringify(stateBody({ context: { pad: '' } }));
    const payload = JSON.stringify(stateBody({ context: { pad: 'x'.repeat(2048 - body.length) } }));
    t.equal(Buffer.byteLength(payload), 2048);
    const res = await app.inject(putRaw(id, payload));
    t.equal(res.statusCode, 201);
  });

  t.test('a body over the limit is a 413 problem and nothing is stored', async (t) => {
    const id = randomUUID();
    const payload = JSON.stringify(stateBody({ context: { pad: 'x'.repeat(2100) } }));
    t.ok(Buffer.byteLength(payload) > 2048);
    const res = await app.inject({ ...putRaw(id, payload), headers: { 'content-type': 'application/json', 'x-request-id': 'big-1' } });
    const p = expectProblem(t, res, 413, [], 'oversize PUT');
    t.equal(p?.instance, 'big-1');
    t.equal(res.headers['x-request-id'], 'big-1');
    await expectAbsent(t, app, id);
  });

  t.test('one byte over the limit is a 413 on PATCH and on checkpoints too', async (t) => {
    const id = randomUUID();
    t.equal((await app.inject(put(id, stateBody()))).statusCode, 201);
    const pad = (over: Record<string, unknown>, key: string) => {
      const base = JSON.stringify({ ...over, [key]: '' });
      return JSON.stringify({ ...over, [key]: 'y'.repeat(2049 - base.length) });
    };
    const patch = pad({}, 'workflow_name');
    t.equal(Buffer.byteLength(patch), 2049);
    expectProblem(t, await app.inject({ method: 'PATCH', url: `/v1/workflows/${id}`, ...raw(patch) }), 413, [], 'oversize PATCH');
    const cp = pad({ step_id: 's1' }, 'snapshot');
    t.equal(Buffer.byteLength(cp), 2049);
    expectProblem(t, await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...raw(cp) }), 413, [],
      'oversize checkpoint');
    const after = await app.inject({ url: `/v1/workflows/${id}` });
    t.equal(after.headers.etag, '"1"', 'the state is unchanged');
    t.equal((await app.inject({ url: `/v1/workflows/${id}/checkpoints/latest` })).statusCode, 404, 'no checkpoint made');
  });
});

t.test('a step id that a later write would refuse is refused when first written', async (t) => {
  const { app } = await buildTestApp(t);
  const id = randomUUID();
  t.equal((await app.inject(put(id, stateBody()))).statusCode, 201);
  const res = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}/steps/__proto__`, ...json({ status: 'running' }) });
  const p = expectProblem(t, res, 400, ['params.step_id']);
  t.match(p?.errors, [{ path: 'params.step_id', message: 'must not be __proto__' }]);
  const patch = await app.inject({ method: 'PATCH', url: `/v1/workflows/${id}`,
    ...raw('{"steps":{"__proto__":{"status":"running"}}}') });
  expectProblem(t, patch, 400, ['body.steps.__proto__']);
  const checkpoint = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json({ step_id: '__proto__' }) });
  expectProblem(t, checkpoint, 400, ['body.step_id']);
  // So every GET body can be PUT back as it is.
  const body = (await app.inject({ url: `/v1/workflows/${id}` })).json();
  t.equal((await app.inject(put(id, body))).statusCode, 200);
});

t.test('no request in this file was answered with a 5xx', async (t) => {
  t.ok(seen.length > 100, `many cases ran (${seen.length})`);
  const fivexx = seen.filter((s) => s.status >= 500);
  t.same(fivexx, [], 'no 5xx');
});
