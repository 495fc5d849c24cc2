import type { Sql, TxSql } from '../db/client.js';
import type { StepStateInput, WorkflowPatch, WorkflowStateInput } from '../schemas/workflows.js';
import type { WriteCondition } from './conditions.js';
import { renderSteps, stepRecord } from './render.js';

type Db = Sql | TxSql;

/**
 * A state rendered by PostgreSQL as JSON, with the version that is its ETag. The body stays the
 * UTF-8 bytes PostgreSQL sent (postgres.js `.raw()`): it is written to the client as is, never
 * decoded into a string and encoded again.
 */
export interface StateDocument {
  body: Buffer;
  version: number;
}

type RawRow = (Buffer | null)[];
const rawText = (b: Buffer | null | undefined) => (b ? b.toString('utf8') : '');
const rawInt = (b: Buffer | null | undefined) => Number(rawText(b));
const rawBool = (b: Buffer | null | undefined) => rawText(b) === 't';

export type WriteOutcome =
  | ({ ok: true; created: boolean } & StateDocument)
  | { ok: false; reason: 'precondition' | 'not-found' };

const stepsJson = (steps: Record<string, StepStateInput | null> | undefined) =>
  JSON.stringify(
    Object.entries(steps ?? {}).flatMap(([id, s]) => (s ? [stepRecord(id, s)] : [])),
  );

/** A state's stored document (never NULL: a row written without one gets it from wss_fill_doc, 0006). */
const stateDoc = (sql: Db) => sql`w.doc::text`;

/** A state's version and document as this transaction last wrote them. */
async function writtenDocument(tx: TxSql, id: string): Promise<StateDocument> {
  const [row] = await tx`
    SELECT w.version, w.doc::text AS body FROM workflow_states w WHERE w.id = ${id}::uuid`.raw() as RawRow[];
  return { version: rawInt(row![0]), body: row![1]! };
}

export async function loadWorkflowState(sql: Db, id: string): Promise<StateDocument | undefined> {
  const [row] = await sql`
    SELECT w.version, ${stateDoc(sql)} AS body FROM workflow_states w WHERE w.id = ${id}::uuid`.raw() as RawRow[];
  return row && { version: rawInt(row[0]), body: row[1]! };
}

export async function latestStateForWorkflowId(sql: Db, workflowId: string): Promise<StateDocument | undefined> {
  const [row] = await sql`
    SELECT w.version, ${stateDoc(sql)} AS body FROM workflow_states w
    WHERE w.workflow_id = ${workflowId}
    ORDER BY w.updated_at DESC, w.id DESC LIMIT 1`.raw() as RawRow[];
  return row && { version: rawInt(row[0]), body: row[1]! };
}

/**
 * Saves a whole state with its steps replaced exactly, in one round trip. A state's steps live in
 * its document (migration 0006). The service renders them (render.ts) and wss_replace_state writes
 * the row with its document once. Steps with a timestamp the service does not render itself (an
 * instant in UTC outside years 1-9999) go through wss_save_state, which renders them in SQL.
 */
export async function saveWorkflowState(
  sql: Db,
  id: string,
  s: WorkflowStateInput,
  cond: WriteCondition,
): Promise<WriteOutcome> {
  const versions = cond.kind === 'version' ? cond.versions : null;
  const rendered = renderSteps(s.steps);
  const [row] = await sql`
    SELECT version, created, body FROM ${sql(rendered === undefined ? 'wss_save_state' : 'wss_replace_state')}(
      ${id}::uuid, ${cond.kind}, ${versions}::int[],
      ${s.workflow_id}, ${s.workflow_name}, ${s.status ?? 'pending'}, ${s.user_id ?? null},
      ${s.started_at ?? null}, ${s.updated_at ?? null}, ${s.completed_at ?? null},
      ${JSON.stringify(s.context === undefined ? {} : s.context)}, ${s.error ?? null},
      ${rendered ?? stepsJson(s.steps)})`.raw() as RawRow[];
  if (!row) return { ok: false, reason: 'precondition' };
  return { ok: true, version: rawInt(row[0]), created: rawBool(row[1]), body: row[2]! };
}

