/**
 * Threads (/v1/threads): LangGraph checkpoints, as a saver stores and reads them. Values are
 * opaque bytes; the service assembles a checkpoint's channel values from the versions it names,
 * orders writes as LangGraph does, pages search by keyset, and prunes per thread.
 */
import t, { type Test } from 'tap';
import * as threads from '../src/repositories/threads.js';
import { buildTestApp, json } from './helper.js';

type App = Awaited<ReturnType<typeof buildTestApp>>['app'];
type Json = Record<string, any>;

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
const jsonBlob = (value: unknown) => ({ type: 'json', data: b64(JSON.stringify(value)) });
/** The JSON value a blob holds. */
const valueOf = (blob: Json) => JSON.parse(Buffer.from(blob.data, 'base64').toString('utf8'));
/** A version as the saver makes them: unique, ordered by their counter. */
const ver = (n: number) => `${String(n).padStart(32, '0')}.0000000000000000`;
const q = (ns?: string) => (ns === undefined ? '' : `?ns=${encodeURIComponent(ns)}`);
const enc = encodeURIComponent;

interface CheckpointSpec {
  parent?: string | null;
  v?: number;
  /** Every channel's version (channel_versions). */
  versions?: Record<string, string | number>;
  /** The channels that changed (newVersions) and their values; undefined: the channel has no value ("empty"). */
  values?: Record<string, unknown>;
  metadata?: unknown;
}
const checkpointBody = ({ parent = null, v = 4, versions = {}, values = {}, metadata = { source: 'loop', step: 1 } }: CheckpointSpec) => ({
  parent_checkpoint_id: parent,
  v,
  channel_versions: versions,
  checkpoint: jsonBlob({ v, ts: '2026-12-01T09:00:00.000Z', channel_versions: versions }),
  metadata: jsonBlob(metadata),
  channel_values: Object.entries(values).map(([channel, value]) => (value === undefined
    ? { channel, version: versions[channel]!, type: 'empty' }
    : { channel, version: versions[channel]!, ...jsonBlob(value) })),
});

/** The API as a saver calls it, with a credential's headers. */
function client(app: App, headers: Record<string, string> = {}) {
  const send = (method: 'GET' | 'PUT' | 'POST' | 'DELETE', url: string, body?: unknown) =>
    app.inject({ method, url, headers: { ...headers, ...(body === undefined ? {} : json(body).headers) },
      payload: body === undefined ? undefined : JSON.stringify(body) });
  const cp = (thread: string, id: string) => `/v1/threads/${enc(thread)}/checkpoints/${enc(id)}`;
  return {
    put: (thread: string, id: string, spec: CheckpointSpec | Json, ns?: string) =>
      send('PUT', cp(thread, id) + q(ns), 'channel_values' in spec ? spec : checkpointBody(spec as CheckpointSpec)),
    writes: (thread: string, id: string, task: string, body: Json, ns?: string) =>
      send('PUT', `${cp(thread, id)}/writes/${enc(task)}${q(ns)}`, body),
    get: (thread: string, id: string, ns?: string) => send('GET', cp(thread, id) + q(ns)),
    search: (body: Json) => send('POST', '/v1/threads/search', body),
    delta: (thread: string, id: string, channels: string[], ns?: string) =>
      send('GET', `${cp(thread, id)}/delta-history?${new URLSearchParams([...(ns === undefined ? [] : [['ns', ns]]),
        ...channels.map((c) => ['channel', c])] as [string, string][])}`),
    del: (thread: string) => send('DELETE', `/v1/threads/${enc(thread)}`),
    settings: (thread: string, body: Json) => send('PUT', `/v1/threads/${enc(thread)}`, body),
    thread: (thread: string) => send('GET', `/v1/threads/${enc(thread)}`),
  };
}
type Client = ReturnType<typeof client>;

/** A task's writes: [channel, value] in order, idx their position (LangGraph's, for regular channels). */
const writesBody = (writes: [string, unknown][], taskPath = '', idx?: number[]) =>
  ({ task_path: taskPath, writes: writes.map(([channel, value], i) => ({ idx: idx?.[i] ?? i, channel, ...jsonBlob(value) })) });
/** A tuple's pending writes as [task_id, channel, value]. */
const pending = (tuple: Json) => tuple.pending_writes.map((w: Json) => [w.task_id, w.channel, valueOf(w)]);
/** A tuple's channel values as an object. */
const values = (tuple: Json) => Object.fromEntries(tuple.channel_values.map((c: Json) => [c.channel, valueOf(c)]));
/** Every item of a search, following next_cursor; and the number of pages. */
async function searchAll(api: Client, body: Json) {
  const items: Json[] = [];
  let cursor: string | null | undefined;
  let pages = 0;
  do {
    const res = await api.search({ ...body, cursor });
    if (res.statusCode !== 200) throw new Error(`search: ${res.statusCode} ${res.body}`);
    items.push(...res.json().items);
    cursor = res.json().next_cursor;
    pages++;
  } while (cursor);
  return { items, pages };
}
const ids = (items: Json[]) => items.map((i) => i.checkpoint_id);

