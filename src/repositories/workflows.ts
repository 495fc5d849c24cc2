import type { Sql, TxSql } from '../db/client.js';
import type { StepStateInput, WorkflowPatch, WorkflowStateInput } from '../schemas/workflows.js';
import type { WriteCondition } from './conditions.js';

type Db = Sql | TxSql;

/** A state rendered by PostgreSQL as JSON text, with the version that is its ETag. */
export interface StateDocument {
  body: string;
  version: number;
}

export type WriteOutcome =
  | ({ ok: true; created: boolean } & StateDocument)
  | { ok: false; reason: 'precondition' | 'not-found' };

interface StepRecord {
  step_id: string;
  status: string;
  started_at: string | null;
  completed_at: string | null;
  outputs: unknown;
  error: string | null;
  retry_count: number;
}

function stepRecord(stepId: string, s: StepStateInput): StepRecord {
  return {
    step_id: stepId,
    status: s.status,
    started_at: s.started_at ?? null,
    completed_at: s.completed_at ?? null,
    outputs: s.outputs ?? null,
    error: s.error ?? null,
    retry_count: s.retry_count ?? 0,
  };
}

const stepsJson = (steps: Record<string, StepStateInput | null> | undefined) =>
  JSON.stringify(
    Object.entries(steps ?? {}).flatMap(([id, s]) => (s ? [stepRecord(id, s)] : [])),
  );

/** Steps as a record set, from one JSON parameter: any number of steps is one statement. */
const stepInput = (sql: Db, json: string) => sql`
  SELECT * FROM jsonb_to_recordset(${json}::text::jsonb) AS r(
    step_id TEXT, status TEXT, started_at TIMESTAMPTZ, completed_at TIMESTAMPTZ,
    outputs JSONB, error TEXT, retry_count INTEGER)`;

/**
 * Writes the input steps that differ from the stored ones; unchanged steps are neither rewritten
 * nor locked (an orchestrator's save usually changes one step of many).
 */
const upsertChangedSteps = (sql: Db, id: string) => sql`
  INSERT INTO step_states AS s
    (workflow_state_id, step_id, status, started_at, completed_at, outputs, error, retry_count)
  SELECT ${id}::uuid, i.step_id, i.status, i.started_at, i.completed_at, i.outputs, i.error, i.retry_count
  FROM input i
  WHERE NOT EXISTS (
    SELECT 1 FROM step_states c
    WHERE c.workflow_state_id = ${id}::uuid AND c.step_id = i.step_id
      AND (c.status, c.started_at, c.completed_at, c.outputs, c.error, c.retry_count)
          IS NOT DISTINCT FROM (i.status, i.started_at, i.completed_at, i.outputs, i.error, i.retry_count))
  ON CONFLICT (workflow_state_id, step_id) DO UPDATE SET
    status = EXCLUDED.status, started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at,
    outputs = EXCLUDED.outputs, error = EXCLUDED.error, retry_count = EXCLUDED.retry_count`;

/** A state's stored document, rendered on the spot if it has none (a row written by other means). */
const stateDoc = (sql: Db) => sql`COALESCE(w.doc, wss_state_json(w))::text`;

/** Re-renders the stored document of a state after its row and steps changed, in the same transaction. */
async function storeDocument(tx: TxSql, id: string): Promise<StateDocument> {
  const [doc] = await tx<StateDocument[]>`
    UPDATE workflow_states w SET doc = wss_state_json(w) WHERE w.id = ${id}::uuid
    RETURNING w.version, w.doc::text AS body`;
  return doc!;
}

export async function loadWorkflowState(sql: Db, id: string): Promise<StateDocument | undefined> {
  const [row] = await sql<StateDocument[]>`
    SELECT w.version, ${stateDoc(sql)} AS body FROM workflow_states w WHERE w.id = ${id}::uuid`;
  return row;
}

