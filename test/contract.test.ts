/**
 * The OpenAPI document against the service: its examples, sent as they are, succeed in a
 * workflow's order and answer what the document shows; its bounds and enums are exactly what the
 * service accepts; and it says what clients need (descriptions, headers, examples) in a form
 * Swagger UI renders.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { parse } from 'yaml';
import { STEP_STATUSES, WORKFLOW_STATUSES } from '../src/schemas/common.js';
import {
  checkpointAnswerExample, checkpointTupleExample, checkpointTuplePageExample, EXAMPLE_CHANNEL, EXAMPLE_CHECKPOINT_ID,
  EXAMPLE_STATE_ID, EXAMPLE_THREAD_CHECKPOINT_ID, EXAMPLE_THREAD_ID, stateExample, stepWrittenExample,
  threadCheckpointExample, threadCheckpointRefExample, threadExample,
} from '../src/schemas/examples.js';
import { buildTestApp, json } from './helper.js';

type Json = Record<string, any>;
const doc: Json = parse(readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8'));
const schemas: Json = doc.components.schemas;
const deref = (o: Json | undefined): Json | undefined => {
  if (!o?.$ref) return o;
  const [, , kind, name] = (o.$ref as string).split('/');
  return doc.components[kind!][name!];
};

const operations = Object.entries(doc.paths as Json).flatMap(([path, ops]) =>
  Object.entries(ops as Json).map(([method, op]) => ({ path, method, op: op as Json })));
const operation = (id: string) => {
  const found = operations.find((o) => o.op.operationId === id);
  if (!found) throw new Error(`no operation ${id}`);
  return found;
};

/** The request an operation's "Try it out" makes unchanged: parameters' examples, the body's example. */
function exampleRequest(id: string) {
  const { path, method, op } = operation(id);
  let url = path;
  const query = new URLSearchParams();
  for (const p of (op.parameters ?? []) as Json[]) {
    if (p.example === undefined) continue;
    if (p.in === 'path') url = url.replace(`{${p.name}}`, encodeURIComponent(String(p.example)));
    else if (p.in === 'query') query.set(p.name, String(p.example));
    else throw new Error(`${id}: an example for a ${p.in} parameter`);
  }
  if (url.includes('{')) throw new Error(`${id}: a path parameter without an example (${url})`);
  const body = op.requestBody?.content['application/json'].example;
  return {
    method: method.toUpperCase() as 'GET',
    url: query.size ? `${url}?${query}` : url,
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) }),
  };
}

/** Members whose values are the client's JSON: any shape. */
const FREE = new Set(['context', 'outputs', 'snapshot']);
/**
 * The same keys, recursively, for objects (any values: the examples' times differ); each step of
 * `steps` and each of `items` shaped as the example's first.
 */
function sameShape(actual: unknown, expected: unknown, path = '$'): string[] {
  if (!expected || typeof expected !== 'object') return [];
  if (!actual || typeof actual !== 'object') return [`${path}: not an object`];
  const a = Object.keys(actual).sort().join(',');
  const e = Object.keys(expected).sort().join(',');
  if (a !== e) return [`${path}: keys ${a}, example has ${e}`];
  return Object.keys(expected).flatMap((k) => {
    const [x, y] = [(actual as Json)[k], (expected as Json)[k]];
    if (FREE.has(k)) return [];
    if (k === 'steps' || k === 'items') {
      const first = Object.values(y)[0];
      return Object.entries(x as Json).flatMap(([i, v]) => sameShape(v, first, `${path}.${k}.${i}`));
    }
    return sameShape(x, y, `${path}.${k}`);
  });
}

const withoutTimes = (state: Json) => ({ ...state, updated_at: '(now)' });

