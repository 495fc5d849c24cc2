import type { Sql, TxSql } from '../db/client.js';
import { nowTimestamp } from '../schemas/common.js';
import { type Tenant, tenantIs } from './conditions.js';
import { type Page, pageOf } from './pages.js';
import { type CheckpointFields, checkpointFields, renderCheckpoint } from './render.js';

type Db = Sql | TxSql;

// Every statement about one state's checkpoints names the state's id as a constant, for
// checkpoints.workflow_state_id and workflow_states.id alike: sharded by it with Citus, each runs
// on one shard (docs/scaling.md). Only lookups by a checkpoint's own id span the shards.

export interface NewCheckpoint {
  id: string;
  stepId: string;
  /** JSON text of a client snapshot; undefined snapshots the stored state. */
  snapshot?: string;
}

export type CheckpointOutcome =
  | { kind: 'created' | 'replayed'; id: string; body: Buffer }
  | { kind: 'conflict' | 'state-not-found' };

/** A checkpoint from its stored fields and snapshot; the fields are re-rendered, so one adopted from a seed database reads like any other. */
const fromRow = (doc: string, snapshot?: string | null) => renderCheckpoint(JSON.parse(doc) as CheckpointFields, snapshot);

/**
 * Creates a checkpoint and prunes to the newest `retention` (0 keeps all), in the caller's
 * transaction. The state row is locked first so that the snapshot, the parent link and the
 * pruning all see the same, latest state and concurrent checkpoints form one chain.
 */
export async function createCheckpoint(
  tx: TxSql,
  tenant: Tenant,
  stateId: string,
  c: NewCheckpoint,
  retention: number,
): Promise<CheckpointOutcome> {
  const [state] = await tx<{ doc: string | null }[]>`
    SELECT CASE WHEN ${c.snapshot === undefined} THEN doc::text END AS doc
    FROM workflow_states WHERE id = ${stateId}::uuid ${tenantIs(tx, tenant)} FOR NO KEY UPDATE`;
  if (!state) return { kind: 'state-not-found' };
  // A statement of its own, so its snapshot sees every checkpoint committed while the lock was awaited.
  const [parent] = await tx<{ id: string }[]>`
    SELECT id::text AS id FROM checkpoints WHERE workflow_state_id = ${stateId}::uuid ORDER BY seq DESC LIMIT 1`;
  const snapshot = c.snapshot ?? state.doc!;
  const fields = checkpointFields({
    id: c.id.toLowerCase(),
    workflow_state_id: stateId.toLowerCase(),
    step_id: c.stepId,
    timestamp: nowTimestamp(),
    parent_id: parent?.id ?? null,
  });
  const doc = JSON.stringify(fields);
  const made = await tx`
    WITH made AS (
      INSERT INTO checkpoints (id, workflow_state_id, doc, snapshot)
      VALUES (${c.id}::uuid, ${stateId}::uuid, ${doc}::text::json, ${snapshot}::text::json)
      ON CONFLICT (id) DO NOTHING
      RETURNING 1),
    pruned AS (
      DELETE FROM checkpoints old
      WHERE ${retention}::int > 0 AND EXISTS (SELECT 1 FROM made)
        AND old.workflow_state_id = ${stateId}::uuid
        AND old.seq <= (
          SELECT seq FROM checkpoints WHERE workflow_state_id = ${stateId}::uuid
          ORDER BY seq DESC OFFSET GREATEST(${retention}::int - 1, 0) LIMIT 1))
    SELECT 1 FROM made`;
  if (made.length) return { kind: 'created', id: c.id, body: renderCheckpoint(fields, snapshot) };

  // The id exists: a retry of the same request is answered with what was stored, anything else conflicts.
  const [prior] = await tx<{ doc: string; snapshot: string; same: boolean }[]>`
    SELECT c.doc::text AS doc, c.snapshot::text AS snapshot,
           (c.workflow_state_id = ${stateId}::uuid AND c.doc->>'step_id' = ${c.stepId}
            AND (${c.snapshot ?? null}::text::jsonb IS NULL OR c.snapshot::jsonb = ${c.snapshot ?? null}::text::jsonb)) AS same
    FROM checkpoints c WHERE c.id = ${c.id}::uuid AND c.workflow_state_id = ${stateId}::uuid`;
  if (prior?.same) return { kind: 'replayed', id: c.id, body: fromRow(prior.doc, prior.snapshot) };
  return { kind: 'conflict' };
}