export async function latestStateForWorkflowId(sql: Db, workflowId: string): Promise<StateDocument | undefined> {
  const [row] = await sql<StateDocument[]>`
    SELECT w.version, ${stateDoc(sql)} AS body FROM workflow_states w
    WHERE w.workflow_id = ${workflowId}
    ORDER BY w.updated_at DESC, w.id DESC LIMIT 1`;
  return row;
}

/**
 * Saves a whole state: the row, then its steps replaced exactly, in the caller's transaction.
 * The row is written (and so locked) first; the steps statement then takes a fresh snapshot,
 * so it sees and deletes steps that a writer committed while this one waited for the lock.
 */
export async function saveWorkflowState(
  tx: TxSql,
  id: string,
  s: WorkflowStateInput,
  cond: WriteCondition,
): Promise<WriteOutcome> {
  const v = {
    workflow_id: s.workflow_id,
    workflow_name: s.workflow_name,
    status: s.status ?? 'pending',
    user_id: s.user_id ?? null,
    started_at: s.started_at ?? null,
    updated_at: s.updated_at ?? null,
    completed_at: s.completed_at ?? null,
    context: JSON.stringify(s.context === undefined ? {} : s.context),
    error: s.error ?? null,
  };
  const insert = tx`
    INSERT INTO workflow_states AS w (id, workflow_id, workflow_name, status, user_id,
      started_at, updated_at, completed_at, context, error, version)
    VALUES (${id}::uuid, ${v.workflow_id}, ${v.workflow_name}, ${v.status}, ${v.user_id},
      COALESCE(${v.started_at}::timestamptz, now()), COALESCE(${v.updated_at}::timestamptz, now()),
      ${v.completed_at}::timestamptz, ${v.context}::text::jsonb, ${v.error}, 1)`;
  const assignments = tx`
    workflow_id = ${v.workflow_id}, workflow_name = ${v.workflow_name}, status = ${v.status},
    user_id = ${v.user_id}, started_at = COALESCE(${v.started_at}::timestamptz, w.started_at),
    updated_at = COALESCE(CASE WHEN ${v.updated_at}::timestamptz > w.updated_at THEN ${v.updated_at}::timestamptz END, now()),
    completed_at = ${v.completed_at}::timestamptz,
    context = ${v.context}::text::jsonb, error = ${v.error}, version = w.version + 1,
    doc = NULL`; // rendered by the steps statement; the old one need not be copied into this row version

  let rows: { version: number; created: boolean }[];
  switch (cond.kind) {
    case 'any':
      rows = await tx`${insert} ON CONFLICT (id) DO UPDATE SET ${assignments}
        RETURNING w.version, (w.xmax = 0) AS created`;
      break;
    case 'absent':
      rows = await tx`${insert} ON CONFLICT (id) DO NOTHING RETURNING w.version, true AS created`;
      break;
    case 'exists':
      rows = await tx`UPDATE workflow_states AS w SET ${assignments} WHERE w.id = ${id}::uuid
        RETURNING w.version, false AS created`;
      break;
    case 'version':
      rows = await tx`UPDATE workflow_states AS w SET ${assignments}
        WHERE w.id = ${id}::uuid AND w.version = ANY(${cond.versions}::int[])
        RETURNING w.version, false AS created`;
      break;
  }
  const [head] = rows;
  if (!head) return { ok: false, reason: 'precondition' };

  // The steps as given become the stored ones; the document is rendered from them and the row.
  const [doc] = await tx<{ body: string }[]>`
    WITH input AS (${stepInput(tx, stepsJson(s.steps))}),
    removed AS (
      DELETE FROM step_states d WHERE d.workflow_state_id = ${id}::uuid
        AND d.step_id NOT IN (SELECT step_id FROM input)),
    written AS (${upsertChangedSteps(tx, id)})
    UPDATE workflow_states w SET doc = wss_state_json(w, (
        SELECT COALESCE(json_object_agg(i.step_id, wss_step_json(i.step_id, i.status, i.started_at, i.completed_at,
                                                                 i.outputs, i.error, i.retry_count)
                                        ORDER BY i.step_id), '{}'::json)
        FROM input i))
    WHERE w.id = ${id}::uuid
    RETURNING w.doc::text AS body`;
  return { ok: true, created: head.created, version: head.version, body: doc!.body };
}

