import type { PendingQuery, Row } from 'postgres';
import type { Sql, TxSql } from '../db/client.js';

/** What a write requires of the stored state, from If-Match / If-None-Match / a body version. */
export type WriteCondition =
  | { kind: 'any' } // no precondition: last write wins, as in the seed
  | { kind: 'exists' } // If-Match: *
  | { kind: 'absent' } // If-None-Match: *
  | { kind: 'version'; versions: number[] }; // If-Match: "3" (or a list)

export const ANY: WriteCondition = { kind: 'any' };

/** The tenant whose states a request sees, or null: an operator's request, which sees every tenant's. */
export type Tenant = string | null;

/** The states a request sees, and the tenant of the states it creates. */
export interface Tenancy {
  sees: Tenant;
  creates: string;
}

/** `AND <column> = <tenant>`, or nothing when every tenant's rows are seen. */
export const tenantIs = (db: Sql | TxSql, tenant: Tenant, column = 'tenant') =>
  tenant === null ? db`` : db`AND ${db(column)} = ${tenant}`;

/**
 * Deletes the rows of `table` that `where()` selects, `batchSize` at a time, so that no statement
 * holds many row locks for long (and rows another transaction holds are left for the next run);
 * answers how many. `where` makes a fresh fragment for each statement.
 */
export async function deleteInBatches(
  sql: Sql, table: 'workflow_states' | 'threads', where: () => PendingQuery<Row[]>, batchSize: number,
): Promise<number> {
  let deleted = 0;
  for (;;) {
    const rows = await sql`
      DELETE FROM ${sql(table)} WHERE id IN (
        SELECT id FROM ${sql(table)} WHERE ${where()} LIMIT ${batchSize} FOR UPDATE SKIP LOCKED)
      RETURNING id`;
    deleted += rows.length;
    if (rows.length < batchSize) return deleted;
  }
}
