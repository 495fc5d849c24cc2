/**
 * OpenTelemetry traces over OTLP/HTTP, started by server.ts only when OTEL_EXPORTER_OTLP_ENDPOINT
 * is set. server.ts imports this module dynamically, so without the endpoint no @opentelemetry
 * package is loaded at all, and nothing here wraps, hooks or costs anything.
 *
 * A request gets a server span from @fastify/otel (its parent is the incoming W3C `traceparent`),
 * each SQL statement it runs a client span below it (statementSpans, through observedSql:
 * postgres.js has no instrumentation of its own), and its log lines carry the trace and span ids.
 */
import { FastifyOtelInstrumentation } from '@fastify/otel';
import { context, propagation, SpanKind, SpanStatusCode, trace, type Attributes, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider, type SpanProcessor } from '@opentelemetry/sdk-trace-node';
import {
  ATTR_DB_NAMESPACE, ATTR_DB_OPERATION_NAME, ATTR_DB_QUERY_TEXT, ATTR_DB_RESPONSE_STATUS_CODE, ATTR_DB_SYSTEM_NAME,
  ATTR_ERROR_TYPE, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT, ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION,
  ATTR_URL_PATH, DB_SYSTEM_NAME_VALUE_POSTGRESQL,
} from '@opentelemetry/semantic-conventions';
import { LogController, type FastifyPluginAsync, type FastifyReply, type FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from './config.js';
import type { Sql } from './db/client.js';
import type { StatementObserver } from './db/observe.js';
import { SERVICE_VERSION } from './version.js';

export interface Tracing {
  /** Registered first on the app: request spans, and the trace ids on the request's log lines. */
  plugin: FastifyPluginAsync;
  /** Fastify's `logController`: the "incoming request" line waits for the request's trace ids. */
  logController: LogController;
  /** For observedSql: a client span for every statement a pool runs. */
  statementSpans(sql: Sql): StatementObserver;
  /** Ends every span still buffered (sent to the collector) and unregisters the globals. */
  shutdown(): Promise<void>;
}

export interface TracingOptions {
  /** Where spans go (tests: a SimpleSpanProcessor over an InMemorySpanExporter); default OTLP/HTTP in batches. */
  spanProcessor?: SpanProcessor;
}

const INCOMING_LOGGED = Symbol('incoming request logged');

export function startTracing(config: Config, opts: TracingOptions = {}): Tracing {
  const endpoint = config.OTEL_EXPORTER_OTLP_ENDPOINT?.replace(/\/+$/, '');
  const spanProcessor = opts.spanProcessor
    ?? new BatchSpanProcessor(new OTLPTraceExporter({ url: `${endpoint}/v1/traces` })); // the OTLP/HTTP signal path
  const provider = new NodeTracerProvider({
    resource: defaultResource().merge(resourceFromAttributes({
      [ATTR_SERVICE_NAME]: config.OTEL_SERVICE_NAME,
      [ATTR_SERVICE_VERSION]: SERVICE_VERSION,
    })),
    spanProcessors: [spanProcessor],
  });
  // Global: AsyncLocalStorage context, and W3C trace context (and baggage) propagation.
  provider.register();
  const tracer = provider.getTracer('workflow-state-service', SERVICE_VERSION);

  const fastifyOtel = new FastifyOtelInstrumentation({
    // Request and handler spans; a span per lifecycle hook would be most of the trace and tell little.
    instrumentHooks: false,
    // Probes every few seconds are not worth a trace each.
    ignorePaths: ({ url }) => url.startsWith('/health'),
    requestHook: (span, request) => {
      const route = request.routeOptions.url;
      // Named by route template (semantic conventions), never by raw path; url.path without the
      // query, which may carry a token.
      span.updateName(route ? `${request.method} ${route}` : request.method);
      span.setAttribute(ATTR_URL_PATH, request.url.split('?')[0]!);
    },
  });
  fastifyOtel.setTracerProvider(provider);
  const otelPlugin = fastifyOtel.plugin();

  // The request span exists from @fastify/otel's onRequest hook on: from then on, every line of
  // req.log / reply.log names it, whatever the async context of the code that logs.
  const plugin = fp(async (app) => {
    await app.register(otelPlugin);
    app.addHook('onRequest', (req, reply, done) => {
      const span = req.opentelemetry().span;
      if (span) {
        const { traceId, spanId, traceFlags } = span.spanContext();
        req.log = reply.log = req.log.child({ trace_id: traceId, span_id: spanId, trace_flags: traceFlags.toString(16).padStart(2, '0') });
      }
      logIncoming(req, reply);
      done();
    });
  }, { name: 'tracing' });

  // Fastify logs "incoming request" before any hook runs, so before the request span exists: the
  // hook above logs it instead, in the same tick. A request that runs no hook (a URL the router
  // rejects) has no span, and gets the line a microtask later, as it would have had it.
  const logIncoming = (req: FastifyRequest, reply: FastifyReply) => {
    const r = req as FastifyRequest & { [INCOMING_LOGGED]?: true };
    if (r[INCOMING_LOGGED]) return;
    r[INCOMING_LOGGED] = true;
    LogController.prototype.incomingRequest.call(logController, req, reply);
  };
  const logController = new (class extends LogController {
    override incomingRequest(req: FastifyRequest, reply: FastifyReply) {
      queueMicrotask(() => logIncoming(req, reply));
    }
  })();

  return {
    plugin,
    logController,
    statementSpans: (sql) => statementSpans(sql, tracer),
    async shutdown() {
      fastifyOtel.disable();
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

/**
 * A client span per statement (observedSql): named by its first keyword, with the statement's
 * text as sent (values are $n parameters, never in it), ended as the statement settles.
 */
function statementSpans(sql: Sql, tracer: Tracer): StatementObserver {
  const { database, host, port } = sql.options;
  const common: Attributes = {
    [ATTR_DB_SYSTEM_NAME]: DB_SYSTEM_NAME_VALUE_POSTGRESQL,
    'db.system': DB_SYSTEM_NAME_VALUE_POSTGRESQL, // the name before semantic conventions 1.26, still read by some backends
    [ATTR_DB_NAMESPACE]: database,
    [ATTR_SERVER_ADDRESS]: host[0],
    [ATTR_SERVER_PORT]: port[0],
  };
  return ({ operation, text }) => {
    const span = tracer.startSpan(operation ?? 'postgresql', {
      kind: SpanKind.CLIENT,
      attributes: operation ? { ...common, [ATTR_DB_OPERATION_NAME]: operation } : common,
    });
    return (err) => {
      if (err !== undefined) {
        const { code, message } = (err ?? {}) as { code?: unknown; message?: string };
        if (typeof code === 'string') span.setAttributes({ [ATTR_DB_RESPONSE_STATUS_CODE]: code, [ATTR_ERROR_TYPE]: code });
        span.setStatus({ code: SpanStatusCode.ERROR, message });
      }
      const sent = text();
      if (sent) span.setAttribute(ATTR_DB_QUERY_TEXT, sent);
      span.end();
    };
  };
}