t.test('every operation\'s examples, sent unchanged in a workflow\'s order, succeed and answer as the document shows', async (t) => {
  const { app } = await buildTestApp(t);
  const run = async (id: string, status: number) => {
    const res = await app.inject(exampleRequest(id));
    t.equal(res.statusCode, status, `${id}: ${res.body.slice(0, 300)}`);
    return res;
  };

  const saved = await run('saveWorkflowState', 201);
  t.same(withoutTimes(saved.json()), withoutTimes(stateExample), 'the saved state is the documented answer');
  t.equal(saved.headers.etag, '"1"');
  t.equal(saved.headers.location, `/v1/workflows/${EXAMPLE_STATE_ID}`);
  t.same(withoutTimes((await run('loadWorkflowState', 200)).json()), withoutTimes(stateExample));
  const patched = (await run('patchWorkflowState', 200)).json();
  t.same([patched.status, patched.version], ['paused', 2]);
  t.same((await run('saveStepState', 201)).json(), stepWrittenExample, 'the step PUT answers the documented step');
  const listed = (await run('listWorkflowStates', 200)).json();
  t.same([listed.items.map((s: Json) => s.id), listed.next_cursor], [[EXAMPLE_STATE_ID], null]);
  t.equal((await run('loadLatestStateByWorkflowId', 200)).json().id, EXAMPLE_STATE_ID);

  const checkpoint = (await run('createCheckpoint', 201)).json();
  const { timestamp } = checkpointAnswerExample;
  t.same({ ...checkpoint, timestamp, snapshot: withoutTimes(checkpoint.snapshot) },
    { ...checkpointAnswerExample, snapshot: withoutTimes(checkpointAnswerExample.snapshot) },
    'the checkpoint is the documented answer: the state as saved, patched and with the step');
  t.equal((await run('createCheckpoint', 200)).json().id, EXAMPLE_CHECKPOINT_ID, 'the example again is a replay');
  t.same((await run('listCheckpoints', 200)).json().items.map((c: Json) => c.id), [EXAMPLE_CHECKPOINT_ID]);
  t.equal((await run('latestCheckpoint', 200)).json().id, EXAMPLE_CHECKPOINT_ID);
  t.equal((await run('getCheckpoint', 200)).json().id, EXAMPLE_CHECKPOINT_ID);
  const restored = (await run('restoreCheckpoint', 200)).json();
  t.same(withoutTimes(restored), withoutTimes({ ...checkpointAnswerExample.snapshot, version: 4 }));
  t.same((await run('pruneCheckpoints', 200)).json(), { deleted: 0 });

  // A LangGraph thread, as a saver goes: a checkpoint, its task's writes, the tuple, search, delta history.
  t.same((await run('saveThreadCheckpoint', 201)).json(), threadCheckpointRefExample);
  t.same((await run('saveThreadCheckpoint', 200)).json(), threadCheckpointRefExample, 'the example again is the same checkpoint');
  await run('saveThreadWrites', 204);
  t.same((await run('loadThreadCheckpoint', 200)).json(), checkpointTupleExample, 'the tuple is the documented answer');
  t.same((await app.inject({ url: `/v1/threads/${EXAMPLE_THREAD_ID}/checkpoints/latest` })).json(), checkpointTupleExample,
    'latest is the one checkpoint');
  t.same((await run('searchThreadCheckpoints', 200)).json(), checkpointTuplePageExample);
  t.same((await run('loadDeltaChannelHistory', 200)).json(), { channels: { [EXAMPLE_CHANNEL]: { writes: [] } } },
    'the thread\'s first checkpoint has no ancestors');
  const thread = (await run('saveThreadSettings', 200)).json();
  const { created_at, updated_at } = threadExample;
  t.same({ ...thread, created_at, updated_at }, threadExample, 'the settings are the documented answer');
  t.same((await run('loadThread', 200)).json(), thread);

  t.same((await run('purgeWorkflowStates', 200)).json(), { matched: 0, dry_run: true, threads_matched: 0 });
  await run('deleteWorkflowState', 204);
  t.equal((await app.inject({ url: `/v1/workflows/${EXAMPLE_STATE_ID}` })).statusCode, 404, 'deleted');
  await run('deleteThread', 204);
  t.equal((await app.inject({ url: `/v1/threads/${EXAMPLE_THREAD_ID}` })).statusCode, 404, 'the thread is deleted');
  for (const id of ['liveness', 'readiness', 'health']) await run(id, 200);
});

