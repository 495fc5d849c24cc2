import { z } from 'zod';

const intFromEnv = (def: number, min: number, max: number) =>
  z.coerce.number().int().min(min).max(max).default(def);
const boolFromEnv = (def: boolean) =>
  z.enum(['true', 'false', '1', '0']).transform((s) => s === 'true' || s === '1').default(def);

/**
 * The whole environment the service reads, parsed once at start-up. Each setting's description is
 * its documentation: `npm run docs` renders the configuration tables of README.md and
 * docs/operations.md from this schema.
 */
export const configSchema = z.object({
  PORT: intFromEnv(8080, 0, 65535).meta({ description: 'listen port' }),
  // Loopback unless told otherwise: a service without credentials must not be reachable from a network.
  HOST: z.string().min(1).default('127.0.0.1')
    .meta({ description: 'listen address; an address other than loopback needs a credential (or `AUTH_DISABLED=true`)' }),

  // Authentication (src/auth.ts): static bearer tokens, JWTs verified against a JWKS, or none.
  AUTH_TOKENS: z.string().optional().meta({ description: 'JSON array of tokens: `{"token_sha256": "<hex>" or "token": "<plain>", ' +
    '"tenant", "scopes": ["read","write","admin","metrics"], "name"}`' }),
  AUTH_TOKENS_FILE: z.string().min(1).optional()
    .meta({ description: 'a file holding the same JSON (a mounted Secret); not with `AUTH_TOKENS`' }),
  AUTH_JWKS_URL: z.url({ protocol: /^https?$/ }).optional()
    .meta({ description: 'JWKS URL: bearer JWTs signed by its keys are accepted' }),
  AUTH_JWT_ISSUER: z.string().min(1).optional().meta({ description: 'the `iss` JWTs must have, when set' }),
  AUTH_JWT_AUDIENCE: z.string().min(1).optional().meta({ description: 'the `aud` JWTs must have, when set' }),
  AUTH_JWT_TENANT_CLAIM: z.string().min(1).default('tenant')
    .meta({ description: 'the claim that names a JWT\'s tenant (`*`: an operator)' }),
  AUTH_JWT_SCOPES_CLAIM: z.string().min(1).default('scope')
    .meta({ description: 'the claim with a JWT\'s scopes (space-separated, or an array)' }),
  AUTH_DISABLED: boolFromEnv(false)
    .meta({ description: '`true` serves without authentication on any address (every caller is an operator)' }),
  DOCS_ENABLED: boolFromEnv(true)
    .meta({ description: '`false` removes Swagger UI (`/docs`) and `/openapi.json`, `/openapi.yaml`' }),

  // Deadlines and bounded work.
  REQUEST_TIMEOUT_MS: intFromEnv(15_000, 100, 600_000).meta({ description:
    'a request\'s deadline once it has arrived: past it, its statements are cancelled and it answers 503' }),
  RATE_LIMIT_MAX: intFromEnv(0, 0, 1_000_000_000).meta({ description:
    'requests per credential (per address without authentication) in `RATE_LIMIT_WINDOW_MS`, then 429; `0`: no limit' }),
  RATE_LIMIT_WINDOW_MS: intFromEnv(60_000, 1, 86_400_000).meta({ description: 'the rate limit\'s window' }),
  LIST_MAX_BYTES: intFromEnv(4 * 1024 * 1024, 1024, 1024 * 1024 * 1024).meta({ description:
    'a page of states (or of checkpoints with snapshots, or of thread search\'s tuples, counted in stored bytes) ends ' +
    'before the item that would take its documents past this; an item larger alone is sent alone' }),

  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional()
    .meta({ description: '`postgres://…`; unset starts the embedded PostgreSQL (a development dependency: ' +
      'required in the container image)' }),
  DATABASE_POOL_MAX: intFromEnv(20, 1, 1000).meta({ description:
    'connections of each of the two pools, reads\' and writes\' (the service opens up to twice this, plus one for ' +
    'health probes); about two per core of the database machine is best (queries pipeline on busy connections): ' +
    'on the 2-core benchmark machine 4 gave 30–40% more saves/s than 20' }),
  // PostgreSQL behind a transaction-mode pooler (PgBouncer): no named prepared statements, and no
  // session settings sent at connect time (the pooler refuses them); set the timeouts on the role.
  DATABASE_PREPARE: boolFromEnv(true).meta({ description:
    '`false` behind a transaction-mode pooler (PgBouncer): no named prepared statements, and the three ' +
    'timeouts below are not sent at connect time (set them on the role: docs/operations.md)' }),
  DATABASE_STATEMENT_TIMEOUT_MS: intFromEnv(10_000, 0, 3_600_000)
    .meta({ description: 'PostgreSQL\'s `statement_timeout` for every session (`0`: none)' }),
  DATABASE_LOCK_TIMEOUT_MS: intFromEnv(2_000, 0, 3_600_000)
    .meta({ description: 'PostgreSQL\'s `lock_timeout`: a statement waiting longer for a lock fails, 503' }),
  DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: intFromEnv(30_000, 0, 3_600_000)
    .meta({ description: 'PostgreSQL\'s `idle_in_transaction_session_timeout`' }),
  DATABASE_CONNECT_TIMEOUT_S: intFromEnv(60, 0, 3600)
    .meta({ description: 'at boot, how long to wait for the database (retrying) before exiting' }),

  CHECKPOINT_RETENTION: intFromEnv(10, 0, 1_000_000)
    .meta({ description: 'checkpoints kept per workflow; `0` keeps all (threads keep all unless their own ' +
      '`max_checkpoints` says otherwise)' }),
  BODY_LIMIT_BYTES: intFromEnv(10 * 1024 * 1024, 1024, 1024 * 1024 * 1024).meta({ description: 'larger bodies get 413' }),
  // Connections: a client too slow to send its headers, or its whole request, gets a 408 and is dropped.
  HEADERS_TIMEOUT_MS: intFromEnv(10_000, 100, 600_000)
    .meta({ description: 'a request\'s headers must arrive within this, else 408 and the connection closes' }),
  REQUEST_BODY_TIMEOUT_MS: intFromEnv(30_000, 100, 3_600_000).meta({ description:
    'the whole request (headers and body) must arrive within this, else 408 and the connection closes; at least ' +
    '`HEADERS_TIMEOUT_MS`' }),
  // Exact origins a browser may call the API from; unset or empty: CORS off, no CORS headers at all.
  CORS_ORIGINS: z
    .string()
    .default('')
    .transform((s) => s.split(',').map((o) => o.trim()).filter(Boolean))
    .pipe(z.array(z.string().refine((o) => /^https?:/.test(o) && URL.canParse(o) && new URL(o).origin === o,
      'must be an origin: http(s)://host[:port], without a path or a trailing slash')))
    .meta({ description: 'comma-separated exact origins (`https://app.example.com`) allowed to call the API from a ' +
      'browser; unset: CORS off, no CORS headers' }),

  // Shutdown: on SIGTERM readiness answers 503 for this long while requests are still served, so
  // load balancers (a Kubernetes endpoint update) stop routing here before the listener closes.
  SHUTDOWN_DRAIN_S: intFromEnv(5, 0, 3600).meta({ description:
    'on SIGTERM, how long readiness answers 503 while requests are still served, before the listener closes and ' +
    'in-flight requests finish; longer than the load balancer takes to stop routing here (a second signal ends it)' }),
  // Operations: Prometheus metrics and OpenTelemetry traces.
  METRICS_ENABLED: boolFromEnv(true)
    .meta({ description: 'Prometheus metrics at `GET /metrics`; `false`: no route, nothing measured' }),
  METRICS_AUTH: boolFromEnv(false)
    .meta({ description: '`true`: `/metrics` needs a credential with the `metrics` scope' }),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ protocol: /^https?$/ }).optional().meta({ description:
    'OTLP/HTTP collector base URL (`http://collector:4318`; spans go to `…/v1/traces`): turns tracing on, a span ' +
    'per request (named by route template, child of an incoming W3C `traceparent`) and per SQL statement, and ' +
    '`trace_id` / `span_id` on the request\'s log lines; unset: no OpenTelemetry code is loaded. The exporter\'s own ' +
    '`OTEL_EXPORTER_OTLP_HEADERS` etc. apply. `/health/*` is not traced' }),
  OTEL_SERVICE_NAME: z.string().min(1).default('workflow-state-service')
    .meta({ description: '`service.name` of the spans (`service.version` is the package version)' }),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info')
    .meta({ description: 'pino level (`fatal` … `trace`, `silent`)' }),
  EMBEDDED_PG_DIR: z.string().min(1).default('./.data/postgres')
    .meta({ description: 'embedded PostgreSQL data directory (without `DATABASE_URL`)' }),
  EMBEDDED_PG_PORT: intFromEnv(54329, 1, 65535).meta({ description: 'embedded PostgreSQL port' }),
}).refine((c) => c.HEADERS_TIMEOUT_MS <= c.REQUEST_BODY_TIMEOUT_MS, {
  // Node refuses a headers timeout longer than the request's: the headers are part of the request.
  path: ['HEADERS_TIMEOUT_MS'],
  message: 'must not exceed REQUEST_BODY_TIMEOUT_MS',
});

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses the environment; throws a ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const cleaned = Object.fromEntries(
    Object.keys(configSchema.shape).map((k) => [k, env[k] === '' ? undefined : env[k]]),
  );
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
