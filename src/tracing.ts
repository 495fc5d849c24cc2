/**
 * OpenTelemetry traces over OTLP/HTTP, started by server.ts only when OTEL_EXPORTER_OTLP_ENDPOINT
 * is set. server.ts imports this module dynamically, so without the endpoint no @opentelemetry
 * package is loaded at all, and nothing here wraps, hooks or costs anything.
 *
 * A request gets a server span from @fastify/otel (its parent is the incoming W3C `traceparent`),
 * each SQL statement it runs a client span below it (instrumentSql: postgres.js has no
 * instrumentation of its own), and its log lines carry the trace and span ids.
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
import type { Sql, TxSql } from './db/client.js';
import { SERVICE_VERSION } from './version.js';

export interface Tracing {
  /** Registered first on the app: request spans, and the trace ids on the request's log lines. */
  plugin: FastifyPluginAsync;
  /** Fastify's `logController`: the "incoming request" line waits for the request's trace ids. */
  logController: LogController;
  /** `sql` (a pool or a transaction) with a client span for every statement it runs. */
  instrumentSql<T extends Sql | TxSql>(sql: T): T;
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
    instrumentSql: (sql) => instrumentSql(sql, tracer),
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
 * What instrumentSql uses of a postgres.js Query: `handler` sends it to the pool, `string` is its
 * SQL once built, and the connection settles it through `resolve` / `reject`.
 */
interface SentQuery {
  strings: readonly string[];
  handler(q: SentQuery): unknown;
  string?: string;
  resolve(result: unknown): void;
  reject(err: unknown): void;
}

/**
 * `sql` with a client span per statement. postgres.js queries are lazy: a tagged template makes a
 * Query that runs only once awaited, and fragments nested in other queries never run. So the span
 * starts when the Query is handed to its pool (`query.handler`, called once, by `execute`), in the
 * context that awaited it, and ends when it settles. Transactions' statements are spanned too.
 * Named by the statement's first keyword (a CTE's is WITH). A cursor settles through promises of
 * its own, so its span would not end: the service uses none.
 */
function instrumentSql<T extends Sql | TxSql>(sql: T, tracer: Tracer): T {
  const { database, host, port } = (sql as Sql).options;
  return spannedSql(sql, tracer, {
    [ATTR_DB_SYSTEM_NAME]: DB_SYSTEM_NAME_VALUE_POSTGRESQL,
    'db.system': DB_SYSTEM_NAME_VALUE_POSTGRESQL, // the name before semantic conventions 1.26, still read by some backends
    [ATTR_DB_NAMESPACE]: database,
    [ATTR_SERVER_ADDRESS]: host[0],
    [ATTR_SERVER_PORT]: port[0],
  });
}

function spannedSql<T extends Sql | TxSql>(sql: T, tracer: Tracer, common: Attributes): T {
  const spanned = (query: SentQuery) => {
    const send = query.handler;
    query.handler = function (q) {
      const operation = /^\s*([A-Za-z]+)/.exec(q.strings[0] ?? '')?.[1]?.toUpperCase();
      const span = tracer.startSpan(operation ?? 'postgresql', {
        kind: SpanKind.CLIENT,
        attributes: operation ? { ...common, [ATTR_DB_OPERATION_NAME]: operation } : common,
      });
      // Ended as the connection settles the query, before the awaiting code resumes. The text is
      // the one sent: values are $n parameters, never in it.
      const end = () => {
        if (q.string) span.setAttribute(ATTR_DB_QUERY_TEXT, q.string);
        span.end();
      };
      const { resolve, reject } = q;
      q.resolve = (result) => { end(); resolve(result); };
      q.reject = (err) => {
        const { code, message } = (err ?? {}) as { code?: unknown; message?: string };
        if (typeof code === 'string') span.setAttributes({ [ATTR_DB_RESPONSE_STATUS_CODE]: code, [ATTR_ERROR_TYPE]: code });
        span.setStatus({ code: SpanStatusCode.ERROR, message });
        end();
        reject(err);
      };
      return send.call(this, q);
    };
    return query;
  };
  // sql.begin(fn) and tx.savepoint(fn) hand `fn` a new sql of the transaction: spanned as well.
  const spannedScope = (begin: (...a: unknown[]) => unknown) => (...args: unknown[]) => {
    const fn = args.pop() as (tx: TxSql) => unknown;
    return begin(...args, (tx: TxSql) => fn(spannedSql(tx, tracer, common)));
  };
  return new Proxy(sql, {
    apply(target, self, args: unknown[]) {
      const made = Reflect.apply(target as unknown as (...a: unknown[]) => unknown, self, args);
      // A tagged template makes a Query (or a fragment, which never runs); sql('name') an identifier.
      return Array.isArray((args[0] as { raw?: unknown } | undefined)?.raw) ? spanned(made as SentQuery) : made;
    },
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver);
      if (typeof value !== 'function') return value;
      if (key === 'unsafe') return (...a: unknown[]) => spanned(value.apply(target, a));
      if (key === 'begin' || key === 'savepoint') return spannedScope(value.bind(target));
      return value;
    },
  });
}
