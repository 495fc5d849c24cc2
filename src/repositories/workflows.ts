import { type Sql, transaction, type TxSql } from '../db/client.js';
import { nowTimestamp } from '../schemas/common.js';
import type { State, StepStateInput, WorkflowPatch, WorkflowStateInput } from '../schemas/workflows.js';
import { deleteInBatches, type Tenancy, type Tenant, tenantIs, type WriteCondition } from './conditions.js';
import { type Page, pageOf, type RawRow, rawText } from './pages.js';
import { stateDocument, stateOf, stepOf } from './render.js';

type Db = Sql | TxSql;

/**
 * A state's stored document, with the version that is its ETag: on a read the UTF-8 bytes
 * PostgreSQL sent (postgres.js `.raw()`), on a write the text just stored; sent to the client as is.
 */
export interface StateDocument {
  body: Buffer | string;
  version: number;
}

const rawInt = (b: Buffer | null | undefined) => Number(rawText(b));

/** Why a write did not happen; `taken`: the id is another tenant's state. */
export type Refusal = 'precondition' | 'not-found' | 'taken';
/** A write refused, with the state's version when it exists (a 412 says it). */
export type Refused = { ok: false; reason: Refusal; current?: number };
export type WriteOutcome = ({ ok: true; created: boolean } & StateDocument) | Refused;

const refused = (cond: WriteCondition, current?: number): Refused =>
  ({ ok: false, reason: cond.kind === 'any' ? 'not-found' : 'precondition', current });
const meets = (cond: WriteCondition, version: number) => cond.kind !== 'version' || cond.versions.includes(version);

/** An attempt at a write that found the state changed (or created) since it read it. */
const RACED = Symbol('raced');
type Attempt<T> = (db: Db, lock: boolean) => Promise<T | typeof RACED>;

const inTransaction = (db: Db): db is TxSql => typeof (db as Partial<TxSql>).savepoint === 'function';

/**
 * Runs a write that reads a state, makes its next document in the service and writes it back.
 * The first attempt holds no lock: it writes only if the state is still at the version it read,
 * so an uncontended write is two statements without a transaction. When another write came first,
 * the write runs again in a transaction that locks the row as it reads it, so the writers of a busy
 * state queue for it instead of retrying. In a caller's transaction, it locks at once.
 */
async function rewrite<T>(db: Db, attempt: Attempt<T>): Promise<T> {
  if (!inTransaction(db)) {
    const first = await attempt(db, false);
    if (first !== RACED) return first;
    return transaction(db, (tx) => rewrite(tx, attempt));
  }
  for (;;) {
    const out = await attempt(db, true);
    if (out !== RACED) return out; // locked, only an insert can race: a concurrent create
  }
}

const forUpdate = (db: Db, lock: boolean) => (lock ? db`FOR NO KEY UPDATE` : db``);

/** Writes a state's row (its document and the columns taken from it) if it is still at `read`. */
async function writeState(db: Db, s: State, read: number): Promise<StateDocument | typeof RACED> {
  const doc = stateDocument(s);
  const rows = await db`
    UPDATE workflow_states SET workflow_id = ${s.workflow_id}, status = ${s.status}, user_id = ${s.user_id},
      updated_at = ${s.updated_at}::timestamptz, version = ${s.version}, doc = ${doc}::text::json
    WHERE id = ${s.id}::uuid AND version = ${read}
    RETURNING 1`;
  return rows.length ? { body: doc, version: s.version } : RACED;
}

/**
 * Inserts a tenant's states, each a row of its document and the columns taken from it, in one
 * statement; a state whose id exists (or is created concurrently) is left out. Answers how many were inserted.
 */
export async function insertStates(db: Db, tenant: string, states: State[], docs = states.map(stateDocument)): Promise<number> {
  const rows = await db`
    INSERT INTO workflow_states (tenant, id, workflow_id, status, user_id, updated_at, version, doc)
    SELECT ${tenant}, * FROM unnest(${states.map((s) => s.id)}::uuid[], ${states.map((s) => s.workflow_id)}::text[],
      ${states.map((s) => s.status)}::text[], ${states.map((s) => s.user_id) as string[]}::text[],
      ${states.map((s) => s.updated_at)}::timestamptz[], ${states.map((s) => s.version)}::int[],
      ${docs}::text[]::json[])
    ON CONFLICT (id) DO NOTHING RETURNING 1`;
  return rows.length;
}

/** Inserts a new state, unless a state with its id exists (or was created concurrently). */
async function insertState(db: Db, tenant: string, s: State): Promise<StateDocument | typeof RACED> {
  const doc = stateDocument(s);
  return (await insertStates(db, tenant, [s], [doc])) ? { body: doc, version: s.version } : RACED;
}

/** A state's stored document, parsed (and locked until the transaction ends when `lock`). */
async function storedState(db: Db, tenant: Tenant, id: string, lock: boolean): Promise<State | undefined> {
  const [row] = await db<{ doc: string }[]>`
    SELECT doc::text AS doc FROM workflow_states WHERE id = ${id}::uuid ${tenantIs(db, tenant)} ${forUpdate(db, lock)}`;
  return row && (JSON.parse(row.doc) as State);
}