/** Changes the given top-level fields and upserts or deletes the given steps, in the caller's transaction. */
export async function patchWorkflowState(
  tx: TxSql,
  id: string,
  p: WorkflowPatch,
  cond: WriteCondition,
): Promise<WriteOutcome> {
  const has = (k: keyof WorkflowPatch) => p[k] !== undefined;
  const finishing = (p.status === 'completed' || p.status === 'failed') && !has('completed_at');
  const versions = cond.kind === 'version' ? cond.versions : null;
  const [head] = await tx<{ version: number }[]>`
    UPDATE workflow_states AS w SET
      workflow_name = CASE WHEN ${has('workflow_name')} THEN ${p.workflow_name ?? null} ELSE w.workflow_name END,
      status = CASE WHEN ${has('status')} THEN ${p.status ?? null} ELSE w.status END,
      user_id = CASE WHEN ${has('user_id')} THEN ${p.user_id ?? null} ELSE w.user_id END,
      context = CASE WHEN ${has('context')} THEN ${JSON.stringify(p.context ?? null)}::text::jsonb ELSE w.context END,
      error = CASE WHEN ${has('error')} THEN ${p.error ?? null} ELSE w.error END,
      started_at = CASE WHEN ${has('started_at')} THEN ${p.started_at ?? null}::timestamptz ELSE w.started_at END,
      completed_at = CASE WHEN ${has('completed_at')} THEN ${p.completed_at ?? null}::timestamptz
                          WHEN ${finishing} THEN now() ELSE w.completed_at END,
      updated_at = now(),
      version = w.version + 1
    WHERE w.id = ${id}::uuid AND (${versions}::int[] IS NULL OR w.version = ANY(${versions}::int[]))
    RETURNING w.version`;
  if (!head) return { ok: false, reason: cond.kind === 'any' ? 'not-found' : 'precondition' };

  if (p.steps) {
    const deleted = Object.entries(p.steps).filter(([, s]) => s === null).map(([k]) => k);
    await tx`
      WITH input AS (${stepInput(tx, stepsJson(p.steps))}),
      removed AS (
        DELETE FROM step_states d WHERE d.workflow_state_id = ${id}::uuid AND d.step_id = ANY(${deleted}::text[])),
      written AS (${upsertChangedSteps(tx, id)})
      SELECT count(*) FROM input`;
  }
  return { ok: true, created: false, ...(await storeDocument(tx, id)) };
}

export type StepWriteOutcome =
  | { ok: true; created: boolean; version: number; body: string }
  | { ok: false; reason: 'precondition' | 'not-found' };

/** Upserts one step and bumps the state's version and updated_at, in the caller's transaction. */
export async function saveStepState(
  tx: TxSql,
  id: string,
  stepId: string,
  step: StepStateInput,
  cond: WriteCondition,
): Promise<StepWriteOutcome> {
  const r = stepRecord(stepId, step);
  const versions = cond.kind === 'version' ? cond.versions : null;
  const locked = await tx`
    UPDATE workflow_states w SET version = w.version + 1, updated_at = now()
    WHERE w.id = ${id}::uuid AND (${versions}::int[] IS NULL OR w.version = ANY(${versions}::int[]))
    RETURNING w.id`;
  if (!locked.length) return { ok: false, reason: cond.kind === 'any' ? 'not-found' : 'precondition' };
  const [row] = await tx<{ body: string; created: boolean }[]>`
    INSERT INTO step_states AS s
      (workflow_state_id, step_id, status, started_at, completed_at, outputs, error, retry_count)
    VALUES (${id}::uuid, ${r.step_id}, ${r.status}, ${r.started_at}::timestamptz, ${r.completed_at}::timestamptz,
      ${JSON.stringify(r.outputs)}::text::jsonb, ${r.error}, ${r.retry_count})
    ON CONFLICT (workflow_state_id, step_id) DO UPDATE SET
      status = EXCLUDED.status, started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at,
      outputs = EXCLUDED.outputs, error = EXCLUDED.error, retry_count = EXCLUDED.retry_count
    RETURNING wss_step_json(s)::text AS body, (s.xmax = 0) AS created`;
  const doc = await storeDocument(tx, id);
  return { ok: true, created: row!.created, version: doc.version, body: row!.body };
}

