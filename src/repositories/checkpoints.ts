import type { Sql, TxSql } from '../db/client.js';

type Db = Sql | TxSql;

export interface NewCheckpoint {
  id: string;
  stepId: string;
  /** JSON text of a client snapshot; undefined snapshots the stored state. */
  snapshot?: string;
}

export type CheckpointOutcome =
  | { kind: 'created' | 'replayed'; id: string; body: string }
  | { kind: 'conflict' | 'state-not-found' };

/**
 * Creates a checkpoint and prunes to the newest `retention` (0 keeps all), in the caller's
 * transaction. The state row is locked first so that the snapshot, the parent link and the
 * pruning all see the same, latest state and concurrent checkpoints form one chain.
 */
export async function createCheckpoint(
  tx: TxSql,
  stateId: string,
  c: NewCheckpoint,
  retention: number,
): Promise<CheckpointOutcome> {
  const locked = await tx`SELECT 1 FROM workflow_states WHERE id = ${stateId}::uuid FOR NO KEY UPDATE`;
  if (!locked.length) return { kind: 'state-not-found' };
  const snapshot = c.snapshot ?? null;
  const [made] = await tx<{ body: string }[]>`
    WITH parent AS (
      SELECT id FROM checkpoints WHERE workflow_state_id = ${stateId}::uuid
      ORDER BY timestamp DESC, seq DESC LIMIT 1),
    made AS (
      INSERT INTO checkpoints AS c (id, workflow_state_id, step_id, timestamp, snapshot, parent_id)
      SELECT ${c.id}::uuid, w.id, ${c.stepId}, clock_timestamp(),
             COALESCE(${snapshot}::text::jsonb, w.doc::jsonb), (SELECT id FROM parent)
      FROM workflow_states w WHERE w.id = ${stateId}::uuid
      ON CONFLICT (id) DO NOTHING
      RETURNING c),
    pruned AS (
      DELETE FROM checkpoints old
      WHERE ${retention}::int > 0 AND EXISTS (SELECT 1 FROM made)
        AND old.workflow_state_id = ${stateId}::uuid
        AND old.id NOT IN (
          SELECT id FROM checkpoints WHERE workflow_state_id = ${stateId}::uuid
          ORDER BY timestamp DESC, seq DESC LIMIT GREATEST(${retention}::int - 1, 0)))
    SELECT wss_checkpoint_json(m.c, true)::text AS body FROM made m`;
  if (made) return { kind: 'created', id: c.id, body: made.body };

  // The id exists: a retry of the same request is answered with what was stored, anything else conflicts.
  const [prior] = await tx<{ body: string; same: boolean }[]>`
    SELECT wss_checkpoint_json(c, true)::text AS body,
           (c.workflow_state_id = ${stateId}::uuid AND c.step_id = ${c.stepId}
            AND (${snapshot}::text::jsonb IS NULL OR c.snapshot = ${snapshot}::text::jsonb)) AS same
    FROM checkpoints c WHERE c.id = ${c.id}::uuid`;
  if (prior?.same) return { kind: 'replayed', id: c.id, body: prior.body };
  return { kind: 'conflict' };
}

export async function getCheckpoint(sql: Db, id: string): Promise<string | undefined> {
  const [row] = await sql<{ body: string }[]>`
    SELECT wss_checkpoint_json(c, true)::text AS body FROM checkpoints c WHERE c.id = ${id}::uuid`;
  return row?.body;
}

export async function latestCheckpoint(sql: Db, stateId: string): Promise<string | undefined> {
  const [row] = await sql<{ body: string }[]>`
    SELECT wss_checkpoint_json(c, true)::text AS body FROM checkpoints c
    WHERE c.workflow_state_id = ${stateId}::uuid
    ORDER BY c.timestamp DESC, c.seq DESC LIMIT 1`;
  return row?.body;
}

export interface CheckpointPage {
  items: string[];
  more: boolean;
  last?: { timestamp: string; seq: string };
  stateExists: boolean;
}

export async function listCheckpoints(
  sql: Db,
  stateId: string,
  opts: { limit: number; withSnapshot: boolean; after?: { timestamp: string; seq: string } },
): Promise<CheckpointPage> {
  const rows = await sql<{ body: string; ts: string; seq: string }[]>`
    SELECT wss_checkpoint_json(c, ${opts.withSnapshot})::text AS body, wss_ts(c.timestamp) AS ts, c.seq::text AS seq
    FROM checkpoints c
    WHERE c.workflow_state_id = ${stateId}::uuid
      ${opts.after ? sql`AND (c.timestamp, c.seq) < (${opts.after.timestamp}::timestamptz, ${opts.after.seq}::bigint)` : sql``}
    ORDER BY c.timestamp DESC, c.seq DESC
    LIMIT ${opts.limit + 1}`;
  const more = rows.length > opts.limit;
  const page = more ? rows.slice(0, opts.limit) : rows;
  const tail = page.at(-1);
  // Only an empty page needs to tell "no checkpoints" from "no such state".
  const stateExists = page.length > 0 || (await stateIsKnown(sql, stateId));
  return { items: page.map((r) => r.body), more, stateExists, last: tail && { timestamp: tail.ts, seq: tail.seq } };
}

async function stateIsKnown(sql: Db, stateId: string): Promise<boolean> {
  const rows = await sql`SELECT 1 FROM workflow_states WHERE id = ${stateId}::uuid`;
  return rows.length > 0;
}

/** The seed's cleanup_old_checkpoints: keeps the newest `keep`; undefined when the state is unknown. */
export async function pruneCheckpoints(sql: Db, stateId: string, keep: number): Promise<number | undefined> {
  const [row] = await sql<{ found: boolean; deleted: number }[]>`
    WITH st AS (SELECT id FROM workflow_states WHERE id = ${stateId}::uuid),
    gone AS (
      DELETE FROM checkpoints c
      WHERE c.workflow_state_id IN (SELECT id FROM st)
        AND c.id NOT IN (
          SELECT id FROM checkpoints WHERE workflow_state_id = ${stateId}::uuid
          ORDER BY timestamp DESC, seq DESC LIMIT ${keep})
      RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM st) AS found, (SELECT count(*)::int FROM gone) AS deleted`;
  return row!.found ? row!.deleted : undefined;
}

/** The checkpoint's state id and snapshot (parsed), for restore. */
export async function checkpointSnapshot(
  sql: Db,
  id: string,
): Promise<{ workflowStateId: string; snapshot: unknown } | undefined> {
  const [row] = await sql<{ workflow_state_id: string; snapshot: unknown }[]>`
    SELECT workflow_state_id::text, snapshot FROM checkpoints WHERE id = ${id}::uuid FOR KEY SHARE`;
  return row && { workflowStateId: row.workflow_state_id, snapshot: row.snapshot };
}

/** Timestamps rendered as stored ones are (UTC, Z, microseconds), in one query, for a preview. */
export async function renderTimestamps(sql: Db, values: (string | null)[]): Promise<(string | null)[]> {
  if (values.length === 0) return [];
  const rows = await sql<{ ts: string | null }[]>`
    SELECT wss_ts(v::timestamptz) AS ts FROM unnest(${values}::text[]) WITH ORDINALITY AS u(v, n) ORDER BY n`;
  return rows.map((r) => r.ts);
}