export async function loadWorkflowState(sql: Db, tenant: Tenant, id: string): Promise<StateDocument | undefined> {
  const [row] = await sql`
    SELECT version, doc::text FROM workflow_states WHERE id = ${id}::uuid ${tenantIs(sql, tenant)}`.raw() as RawRow[];
  return row && { version: rawInt(row[0]), body: row[1]! };
}

export async function latestStateForWorkflowId(sql: Db, tenant: Tenant, workflowId: string): Promise<StateDocument | undefined> {
  const [row] = await sql`
    SELECT version, doc::text FROM workflow_states WHERE workflow_id = ${workflowId} ${tenantIs(sql, tenant)}
    ORDER BY updated_at DESC, id DESC LIMIT 1`.raw() as RawRow[];
  return row && { version: rawInt(row[0]), body: row[1]! };
}

/**
 * Saves a whole state, its steps replaced exactly. The new document depends on the stored row: its
 * version, and its started_at and updated_at (kept when the body has none; a replace never moves a
 * state back in time, so an updated_at older than the stored one is stamped now).
 */
export function saveWorkflowState(
  db: Db,
  tenancy: Tenancy,
  id: string,
  s: WorkflowStateInput,
  cond: WriteCondition,
): Promise<WriteOutcome> {
  const state = (version: number, startedAt: string, updatedAt: string) =>
    stateOf(id, s, { version, started_at: startedAt, updated_at: updatedAt });
  return rewrite(db, async (db, lock): Promise<WriteOutcome | typeof RACED> => {
    // Read whatever the tenant: an id is unique across tenants, and another tenant's cannot be taken.
    const [stored] = await db<{ tenant: string; version: number; later: boolean | null; started_at: string | null }[]>`
      SELECT tenant, version, ${s.updated_at ?? null}::timestamptz > updated_at AS later,
             CASE WHEN ${s.started_at == null} THEN doc->>'started_at' END AS started_at
      FROM workflow_states WHERE id = ${id}::uuid ${forUpdate(db, lock)}`;
    const now = nowTimestamp();
    if (stored && tenancy.sees !== null && stored.tenant !== tenancy.sees) return { ok: false, reason: 'taken' };
    if (stored) {
      if (cond.kind === 'absent' || !meets(cond, stored.version)) return { ok: false, reason: 'precondition', current: stored.version };
      const next = state(stored.version + 1, s.started_at ?? stored.started_at!, stored.later ? s.updated_at! : now);
      const written = await writeState(db, next, stored.version);
      return written === RACED ? RACED : { ok: true, created: false, ...written };
    }
    if (cond.kind === 'exists' || cond.kind === 'version') return { ok: false, reason: 'precondition' };
    const created = await insertState(db, tenancy.creates, state(1, s.started_at ?? now, s.updated_at ?? now));
    if (created !== RACED) return { ok: true, created: true, ...created };
    // A concurrent save created the state first: create-only fails, otherwise it is replaced.
    return cond.kind === 'absent' ? { ok: false, reason: 'precondition' } : RACED;
  });
}

/** Changes the given top-level fields and upserts or deletes (null) the given steps. */
export function patchWorkflowState(
  db: Db,
  tenant: Tenant,
  id: string,
  p: WorkflowPatch,
  cond: WriteCondition,
): Promise<WriteOutcome> {
  return rewrite(db, async (db, lock): Promise<WriteOutcome | typeof RACED> => {
    const stored = await storedState(db, tenant, id, lock);
    if (!stored || !meets(cond, stored.version)) return refused(cond, stored?.version);
    const now = nowTimestamp();
    const finishing = (p.status === 'completed' || p.status === 'failed') && p.completed_at === undefined;
    const steps = { ...stored.steps };
    for (const [stepId, step] of Object.entries(p.steps ?? {})) {
      if (step === null) delete steps[stepId];
      else steps[stepId] = stepOf(stepId, step);
    }
    const written = await writeState(db, {
      ...stored,
      workflow_name: p.workflow_name ?? stored.workflow_name,
      status: p.status ?? stored.status,
      user_id: p.user_id === undefined ? stored.user_id : p.user_id,
      context: p.context === undefined ? stored.context : p.context,
      error: p.error === undefined ? stored.error : p.error,
      started_at: p.started_at ?? stored.started_at,
      completed_at: p.completed_at !== undefined ? p.completed_at : finishing ? now : stored.completed_at,
      steps,
      updated_at: now,
      version: stored.version + 1,
    }, stored.version);
    return written === RACED ? RACED : { ok: true, created: false, ...written };
  });
}

export type StepWriteOutcome =
  | { ok: true; created: boolean; version: number; body: string }
  | Refused;