t.test('PUT a checkpoint: 201 new, 200 the same again, 409 other content; the tuple as stored', async (t) => {
  const { app } = await buildTestApp(t);
  const api = client(app);
  const body = checkpointBody({ versions: { messages: ver(1), step: 1 }, values: { messages: ['hi'], step: 1 } });
  const created = await api.put('th-1', 'cp-1', body);
  t.equal(created.statusCode, 201);
  t.same(created.json(), { thread_id: 'th-1', checkpoint_ns: '', checkpoint_id: 'cp-1' });
  t.equal(created.headers.location, '/v1/threads/th-1/checkpoints/cp-1');

  const again = await api.put('th-1', 'cp-1', body);
  t.equal(again.statusCode, 200);
  t.same(again.json(), { thread_id: 'th-1', checkpoint_ns: '', checkpoint_id: 'cp-1' });
  t.notOk(again.headers.location);
  // The same content with its channels in another order, versions as strings: still the same.
  const reordered = { ...body, channel_versions: { step: '1', messages: ver(1) }, channel_values: [...body.channel_values].reverse() };
  t.equal((await api.put('th-1', 'cp-1', reordered)).statusCode, 200);

  for (const [what, other] of [
    ['metadata', { ...body, metadata: jsonBlob({ source: 'loop', step: 2 }) }],
    ['parent', { ...body, parent_checkpoint_id: 'cp-0' }],
    ['a value', { ...body, channel_values: [{ ...body.channel_values[0]!, ...jsonBlob(['bye']) }, body.channel_values[1]] }],
    ['v', { ...body, v: 3 }],
  ] as const) {
    const res = await api.put('th-1', 'cp-1', other);
    t.equal(res.statusCode, 409, what);
    t.match(res.json(), { status: 409, title: 'Conflict', detail: 'Checkpoint "cp-1" of thread "th-1" exists with other content.' });
  }
  t.same(values((await api.get('th-1', 'cp-1')).json()), { messages: ['hi'], step: 1 }, 'a refused put changed nothing');

  const inChild = await api.put('th-1', 'cp-1', body, 'child:1');
  t.equal(inChild.statusCode, 201, 'the same id in another namespace is another checkpoint');
  t.equal(inChild.headers.location, '/v1/threads/th-1/checkpoints/cp-1?ns=child%3A1');
  t.same(inChild.json(), { thread_id: 'th-1', checkpoint_ns: 'child:1', checkpoint_id: 'cp-1' });
  t.match((await app.inject('/metrics')).body, /^thread_checkpoints_written_total 2$/m, 'two stored: repeats are not counted');

  const tuple = await api.get('th-1', 'cp-1');
  t.equal(tuple.statusCode, 200);
  t.equal(tuple.headers['content-type'], 'application/json; charset=utf-8');
  t.same(tuple.json(), {
    thread_id: 'th-1', checkpoint_ns: '', checkpoint_id: 'cp-1', parent_checkpoint_id: null, v: 4,
    checkpoint: body.checkpoint, metadata: body.metadata,
    channel_values: [{ channel: 'messages', ...jsonBlob(['hi']) }, { channel: 'step', ...jsonBlob(1) }],
    pending_writes: [],
  });
  const missing = await api.get('th-1', 'cp-2');
  t.equal(missing.statusCode, 404);
  t.match(missing.json(), { detail: 'Checkpoint "cp-2" of thread "th-1" does not exist.' });
  t.equal((await api.get('th-1', 'cp-1', 'other')).statusCode, 404, 'namespaces are apart');
  t.equal((await api.get('nobody', 'latest')).statusCode, 404);
  t.match((await api.get('nobody', 'latest')).json(), { detail: 'No checkpoint in thread "nobody".' });
});

t.test('writes may come before their checkpoint and before the thread; regular ones are stored once, special ones replaced', async (t) => {
  const { app } = await buildTestApp(t);
  const api = client(app);
  const w = await api.writes('new-thread', 'cp-1', 'task-a', writesBody([['messages', 'first'], ['count', 1]], '~__pregel_pull, a'));
  t.equal(w.statusCode, 204);
  t.equal(w.body, '');
  t.equal((await api.thread('new-thread')).statusCode, 200, 'the write created the thread');
  t.equal((await api.get('new-thread', 'cp-1')).statusCode, 404, 'the checkpoint is not there yet');
  t.equal((await api.put('new-thread', 'cp-1', { versions: {} })).statusCode, 201);
  t.same(pending((await api.get('new-thread', 'cp-1')).json()), [['task-a', 'messages', 'first'], ['task-a', 'count', 1]]);

  // A retry of a regular write keeps the first; a special channel's (negative idx) write replaces it.
  await api.writes('new-thread', 'cp-1', 'task-a', writesBody([['messages', 'second'], ['count', 2]], '~__pregel_pull, a'));
  await api.writes('new-thread', 'cp-1', 'task-a', writesBody([['__error__', 'boom']], '~__pregel_pull, a', [-1]));
  await api.writes('new-thread', 'cp-1', 'task-a', writesBody([['__error__', 'boom again']], '~__pregel_pull, a', [-1]));
  // In one request, the last write with an idx wins.
  await api.writes('new-thread', 'cp-1', 'task-a', writesBody([['__interrupt__', 'one'], ['__interrupt__', 'two']], '~__pregel_pull, a', [-3, -3]));
  t.same(pending((await api.get('new-thread', 'cp-1')).json()), [
    ['task-a', '__interrupt__', 'two'], ['task-a', '__error__', 'boom again'], ['task-a', 'messages', 'first'], ['task-a', 'count', 1],
  ]);
  const raw = (await api.get('new-thread', 'cp-1')).json().pending_writes.map((x: Json) => [x.idx, x.task_path]);
  t.same(raw, [[-3, '~__pregel_pull, a'], [-1, '~__pregel_pull, a'], [0, '~__pregel_pull, a'], [1, '~__pregel_pull, a']]);
  t.equal((await api.writes('new-thread', 'cp-1', 'task-b', { writes: [] })).statusCode, 204, 'no writes: a 204 too');
});

