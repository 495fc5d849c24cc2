import { createRequire } from 'node:module';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerAuth, type Authenticate } from './auth.js';
import type { Sql } from './db/client.js';
import type { StatementObserver } from './db/observe.js';
import { SERVICE_VERSION } from './version.js';

const require = createRequire(import.meta.url);
type PoolStats = ReturnType<Sql['stats']>;
type Collector = (registry: Registry, config: { eventLoopMonitoringPrecision: number }) => void;

/**
 * prom-client's default process metrics (CPU, memory, heap, handles, event-loop lag, version)
 * without its GC histogram: that one observes every collection through a PerformanceObserver,
 * which cost a GET a fifth of its throughput in `npm run bench` (docs/performance.md). GC pauses
 * still show in the event-loop lag. prom-client offers no option to leave one out, so each of its
 * collectors (lib/metrics, with the version pinned) is registered but that one.
 */
function collectProcessMetrics(registry: Registry) {
  for (const name of collectDefaultMetrics.metricsList.filter((m) => m !== 'gc')) {
    (require(`prom-client/lib/metrics/${name}`) as Collector)(registry, { eventLoopMonitoringPrecision: 10 });
  }
}

/** Seconds: from a cached load (under a millisecond) to the default request deadline (15 s). */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15];

/** The service's Prometheus series, in a registry of their own (GET /metrics). */
export class Metrics {
  readonly registry = new Registry();
  readonly requestDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from a request\'s arrival to its answer, by route template, method and status class.',
    labelNames: ['route', 'method', 'status_class'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly inFlight = new Gauge({
    name: 'http_requests_in_flight',
    help: 'Requests received and not yet answered (or abandoned by their client).',
    registers: [this.registry],
  });
  readonly queryDuration = new Histogram({
    name: 'db_query_duration_seconds',
    help: 'Time from handing a write\'s statement to its pool (the wait for a connection included) to its result, ' +
      'by pool, first SQL keyword and outcome (ok, error).',
    labelNames: ['pool', 'operation', 'outcome'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly statesWritten = new Counter({
    name: 'workflow_states_written_total',
    help: 'States written, by operation: save (PUT), patch, step (a step PUT), restore (in place), fork.',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });
  readonly checkpointsWritten = new Counter({
    name: 'workflow_checkpoints_written_total',
    help: 'Checkpoints created (a retry of the same checkpoint is not counted again).',
    registers: [this.registry],
  });
  readonly threadCheckpointsWritten = new Counter({
    name: 'thread_checkpoints_written_total',
    help: 'Thread checkpoints stored (LangGraph puts; a repeat of the same checkpoint is not counted again).',
    registers: [this.registry],
  });
  readonly restores = new Counter({
    name: 'workflow_checkpoint_restores_total',
    help: 'Restores from a checkpoint, by mode: apply (in place), fork, preview.',
    labelNames: ['mode'] as const,
    registers: [this.registry],
  });
  readonly purgedRows = new Counter({
    name: 'workflow_purged_rows_total',
    help: 'Rows deleted by purge and prune requests: workflow_states, checkpoints; threads (past their TTL), ' +
      'thread_checkpoints (pruned to max_checkpoints).',
    labelNames: ['table'] as const,
    registers: [this.registry],
  });

  /**
   * @param pools the service's PostgreSQL pools by name (reads, writes, health)
   * @param schemaVersion the schema version this build migrated the database to
   */
  constructor(pools: Record<string, Sql>, schemaVersion: number) {
    collectProcessMetrics(this.registry);
    // Each pool's counts, read from postgres.js when scraped.
    const entries = Object.entries(pools);
    const poolGauge = (name: string, help: string, read: (s: PoolStats) => number) => new Gauge({
      name, help, labelNames: ['pool'] as const, registers: [this.registry],
      collect() {
        for (const [pool, sql] of entries) this.set({ pool }, read(sql.stats()));
      },
    });
    new Gauge({
      name: 'db_pool_connections',
      help: 'Connections of each PostgreSQL pool by state: idle, busy (running statements), reserved (in a transaction), connecting.',
      labelNames: ['pool', 'state'] as const,
      registers: [this.registry],
      collect() {
        for (const [pool, sql] of entries) {
          const s = sql.stats();
          for (const state of ['idle', 'busy', 'reserved', 'connecting'] as const) this.set({ pool, state }, s[state]);
        }
      },
    });
    poolGauge('db_pool_max_connections', 'The most connections each PostgreSQL pool opens.', (s) => s.max);
    poolGauge('db_pool_waiting_queries', 'Statements waiting for a connection of each PostgreSQL pool.', (s) => s.waiting);
    new Gauge({
      name: 'workflow_state_schema_version',
      help: 'The database schema version this process runs on (the last migration applied at boot).',
      registers: [this.registry],
    }).set(schemaVersion);
    new Gauge({
      name: 'workflow_state_service_info',
      help: 'The service\'s version, as a label; the value is always 1.',
      labelNames: ['version'] as const,
      registers: [this.registry],
    }).set({ version: SERVICE_VERSION }, 1);
  }

  /** For observedSql: times every statement of the pool named `pool`. */
  statementTimer(pool: string): StatementObserver {
    const { queryDuration } = this;
    return ({ operation }) => {
      const started = performance.now();
      return (err) => queryDuration.observe({ pool, operation: operation ?? 'other', outcome: err === undefined ? 'ok' : 'error' },
        (performance.now() - started) / 1000);
    };
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The service's metrics, or undefined when METRICS_ENABLED=false. */
    metrics: Metrics | undefined;
  }
}

/**
 * Measures every request (by route template: ids never become labels) and serves GET /metrics,
 * behind a credential with the `metrics` scope when `requireCredential` is set.
 */
export async function registerMetrics(app: FastifyInstance, metrics: Metrics, opts: {
  requireCredential: boolean;
  authenticate: Authenticate | undefined;
}) {
  const { requestDuration, inFlight } = metrics;
  app.addHook('onRequest', (req: FastifyRequest, reply: FastifyReply, done: () => void) => {
    inFlight.inc();
    // 'close' comes for every answer and every abandoned request; onResponse misses the latter.
    reply.raw.once('close', () => inFlight.dec());
    done();
  });
  app.addHook('onResponse', (req: FastifyRequest, reply: FastifyReply, done: () => void) => {
    requestDuration.observe({
      route: req.routeOptions.url ?? 'unmatched',
      method: req.method,
      status_class: `${Math.floor(reply.statusCode / 100)}xx`,
    }, reply.elapsedTime / 1000);
    done();
  });

  await app.register(async (scope) => {
    if (opts.requireCredential) registerAuth(scope, opts.authenticate);
    scope.get('/metrics', {
      schema: { hide: true },
      config: { scope: 'metrics' },
    }, async (_req, reply) => {
      const body = await metrics.registry.metrics();
      return reply.type(metrics.registry.contentType).send(body);
    });
  });
}
