import postgres from 'postgres';
import type { Config } from '../config.js';
import { workOf } from './work.js';

export type Sql = postgres.Sql;
export type TxSql = postgres.TransactionSql;

export interface PoolOptions {
  max: number;
  /** Seconds to wait for a connection before the request fails with 503. */
  connectTimeout?: number;
  /** Application name shown in pg_stat_activity. */
  applicationName?: string;
  /** The sessions' search_path (the benchmark points its seed baseline at the seed's own tables). */
  searchPath?: string;
  /** Settings of every session (sessionTimeouts). */
  settings?: Record<string, string>;
  /**
   * Named prepared statements (default true). False for a transaction-mode pooler (PgBouncer),
   * which gives each transaction any server connection: neither prepared statements nor settings
   * sent at connect time survive that, so none are sent.
   */
  prepare?: boolean;
}

/** PostgreSQL's own bounds for every session: a statement, a wait for a lock, an idle transaction (0: none). */
export const sessionTimeouts = (c: Config): Record<string, string> => ({
  statement_timeout: String(c.DATABASE_STATEMENT_TIMEOUT_MS),
  lock_timeout: String(c.DATABASE_LOCK_TIMEOUT_MS),
  idle_in_transaction_session_timeout: String(c.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS),
});

/**
 * One pool per process; every session runs in UTC so timestamps never depend on the server's zone.
 * A connection that cannot be made fails within 2 s, and one that failed is tried again 0.2 s later
 * when a statement needs it: postgres.js's default backoff grows with every failure across the pool,
 * up to 20 s, so after an outage a statement waited that long for the database that had come back.
 */
export function createSql(url: string, opts: PoolOptions): Sql {
  return postgres(url, {
    max: opts.max,
    connect_timeout: opts.connectTimeout ?? 2,
    backoff: () => 0.2,
    idle_timeout: 60,
    max_lifetime: 60 * 30,
    prepare: opts.prepare ?? true,
    onnotice: () => {},
    types: {
      // Timestamps stay strings both ways: a JS Date would drop the microseconds PostgreSQL keeps.
      timestamptz: {
        to: 1184,
        from: [1082, 1114, 1184],
        serialize: (x: unknown) => (x instanceof Date ? x.toISOString() : String(x)),
        parse: (x: string) => x,
      },
    },
    connection: {
      application_name: opts.applicationName ?? 'workflow-state-service',
      TimeZone: 'UTC',
      ...(opts.prepare === false ? {} : opts.settings),
      ...(opts.searchPath ? { search_path: opts.searchPath } : {}),
    },
  });
}

/** SQLSTATEs with which PostgreSQL aborts a transaction that may well succeed when run again. */
const RETRYABLE = new Set(['40001', '40P01']); // serialization_failure, deadlock_detected

/**
 * `sql.begin`, run again (up to `attempts` times in all) when PostgreSQL aborts it with a
 * serialization failure or a deadlock: nothing of an aborted transaction was written.
 */
export async function transaction<T>(sql: Sql, fn: (tx: TxSql) => Promise<T>, attempts = 3): Promise<T> {
  // The statements of a request's transaction are the request's too: its deadline cancels them.
  const work = workOf(sql);
  for (let attempt = 1; ; attempt++) {
    try {
      return (await sql.begin((tx) => fn(work ? work.track(tx) : tx))) as T;
    } catch (err) {
      if (attempt >= attempts || !RETRYABLE.has((err as { code?: string }).code ?? '')) throw err;
    }
  }
}
