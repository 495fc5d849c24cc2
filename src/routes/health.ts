import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Sql } from '../db/client.js';
import { appliedSchemaVersion } from '../db/migrate.js';
import { RequestWork } from '../db/work.js';
import { answer } from '../openapi.js';
import { problemResponses } from '../schemas/common.js';
import { SERVICE_VERSION } from '../version.js';

const CHECK_TIMEOUT_MS = 2000;

const Check = z.object({ status: z.enum(['ok', 'failing']), detail: z.string().optional() });
const readyChecks = { accepting_requests: { status: 'ok' }, database: { status: 'ok' }, migrations: { status: 'ok' } };
const Readiness = z
  .object({
    status: z.enum(['ok', 'unavailable']),
    checks: z.object({ accepting_requests: Check, database: Check, migrations: Check }),
  })
  .meta({ id: 'Readiness', examples: [{ status: 'ok', checks: readyChecks }] });
const HealthDetails = Readiness.extend({
  database: z.object({ latency_ms: z.number().nullable(), pool_max: z.int() }),
  schema: z.object({ expected_version: z.int(), applied_version: z.int().nullable() }),
  service: z.object({ version: z.string(), uptime_s: z.number() }),
}).meta({
  id: 'HealthDetails',
  examples: [{
    status: 'ok',
    checks: readyChecks,
    database: { latency_ms: 0.42, pool_max: 10 },
    schema: { expected_version: 4, applied_version: 4 },
    service: { version: SERVICE_VERSION, uptime_s: 3600 },
  }],
});
const Live = z.object({ status: z.literal('ok') }).meta({ id: 'Liveness', examples: [{ status: 'ok' }] });

/**
 * One bounded probe: the schema version, and a row of the state table, so that a lock on the table
 * (a LOCK TABLE, a long migration) fails readiness. Cancelled when it takes too long, and given up
 * a second later even if PostgreSQL does not answer the cancel (a frozen server, a partition).
 */
async function probeDatabase(sql: Sql): Promise<number> {
  const work = new RequestWork(CHECK_TIMEOUT_MS);
  const silence = new Promise<never>((_, reject) => work.start(() => reject(new Error('no answer'))));
  const db = work.track(sql);
  const probe = async () => {
    const applied = await appliedSchemaVersion(db);
    if (applied > 0) await db`SELECT 1 FROM workflow_states LIMIT 1`;
    return applied;
  };
  try {
    return await Promise.race([probe(), silence]);
  } catch (err) {
    throw work.expired ? new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`) : err;
  } finally {
    work.finish();
  }
}

export async function healthRoutes(fastify: FastifyInstance, opts: { probeSql: Sql }) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const { probeSql } = opts;

  async function probe() {
    const started = performance.now();
    let applied: number | null = null;
    let dbError: string | undefined;
    try {
      applied = await probeDatabase(probeSql);
    } catch (err) {
      dbError = (err as Error).message || 'unreachable';
    }
    const latency = dbError ? null : Math.round((performance.now() - started) * 100) / 100;
    const migrated = applied !== null && applied >= app.schemaVersion;
    const checks = {
      accepting_requests: app.lifecycle.draining
        ? { status: 'failing' as const, detail: 'shutting down' }
        : { status: 'ok' as const },
      database: dbError ? { status: 'failing' as const, detail: 'database unreachable' } : { status: 'ok' as const },
      migrations: migrated
        ? { status: 'ok' as const }
        : { status: 'failing' as const, detail: `schema version ${applied ?? 'unknown'}, need ${app.schemaVersion}` },
    };
    const ok = Object.values(checks).every((c) => c.status === 'ok');
    if (dbError) app.log.warn({ err: dbError }, 'health check: database failing');
    return { ok, checks, latency, applied };
  }

  app.get('/health/live', {
    schema: {
      operationId: 'liveness',
      tags: ['health'],
      summary: 'The process is up (no database call)',
      description: 'For a liveness probe: answers as long as the process does, whatever the database\'s state.',
      security: [],
      response: { 200: answer('The process is up', Live), ...problemResponses(400) },
    },
    logLevel: 'warn',
  }, async () => ({ status: 'ok' as const }));

  app.get('/health/ready', {
    schema: {
      operationId: 'readiness',
      tags: ['health'],
      summary: 'Ready to serve: not draining, database reachable, migrations applied',
      description: 'For a readiness probe: a bounded query of the state table on a connection of its own; 503 while ' +
        'shutting down, while the database does not answer within 2 s, or before the migrations are applied.',
      security: [],
      response: {
        200: answer('Ready', Readiness),
        503: answer('Not ready: the failing check says why', Readiness, ['retry-after']),
        ...problemResponses(400),
      },
    },
    logLevel: 'warn',
  }, async (_req, reply) => {
    const r = await probe();
    if (!r.ok) reply.code(503).header('retry-after', '5');
    return { status: r.ok ? ('ok' as const) : ('unavailable' as const), checks: r.checks };
  });

  app.get('/health', {
    schema: {
      operationId: 'health',
      tags: ['health'],
      summary: 'Details: database latency, pool, schema version, service version, uptime',
      description: 'For people: the readiness checks with the numbers behind them.',
      security: [],
      response: {
        200: answer('Ready, with details', HealthDetails),
        503: answer('Not ready, with details', HealthDetails, ['retry-after']),
        ...problemResponses(400),
      },
    },
    logLevel: 'warn',
  }, async (_req, reply) => {
    const r = await probe();
    if (!r.ok) reply.code(503).header('retry-after', '5');
    return {
      status: r.ok ? ('ok' as const) : ('unavailable' as const),
      checks: r.checks,
      database: { latency_ms: r.latency, pool_max: app.config.DATABASE_POOL_MAX },
      schema: { expected_version: app.schemaVersion, applied_version: r.applied },
      service: { version: SERVICE_VERSION, uptime_s: Math.round((Date.now() - app.lifecycle.startedAt) / 1000) },
    };
  });
}