t.test('pending writes in (task_path, task_id, idx) order, strings by code point, whatever the database\'s collation', async (t) => {
  // An ICU collation orders "a" before "B" and by UTF-16 units; LangGraph orders by code point.
  for (const icuLocale of [undefined, 'en-US']) {
    await t.test(icuLocale ?? 'C', async (t) => {
      const { app } = await buildTestApp(t, {}, icuLocale ? { icuLocale } : {});
      const api = client(app);
      const task = (path: string, id: string, idx: number[]) =>
        api.writes('th', 'cp', id, writesBody(idx.map((i) => ['ch', `${path}|${id}|${i}`]), path, idx));
      // Sent in no order; U+FF61 sorts before U+1F600 by code point, after it by UTF-16 unit.
      await task('~b', 'x', [0]);
      await task('~a', '\u{1F600}', [0]);
      await task('~a', '\uFF61', [10, 2, -1]);
      await task('~a', 'a', [0]);
      await task('~a', 'B', [0]);
      await task('', 'z', [0]);
      await api.put('th', 'cp', { versions: {} });
      t.same(pending((await api.get('th', 'cp')).json()).map((w: unknown[]) => w[2]), [
        '|z|0', '~a|B|0', '~a|a|0', '~a|\uFF61|-1', '~a|\uFF61|2', '~a|\uFF61|10', '~a|\u{1F600}|0', '~b|x|0',
      ]);
      // latest is the greatest id by code point: "a" > "B", U+1F600 > U+FF61.
      for (const id of ['a', 'B', '\uFF61', '\u{1F600}', 'Z']) await api.put('ids', id, { versions: {} });
      t.equal((await api.get('ids', 'latest')).json().checkpoint_id, '\u{1F600}');
      t.same(ids((await api.search({ thread_id: 'ids' })).json().items), ['\u{1F600}', '\uFF61', 'a', 'Z', 'B']);
      t.same(ids((await api.search({ thread_id: 'ids', before: 'a' })).json().items), ['Z', 'B']);
    });
  }
});