export async function getCheckpoint(sql: Db, tenant: Tenant, id: string): Promise<Buffer | undefined> {
  const [row] = await sql<{ doc: string; snapshot: string }[]>`
    SELECT c.doc::text AS doc, c.snapshot::text AS snapshot
    FROM checkpoints c JOIN workflow_states w ON w.id = c.workflow_state_id
    WHERE c.id = ${id}::uuid ${tenantIs(sql, tenant, 'w.tenant')}`;
  return row && fromRow(row.doc, row.snapshot);
}

export async function latestCheckpoint(sql: Db, tenant: Tenant, stateId: string): Promise<Buffer | undefined> {
  const [row] = await sql<{ doc: string; snapshot: string }[]>`
    SELECT c.doc::text AS doc, c.snapshot::text AS snapshot
    FROM checkpoints c JOIN workflow_states w ON w.id = c.workflow_state_id
    WHERE c.workflow_state_id = ${stateId}::uuid AND w.id = ${stateId}::uuid ${tenantIs(sql, tenant, 'w.tenant')}
    ORDER BY c.seq DESC LIMIT 1`;
  return row && fromRow(row.doc, row.snapshot);
}

export interface CheckpointPage extends Page {
  stateExists: boolean;
}

/** A state's checkpoints, newest first, a page bounded in items and bytes (pageOf). */
export async function listCheckpoints(
  sql: Db,
  tenant: Tenant,
  stateId: string,
  opts: { limit: number; withSnapshot: boolean; afterSeq?: string; maxBytes: number },
): Promise<CheckpointPage> {
  const page = await pageOf(sql, sql`
    SELECT c.doc::text AS doc, CASE WHEN ${opts.withSnapshot} THEN c.snapshot::text END AS extra,
           octet_length(c.doc::text) + CASE WHEN ${opts.withSnapshot} THEN octet_length(c.snapshot::text) ELSE 0 END AS size,
           json_build_array(c.seq::text) AS position
    FROM checkpoints c JOIN workflow_states w ON w.id = c.workflow_state_id
    WHERE c.workflow_state_id = ${stateId}::uuid AND w.id = ${stateId}::uuid ${tenantIs(sql, tenant, 'w.tenant')}
      ${opts.afterSeq ? sql`AND c.seq < ${opts.afterSeq}::bigint` : sql``}
    ORDER BY c.seq DESC`, opts.limit, opts.maxBytes);
  // Only an empty page needs to tell "no checkpoints" from "no such state".
  const stateExists = page.items.length > 0 || (await stateIsKnown(sql, tenant, stateId));
  return { ...page, items: page.items.map(([doc, snapshot]) => fromRow(doc!.toString(), snapshot?.toString())), stateExists };
}

async function stateIsKnown(sql: Db, tenant: Tenant, stateId: string): Promise<boolean> {
  const rows = await sql`SELECT 1 FROM workflow_states WHERE id = ${stateId}::uuid ${tenantIs(sql, tenant)}`;
  return rows.length > 0;
}

/** The seed's cleanup_old_checkpoints: keeps the newest `keep`; undefined when the state is unknown. */
export async function pruneCheckpoints(sql: Db, tenant: Tenant, stateId: string, keep: number): Promise<number | undefined> {
  const [row] = await sql<{ found: boolean; deleted: number }[]>`
    WITH st AS (SELECT id FROM workflow_states WHERE id = ${stateId}::uuid ${tenantIs(sql, tenant)}),
    gone AS (
      DELETE FROM checkpoints c
      WHERE c.workflow_state_id = ${stateId}::uuid AND EXISTS (SELECT 1 FROM st)
        AND c.seq <= (
          SELECT seq FROM checkpoints WHERE workflow_state_id = ${stateId}::uuid
          ORDER BY seq DESC OFFSET ${keep} LIMIT 1)
      RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM st) AS found, (SELECT count(*)::int FROM gone) AS deleted`;
  return row!.found ? row!.deleted : undefined;
}

/** The checkpoint's state id, that state's tenant and the snapshot (parsed), for restore. */
export async function checkpointSnapshot(
  sql: Db,
  tenant: Tenant,
  id: string,
): Promise<{ workflowStateId: string; tenant: string; snapshot: unknown } | undefined> {
  const [row] = await sql<{ workflow_state_id: string; tenant: string; snapshot: string }[]>`
    SELECT c.workflow_state_id::text, w.tenant, c.snapshot::text AS snapshot
    FROM checkpoints c JOIN workflow_states w ON w.id = c.workflow_state_id
    WHERE c.id = ${id}::uuid ${tenantIs(sql, tenant, 'w.tenant')}`;
  return row && { workflowStateId: row.workflow_state_id, tenant: row.tenant, snapshot: JSON.parse(row.snapshot) };
}
