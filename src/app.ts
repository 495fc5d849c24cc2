import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import fastifyCors from '@fastify/cors';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import helmet from 'helmet';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { ANONYMOUS, type Authenticate, authenticatorFor, registerAuth } from './auth.js';
import type { Config } from './config.js';
import { answerConnect, httpServerOptions, requestLineProblem } from './connections.js';
import type { Sql } from './db/client.js';
import { observedSql, type StatementObserver } from './db/observe.js';
import { registerRequestWork } from './db/work.js';
import { badRequest, HttpProblem, registerErrorHandling, sendProblem, UNHOOKED_ANSWER_HEADERS } from './errors.js';
import { registerJsonBody } from './json-body.js';
import { Metrics, registerMetrics } from './metrics.js';
import { DOCUMENT_INFO, transform, transformObject } from './openapi.js';
import { checkpointRoutes } from './routes/checkpoints.js';
import { docsRoutes } from './routes/docs.js';
import { healthRoutes } from './routes/health.js';
import { purgeRoutes } from './routes/purge.js';
import { threadRoutes } from './routes/threads.js';
import { workflowRoutes } from './routes/workflows.js';
import { problemResponses } from './schemas/common.js';
import type { Tracing } from './tracing.js';

export interface AppDeps {
  /** The pool of reads (and of migrations, at boot). */
  sql: Sql;
  /** The pool of writes, so writes waiting on a locked row never hold the connections of reads (default: sql). */
  writeSql?: Sql;
  /** A pool of its own for health probes, so a busy main pool does not fail readiness (default: sql). */
  probeSql?: Sql;
  /** The schema version this build migrates to; readiness requires the database to have it. */
  schemaVersion: number;
  /** The configured credentials' authenticator (authenticatorFor), made once at start (default: from config). */
  authenticate?: Authenticate;
  /** A pino logger (the server's), or true/false for fastify's own. */
  logger?: FastifyBaseLogger | boolean;
  /** Traces (startTracing), when OTEL_EXPORTER_OTLP_ENDPOINT is set; without it nothing of tracing runs. */
  tracing?: Tracing;
}

/** Runtime state shared by routes: readiness turns false first when the process drains. */
export interface Lifecycle {
  draining: boolean;
  startedAt: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    sql: Sql;
    config: Config;
    lifecycle: Lifecycle;
    schemaVersion: number;
  }
}

const REQUEST_ID = /^[\w.:@/+=-]{1,128}$/;

/** sha256 of `.logo_small_svg__cls-2{fill:#fff}.logo_small_svg__cls-3{fill:#85ea2d}`, Swagger UI's logo style. */
const SWAGGER_LOGO_STYLE = "'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='";

/**
 * Security headers of every routed answer, as helmet makes them for this policy: those OWASP's REST
 * cheat sheet lists for an API. It answers JSON only, so its pages may load nothing and be framed
 * nowhere; Swagger UI at /docs sets its own policy (staticCSP below). HSTS is left to the TLS
 * terminator in front: this process speaks plain HTTP. Helmet's headers for browsing documents (DNS
 * prefetch, IE8 downloads, Flash policies, origin agent clusters, opener isolation, the XSS
 * auditor) are off: an API's JSON is not a document, and each costs every answer its bytes.
 */
const SECURITY_HEADERS = helmetHeaders({
  contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
  strictTransportSecurity: false,
  xFrameOptions: { action: 'deny' },
  referrerPolicy: { policy: 'no-referrer' },
  crossOriginResourcePolicy: { policy: 'same-origin' },
  crossOriginOpenerPolicy: false,
  crossOriginEmbedderPolicy: false,
  originAgentCluster: false,
  xDnsPrefetchControl: false,
  xDownloadOptions: false,
  xPermittedCrossDomainPolicies: false,
  xXssProtection: false,
});

/**
 * The headers helmet's middleware sets for `options`, made once: @fastify/helmet runs the
 * middleware (and two hooks) on every request, which cost a GET a fifth of its throughput for the
 * same fixed headers (docs/performance.md).
 */
