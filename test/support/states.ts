import type { Sql, TxSql } from '../../src/db/client.js';
import { stateDocument } from '../../src/repositories/render.js';
import type { State } from '../../src/schemas/workflows.js';

/**
 * Inserts many states in one statement, each row as the service writes it (its document from the
 * service's renderer, the typed columns from the same values): faster than that many PUTs when a
 * test or the benchmark needs thousands of states.
 */
export async function insertStates(sql: Sql | TxSql, states: State[]): Promise<void> {
  await sql`
    INSERT INTO workflow_states (id, workflow_id, status, user_id, updated_at, version, doc)
    SELECT * FROM unnest(${states.map((s) => s.id)}::uuid[], ${states.map((s) => s.workflow_id)}::text[],
      ${states.map((s) => s.status)}::text[], ${states.map((s) => s.user_id) as string[]}::text[],
      ${states.map((s) => s.updated_at)}::timestamptz[], ${states.map((s) => s.version)}::int[],
      ${states.map(stateDocument)}::text[]::json[])`;
}
