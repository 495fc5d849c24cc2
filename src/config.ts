import { z } from 'zod';

const intFromEnv = (def: number, min: number, max: number) =>
  z.coerce.number().int().min(min).max(max).default(def);

/** The whole environment the service reads, parsed once at start-up. */
export const configSchema = z.object({
  PORT: intFromEnv(8080, 0, 65535),
  HOST: z.string().min(1).default('0.0.0.0'),
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
