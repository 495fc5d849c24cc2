import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import t from 'tap';
import { createSql } from '../src/db/client.js';
import { observedSql } from '../src/db/observe.js';
import { Metrics } from '../src/metrics.js';
import { buildTestApp, freshDatabase, json, stateBody } from './helper.js';

interface Sample { name: string; labels: Record<string, string>; value: number }

/** The samples of a Prometheus text exposition. */
function samples(text: string): Sample[] {
  return text.split('\n').filter((l) => l && !l.startsWith('#')).map((line) => {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    return { name: m[1]!, labels, value: Number(m[3]) };
  });
}

/** The value of the one sample with that name and exactly those labels (undefined: none). */
function value(all: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = all.filter((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) ===
    JSON.stringify(Object.entries(labels).sort()));
  if (found.length > 1) throw new Error(`${found.length} samples of ${name}`);
  return found[0]?.value;
}

async function scrape(app: FastifyInstance, headers: Record<string, string> = {}) {
  const res = await app.inject({ method: 'GET', url: '/metrics', headers });
  return { res, all: res.statusCode === 200 ? samples(res.body) : [] };
}

t.test('GET /metrics: requests by route template, the pools, what was written, the schema, the process', async (t) => {
  const { app } = await buildTestApp(t);
  const id = randomUUID();
  const fork = randomUUID();
  const put = (body: unknown) => app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(body) });
  t.equal((await put(stateBody())).statusCode, 201);
  t.equal((await put(stateBody({ status: 'paused' }))).statusCode, 200);
  t.equal((await app.inject({ method: 'GET', url: `/v1/workflows/${id}` })).statusCode, 200);
  t.equal((await app.inject({ method: 'GET', url: `/v1/workflows/${randomUUID()}` })).statusCode, 404);
  t.equal((await app.inject({ method: 'GET', url: '/no/such/route' })).statusCode, 404);
  t.equal((await app.inject({ method: 'PATCH', url: `/v1/workflows/${id}`, ...json({ status: 'running' }) })).statusCode, 200);
  t.equal((await app.inject({ method: 'PUT', url: `/v1/workflows/${id}/steps/s1`, ...json({ status: 'completed' }) })).statusCode, 201);
  const cid = randomUUID();
  const checkpoint = () => app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json({ id: cid, step_id: 's1' }) });
  t.equal((await checkpoint()).statusCode, 201);
  t.equal((await checkpoint()).statusCode, 200, 'a retried checkpoint is answered, not written again');
  const restore = (body: unknown) => app.inject({ method: 'POST', url: `/v1/checkpoints/${cid}/restore`, ...json(body) });
  t.equal((await restore({ mode: 'preview' })).statusCode, 200);
  t.equal((await restore({ mode: 'apply' })).statusCode, 200);
  t.equal((await restore({ mode: 'fork', new_id: fork })).statusCode, 201);
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/workflows/${id}/checkpoints?keep=0` })).statusCode, 200);
  t.equal((await app.inject({ method: 'PUT', url: `/v1/workflows/${fork}`, ...json(stateBody({ status: 'completed' })) })).statusCode, 200);
  const purge = await app.inject({ method: 'POST', url: '/v1/purge', ...json({ older_than: new Date(Date.now() + 60_000).toISOString() }) });
  t.equal(purge.statusCode, 200);
  t.equal(purge.json().deleted, 1);

  const { res, all } = await scrape(app);
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  t.notMatch(res.body, id, 'no id is a label value');
  t.notMatch(res.body, cid);

  const count = (route: string, method: string, status_class: string) =>
    value(all, 'http_request_duration_seconds_count', { route, method, status_class });
  t.equal(count('/v1/workflows/:id', 'PUT', '2xx'), 3);
  t.equal(count('/v1/workflows/:id', 'GET', '2xx'), 1);
  t.equal(count('/v1/workflows/:id', 'GET', '4xx'), 1);
  t.equal(count('/v1/workflows/:id/steps/:step_id', 'PUT', '2xx'), 1);
  t.equal(count('/v1/checkpoints/:cid/restore', 'POST', '2xx'), 3);
  t.equal(count('unmatched', 'GET', '4xx'), 1, 'a path no route has is one series, whatever the path');
  t.equal(value(all, 'http_request_duration_seconds_bucket',
    { route: '/v1/workflows/:id', method: 'PUT', status_class: '2xx', le: '+Inf' }), 3);
  t.ok(value(all, 'http_request_duration_seconds_sum', { route: '/v1/workflows/:id', method: 'PUT', status_class: '2xx' })! > 0);
  t.equal(value(all, 'http_requests_in_flight'), 1, 'the scrape itself');

  t.equal(value(all, 'workflow_states_written_total', { operation: 'save' }), 3);
  t.equal(value(all, 'workflow_states_written_total', { operation: 'patch' }), 1);
  t.equal(value(all, 'workflow_states_written_total', { operation: 'step' }), 1);
  t.equal(value(all, 'workflow_states_written_total', { operation: 'restore' }), 1);
  t.equal(value(all, 'workflow_states_written_total', { operation: 'fork' }), 1);
  t.equal(value(all, 'workflow_checkpoints_written_total'), 1);
  t.equal(value(all, 'workflow_checkpoint_restores_total', { mode: 'preview' }), 1);
  t.equal(value(all, 'workflow_checkpoint_restores_total', { mode: 'apply' }), 1);
  t.equal(value(all, 'workflow_checkpoint_restores_total', { mode: 'fork' }), 1);
  t.equal(value(all, 'workflow_purged_rows_total', { table: 'checkpoints' }), 1);
  t.equal(value(all, 'workflow_purged_rows_total', { table: 'workflow_states' }), 1);

  t.equal(value(all, 'workflow_state_schema_version'), app.schemaVersion);
  t.ok(app.schemaVersion >= 3);
  t.equal(all.find((s) => s.name === 'workflow_state_service_info')?.value, 1);
  for (const pool of ['reads', 'writes', 'health']) {
    t.equal(value(all, 'db_pool_max_connections', { pool }), 10, `${pool}: DATABASE_POOL_MAX`);
    t.equal(value(all, 'db_pool_waiting_queries', { pool }), 0);
    for (const state of ['idle', 'busy', 'reserved', 'connecting']) {
      t.type(value(all, 'db_pool_connections', { pool, state }), 'number', `${pool} ${state}`);
    }
  }
  t.ok(value(all, 'db_pool_connections', { pool: 'writes', state: 'idle' })! >= 1, 'the writes made a connection');
  t.ok(value(all, 'db_query_duration_seconds_count', { pool: 'writes', operation: 'WITH', outcome: 'ok' })! >= 1);
  t.same([...new Set(all.filter((s) => s.name === 'db_query_duration_seconds_count').map((s) => s.labels.pool))], ['writes'],
    'the writes\' statements are timed; reads (one statement per GET) and health probes are not');
  t.type(value(all, 'process_cpu_user_seconds_total'), 'number', "Node's default metrics");
  t.type(value(all, 'nodejs_heap_size_used_bytes'), 'number');
  t.type(value(all, 'nodejs_eventloop_lag_p99_seconds'), 'number');
  t.notOk(all.some((s) => s.name.startsWith('nodejs_gc_duration_seconds')),
    'no GC histogram: its PerformanceObserver cost a GET a fifth of its throughput');
});

t.test('the pool gauges count a transaction\'s connection and the statements queued behind it', async (t) => {
  const sql = createSql(await freshDatabase(t), { max: 1 });
  t.teardown(() => sql.end({ timeout: 1 }));
  const metrics = new Metrics({ solo: sql }, 7);
  const read = async () => samples(await metrics.registry.metrics());

  let release!: () => void;
  const held = new Promise<void>((r) => { release = r; });
  let began!: () => void;
  const inside = new Promise<void>((r) => { began = r; });
  const tx = sql.begin(async (tx) => { await tx`SELECT 1`; began(); await held; });
  await inside;
  const queued = sql`SELECT 2 AS two`.execute();
  await new Promise((r) => setImmediate(r)); // postgres.js hands a query to its pool a tick later
  const during = await read();
  t.equal(value(during, 'db_pool_connections', { pool: 'solo', state: 'reserved' }), 1);
  t.equal(value(during, 'db_pool_connections', { pool: 'solo', state: 'idle' }), 0);
  t.equal(value(during, 'db_pool_waiting_queries', { pool: 'solo' }), 1);
  t.equal(value(during, 'db_pool_max_connections', { pool: 'solo' }), 1);
  t.equal(value(during, 'workflow_state_schema_version'), 7);

  release();
  await tx;
  t.same(await queued, [{ two: 2 }]);
  const after = await read();
  t.equal(value(after, 'db_pool_waiting_queries', { pool: 'solo' }), 0);
  t.equal(value(after, 'db_pool_connections', { pool: 'solo', state: 'reserved' }), 0);
  t.equal(value(after, 'db_pool_connections', { pool: 'solo', state: 'idle' }), 1);
});

t.test('db_query_duration_seconds: every statement sent, by operation and outcome; fragments are not statements', async (t) => {
  const pool = createSql(await freshDatabase(t), { max: 2 });
  t.teardown(() => pool.end({ timeout: 1 }));
  const metrics = new Metrics({ p: pool }, 1);
  const sql = observedSql(pool, [metrics.statementTimer('p')]);
  const fragment = sql`AND 1 = ${1}`;
  t.same(await sql`SELECT 1 AS one WHERE true ${fragment}`, [{ one: 1 }]);
  await t.rejects(sql`SELECT 1 / 0`, { code: '22012' });
  await sql.begin(async (tx) => { await tx`SELECT 2`; await tx`SELECT 3`; });
  await sql.unsafe('UPDATE pg_class SET relname = relname WHERE false');
  const all = samples(await metrics.registry.metrics());
  t.equal(value(all, 'db_query_duration_seconds_count', { pool: 'p', operation: 'SELECT', outcome: 'ok' }), 3,
    'one plain, two in the transaction (its BEGIN and COMMIT are not observed)');
  t.equal(value(all, 'db_query_duration_seconds_count', { pool: 'p', operation: 'SELECT', outcome: 'error' }), 1);
  t.equal(value(all, 'db_query_duration_seconds_count', { pool: 'p', operation: 'UPDATE', outcome: 'ok' }), 1);
  t.equal(all.filter((s) => s.name === 'db_query_duration_seconds_count').length, 3);
});

t.test('METRICS_ENABLED=false: no /metrics route and nothing measured', async (t) => {
  const { app } = await buildTestApp(t, { METRICS_ENABLED: 'false' });
  t.equal(app.metrics, undefined);
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  t.equal(res.statusCode, 404);
  t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
});

t.test('METRICS_AUTH=true: /metrics needs a credential with the metrics scope, which opens nothing else', async (t) => {
  const AUTH_TOKENS = JSON.stringify([
    { token: 'scraper-token-0123456789', tenant: 'ops', scopes: ['metrics'], name: 'prometheus' },
    { token: 'reader-token-0123456789', tenant: 'a', scopes: ['read'], name: 'reader' },
  ]);
  const { app } = await buildTestApp(t, { AUTH_TOKENS, METRICS_AUTH: 'true' });
  const none = await app.inject({ method: 'GET', url: '/metrics' });
  t.equal(none.statusCode, 401);
  t.equal(none.headers['www-authenticate'], 'Bearer realm="workflow-state"');
  const reader = await scrape(app, { authorization: 'Bearer reader-token-0123456789' });
  t.equal(reader.res.statusCode, 403);
  t.equal(reader.res.headers['www-authenticate'], 'Bearer realm="workflow-state", error="insufficient_scope", scope="metrics"');
  const scraper = await scrape(app, { authorization: 'Bearer scraper-token-0123456789' });
  t.equal(scraper.res.statusCode, 200);
  t.equal(value(scraper.all, 'http_request_duration_seconds_count', { route: '/metrics', method: 'GET', status_class: '4xx' }), 2);
  const api = await app.inject({ method: 'GET', url: '/v1/workflows', headers: { authorization: 'Bearer scraper-token-0123456789' } });
  t.equal(api.statusCode, 403, 'the metrics scope reads no state');

  // Without METRICS_AUTH the same service serves /metrics to anyone who reaches it.
  const { app: open } = await buildTestApp(t, { AUTH_TOKENS });
  t.equal((await open.inject({ method: 'GET', url: '/metrics' })).statusCode, 200);
});
