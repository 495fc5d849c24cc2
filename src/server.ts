import type { FastifyBaseLogger } from 'fastify';
import { buildApp } from './app.js';
import { authenticatorFor, checkExposure } from './auth.js';
import { ConfigError, loadConfig } from './config.js';
import { createSql, sessionTimeouts, type Sql } from './db/client.js';
import { EmbeddedPostgresError, startEmbeddedPostgres, type EmbeddedPostgres } from './db/embedded.js';
import { loadMigrations, migrate, MigrationError } from './db/migrate.js';
import { fromDatabaseError } from './errors.js';
import { createLogger } from './logger.js';
import type { Logger } from 'pino';

async function main() {
  let config;
  let exposure;
  let authenticate;
  try {
    config = loadConfig();
    exposure = checkExposure(config);
    // Before anything starts: a bad token list stops the process with the entry and field it names.
    authenticate = authenticatorFor(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const logger = createLogger(config.LOG_LEVEL);
  if (exposure) logger.warn(exposure);
  // Imported only when set: without an endpoint no OpenTelemetry module is even loaded.
  const tracing = config.OTEL_EXPORTER_OTLP_ENDPOINT
    ? (await import('./tracing.js')).startTracing(config)
    : undefined;
  if (tracing) {
    logger.info({ endpoint: new URL(config.OTEL_EXPORTER_OTLP_ENDPOINT!).origin, service_name: config.OTEL_SERVICE_NAME },
      'tracing: spans sent over OTLP/HTTP');
  }

  let embedded: EmbeddedPostgres | undefined;
  let databaseUrl = config.DATABASE_URL;
  if (!databaseUrl) {
    logger.info({ dir: config.EMBEDDED_PG_DIR, port: config.EMBEDDED_PG_PORT }, 'no DATABASE_URL: starting embedded PostgreSQL');
    try {
      embedded = await startEmbeddedPostgres({
        dataDir: config.EMBEDDED_PG_DIR,
        port: config.EMBEDDED_PG_PORT,
        database: 'workflow_state',
        onLog: (line) => logger.debug({ component: 'embedded-postgres' }, line),
      });
    } catch (err) {
      // A cause the operator can fix is one line naming the fix; anything else is a bug, with its stack.
      if (!(err instanceof EmbeddedPostgresError)) throw err;
      logger.fatal(err.message);
      process.exit(1);
    }
    databaseUrl = embedded.url;
    logger.info({ data_dir: embedded.dataDir, port: embedded.port, url: embedded.url.replace(/:[^:@/]+@/, ':***@') },
      'embedded PostgreSQL is running');
  }

  const settings = sessionTimeouts(config);
  const prepare = config.DATABASE_PREPARE;
  const sql = createSql(databaseUrl, { max: config.DATABASE_POOL_MAX, settings, prepare });
  const writeSql = createSql(databaseUrl, { max: config.DATABASE_POOL_MAX, applicationName: 'workflow-state-service/writes', settings, prepare });
  const probeSql = createSql(databaseUrl, { max: 1, applicationName: 'workflow-state-service/health', settings, prepare });
  const pools = [sql, writeSql, probeSql];
  const migrations = await loadMigrations();
  try {
    await waitForDatabase(sql, config.DATABASE_CONNECT_TIMEOUT_S, logger);
    if (!prepare) await warnOfUnsetTimeouts(sql, settings, logger);
    const { applied, schemaVersion } = await migrate(sql, migrations);
    logger.info({ applied, schema_version: schemaVersion }, applied.length ? 'migrations applied' : 'schema up to date');
  } catch (err) {
    // A cause the operator can fix is one line naming the fix; anything else is a bug, with its stack.
    if (err instanceof MigrationError || err instanceof DatabaseUnreachable) logger.fatal(err.message);
    else logger.fatal({ err }, 'migrations failed');
    await Promise.all(pools.map((p) => p.end({ timeout: 1 })));
    await embedded?.stop();
    process.exit(1);
  }

  const app = await buildApp(config, { sql, writeSql, probeSql, authenticate, schemaVersion: migrations.at(-1)?.version ?? 0, logger: logger as FastifyBaseLogger, tracing });
  await app.listen({ port: config.PORT, host: config.HOST });

  // On the first signal, readiness answers 503 for SHUTDOWN_DRAIN_S while requests are still served
  // (load balancers stop routing here), then the listener closes once in-flight requests finish.
  // A second signal cuts the drain short (Ctrl-C twice).
  let endDrain: (() => void) | undefined;
  const shutdown = async (signal: string) => {
    if (endDrain) return endDrain();
    app.lifecycle.draining = true;
    logger.info({ signal, drain_s: config.SHUTDOWN_DRAIN_S }, 'draining: readiness now 503, still serving until the drain ends');
    await new Promise<void>((r) => {
      const timer = setTimeout(r, config.SHUTDOWN_DRAIN_S * 1000);
      endDrain = () => { clearTimeout(timer); r(); };
    });
    logger.info('closing the listener, finishing in-flight requests');
    await app.close(); // waits for in-flight requests
    await Promise.all(pools.map((p) => p.end({ timeout: 5 })));
    await tracing?.shutdown().catch((err) => logger.warn({ err }, 'tracing: the last spans were not sent'));
    await embedded?.stop();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

class DatabaseUnreachable extends Error {}

/**
 * Without DATABASE_PREPARE the sessions' timeouts are not sent (a transaction pooler refuses them):
 * they are whatever the role or database gives the server connections. One warning when they are
 * not the configured ones, naming the statements that make them so.
 */
async function warnOfUnsetTimeouts(sql: Sql, wanted: Record<string, string>, logger: Logger) {
  // pg_settings gives these in milliseconds, as the configuration does.
  const rows = await sql<{ name: string; setting: string; role: string }[]>`
    SELECT name, setting, quote_ident(current_user) AS role FROM pg_settings WHERE name IN ${sql(Object.keys(wanted))}`;
  const differ = Object.keys(wanted).flatMap((name) => rows.filter((r) => r.name === name && r.setting !== wanted[name]));
  if (!differ.length) return;
  const ms = (v: string) => (Number(v) % 1000 === 0 ? `${Number(v) / 1000}s` : `${v}ms`);
  const fix = differ.map((r) => `ALTER ROLE ${r.role} SET ${r.name} = '${ms(wanted[r.name]!)}';`).join(' ');
  logger.warn({ effective: Object.fromEntries(differ.map((r) => [r.name, r.setting])), wanted },
    `DATABASE_PREPARE=false: the sessions' timeouts are not sent at connect time and PostgreSQL's differ from the ` +
    `configured ones; set them on the role (new server connections pick them up): ${fix}`);
}

/**
 * Waits for the database at boot, trying again with a growing pause (0.25 s to 5 s) for up to
 * `timeoutS` seconds, so a service started before its database (compose, a rollout) comes up with it.
 */
async function waitForDatabase(sql: Sql, timeoutS: number, logger: Logger) {
  const deadline = Date.now() + timeoutS * 1000;
  for (let pause = 250; ; pause = Math.min(pause * 2, 5000)) {
    try {
      await sql`SELECT 1`;
      return;
    } catch (err) {
      const reason = (err as Error).message || (err as { code?: string }).code || String(err);
      // PgBouncer refuses a session setting sent at connect time with 08P01 (which is otherwise
      // transient): a configuration that waiting does not fix. Its message is all that tells them apart.
      if (/unsupported startup parameter/.test(reason)) {
        throw new DatabaseUnreachable(`The database refused the session settings sent at connect time (${reason}): ` +
          'behind a transaction-mode pooler (PgBouncer) set DATABASE_PREPARE=false, and the timeouts on the role.');
      }
      if (fromDatabaseError(err)?.status !== 503) {
        throw new DatabaseUnreachable(`The database refused the service (${reason}): check DATABASE_URL.`);
      }
      if (Date.now() + pause > deadline) {
        throw new DatabaseUnreachable(`The database did not answer within DATABASE_CONNECT_TIMEOUT_S=${timeoutS} s ` +
          `(${reason}): check DATABASE_URL and that PostgreSQL is running.`);
      }
      logger.warn({ reason, retry_in_ms: pause }, 'database not reachable yet; retrying');
      await new Promise((r) => setTimeout(r, pause));
    }
  }
}

main().catch((err) => {
  process.stderr.write(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