/**
 * Changes the given top-level fields and upserts or deletes the given steps, in the caller's
 * transaction: the row first (locking it), then the steps in its document. The document is rendered
 * once: by wss_write_steps when there are steps, else by the wss_fill_doc trigger (doc set NULL).
 */
export async function patchWorkflowState(
  tx: TxSql,
  id: string,
  p: WorkflowPatch,
  cond: WriteCondition,
): Promise<WriteOutcome> {
  const has = (k: keyof WorkflowPatch) => p[k] !== undefined;
  const finishing = (p.status === 'completed' || p.status === 'failed') && !has('completed_at');
  const versions = cond.kind === 'version' ? cond.versions : null;
  const steps = p.steps;
  const [head] = await tx`
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
      version = w.version + 1,
      doc = CASE WHEN ${steps !== undefined} THEN w.doc END
    WHERE w.id = ${id}::uuid AND (${versions}::int[] IS NULL OR w.version = ANY(${versions}::int[]))
    RETURNING w.version, w.doc::text AS body`.raw() as RawRow[];
  if (!head) return { ok: false, reason: cond.kind === 'any' ? 'not-found' : 'precondition' };
  if (steps === undefined) return { ok: true, created: false, version: rawInt(head[0]), body: head[1]! };

  const deleted = Object.entries(steps).filter(([, st]) => st === null).map(([k]) => k);
  await tx`SELECT wss_write_steps(${id}::uuid, ${stepsJson(steps)}, false, ${deleted}::text[])`;
  return { ok: true, created: false, ...(await writtenDocument(tx, id)) };
}

export type StepWriteOutcome =
  | { ok: true; created: boolean; version: number; body: Buffer }
  | { ok: false; reason: 'precondition' | 'not-found' };

/** Puts one step into a state's document, bumps its version and updated_at, in one round trip (wss_save_step). */
export async function saveStepState(
  sql: Db,
  id: string,
  stepId: string,
  step: StepStateInput,
  cond: WriteCondition,
): Promise<StepWriteOutcome> {
  const r = stepRecord(stepId, step);
  const versions = cond.kind === 'version' ? cond.versions : null;
  const [row] = await sql`
    SELECT version, created, body FROM wss_save_step(
      ${id}::uuid, ${versions}::int[], ${r.step_id}, ${r.status}, ${r.started_at}, ${r.completed_at},
      ${JSON.stringify(r.outputs)}, ${r.error}, ${r.retry_count})`.raw() as RawRow[];
  if (!row) return { ok: false, reason: cond.kind === 'any' ? 'not-found' : 'precondition' };
  return { ok: true, version: rawInt(row[0]), created: rawBool(row[1]), body: row[2]! };
}

/** Locks a state for a restore and answers its version, or undefined when it is gone. */
export async function lockStateVersion(tx: TxSql, id: string): Promise<number | undefined> {
  const [row] = await tx<{ version: number }[]>`
    SELECT version FROM workflow_states WHERE id = ${id}::uuid FOR NO KEY UPDATE`;
  return row?.version;
}

/** Deletes a state with its steps (in its row); checkpoints go with it (ON DELETE CASCADE). */
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
  items: Buffer[];
  last?: { updatedAt: string; id: string };
  more: boolean;
}

/** One query per page, whatever the number of matches: states with their steps, newest updated_at first. */
export async function listWorkflowStates(sql: Db, f: ListFilter): Promise<StatePage> {
  const none = sql``;
  const rows = await sql`
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
    LIMIT ${f.limit + 1}`.raw() as RawRow[];
  const more = rows.length > f.limit;
  const page = more ? rows.slice(0, f.limit) : rows;
  const tail = page.at(-1);
  return { items: page.map((r) => r[0]!), more, last: tail && { updatedAt: rawText(tail[1]), id: rawText(tail[2]) } };
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