t.test('every success answer shown has the fields the service answers', async (t) => {
  const { app } = await buildTestApp(t);
  for (const id of ['saveWorkflowState', 'patchWorkflowState', 'saveStepState', 'createCheckpoint', 'saveThreadCheckpoint',
    'saveThreadWrites', 'saveThreadSettings']) {
    await app.inject(exampleRequest(id));
  }
  // A child of the example checkpoint, whose history of messages is the example's value and its write.
  const child = `/v1/threads/${EXAMPLE_THREAD_ID}/checkpoints/child-1`;
  await app.inject({ method: 'PUT', url: child,
    ...json({ ...threadCheckpointExample, parent_checkpoint_id: EXAMPLE_THREAD_CHECKPOINT_ID, channel_values: [] }) });
  const answers: Record<string, unknown> = {
    WorkflowState: (await app.inject(exampleRequest('loadWorkflowState'))).json(),
    WorkflowStatePage: (await app.inject(exampleRequest('listWorkflowStates'))).json(),
    StepWritten: (await app.inject(exampleRequest('saveStepState'))).json(),
    Checkpoint: (await app.inject(exampleRequest('getCheckpoint'))).json(),
    CheckpointPage: (await app.inject(exampleRequest('listCheckpoints'))).json(),
    RestorePreview: (await app.inject({ ...exampleRequest('restoreCheckpoint'), payload: '{"mode":"preview"}' })).json(),
    Deleted: (await app.inject(exampleRequest('pruneCheckpoints'))).json(),
    ThreadCheckpointRef: (await app.inject(exampleRequest('saveThreadCheckpoint'))).json(),
    CheckpointTuple: (await app.inject(exampleRequest('loadThreadCheckpoint'))).json(),
    CheckpointTuplePage: (await app.inject({ ...exampleRequest('searchThreadCheckpoints'),
      payload: JSON.stringify({ checkpoint_id: EXAMPLE_THREAD_CHECKPOINT_ID }) })).json(),
    DeltaChannelHistory: (await app.inject(`${child}/delta-history?channel=${EXAMPLE_CHANNEL}`)).json(),
    Thread: (await app.inject(exampleRequest('loadThread'))).json(),
    PurgeResult: (await app.inject(exampleRequest('purgeWorkflowStates'))).json(),
    Readiness: (await app.inject(exampleRequest('readiness'))).json(),
    HealthDetails: (await app.inject(exampleRequest('health'))).json(),
    Liveness: (await app.inject(exampleRequest('liveness'))).json(),
    Problem: (await app.inject({ ...exampleRequest('patchWorkflowState'), headers: {
      'content-type': 'application/json', 'if-match': '"2"' } })).json(),
  };
  for (const [name, answer] of Object.entries(answers)) {
    t.equal(schemas[name].examples?.length, 1, `${name} has an example`);
    t.same(sameShape(answer, schemas[name].examples[0]), [], `${name}: the example has the answer's fields`);
  }
});