/** Deletes a state; steps and checkpoints go with it (ON DELETE CASCADE). */
export async function deleteWorkflowState(
  sql: Db,
  id: string,
  cond: WriteCondition,
): Promise<{ ok: true } | { ok: false; reason: 'precondition' | 'not-found' }> {
  const versions = cond.kind === 'version' ? cond.versions : null;
  const rows = await sql`
    DELETE FROM workflow_states w
    WHERE w.id = ${id}::uuid AND (${versions}::int[] IS NULL OR w.version = ANY(${versions}::int[]))
    RETURNING w.id`;
  if (rows.length) return { ok: true };
  return { ok: false, reason: cond.kind === 'any' ? 'not-found' : 'precondition' };
}

export interface ListFilter {
  statuses?: string[];
  workflowId?: string;
  userId?: string;
  updatedBefore?: string;
  updatedAfter?: string;
  after?: { updatedAt: string; id: string };
  limit: number;
}

export interface StatePage {
  items: string[];
  last?: { updatedAt: string; id: string };
  more: boolean;
}

/** One query per page, whatever the number of matches: states with their steps, newest updated_at first. */
export async function listWorkflowStates(sql: Db, f: ListFilter): Promise<StatePage> {
  const none = sql``;
  const rows = await sql<{ body: string; updated_at: string; id: string }[]>`
    SELECT ${stateDoc(sql)} AS body, wss_ts(w.updated_at) AS updated_at, w.id::text AS id
    FROM workflow_states w
    WHERE true
      ${f.statuses ? sql`AND w.status = ANY(${f.statuses}::text[])` : none}
      ${f.workflowId !== undefined ? sql`AND w.workflow_id = ${f.workflowId}` : none}
      ${f.userId !== undefined ? sql`AND w.user_id = ${f.userId}` : none}
      ${f.updatedBefore ? sql`AND w.updated_at < ${f.updatedBefore}::timestamptz` : none}
      ${f.updatedAfter ? sql`AND w.updated_at > ${f.updatedAfter}::timestamptz` : none}
      ${f.after ? sql`AND (w.updated_at, w.id) < (${f.after.updatedAt}::timestamptz, ${f.after.id}::uuid)` : none}
    ORDER BY w.updated_at DESC, w.id DESC
    LIMIT ${f.limit + 1}`;
  const more = rows.length > f.limit;
  const page = more ? rows.slice(0, f.limit) : rows;
  const tail = page.at(-1);
  return { items: page.map((r) => r.body), more, last: tail && { updatedAt: tail.updated_at, id: tail.id } };
}

/** The seed's delete_old_states, in batches so no statement holds many row locks for long. */
export async function purgeWorkflowStates(
  sql: Sql,
  olderThan: string,
  statuses: string[],
  batchSize = 500,
): Promise<number> {
  let deleted = 0;
  for (;;) {
    const rows = await sql`
      DELETE FROM workflow_states WHERE id IN (
        SELECT id FROM workflow_states
        WHERE updated_at < ${olderThan}::timestamptz AND status = ANY(${statuses}::text[])
        LIMIT ${batchSize} FOR UPDATE SKIP LOCKED)
      RETURNING id`;
    deleted += rows.length;
    if (rows.length < batchSize) return deleted;
  }
}

export async function countPurgeable(sql: Db, olderThan: string, statuses: string[]): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM workflow_states
    WHERE updated_at < ${olderThan}::timestamptz AND status = ANY(${statuses}::text[])`;
  return row!.n;
}