/** Puts one step into a state's document and bumps its version and updated_at. */
export function saveStepState(
  db: Db,
  tenant: Tenant,
  id: string,
  stepId: string,
  input: StepStateInput,
  cond: WriteCondition,
): Promise<StepWriteOutcome> {
  const step = stepOf(stepId, input);
  return rewrite(db, async (db, lock): Promise<StepWriteOutcome | typeof RACED> => {
    const stored = await storedState(db, tenant, id, lock);
    if (!stored || !meets(cond, stored.version)) return refused(cond, stored?.version);
    const written = await writeState(db, {
      ...stored,
      steps: { ...stored.steps, [stepId]: step },
      updated_at: nowTimestamp(),
      version: stored.version + 1,
    }, stored.version);
    if (written === RACED) return RACED;
    return { ok: true, created: !Object.hasOwn(stored.steps, stepId), version: written.version,
      body: JSON.stringify({ ...step, version: written.version }) };
  });
}

/** Locks a state for a restore and answers its version, or undefined when it is gone. */
export async function lockStateVersion(tx: TxSql, tenant: Tenant, id: string): Promise<number | undefined> {
  const [row] = await tx<{ version: number }[]>`
    SELECT version FROM workflow_states WHERE id = ${id}::uuid ${tenantIs(tx, tenant)} FOR NO KEY UPDATE`;
  return row?.version;
}

/** Deletes a state with its steps (in its document); checkpoints go with it (ON DELETE CASCADE). */
export async function deleteWorkflowState(
  sql: Db,
  tenant: Tenant,
  id: string,
  cond: WriteCondition,
): Promise<{ ok: true } | Refused> {
  const versions = cond.kind === 'version' ? cond.versions : null;
  // One statement: the delete, and the version it found when it deleted nothing (for the 412).
  const [row] = await sql<{ deleted: boolean; current: number | null }[]>`
    WITH gone AS (
      DELETE FROM workflow_states w
      WHERE w.id = ${id}::uuid AND (${versions}::int[] IS NULL OR w.version = ANY(${versions}::int[]))
        ${tenantIs(sql, tenant, 'w.tenant')}
      RETURNING w.id)
    SELECT EXISTS (SELECT 1 FROM gone) AS deleted,
           CASE WHEN NOT EXISTS (SELECT 1 FROM gone) THEN (
             SELECT w.version FROM workflow_states w WHERE w.id = ${id}::uuid ${tenantIs(sql, tenant, 'w.tenant')}) END AS current`;
  if (row!.deleted) return { ok: true };
  return refused(cond, row!.current ?? undefined);
}

export interface ListFilter {
  tenant: Tenant;
  statuses?: string[];
  workflowId?: string;
  userId?: string;
  updatedBefore?: string;
  updatedAfter?: string;
  /** The last row of the previous page: updated_at as PostgreSQL prints it, and the id. */
  after?: { updatedAt: string; id: string };
  limit: number;
  /** The page ends before the item that would take its documents past this many bytes (pageOf). */
  maxBytes: number;
}

/** One query per page, whatever the number of matches: stored documents, newest updated_at first. */
export async function listWorkflowStates(sql: Db, f: ListFilter): Promise<Page> {
  const none = sql``;
  const page = await pageOf(sql, sql`
    SELECT doc::text AS doc, NULL::text AS extra, octet_length(doc::text) AS size,
           json_build_array(updated_at::text, id::text) AS position
    FROM workflow_states w
    WHERE true
      ${tenantIs(sql, f.tenant, 'w.tenant')}
      ${f.statuses ? sql`AND w.status = ANY(${f.statuses}::text[])` : none}
      ${f.workflowId !== undefined ? sql`AND w.workflow_id = ${f.workflowId}` : none}
      ${f.userId !== undefined ? sql`AND w.user_id = ${f.userId}` : none}
      ${f.updatedBefore ? sql`AND w.updated_at < ${f.updatedBefore}::timestamptz` : none}
      ${f.updatedAfter ? sql`AND w.updated_at > ${f.updatedAfter}::timestamptz` : none}
      ${f.after ? sql`AND (w.updated_at, w.id) < (${f.after.updatedAt}::timestamptz, ${f.after.id}::uuid)` : none}
    ORDER BY w.updated_at DESC, w.id DESC`, f.limit, f.maxBytes);
  return { ...page, items: page.items.map((r) => r[0]!) };
}

/** The seed's delete_old_states, in batches so no statement holds many row locks for long. */
export async function purgeWorkflowStates(
  sql: Sql,
  tenant: Tenant,
  olderThan: string,
  statuses: string[],
  batchSize = 500,
): Promise<number> {
  return deleteInBatches(sql, 'workflow_states', () => sql`
    updated_at < ${olderThan}::timestamptz AND status = ANY(${statuses}::text[]) ${tenantIs(sql, tenant)}`, batchSize);
}

export async function countPurgeable(sql: Db, tenant: Tenant, olderThan: string, statuses: string[]): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM workflow_states
    WHERE updated_at < ${olderThan}::timestamptz AND status = ANY(${statuses}::text[]) ${tenantIs(sql, tenant)}`;
  return row!.n;
}
