import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import postgres from 'postgres';
import { type AppDeps, buildApp } from '../src/app.js';
import { type Config, loadConfig } from '../src/config.js';
import { createSql, sessionTimeouts, type Sql } from '../src/db/client.js';
import { loadMigrations, migrate } from '../src/db/migrate.js';
import { provideTestPostgres } from './support/database.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

let server: Promise<{ url: string; stop(): Promise<void> }> | undefined;

/** The cluster for this test file: the runner's (TEST_DATABASE_URL), or one started for this file. */
function cluster(t: Teardown) {
  if (!server) {
    server = provideTestPostgres();
    const started = server;
    t.teardown(async () => (await started).stop());
  }
  return server;
}

/**
 * Named prepared statements in the tests' own pools: DATABASE_PREPARE from the environment, as the
 * service reads it (false when `npm run test:system` runs the tests through PgBouncer).
 */
export const prepare = loadConfig({ DATABASE_PREPARE: process.env.DATABASE_PREPARE }).DATABASE_PREPARE;

export interface DatabaseOptions {
  /** Create it with an ICU collation (a language's order, not the bytes' order of the C locale). */
  icuLocale?: string;
  /**
   * Defaults of its sessions (ALTER DATABASE ... SET), for pools that cannot send them when they
   * connect: behind a transaction-mode pooler they come from the database or role, not the client.
   */
  settings?: Record<string, string>;
}

/**
 * A fresh, empty database for one test file, dropped at the end. It is made and dropped on the
 * cluster directly; the URL returned goes through TEST_POOLER_URL (a PgBouncer in front of that
 * cluster, from `npm run test:system`) when set, so the app and the test's own clients use the pooler.
 */
export async function freshDatabase(t: Teardown, opts: DatabaseOptions = {}): Promise<string> {
  const { url } = await cluster(t);
  const name = `wss_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  if (opts.icuLocale) {
    await admin`CREATE DATABASE ${admin(name)} TEMPLATE template0 ENCODING 'UTF8'
      LOCALE_PROVIDER icu ICU_LOCALE ${admin.unsafe(`'${opts.icuLocale.replace(/'/g, "''")}'`)} LOCALE 'C'`;
  } else {
    await admin`CREATE DATABASE ${admin(name)}`;
  }
  for (const [setting, value] of Object.entries(opts.settings ?? {})) {
    await admin`ALTER DATABASE ${admin(name)} SET ${admin(setting)} = ${admin.unsafe(String(Number(value)))}`;
  }
  t.teardown(async () => {
    await admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`;
    await admin.end();
  });
  const u = new URL(process.env.TEST_POOLER_URL || url);
  u.pathname = `/${name}`;
  return u.toString();
}

export interface TestApp {
  app: FastifyInstance;
  sql: Sql;
  url: string;
  config: Config;
}

/** The app on a fresh, migrated database, as server.ts builds it but without listening. */
export async function buildTestApp(
  t: Teardown,
  env: Record<string, string> = {},
  db: DatabaseOptions = {},
  deps: Pick<AppDeps, 'logger' | 'tracing'> = {},
): Promise<TestApp> {
  const base = { LOG_LEVEL: 'silent', DATABASE_POOL_MAX: '10', DATABASE_PREPARE: String(prepare), ...env };
  const pooled = !loadConfig(base).DATABASE_PREPARE;
  // Without prepare (a transaction pooler) the pools send no settings: the database has them, as a
  // role would in production (README, Behind PgBouncer).
  const url = await freshDatabase(t, { ...db, settings: pooled ? sessionTimeouts(loadConfig(base)) : undefined });
  const config = loadConfig({ ...base, DATABASE_URL: url });
  const settings = sessionTimeouts(config);
  const sql = createSql(url, { max: config.DATABASE_POOL_MAX, settings, prepare: config.DATABASE_PREPARE });
  // Writes on a pool of their own, as server.ts makes them.
  const writeSql = createSql(url, { max: config.DATABASE_POOL_MAX, applicationName: 'workflow-state-service/writes',
    settings, prepare: config.DATABASE_PREPARE });
  // Ended even when buildApp throws: an idle connection left open (through a pooler, which keeps it
  // when the database is dropped) holds the test process for postgres.js's idle_timeout.
  let app: FastifyInstance | undefined;
  t.teardown(async () => {
    await app?.close();
    await Promise.all([sql.end({ timeout: 5 }), writeSql.end({ timeout: 5 })]);
  });
  const migrations = await loadMigrations();
  await migrate(sql, migrations);
  app = await buildApp(config, { sql, writeSql, schemaVersion: migrations.at(-1)!.version, ...deps });
  return { app, sql, url, config };
}

export const json = (body: unknown) => ({
  headers: { 'content-type': 'application/json' },
  payload: JSON.stringify(body),
});

/** A minimal valid state body. */
export const stateBody = (over: Record<string, unknown> = {}) => ({
  workflow_id: 'wf-1',
  workflow_name: 'Test workflow',
  status: 'running',
  ...over,
});