t.test('channel values are assembled from the versions a checkpoint names: a channel written once is there 20 checkpoints later', async (t) => {
  const { app, sql } = await buildTestApp(t);
  const api = client(app);
  const versions: Record<string, string> = {};
  let parent: string | null = null;
  for (let i = 1; i <= 21; i++) {
    const id = `cp-${String(i).padStart(2, '0')}`;
    const changed: Record<string, unknown> = { step: i };
    versions.step = ver(i);
    if (i === 1) {
      versions.once = ver(1);
      changed.once = 'written once';
    }
    t.equal((await api.put('carry', id, { parent, versions: { ...versions }, values: changed })).statusCode, 201);
    parent = id;
  }
  const latest = (await api.get('carry', 'latest')).json();
  t.equal(latest.checkpoint_id, 'cp-21');
  t.equal(latest.parent_checkpoint_id, 'cp-20');
  t.same(values(latest), { once: 'written once', step: 21 });
  t.same(values((await api.get('carry', 'cp-05')).json()), { once: 'written once', step: 5 });
  const [stored] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM thread_channel_values WHERE channel = 'once'`;
  t.equal(stored!.n, 1, 'stored once');

  // Only the changed channels are sent: none changed, none stored, so none is answered.
  await api.put('fresh', 'cp-1', { versions: { a: ver(1), b: ver(1) }, values: {} });
  t.same((await api.get('fresh', 'cp-1')).json().channel_values, []);
  // A channel put "empty" has no value at that version; a later version's value is the channel's.
  await api.put('fresh', 'cp-2', { parent: 'cp-1', versions: { a: ver(2), b: ver(1) }, values: { a: undefined } });
  t.same((await api.get('fresh', 'cp-2')).json().channel_values, []);
  await api.put('fresh', 'cp-3', { parent: 'cp-2', versions: { a: ver(3), b: ver(1) }, values: { a: { x: 1 } } });
  t.same(values((await api.get('fresh', 'cp-3')).json()), { a: { x: 1 } });
});

t.test('values and metadata are opaque bytes: NUL, lone surrogates, invalid UTF-8 and deep nesting round-trip', async (t) => {
  const { app } = await buildTestApp(t);
  const api = client(app);
  // The serializer's JSON text escapes them; the bytes go through base64 and come back the same.
  const odd = { text: 'a\u0000b', lone: 'x\ud800y', deep: JSON.parse('['.repeat(2000) + ']'.repeat(2000)) };
  const metadata = { source: 'input', note: 'n\u0000l', half: '\udfff', step: -1 };
  const binary = { type: 'bytes', data: b64(Buffer.from([0, 0xff, 0xfe, 0xd8, 0x00, 0x80])) };
  const body = checkpointBody({ versions: { odd: ver(1), bin: ver(1) }, values: { odd }, metadata });
  body.channel_values.push({ channel: 'bin', version: ver(1), ...binary });
  t.equal((await api.put('odd', 'cp-1', body)).statusCode, 201);
  await api.writes('odd', 'cp-1', 'task', { task_path: '', writes: [{ idx: 0, channel: 'bin', ...binary }] });
  const tuple = (await api.get('odd', 'cp-1')).json();
  t.same(tuple.metadata, jsonBlob(metadata), 'metadata bytes as sent');
  t.same(valueOf(tuple.metadata), metadata);
  t.same(tuple.channel_values, [{ channel: 'bin', ...binary }, { channel: 'odd', ...jsonBlob(odd) }]);
  t.same(tuple.pending_writes[0], { task_id: 'task', task_path: '', idx: 0, channel: 'bin', ...binary });
  // Search filters on a copy of the metadata in which NUL and lone surrogates became U+FFFD.
  t.same(ids((await api.search({ filter: { source: 'input', step: -1 } })).json().items), ['cp-1']);
  t.same(ids((await api.search({ filter: { note: 'n\uFFFDl', half: '\uFFFD' } })).json().items), ['cp-1']);
  // Metadata that is not JSON is stored; a filter never matches it.
  const notJson = { ...checkpointBody({}), metadata: { type: 'json', data: b64('{not json') } };
  t.equal((await api.put('odd', 'cp-2', notJson)).statusCode, 201);
  t.same((await api.get('odd', 'cp-2')).json().metadata, notJson.metadata);
  t.same(ids((await api.search({ thread_id: 'odd', filter: {} })).json().items), ['cp-2', 'cp-1'], '{} filters nothing');
});

t.test('bad input is a 400 naming the field, never a 500', async (t) => {
  const { app } = await buildTestApp(t);
  const api = client(app);
  const good = checkpointBody({ versions: { a: ver(1) }, values: { a: 1 } });
  const cv = good.channel_values[0]!;
  const cases: [string, () => ReturnType<Client['get']>, string, RegExp?][] = [
    ['checkpoint data', () => api.put('t', 'c', { ...good, checkpoint: { type: 'json', data: 'abc' } }), 'body.checkpoint.data', /base64/],
    ['metadata data', () => api.put('t', 'c', { ...good, metadata: { type: 'json', data: 'a b=' } }), 'body.metadata.data', /base64/],
    ['a value\'s data', () => api.put('t', 'c', { ...good, channel_values: [{ ...cv, data: 'QQ=' }] }), 'body.channel_values.0.data', /base64/],
    ['url-safe base64', () => api.put('t', 'c', { ...good, channel_values: [{ ...cv, data: '-_-_' }] }), 'body.channel_values.0.data'],
    ['data of an empty value', () => api.put('t', 'c', { ...good, channel_values: [{ ...cv, type: 'empty' }] }), 'body.channel_values.0.data'],
    ['no data', () => api.put('t', 'c', { ...good, channel_values: [{ channel: 'a', version: ver(1), type: 'json' }] }), 'body.channel_values.0.data'],
    ['a version channel_versions does not name', () => api.put('t', 'c', { ...good, channel_values: [{ ...cv, version: ver(2) }] }),
      'body.channel_values.0.version', /channel_versions/],
    ['a channel channel_versions lacks', () => api.put('t', 'c', { ...good, channel_values: [{ ...cv, channel: 'b' }] }), 'body.channel_values.0.version'],
    ['a channel twice', () => api.put('t', 'c', { ...good, channel_values: [cv, cv] }), 'body.channel_values.1.channel'],
    ['__proto__ as a channel', () => api.put('t', 'c', { ...good, channel_versions: JSON.parse('{"__proto__": "1"}'), channel_values: [] }),
      'body.channel_versions.__proto__'],
    ['no v', () => api.put('t', 'c', { ...good, v: undefined }), 'body.v'],
    ['an unknown field', () => api.put('t', 'c', { ...good, extra: 1 }), 'body.extra'],
    ['a long thread id', () => api.put('x'.repeat(256), 'c', good), 'params.thread_id'],
    ['a long checkpoint id', () => api.put('t', 'c'.repeat(129), good), 'params.checkpoint_id'],
    ['a long namespace', () => api.put('t', 'c', good, 'n'.repeat(256)), 'query.ns'],
    ['latest as an id', () => api.put('t', 'latest', good), 'params.checkpoint_id', /latest/],
    ['latest as a write\'s checkpoint', () => api.writes('t', 'latest', 'task', writesBody([])), 'params.checkpoint_id'],
    ['a write\'s data', () => api.writes('t', 'c', 'task', { writes: [{ idx: 0, channel: 'a', type: 'json', data: '!!!!' }] }), 'body.writes.0.data'],
    ['a write\'s idx', () => api.writes('t', 'c', 'task', { writes: [{ idx: 1.5, channel: 'a', ...jsonBlob(1) }] }), 'body.writes.0.idx'],
    ['a long task id', () => api.writes('t', 'c', 'k'.repeat(129), writesBody([])), 'params.task_id'],
    ['search limit', () => api.search({ limit: 1001 }), 'body.limit'],
    ['search cursor', () => api.search({ cursor: 'bm90LWEtY3Vyc29y' }), 'body.cursor', /not one this service issued/],
    ['a __proto__ filter', () => api.search({ filter: JSON.parse('{"__proto__": {}}') }), 'body.filter.__proto__'],
    ['delta without a channel', () => api.delta('t', 'c', []), 'query.channel'],
    ['max_checkpoints 0', () => api.settings('t', { max_checkpoints: 0 }), 'body.max_checkpoints'],
    ['ttl_seconds 1.5', () => api.settings('t', { ttl_seconds: 1.5 }), 'body.ttl_seconds'],
  ];
  for (const [name, send, path, message] of cases) {
    const res = await send();
    t.equal(res.statusCode, 400, `${name}: ${res.body.slice(0, 300)}`);
    const problem = res.json();
    t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
    t.ok(problem.errors?.some((e: Json) => e.path === path && (!message || message.test(e.message) || message.test(problem.detail))),
      `${name}: names ${path}: ${JSON.stringify(problem.errors)}`);
  }
  t.equal((await api.get('t', 'c')).statusCode, 404, 'nothing was stored');
  t.equal((await api.put('x'.repeat(255), 'c'.repeat(128), good, 'n'.repeat(255))).statusCode, 201, 'the longest ids are accepted');
});

t.test('search: filters, before, limit, keyset pages and namespaces, newest id first', async (t) => {
  const { app } = await buildTestApp(t);
  const api = client(app);
  // Two threads, ids interleaved; thread "a" also has a child namespace.
  for (let i = 1; i <= 12; i++) {
    const id = `cp-${String(i).padStart(2, '0')}`;
    await api.put(i % 2 ? 'a' : 'b', id, { metadata: { source: i % 3 ? 'loop' : 'input', step: i, parents: {} } });
    if (i <= 4) await api.put('a', id, { metadata: { source: 'loop', step: i } }, 'child');
  }
  const all = (await api.search({})).json();
  t.equal(all.items.length, 16);
  t.equal(all.next_cursor, null);
  t.same(all.items.slice(0, 3).map((i: Json) => [i.checkpoint_id, i.thread_id, i.checkpoint_ns]),
    [['cp-12', 'b', ''], ['cp-11', 'a', ''], ['cp-10', 'b', '']]);
  const four = all.items.filter((i: Json) => i.checkpoint_id === 'cp-03').map((i: Json) => i.checkpoint_ns);
  t.same(four.sort(), ['', 'child'], 'an id in two namespaces is two items');

  t.same(ids((await api.search({ thread_id: 'b' })).json().items), ['cp-12', 'cp-10', 'cp-08', 'cp-06', 'cp-04', 'cp-02']);
  t.same(ids((await api.search({ thread_id: 'a', checkpoint_ns: 'child' })).json().items), ['cp-04', 'cp-03', 'cp-02', 'cp-01']);
  t.equal((await api.search({ thread_id: 'a', checkpoint_ns: '' })).json().items.length, 6, '"" is the root namespace only');
  t.equal((await api.search({ thread_id: 'a', checkpoint_ns: null })).json().items.length, 10, 'null is every namespace');
  t.same(ids((await api.search({ checkpoint_id: 'cp-03' })).json().items), ['cp-03', 'cp-03']);
  t.same(ids((await api.search({ before: 'cp-03' })).json().items), ['cp-02', 'cp-02', 'cp-01', 'cp-01'], 'before: across threads');
  t.same(ids((await api.search({ filter: { source: 'input' } })).json().items), ['cp-12', 'cp-09', 'cp-06', 'cp-03']);
  t.same(ids((await api.search({ thread_id: 'b', filter: { source: 'input', step: 6 } })).json().items), ['cp-06']);
  t.same(ids((await api.search({ filter: { source: 'input', step: 7 } })).json().items), []);
  t.same(ids((await api.search({ thread_id: 'nobody' })).json().items), []);
  const limited = (await api.search({ thread_id: 'b', limit: 2 })).json();
  t.same(ids(limited.items), ['cp-12', 'cp-10']);
  t.type(limited.next_cursor, 'string');

  // Pages of 3 give every item once, in the order of one page.
  const paged = await searchAll(api, { limit: 3 });
  t.equal(paged.pages, 6);
  t.same(paged.items, all.items);
  const pagedFiltered = await searchAll(api, { thread_id: 'a', before: 'cp-09', limit: 2 });
  t.same(ids(pagedFiltered.items), ['cp-07', 'cp-05', 'cp-04', 'cp-03', 'cp-03', 'cp-02', 'cp-01', 'cp-01']);
  t.same((await api.search({ limit: 1 })).json().items[0], all.items[0], 'an item is the tuple GET answers');
  t.same((await api.get('b', 'cp-12')).json(), all.items[0]);
});

t.test('a search page ends before LIST_MAX_BYTES of stored bytes; a tuple larger alone comes alone', async (t) => {
  const { app } = await buildTestApp(t, { LIST_MAX_BYTES: '1024' });
  const api = client(app);
  for (const [i, size] of [300, 300, 2000, 100].entries()) {
    await api.put('big', `cp-${i + 1}`, { versions: { v: ver(i + 1) }, values: { v: 'x'.repeat(size) } });
  }
  const pages: string[][] = [];
  let cursor: string | null = null;
  do {
    const page: Json = (await api.search({ thread_id: 'big', cursor })).json();
    pages.push(ids(page.items));
    cursor = page.next_cursor;
  } while (cursor);
  t.same(pages, [['cp-4'], ['cp-3'], ['cp-2', 'cp-1']]);
});

t.test('tenants: a thread is its tenant\'s; another tenant\'s is invisible; an operator searches every tenant', async (t) => {
  const tokens = [
    { token: 'alice-token-0123456789', tenant: 'a', scopes: ['read', 'write'], name: 'alice' },
    { token: 'reader-token-0123456789', tenant: 'a', scopes: ['read'], name: 'reader' },
    { token: 'bob-token-0123456789', tenant: 'b', scopes: ['read', 'write', 'admin'], name: 'bob' },
    { token: 'operator-token-0123456789', tenant: '*', scopes: ['read', 'write', 'admin'], name: 'ops' },
  ];
  const { app, sql } = await buildTestApp(t, { AUTH_TOKENS: JSON.stringify(tokens) });
  const [alice, reader, bob, operator] = tokens.map((x) => client(app, { authorization: `Bearer ${x.token}` }));
  t.equal((await alice!.put('shared', 'cp-1', { values: {}, metadata: { who: 'alice' } })).statusCode, 201);
  t.equal((await bob!.put('shared', 'cp-1', { metadata: { who: 'bob' } })).statusCode, 201, 'the same id in another tenant is another thread');
  t.equal((await bob!.put('bobs', 'cp-2', {})).statusCode, 201);
  t.same(valueOf((await alice!.get('shared', 'cp-1')).json().metadata), { who: 'alice' });
  t.same(valueOf((await bob!.get('shared', 'latest')).json().metadata), { who: 'bob' });
  t.equal((await alice!.get('bobs', 'cp-2')).statusCode, 404);
  t.equal((await alice!.thread('bobs')).statusCode, 404);
  t.same((await alice!.delta('bobs', 'cp-2', ['x'])).json(), { channels: { x: { writes: [] } } });
  t.same((await alice!.search({})).json().items.map((i: Json) => valueOf(i.metadata)), [{ who: 'alice' }]);
  t.same(ids((await alice!.search({ thread_id: 'bobs' })).json().items), []);
  t.same(ids((await operator!.search({})).json().items), ['cp-2', 'cp-1', 'cp-1'], 'an operator searches every tenant');
  // An operator's path names the default tenant's thread, where its writes go.
  t.equal((await operator!.get('bobs', 'cp-2')).statusCode, 404);
  t.equal((await operator!.put('bobs', 'cp-9', {})).statusCode, 201);
  t.same(ids((await bob!.search({ thread_id: 'bobs' })).json().items), ['cp-2'], 'not bob\'s thread');

  // Scopes: reads and search need read, writes write.
  t.equal((await reader!.get('shared', 'cp-1')).statusCode, 200);
  t.equal((await reader!.search({ thread_id: 'shared' })).statusCode, 200);
  t.equal((await reader!.delta('shared', 'cp-1', ['x'])).statusCode, 200);
  t.equal((await reader!.thread('shared')).statusCode, 200);
  for (const res of [await reader!.put('shared', 'cp-2', {}), await reader!.writes('shared', 'cp-1', 'k', writesBody([])),
    await reader!.del('shared'), await reader!.settings('shared', {})]) {
    t.equal(res.statusCode, 403);
    t.equal(res.headers['www-authenticate'], 'Bearer realm="workflow-state", error="insufficient_scope", scope="write"');
  }

  // Deleting is per tenant: bob's "shared" goes, alice's stays.
  t.equal((await bob!.del('shared')).statusCode, 204);
  t.equal((await bob!.get('shared', 'cp-1')).statusCode, 404);
  t.equal((await alice!.get('shared', 'cp-1')).statusCode, 200);
  // Purge of threads past their TTL: bob's reaches bob's threads only, an operator's every tenant's.
  await alice!.settings('shared', { ttl_seconds: 60 });
  await bob!.settings('bobs', { ttl_seconds: 60 });
  await sql`UPDATE threads SET updated_at = now() - interval '1 hour'`;
  const purge = (who: string, body: Json) => app.inject({ method: 'POST', url: '/v1/purge',
    headers: { authorization: `Bearer ${who}`, ...json(body).headers }, payload: JSON.stringify({ older_than: '2000-01-01T00:00:00Z', ...body }) });
  t.same((await purge(tokens[3]!.token, { dry_run: true })).json(), { matched: 0, dry_run: true, threads_matched: 2 });
  t.same((await purge(tokens[2]!.token, {})).json(), { deleted: 0, threads_deleted: 1 });
  t.equal((await bob!.thread('bobs')).statusCode, 404);
  t.equal((await alice!.thread('shared')).statusCode, 200, 'alice\'s thread survived bob\'s purge');
});

t.test('DELETE a thread: every namespace at once, idempotent', async (t) => {
  const { app, sql } = await buildTestApp(t);
  const api = client(app);
  for (const ns of ['', 'child:1', 'child:1|grandchild:2']) {
    await api.put('gone', 'cp-1', { versions: { a: ver(1) }, values: { a: 1 } }, ns);
    await api.writes('gone', 'cp-1', 'task', writesBody([['a', 2]]), ns);
  }
  await api.writes('gone', 'cp-2', 'task', writesBody([['a', 3]]));
  await api.put('kept', 'cp-1', { versions: { a: ver(1) }, values: { a: 1 } });
  const del = await api.del('gone');
  t.equal(del.statusCode, 204);
  t.equal(del.body, '');
  for (const ns of ['', 'child:1', 'child:1|grandchild:2']) t.equal((await api.get('gone', 'cp-1', ns)).statusCode, 404);
  t.equal((await api.thread('gone')).statusCode, 404);
  t.equal((await api.del('gone')).statusCode, 204, 'again: still 204');
  t.equal((await api.del('never-was')).statusCode, 204);
  const counts = await sql<{ t: string; n: number }[]>`
    SELECT 'checkpoints' AS t, count(*)::int AS n FROM thread_checkpoints UNION ALL
    SELECT 'values', count(*)::int FROM thread_channel_values UNION ALL SELECT 'writes', count(*)::int FROM thread_writes`;
  t.same(counts.map((r) => [r.t, r.n]), [['checkpoints', 1], ['values', 1], ['writes', 0]], 'only the other thread\'s rows are left');
});

t.test('pending sends: a v < 4 checkpoint with a parent gets its parent\'s __pregel_tasks writes, in order', async (t) => {
  const { app } = await buildTestApp(t);
  const api = client(app);
  await api.put('old', 'cp-1', { v: 1 });
  await api.writes('old', 'cp-1', 'task-2', writesBody([['__pregel_tasks', 'send-3'], ['other', 'x']]));
  await api.writes('old', 'cp-1', 'task-1', writesBody([['__pregel_tasks', 'send-1'], ['__pregel_tasks', 'send-2']]));
  await api.put('old', 'cp-2', { parent: 'cp-1', v: 1 });
  await api.put('old', 'cp-3', { parent: 'cp-2', v: 1 });
  await api.put('old', 'cp-4', { parent: 'cp-1', v: 4 });
  t.same((await api.get('old', 'cp-2')).json().pending_sends.map(valueOf), ['send-1', 'send-2', 'send-3']);
  t.same((await api.get('old', 'cp-3')).json().pending_sends, [], 'a parent without sends: none');
  t.notOk('pending_sends' in (await api.get('old', 'cp-1')).json(), 'no parent: no member');
  t.notOk('pending_sends' in (await api.get('old', 'cp-4')).json(), 'v 4: no member');
});

t.test('delta history: from the parent up to the nearest stored value, with every walked ancestor\'s writes', async (t) => {
  const { app } = await buildTestApp(t);
  const api = client(app);
  // cp-1 stores items' value (a snapshot); cp-2 and cp-3 only bump its version; each has writes.
  const spec = (i: number, stored: boolean) => ({
    parent: i === 1 ? null : `cp-${i - 1}`, versions: { items: ver(i), other: ver(1) },
    values: { items: stored ? ['seed'] : undefined, ...(i === 1 ? { other: 'o' } : {}) },
  });
  for (let i = 1; i <= 4; i++) {
    await api.put('d', `cp-${i}`, spec(i, i === 1));
    await api.writes('d', `cp-${i}`, 'task-b', writesBody([['items', `b${i}`], ['other', `o${i}`]]));
    await api.writes('d', `cp-${i}`, 'task-a', writesBody([['items', `a${i}`]]));
  }
  const history = (channels: string[], id = 'cp-4') => api.delta('d', id, channels).then((r) => r.json());
  const items = (await history(['items'])).channels.items;
  t.same(valueOf(items.seed), ['seed']);
  t.same(items.writes.map((w: Json) => [w.task_id, w.channel, valueOf(w)]), [
    ['task-a', 'items', 'a1'], ['task-b', 'items', 'b1'], ['task-a', 'items', 'a2'], ['task-b', 'items', 'b2'],
    ['task-a', 'items', 'a3'], ['task-b', 'items', 'b3'],
  ], 'oldest first, the seed\'s writes included, the target\'s excluded; task-a before task-b');
  t.same(Object.keys(items), ['seed', 'writes']);
  const both = await history(['other', 'items', 'items', 'none']);
  t.same(Object.keys(both.channels), ['other', 'items', 'none']);
  t.same(valueOf(both.channels.other.seed), 'o');
  t.same(both.channels.other.writes.map(valueOf), ['o3'], 'other, carried over from cp-1, is in cp-3\'s values: the seed');
  t.same(both.channels.none, { writes: [] }, 'no value anywhere: no seed, and no writes to the channel');
  t.same((await history(['items'], 'latest')).channels.items.writes.length, 6, 'latest');
  t.same((await history(['items'], 'cp-2')).channels.items.writes.map(valueOf), ['a1', 'b1']);
  t.same((await history(['items'], 'cp-1')).channels.items, { writes: [] }, 'the root has no ancestors');
  t.same(await history(['items'], 'cp-9'), { channels: { items: { writes: [] } } }, 'an unknown checkpoint: no history');
  // A cycle of parent ids ends.
  await api.put('cycle', 'x', { parent: 'y', versions: { c: ver(1) }, values: { c: undefined } });
  await api.put('cycle', 'y', { parent: 'x', versions: { c: ver(1) } });
  t.same((await api.delta('cycle', 'x', ['c'])).json(), { channels: { c: { writes: [] } } });
});

/** A thread of `n` checkpoints as LangGraph makes them with a delta channel `items` snapshotted every 5 steps. */
async function deltaThread(api: Client, thread: string, n: number) {
  for (let i = 1; i <= n; i++) {
    const snapshot = i % 5 === 0 || i === 1;
    const res = await api.put(thread, `cp-${String(i).padStart(2, '0')}`, {
      parent: i === 1 ? null : `cp-${String(i - 1).padStart(2, '0')}`,
      versions: { items: ver(i), once: ver(1), n: ver(i) },
      values: { items: snapshot ? [`all to ${i}`] : undefined, n: i, ...(i === 1 ? { once: 'written once' } : {}) },
      metadata: { source: 'loop', step: i, ...(snapshot ? {} : { counters_since_delta_snapshot: { items: [i % 5, i % 5] } }) },
    });
    if (res.statusCode !== 201) throw new Error(res.body);
    await api.writes(thread, `cp-${String(i).padStart(2, '0')}`, 'task', writesBody([['items', `w${i}`]]));
  }
}

t.test('max_checkpoints: pruned at each put, keeping the values and delta ancestors the kept checkpoints need', async (t) => {
  const { app, sql } = await buildTestApp(t);
  const api = client(app);
  const settings = await api.settings('r', { max_checkpoints: 2 });
  t.equal(settings.statusCode, 201);
  t.equal(settings.headers.location, '/v1/threads/r');
  await deltaThread(api, 'r', 13);
  await deltaThread(api, 'all', 13);
  // cp-13 counts 3 supersteps since the snapshot at cp-10, cp-12 two: cp-10..13 are needed, no more.
  const stored = (await searchAll(api, { thread_id: 'r' })).items;
  t.same(ids(stored), ['cp-13', 'cp-12', 'cp-11', 'cp-10']);
  t.same((await api.get('r', 'cp-09')).statusCode, 404);
  const latest = (await api.get('r', 'latest')).json();
  const reference = (await api.get('all', 'latest')).json();
  t.same(values(latest), { n: 13, once: 'written once' }, 'the channel written once at cp-01 is kept');
  t.same(values(latest), values(reference));
  t.same((await api.delta('r', 'latest', ['items'])).json(), (await api.delta('all', 'latest', ['items'])).json(),
    'the delta history is the unpruned thread\'s');
  t.same(valueOf((await api.delta('r', 'latest', ['items'])).json().channels.items.seed), ['all to 10']);
  // Left: the kept checkpoints' writes, and only the values some kept checkpoint names.
  const [left] = await sql<{ writes: string[]; values: string[] }[]>`
    SELECT (SELECT array_agg(w.checkpoint_id ORDER BY w.checkpoint_id) FROM thread_writes w JOIN threads th ON th.id = w.thread
            WHERE th.thread_id = 'r') AS writes,
           (SELECT array_agg(v.channel || '@' || ltrim(split_part(v.version, '.', 1), '0') ORDER BY v.channel, v.version)
            FROM thread_channel_values v JOIN threads th ON th.id = v.thread WHERE th.thread_id = 'r') AS values`;
  t.same(left!.writes, ['cp-10', 'cp-11', 'cp-12', 'cp-13']);
  t.same(left!.values, ['items@10', 'items@11', 'items@12', 'items@13', 'n@10', 'n@11', 'n@12', 'n@13', 'once@1']);

  // Lowering max_checkpoints prunes every namespace at once; threads keep all by default.
  await deltaThread(api, 'all', 0);
  await api.put('all', 'cp-01', { versions: {} }, 'child');
  await api.put('all', 'cp-02', { parent: 'cp-01', versions: {} }, 'child');
  const lowered = await api.settings('all', { max_checkpoints: 1 });
  t.equal(lowered.statusCode, 200);
  t.equal(lowered.json().max_checkpoints, 1);
  t.same(ids((await searchAll(api, { thread_id: 'all' })).items), ['cp-13', 'cp-12', 'cp-11', 'cp-10', 'cp-02']);
  t.same(values((await api.get('all', 'latest')).json()), { n: 13, once: 'written once' });
});

t.test('max_checkpoints of 10 or more is kept within a tenth more, pruned in batches', async (t) => {
  const { app } = await buildTestApp(t);
  const api = client(app);
  await api.settings('m', { max_checkpoints: 10 });
  const counts: number[] = [];
  for (let i = 1; i <= 14; i++) {
    await api.put('m', `cp-${String(i).padStart(2, '0')}`, { versions: { n: ver(i) }, values: { n: i } });
    counts.push((await api.search({ thread_id: 'm' })).json().items.length);
  }
  t.same(counts, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 10, 11, 10]);
  t.same(values((await api.get('m', 'latest')).json()), { n: 14 });
  t.equal((await api.get('m', 'cp-04')).statusCode, 404);
});

t.test('thread settings: created, changed (absent kept, null cleared), read; threads keep all by default', async (t) => {
  const { app } = await buildTestApp(t, { CHECKPOINT_RETENTION: '2' });
  const api = client(app);
  for (let i = 1; i <= 5; i++) await api.put('s', `cp-${i}`, {});
  t.equal((await api.search({ thread_id: 's' })).json().items.length, 5, 'CHECKPOINT_RETENTION is for workflow states');
  const read = await api.thread('s');
  t.equal(read.statusCode, 200);
  t.match(read.json(), { thread_id: 's', max_checkpoints: null, ttl_seconds: null,
    created_at: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, updated_at: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/ });
  const changed = await api.settings('s', { ttl_seconds: 3600 });
  t.equal(changed.statusCode, 200);
  t.notOk(changed.headers.location);
  t.match(changed.json(), { thread_id: 's', max_checkpoints: null, ttl_seconds: 3600, created_at: read.json().created_at });
  t.ok(changed.json().updated_at > read.json().updated_at, 'updated_at moved');
  t.match((await api.settings('s', { max_checkpoints: 7 })).json(), { max_checkpoints: 7, ttl_seconds: 3600 }, 'absent: kept');
  t.match((await api.settings('s', { ttl_seconds: null })).json(), { max_checkpoints: 7, ttl_seconds: null }, 'null: cleared');
  const unchanged = await api.settings('s', {});
  t.same((await api.thread('s')).json(), unchanged.json(), 'GET answers the thread as PUT did');
  t.equal((await api.thread('nobody')).statusCode, 404);
  t.match((await api.thread('nobody')).json(), { detail: 'No thread "nobody".' });
  const created = await api.settings('new', {});
  t.equal(created.statusCode, 201);
  t.match(created.json(), { thread_id: 'new', max_checkpoints: null, ttl_seconds: null });
  t.equal((await api.get('new', 'latest')).statusCode, 404, 'a thread without checkpoints');
});

t.test('TTL: POST /v1/purge deletes the threads idle longer than their ttl_seconds, and answers how many', async (t) => {
  const { app, sql } = await buildTestApp(t);
  const api = client(app);
  await api.put('idle', 'cp-1', {});
  await api.put('busy', 'cp-1', {});
  await api.put('forever', 'cp-1', {});
  await api.settings('idle', { ttl_seconds: 60 });
  await api.settings('busy', { ttl_seconds: 60 });
  await sql`UPDATE threads SET updated_at = now() - interval '61 seconds'`;
  // A write is activity: it restarts busy's TTL.
  await api.writes('busy', 'cp-1', 'task', writesBody([['a', 1]]));
  const purge = (body: Json) => app.inject({ method: 'POST', url: '/v1/purge', ...json({ older_than: '2000-01-01T00:00:00Z', ...body }) });
  t.same((await purge({ dry_run: true })).json(), { matched: 0, dry_run: true, threads_matched: 1 });
  t.equal((await api.thread('idle')).statusCode, 200, 'a dry run deletes nothing');
  t.same((await purge({})).json(), { deleted: 0, threads_deleted: 1 });
  t.equal((await api.thread('idle')).statusCode, 404);
  t.equal((await api.get('idle', 'cp-1')).statusCode, 404);
  t.equal((await api.get('busy', 'cp-1')).statusCode, 200);
  t.equal((await api.get('forever', 'cp-1')).statusCode, 200, 'no TTL: never purged, however old');
  t.same((await purge({})).json(), { deleted: 0, threads_deleted: 0 });
  // More than a batch (25) of them.
  await sql`INSERT INTO threads (tenant, thread_id, ttl_seconds, updated_at)
            SELECT 'default', 'old-' || i, 60, now() - interval '1 day' FROM generate_series(1, 26) i`;
  t.same((await purge({})).json(), { deleted: 0, threads_deleted: 26 });
});

t.test('a put and writes racing to create a thread are all stored', async (t) => {
  const { app } = await buildTestApp(t);
  const api = client(app);
  for (let i = 0; i < 8; i++) {
    const thread = `race-${i}`;
    const answers = await Promise.all([
      api.put(thread, 'cp-1', { versions: { a: ver(1) }, values: { a: i } }),
      ...['t1', 't2', 't3'].map((task) => api.writes(thread, 'cp-1', task, writesBody([['a', task]]))),
    ]);
    t.same(answers.map((r) => r.statusCode), [201, 204, 204, 204]);
    const tuple = (await api.get(thread, 'cp-1')).json();
    t.same([values(tuple), pending(tuple).map((w: unknown[]) => w[0])], [{ a: i }, ['t1', 't2', 't3']]);
  }
});

t.test('updated_at is bumped by a HOT update (no index has it), under the thread\'s row lock', async (t) => {
  const { sql } = await buildTestApp(t);
  await sql.begin(async (tx) => {
    const w = { task_path: '', writes: [] };
    await threads.saveWrites(tx, 'default', 'hot', '', 'cp', 'task', w);
    await threads.saveWrites(tx, 'default', 'hot', '', 'cp', 'task', w);
    await threads.saveWrites(tx, 'default', 'hot', '', 'cp', 'task', w);
    const [r] = await tx<{ updated: number; hot: number }[]>`
      SELECT pg_stat_get_xact_tuples_updated('threads'::regclass)::int AS updated,
             pg_stat_get_xact_tuples_hot_updated('threads'::regclass)::int AS hot`;
    t.same(r, { updated: 2, hot: 2 });
  });
});

t.test('ids that need percent-encoding round-trip', async (t: Test) => {
  const { app } = await buildTestApp(t);
  const api = client(app);
  const thread = 'user/42?chat=#1 \u00e9\u{1F600}';
  const id = 'a/b%2F';
  t.equal((await api.put(thread, id, {}, 'ns/x?y')).statusCode, 201);
  t.same((await api.get(thread, id, 'ns/x?y')).json().thread_id, thread);
  t.same(ids((await api.search({ thread_id: thread })).json().items), [id]);
  t.equal((await api.del(thread)).statusCode, 204);
  t.equal((await api.get(thread, id, 'ns/x?y')).statusCode, 404);
});
