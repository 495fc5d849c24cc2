/**
 * The seed's statement sequences (llm-orchestrator-state's PostgresStateStore), issued on the seed's
 * own tables (its schema, in schema `seed` of the benchmark's database) through the same client:
 * one statement per step on save, 1 + 2N queries to list N states. JSON values are bound as text
 * into its TEXT columns, as the seed binds serde_json strings.
 */
import type { Sql } from '../src/db/client.js';
import { ACTIVE_STATUSES } from '../src/schemas/common.js';

type Body = ReturnType<typeof import('./workload.js').stateBody>;

export async function seedSave(sql: Sql, id: string, s: Body): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`
      INSERT INTO workflow_states (id, workflow_id, workflow_name, status, user_id,
        started_at, updated_at, completed_at, context, error)
      VALUES (${id}::uuid, ${s.workflow_id}, ${s.workflow_name}, ${s.status}, ${s.user_id},
        ${s.started_at}::timestamptz, now(), ${s.completed_at}::timestamptz, ${JSON.stringify(s.context)}, ${s.error})
      ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at,
        completed_at = EXCLUDED.completed_at, context = EXCLUDED.context, error = EXCLUDED.error`;
    for (const [stepId, st] of Object.entries(s.steps)) {
      await tx`
        INSERT INTO step_states (workflow_state_id, step_id, status, started_at, completed_at, outputs, error, retry_count)
        VALUES (${id}::uuid, ${stepId}, ${st.status}, ${st.started_at}::timestamptz, ${st.completed_at}::timestamptz,
          ${JSON.stringify(st.outputs)}, ${st.error}, ${st.retry_count})
        ON CONFLICT (workflow_state_id, step_id) DO UPDATE SET status = EXCLUDED.status,
          started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at, outputs = EXCLUDED.outputs,
          error = EXCLUDED.error, retry_count = EXCLUDED.retry_count`;
    }
  });
}

export async function seedLoad(sql: Sql, id: string) {
  const [state] = await sql`
    SELECT id, workflow_id, workflow_name, status, user_id, started_at, updated_at, completed_at, context, error
    FROM workflow_states WHERE id = ${id}::uuid`;
  const steps = await sql`
    SELECT step_id, status, started_at, completed_at, outputs, error, retry_count
    FROM step_states WHERE workflow_state_id = ${id}::uuid`;
  return { ...state, steps };
}

export async function seedLoadByWorkflowId(sql: Sql, workflowId: string) {
  const [row] = await sql`
    SELECT id FROM workflow_states WHERE workflow_id = ${workflowId} ORDER BY updated_at DESC LIMIT 1`;
  return seedLoad(sql, row!.id);
}

/** list_active_workflows: one query for the ids, then 2 queries per state (optionally only the first `limit`). */
export async function seedListActive(sql: Sql, limit?: number) {
  const rows = await sql`
    SELECT id FROM workflow_states WHERE status = ANY(${[...ACTIVE_STATUSES]}::text[])
    ORDER BY updated_at DESC ${limit === undefined ? sql`` : sql`LIMIT ${limit}`}`;
  const out = [];
  for (const r of rows) out.push(await seedLoad(sql, r.id));
  return out;
}

/** What an orchestrator on the seed does to checkpoint: load the state, insert it, clean up to 10. */
export async function seedCheckpoint(sql: Sql, id: string, checkpointId: string, stepId: string) {
  const snapshot = await seedLoad(sql, id);
  await sql`
    INSERT INTO checkpoints (id, workflow_state_id, step_id, timestamp, snapshot)
    VALUES (${checkpointId}::uuid, ${id}::uuid, ${stepId}, now(), ${JSON.stringify(snapshot)})`;
  await sql`
    DELETE FROM checkpoints WHERE workflow_state_id = ${id}::uuid AND id NOT IN (
      SELECT id FROM checkpoints WHERE workflow_state_id = ${id}::uuid ORDER BY timestamp DESC LIMIT 10)`;
}

export async function seedLatestCheckpoint(sql: Sql, id: string) {
  const [row] = await sql`
    SELECT id, workflow_state_id, step_id, timestamp, snapshot FROM checkpoints
    WHERE workflow_state_id = ${id}::uuid ORDER BY timestamp DESC LIMIT 1`;
  return row;
}
