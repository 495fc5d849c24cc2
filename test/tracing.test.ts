import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import t from 'tap';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { SERVICE_VERSION } from '../src/version.js';
import { buildTestApp, json, stateBody } from './helper.js';

// No static import of OpenTelemetry here: the first test checks that nothing of it is loaded. The
// API package alone (no-op until an SDK registers) is loaded by prom-client, whose exemplars read it.
const require = createRequire(import.meta.url);
const loadedOtelModules = () => Object.keys(require.cache)
  .filter((f) => /[\\/]node_modules[\\/](@opentelemetry|@fastify[\\/]otel)[\\/]/.test(f))
  .filter((f) => !/[\\/]node_modules[\\/]@opentelemetry[\\/]api[\\/]/.test(f));

/** A logger as server.ts makes it, writing its JSON lines here. */
function capturedLogger() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  return { lines, logger: createLogger('info', sink) as FastifyBaseLogger };
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_SPAN_ID}-01`;
const withHeaders = (headers: Record<string, string>, body: unknown) => {
  const j = json(body);
  return { ...j, headers: { ...j.headers, ...headers } };
};

t.test('without OTEL_EXPORTER_OTLP_ENDPOINT no OpenTelemetry module loads and log lines carry no trace id', async (t) => {
  const { lines, logger } = capturedLogger();
  const { app } = await buildTestApp(t, {}, {}, { logger });
  const id = randomUUID();
  const put = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...withHeaders({ traceparent: TRACEPARENT, 'x-request-id': 'untraced-1' }, stateBody()) });
  t.equal(put.statusCode, 201);
  t.same(loadedOtelModules(), [], 'no OpenTelemetry SDK, exporter nor @fastify/otel was loaded');
  t.notOk(app.hasPlugin('@fastify/otel'), 'no request instrumentation is registered');
  t.notOk(app.hasRequestDecorator('opentelemetry'));
  const ofRequest = lines.filter((l) => l.reqId === 'untraced-1');
  t.same(ofRequest.map((l) => l.msg), ['incoming request', 'request completed'], 'Fastify logs the request as before');
  t.notOk(ofRequest.some((l) => 'trace_id' in l || 'span_id' in l), 'no trace id on the lines, even with a traceparent');
});

t.test('with tracing, a request continues the incoming trace: request span, statement spans, trace id on its log lines', async (t) => {
  const { startTracing } = await import('../src/tracing.js');
  const { InMemorySpanExporter, SimpleSpanProcessor } = await import('@opentelemetry/sdk-trace-node');
  const { SpanKind, trace } = await import('@opentelemetry/api');
  t.ok(loadedOtelModules().length > 0, 'the check of the test above sees OpenTelemetry once it is loaded');

  const exporter = new InMemorySpanExporter();
  const tracing = startTracing(
    loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_SERVICE_NAME: 'wss-under-test' }),
    { spanProcessor: new SimpleSpanProcessor(exporter) },
  );
  // The globals (tracer provider, context manager, propagator) are unregistered at the end.
  t.teardown(() => tracing.shutdown());
  const { lines, logger } = capturedLogger();
  const { app, url } = await buildTestApp(t, {}, {}, { logger, tracing });
  // A route of this test: what is active inside a handler, and whether a statement's span has
  // ended by the time the code awaiting it resumes.
  let activeInHandler: string | undefined;
  let endedOnSettle: boolean | undefined;
  app.get('/trace-probe', async (req) => {
    activeInHandler = trace.getActiveSpan()?.spanContext().traceId;
    await app.sql`SELECT 1 AS probe`;
    endedOnSettle = exporter.getFinishedSpans().some((s) => s.attributes['db.query.text'] === 'SELECT 1 AS probe');
    req.log.info('inside the handler');
    return {};
  });

  const id = randomUUID();
  const put = await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`,
    ...withHeaders({ traceparent: TRACEPARENT, 'x-request-id': 'traced-put' }, stateBody({ workflow_name: 'Secret name' })) });
  t.equal(put.statusCode, 201);
  const cp = await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`,
    ...withHeaders({ traceparent: TRACEPARENT, 'x-request-id': 'traced-checkpoint' }, { step_id: 'step-in-tx' }) });
  t.equal(cp.statusCode, 201);
  const get = await app.inject({ url: `/v1/workflows/${id}?x=1`, headers: { traceparent: TRACEPARENT, 'x-request-id': 'traced-get' } });
  t.equal(get.statusCode, 200);
  const fresh = await app.inject({ url: `/v1/workflows/${id}`, headers: { 'x-request-id': 'fresh-get' } });
  t.equal(fresh.statusCode, 200);
  const probe = await app.inject({ url: '/trace-probe', headers: { traceparent: TRACEPARENT, 'x-request-id': 'probe' } });
  t.equal(probe.statusCode, 200);
  t.equal((await app.inject({ url: '/health/live' })).statusCode, 200);
  const badUrl = await app.inject({ url: '/v1/workflows/%E0%A4%A', headers: { traceparent: TRACEPARENT, 'x-request-id': 'bad-url' } });
  t.equal(badUrl.statusCode, 400);

  const spans = exporter.getFinishedSpans();
  const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
  const servers = spans.filter((s) => s.kind === SpanKind.SERVER);
  const serverOf = (path: string) => servers.filter((s) => s.attributes['url.path'] === path);
  const descends = (s: (typeof spans)[number], ancestor: (typeof spans)[number]) => {
    for (let p = s.parentSpanContext; p; p = byId.get(p.spanId)?.parentSpanContext) {
      if (p.spanId === ancestor.spanContext().spanId) return true;
    }
    return false;
  };

  const [getSpan, freshSpan] = serverOf(`/v1/workflows/${id}`).filter((s) => s.name.startsWith('GET'));
  t.ok(getSpan && freshSpan, 'each GET has a server span');
  if (!getSpan || !freshSpan) return;
  t.equal(getSpan.spanContext().traceId, TRACE_ID, 'the request span is in the incoming trace');
  t.equal(getSpan.parentSpanContext?.spanId, PARENT_SPAN_ID, 'its parent is the incoming span');
  t.equal(getSpan.parentSpanContext?.isRemote, true);
  t.equal(getSpan.name, 'GET /v1/workflows/:id', 'named by route template, not by path');
  t.equal(getSpan.attributes['http.route'], '/v1/workflows/:id');
  t.equal(getSpan.attributes['http.request.method'], 'GET');
  t.equal(getSpan.attributes['http.response.status_code'], 200);
  t.equal(getSpan.attributes['url.path'], `/v1/workflows/${id}`, 'the path without its query');
  t.equal(getSpan.resource.attributes['service.name'], 'wss-under-test');
  t.equal(getSpan.resource.attributes['service.version'], SERVICE_VERSION);

  const dbOf = (server: (typeof spans)[number]) =>
    spans.filter((s) => s.kind === SpanKind.CLIENT && descends(s, server));
  const getDb = dbOf(getSpan);
  t.equal(getDb.length, 1, 'the GET ran one statement, and it has a span below the request span');
  const [select] = getDb;
  t.equal(select?.spanContext().traceId, TRACE_ID);
  t.equal(select?.name, 'SELECT');
  t.equal(select?.attributes['db.system.name'], 'postgresql');
  t.equal(select?.attributes['db.operation.name'], 'SELECT');
  t.equal(select?.attributes['db.namespace'], new URL(url).pathname.slice(1));
  t.match(select?.attributes['db.query.text'], /FROM workflow_states WHERE id = \$1::uuid/, 'the SQL, with placeholders');
  t.notMatch(select?.attributes['db.query.text'], id, 'and without the values');

  const [putSpan] = serverOf(`/v1/workflows/${id}`).filter((s) => s.name.startsWith('PUT'));
  const putDb = putSpan ? dbOf(putSpan) : [];
  t.same(putDb.map((s) => s.name).sort(), ['INSERT', 'SELECT'], 'a save: its read and its insert');
  t.notOk(putDb.some((s) => String(s.attributes['db.query.text']).includes('Secret name')), 'no statement text holds a body value');
  t.equal(putSpan?.attributes['http.response.status_code'], 201);

  const [cpSpan] = serverOf(`/v1/workflows/${id}/checkpoints`);
  t.equal(cpSpan?.name, 'POST /v1/workflows/:id/checkpoints');
  const cpDb = cpSpan ? dbOf(cpSpan) : [];
  t.ok(cpDb.some((s) => /^\s*WITH made AS/.test(String(s.attributes['db.query.text']))),
    'a statement inside a transaction (sql.begin) has its span too');

  t.not(freshSpan.spanContext().traceId, TRACE_ID, 'a request without traceparent starts a trace of its own');
  t.match(freshSpan.spanContext().traceId, /^(?!0{32})[0-9a-f]{32}$/);
  t.equal(freshSpan.parentSpanContext, undefined, 'as its root');
  t.equal(dbOf(freshSpan).length, 1);

  t.notOk(spans.some((s) => String(s.attributes['url.path'] ?? '').startsWith('/health')), 'health probes are not traced');

  // Every line of a request names its trace and its request span, Fastify's own lines included.
  const linesOf = (reqId: string) => lines.filter((l) => l.reqId === reqId);
  const getLines = linesOf('traced-get');
  t.same(getLines.map((l) => l.msg), ['incoming request', 'request completed']);
  t.ok(getLines.every((l) => l.trace_id === TRACE_ID && l.span_id === getSpan.spanContext().spanId && l.trace_flags === '01'),
    'the GET\'s lines carry its trace id and span id');
  const freshLines = linesOf('fresh-get');
  t.ok(freshLines.length === 2 && freshLines.every((l) => l.trace_id === freshSpan.spanContext().traceId),
    'a new trace\'s id is on its lines');
  const probeLines = linesOf('probe');
  t.same(probeLines.map((l) => l.msg), ['incoming request', 'inside the handler', 'request completed']);
  t.ok(probeLines.every((l) => l.trace_id === TRACE_ID), 'req.log inside a handler carries the trace id');
  t.equal(activeInHandler, TRACE_ID, 'the request\'s context is active in its handler');
  t.equal(endedOnSettle, true, 'a statement\'s span has ended when the code awaiting it resumes');
  // A URL the router rejects runs no hook, so has no span: its one line is still logged.
  t.same(linesOf('bad-url').map((l) => l.msg), ['incoming request']);
});