function helmetHeaders(options: Parameters<typeof helmet>[0]): Record<string, string> {
  const headers: Record<string, string> = {};
  const res = {
    setHeader: (name: string, value: unknown) => { headers[name.toLowerCase()] = String(value); },
    removeHeader: (name: string) => { delete headers[name.toLowerCase()]; },
  };
  helmet(options)({} as IncomingMessage, res as unknown as ServerResponse, () => {});
  return headers;
}

export async function buildApp(config: Config, deps: AppDeps): Promise<FastifyInstance> {
  const { tracing } = deps;
  const app = Fastify({
    loggerInstance: typeof deps.logger === 'object' ? deps.logger : undefined,
    logger: typeof deps.logger === 'object' ? undefined : (deps.logger ?? false),
    logController: tracing?.logController,
    bodyLimit: config.BODY_LIMIT_BYTES,
    // Header and request timeouts, and problem answers to what never becomes a request.
    ...httpServerOptions(config),
    // An incoming x-request-id is kept when it looks like an id; otherwise one is made.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Path parameters up to 255 characters (step ids, workflow ids), percent-encoded.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 2048 },
    // Requests the router rejects (a malformed URL) are problems too, with their request id.
    // No onRequest hook runs for them. The detail names the path only: the query may hold a token.
    frameworkErrors: (err, req, reply) => {
      reply.header('x-request-id', req.id).headers(UNHOOKED_ANSWER_HEADERS);
      const path = req.url.split('?')[0];
      return sendProblem(req, reply, err.code === 'FST_ERR_BAD_URL'
        ? badRequest(`The request path is not valid percent-encoded UTF-8: ${path}`, [{ path: 'path', message: 'invalid percent-encoding' }])
        : badRequest(`The request URL is malformed: ${path}`));
    },
  });
  // First, so that its hooks run before every other and every route is instrumented.
  if (tracing) await app.register(tracing.plugin);
  // Prometheus metrics of every request and pool, at GET /metrics; nothing at all when disabled.
  const metrics = config.METRICS_ENABLED
    ? new Metrics({ reads: deps.sql, writes: deps.writeSql ?? deps.sql, health: deps.probeSql ?? deps.sql }, deps.schemaVersion)
    : undefined;
  // The pools of requests' statements, spanned when tracing. Metrics time the writes' statements
  // only: observing a pool proxies it, which costs a write nothing measurable but cost a GET 15% of
  // its throughput (docs/performance.md), and a GET is one statement, timed with its request.
  // Health probes' statements are neither.
  const observed = (pool: Sql, timer?: StatementObserver) => {
    const observers = [tracing?.statementSpans(pool), timer].filter((o) => o !== undefined);
    return observers.length ? observedSql(pool, observers) : pool;
  };
  const sql = observed(deps.sql);
  const writeSql = deps.writeSql ? observed(deps.writeSql, metrics?.statementTimer('writes')) : sql;
  app.decorate('sql', sql);
  app.decorate('config', config);
  app.decorate('lifecycle', { draining: false, startedAt: Date.now() } satisfies Lifecycle);
  app.decorate('schemaVersion', deps.schemaVersion);

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.addHook('onRequest', (req, reply, done) => {
    reply.header('x-request-id', req.id).headers(SECURITY_HEADERS);
    done(requestLineProblem(req));
  });
  registerJsonBody(app);
  registerErrorHandling(app);
  answerConnect(app);

  const authenticate = deps.authenticate ?? authenticatorFor(config);
  app.decorate('metrics', metrics);
  if (metrics) await registerMetrics(app, metrics, { requireCredential: config.METRICS_AUTH, authenticate });

  // CORS only for configured origins: any other origin, or none, gets no CORS header at all.
  if (config.CORS_ORIGINS.length) {
    const allowed = new Set(config.CORS_ORIGINS);
    await app.register(fastifyCors, {
      origin: (origin, cb) => cb(null, origin !== undefined && allowed.has(origin)),
      methods: ['GET', 'HEAD', 'PUT', 'PATCH', 'POST', 'DELETE'],
      exposedHeaders: ['etag', 'location', 'retry-after', 'x-request-id'],
      maxAge: 600,
      // An OPTIONS without Access-Control-Request-Method would get a text/plain 400; it is routed instead.
      strictPreflight: false,
    });
  }

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: DOCUMENT_INFO,
      // Relative: the document is the same whichever host serves it, and Swagger UI calls that host.
      servers: [{ url: '/', description: 'The service that serves this document' }],
      tags: [
        { name: 'workflows', description: 'Workflow states and their steps' },
        { name: 'checkpoints', description: 'Snapshots of a state, and restoring from them' },
        { name: 'threads', description: 'LangGraph checkpoints: a checkpoint saver\'s storage, per thread' },
        { name: 'maintenance', description: 'Purging old states, and threads past their TTL' },
        { name: 'health', description: 'Probes for Kubernetes' },
      ],
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'A token of `AUTH_TOKENS` / `AUTH_TOKENS_FILE`, or a JWT verified against `AUTH_JWKS_URL`. ' +
              'Scopes: `read` for GETs, `write` for changes to a state, `admin` for purge (and `metrics` for ' +
              '`GET /metrics` when `METRICS_AUTH=true`). Not needed when the service runs without credentials ' +
              '(loopback only, or `AUTH_DISABLED=true`).',
          },
        },
      },
    },
    transform,
    transformObject,
  });
  // Swagger UI loads only its own scripts and styles from /docs/static: the plugin's own policy
  // for that, without upgrade-insecure-requests, which would break it over plain HTTP, and with
  // the hash of the one inline <style> it renders (its logo's, swagger-ui#10655), which the browser
  // otherwise blocks with a console error (test/system/swagger-ui.test.ts sees it).
  if (config.DOCS_ENABLED) {
    await app.register(fastifySwaggerUi, {
      routePrefix: '/docs',
      staticCSP: true,
      transformStaticCSP: (csp) => csp.replace(/\s*upgrade-insecure-requests;?/, '')
        .replace("style-src 'self'", `style-src 'self' ${SWAGGER_LOGO_STYLE}`),
    });
  }

  await app.register(healthRoutes, { probeSql: deps.probeSql ?? deps.sql });
  if (config.DOCS_ENABLED) await app.register(docsRoutes);
  // The API: every route needs a credential (when credentials are configured) with the route's scope.
  await app.register(async (v1) => {
    registerAuth(v1, authenticate);
    // Per credential (per address when authentication is off), before the body is read.
    if (config.RATE_LIMIT_MAX > 0) {
      await v1.register(fastifyRateLimit, {
        max: config.RATE_LIMIT_MAX,
        timeWindow: config.RATE_LIMIT_WINDOW_MS,
        hook: 'preParsing',
        keyGenerator: (req) => (req.principal === ANONYMOUS ? `ip ${req.ip}` : `credential ${req.principal.tenant} ${req.principal.name}`),
        errorResponseBuilder: (_req, ctx) => new HttpProblem(429, 'too-many-requests', 'Too Many Requests',
          `This credential made more than ${ctx.max} requests in ${config.RATE_LIMIT_WINDOW_MS} ms ` +
          `(RATE_LIMIT_MAX, RATE_LIMIT_WINDOW_MS); retry in ${ctx.after}.`),
      });
    }
    registerRequestWork(v1, { read: sql, write: writeSql }, config);
    v1.addHook('onRoute', (route) => {
      route.schema = {
        ...route.schema,
        security: [{ bearer: [] }],
        response: { ...(route.schema?.response as object), ...problemResponses(401, 403, 429) },
      };
    });
    await v1.register(workflowRoutes);
    await v1.register(checkpointRoutes);
    await v1.register(threadRoutes);
    await v1.register(purgeRoutes);
  }, { prefix: '/v1' });
  return app;
}