t.test('the document\'s bounds and enums are the service\'s', async (t) => {
  const { app } = await buildTestApp(t);
  let n = 0;
  const save = (body: Json) => app.inject({
    method: 'PUT',
    url: `/v1/workflows/00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`,
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ workflow_id: 'w', workflow_name: 'n', ...body }),
  });
  const refused = async (res: Awaited<ReturnType<typeof save>>, field: string) => {
    t.equal(res.statusCode, 400, `${field}: ${res.body.slice(0, 200)}`);
    t.ok(res.json().errors.some((e: Json) => e.path === field), `the problem names ${field}: ${res.body.slice(0, 300)}`);
  };

  // Statuses: the enums are the values answered; every one of them is accepted.
  const save_ = schemas.SaveWorkflowState.properties;
  t.same(save_.status.enum, [...WORKFLOW_STATUSES]);
  t.same(schemas.SaveStep.properties.status.enum, [...STEP_STATUSES]);
  t.same(schemas.WorkflowState.properties.status.enum, [...WORKFLOW_STATUSES]);
  for (const status of save_.status.enum) t.equal((await save({ status })).json().status, status);
  for (const status of schemas.SaveStep.properties.status.enum) {
    t.equal((await save({ steps: { s: { status } } })).json().steps.s.status, status);
  }
  await refused(await save({ status: 'done' }), 'body.status');

  // Lengths: the longest the document allows is accepted, one more is refused.
  for (const field of ['workflow_id', 'workflow_name', 'user_id']) {
    const max = (save_[field].maxLength ?? save_[field].anyOf?.find((s: Json) => s.maxLength)?.maxLength) as number;
    t.equal(max, 255, field);
    t.equal((await save({ [field]: 'x'.repeat(max) })).statusCode, 201, `${field} of ${max}`);
    await refused(await save({ [field]: 'x'.repeat(max + 1) }), `body.${field}`);
  }
  t.same([save_.workflow_id.minLength, save_.workflow_name.minLength], [1, 1]);
  await refused(await save({ workflow_id: '' }), 'body.workflow_id');

  // Integers: both ends accepted, one past either refused.
  const retry = schemas.SaveStep.properties.retry_count;
  for (const retry_count of [retry.minimum, retry.maximum]) {
    t.equal((await save({ steps: { s: { status: 'failed', retry_count } } })).statusCode, 201, `retry_count ${retry_count}`);
  }
  await refused(await save({ steps: { s: { status: 'failed', retry_count: retry.maximum + 1 } } }), 'body.steps.s.retry_count');
  await refused(await save({ steps: { s: { status: 'failed', retry_count: retry.minimum - 1 } } }), 'body.steps.s.retry_count');

  // Query parameters.
  const limit = operation('listWorkflowStates').op.parameters.find((p: Json) => p.name === 'limit').schema;
  t.same([limit.minimum, limit.maximum, limit.default], [1, 1000, 100]);
  for (const l of [limit.minimum, limit.maximum]) t.equal((await app.inject(`/v1/workflows?limit=${l}`)).statusCode, 200);
  for (const l of [limit.minimum - 1, limit.maximum + 1]) {
    await refused(await app.inject(`/v1/workflows?limit=${l}`), 'query.limit');
  }
  const id = (await save({})).json().id;
  const keep = operation('pruneCheckpoints').op.parameters.find((p: Json) => p.name === 'keep').schema;
  for (const k of [keep.minimum, keep.maximum]) {
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/workflows/${id}/checkpoints?keep=${k}` })).statusCode, 200);
  }
  await refused(await app.inject({ method: 'DELETE', url: `/v1/workflows/${id}/checkpoints?keep=${keep.maximum + 1}` }),
    'query.keep');

  // Timestamps: what the document's date-time pattern allows at its edges.
  const pattern = new RegExp(save_.started_at.anyOf.find((s: Json) => s.pattern).pattern);
  for (const [given, stored] of [
    ['2026-12-01T00:00:00+23:59', '2026-11-30T00:01:00.000000Z'],
    ['2026-12-01T00:00:00-23:59', '2026-12-01T23:59:00.000000Z'],
    ['2024-02-29T12:00:00.123456789Z', '2024-02-29T12:00:00.123457Z'],
    ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000000Z'],
    ['9999-12-31T23:59:59.999999Z', '9999-12-31T23:59:59.999999Z'],
  ] as const) {
    t.match(given, pattern, `${given} is allowed by the document`);
    t.equal((await save({ started_at: given })).json().started_at, stored, given);
  }
  t.notMatch('2023-02-29T00:00:00Z', pattern);
  await refused(await save({ started_at: '2023-02-29T00:00:00Z' }), 'body.started_at');
});

t.test('what the document says besides its schemas', async (t) => {
  for (const { path, method, op } of operations) {
    const name = `${method.toUpperCase()} ${path}`;
    t.ok(op.summary && op.description, `${name}: a summary and a description`);
    for (const p of (op.parameters ?? []) as Json[]) t.ok(p.description, `${name}: parameter ${p.name} is described`);
    const responses = Object.entries(op.responses as Json).map(([status, r]) => [status, deref(r as Json)!] as const);
    for (const [status, response] of responses) {
      t.not(response.description, 'Default Response', `${name} ${status}: a description of its own`);
      t.ok(response.headers?.['X-Request-Id'], `${name} ${status}: X-Request-Id`);
      if (status === '503' || status === '429') t.ok(response.headers['Retry-After'], `${name} ${status}: Retry-After`);
      if (status === '201') t.ok(response.headers.Location, `${name} 201: Location`);
      if (/^[45]/.test(status) && path.startsWith('/v1/')) {
        t.ok(response.content['application/problem+json'], `${name} ${status}: a problem`);
      }
    }
    // An example answer for every operation: the schema of each success answer has one.
    for (const [status, response] of responses.filter(([s]) => /^2/.test(s))) {
      if (status === '204') continue;
      const schema = response.content['application/json'].schema as Json;
      for (const ref of (schema.anyOf ?? [schema]) as Json[]) {
        t.equal(deref(ref)!.examples?.length, 1, `${name} ${status}: an example answer (${ref.$ref})`);
      }
    }
    if (op.requestBody) t.ok(op.requestBody.content['application/json'].example, `${name}: an example body`);
  }
  // ETags where a state's version is answered.
  for (const [id, statuses] of Object.entries({
    saveWorkflowState: ['200', '201', '412'], loadWorkflowState: ['200', '304'], patchWorkflowState: ['200', '412'],
    saveStepState: ['200', '201', '412'], restoreCheckpoint: ['200', '201', '412'], deleteWorkflowState: ['412'],
  })) {
    for (const status of statuses) t.ok(deref(operation(id).op.responses[status])!.headers.ETag, `${id} ${status}: ETag`);
  }
  t.equal(operation('restoreCheckpoint').op.requestBody.required, false, 'restore takes no body');
  for (const { op } of operations.filter((o) => o.op.requestBody && o.op.operationId !== 'restoreCheckpoint')) {
    t.equal(op.requestBody.required, true, `${op.operationId}: its body is required`);
  }

  // No text lost to Markdown: outside code spans, nothing that reads as a tag, and no line that starts a list.
  const descriptions: string[] = [];
  (function walk(v: unknown) {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if ((k === 'description' || k === 'summary') && typeof x === 'string') descriptions.push(x);
        else walk(x);
      }
    }
  })(doc);
  t.ok(descriptions.length > 100);
  for (const d of descriptions) {
    const prose = d.replace(/`[^`]*`/g, '');
    t.notMatch(prose, /<[A-Za-z/!]/, `no HTML-like text outside code spans: ${d}`);
    t.notMatch(prose, /(^|\n)\s*[*+-]\s/, `no line read as a list item: ${d}`);
    t.notMatch(prose, /"\*"|\s\*\s|^\*|\*$/, `no bare * outside code spans: ${d}`);
  }
});

t.test('components: one per schema an operation uses, and no "Input" twins', async (t) => {
  const used = new Set<string>();
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === '$ref') used.add((x as string).split('/').pop()!);
        else walk(x);
      }
    }
  };
  walk(doc.paths);
  walk(doc.components.responses);
  for (let size = 0; size !== used.size;) {
    size = used.size;
    for (const name of [...used]) walk(schemas[name]);
  }
  t.same(Object.keys(schemas).sort(), [...used].filter((n) => n in schemas).sort());
  t.same(Object.keys(schemas).filter((n) => n.endsWith('Input')), []);
  t.equal(operation('saveWorkflowState').op.requestBody.content['application/json'].schema.$ref,
    '#/components/schemas/SaveWorkflowState');
  t.same(schemas.Purge.required, ['older_than'], 'a field with a default is not required');
  t.notOk(schemas.Restore.required, 'mode has a default');
});

