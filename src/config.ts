import { z } from 'zod';

const intFromEnv = (def: number, min: number, max: number) =>
  z.coerce.number().int().min(min).max(max).default(def);
const boolFromEnv = (def: boolean) =>
  z.enum(['true', 'false', '1', '0']).transform((s) => s === 'true' || s === '1').default(def);

/** The whole environment the service reads, parsed once at start-up. */
export const configSchema = z.object({
  PORT: intFromEnv(8080, 0, 65535),
  // Loopback unless told otherwise: a service without credentials must not be reachable from a network.
  HOST: z.string().min(1).default('127.0.0.1'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  DATABASE_POOL_MAX: intFromEnv(20, 1, 1000),
  CHECKPOINT_RETENTION: intFromEnv(10, 0, 1_000_000),
  BODY_LIMIT_BYTES: intFromEnv(10 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
  // Connections: a client too slow to send its headers, or its whole request, gets a 408 and is dropped.
  HEADERS_TIMEOUT_MS: intFromEnv(10_000, 100, 600_000),
  REQUEST_BODY_TIMEOUT_MS: intFromEnv(30_000, 100, 3_600_000),
  // Exact origins a browser may call the API from; unset or empty: CORS off, no CORS headers at all.
  CORS_ORIGINS: z
    .string()
    .default('')
    .transform((s) => s.split(',').map((o) => o.trim()).filter(Boolean))
    .pipe(z.array(z.string().refine((o) => /^https?:/.test(o) && URL.canParse(o) && new URL(o).origin === o,
      'must be an origin: http(s)://host[:port], without a path or a trailing slash'))),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  EMBEDDED_PG_DIR: z.string().min(1).default('./.data/postgres'),
  EMBEDDED_PG_PORT: intFromEnv(54329, 1, 65535),

  // Authentication (src/auth.ts): static bearer tokens, JWTs verified against a JWKS, or none.
  AUTH_TOKENS: z.string().optional(),
  AUTH_TOKENS_FILE: z.string().min(1).optional(),
  AUTH_JWKS_URL: z.url({ protocol: /^https?$/ }).optional(),
  AUTH_JWT_ISSUER: z.string().min(1).optional(),
  AUTH_JWT_AUDIENCE: z.string().min(1).optional(),
  AUTH_JWT_TENANT_CLAIM: z.string().min(1).default('tenant'),
  AUTH_JWT_SCOPES_CLAIM: z.string().min(1).default('scope'),
  AUTH_DISABLED: boolFromEnv(false),
  DOCS_ENABLED: boolFromEnv(true),

  // Deadlines: every request, every PostgreSQL session, the pool, the boot.
  REQUEST_TIMEOUT_MS: intFromEnv(15_000, 100, 600_000),
  DATABASE_STATEMENT_TIMEOUT_MS: intFromEnv(10_000, 0, 3_600_000),
  DATABASE_LOCK_TIMEOUT_MS: intFromEnv(2_000, 0, 3_600_000),
  DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: intFromEnv(30_000, 0, 3_600_000),
  DATABASE_CONNECT_TIMEOUT_S: intFromEnv(60, 0, 3600),

  // Bounded work.
  LIST_MAX_BYTES: intFromEnv(4 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
  RATE_LIMIT_MAX: intFromEnv(0, 0, 1_000_000_000),
  RATE_LIMIT_WINDOW_MS: intFromEnv(60_000, 1, 86_400_000),

  // PostgreSQL behind a transaction-mode pooler (PgBouncer): no named prepared statements, and no
  // session settings sent at connect time (the pooler refuses them); set the timeouts on the role.
  DATABASE_PREPARE: boolFromEnv(true),

  // Shutdown: on SIGTERM readiness answers 503 for this long while requests are still served, so
  // load balancers (a Kubernetes endpoint update) stop routing here before the listener closes.
  SHUTDOWN_DRAIN_S: intFromEnv(5, 0, 3600),

  // Operations: Prometheus metrics at /metrics, open unless METRICS_AUTH requires the `metrics` scope.
  METRICS_ENABLED: boolFromEnv(true),
  METRICS_AUTH: boolFromEnv(false),
  // Traces: OpenTelemetry over OTLP/HTTP when an endpoint is set; nothing starts otherwise.
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  OTEL_SERVICE_NAME: z.string().min(1).default('workflow-state-service'),
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
