/**
 * The service's one JSON renderer. Every answer's bytes are JSON.stringify's: the documents stored
 * in PostgreSQL were made here (stateDocument, checkpointFields) and are sent as they were stored;
 * anything around them (a page, a checkpoint's snapshot) is JSON.stringify output with the stored
 * documents embedded whole, never parsed and rendered again.
 */
import type { State, Step, StepStateInput, WorkflowStateInput } from '../schemas/workflows.js';

/** A step from a request's fields: the one place that sets a step's members, their order and defaults. */
export function stepOf(stepId: string, s: StepStateInput): Step {
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

/** A state, or a preview of one, whose times and version are not known yet. */
export type StateShape = Omit<State, 'started_at' | 'updated_at' | 'version'> & {
  started_at: string | null;
  updated_at: string | null;
  version: number | null;
};

type Known<S extends StateShape> = Pick<S, 'version' | 'started_at' | 'updated_at'>;

/** A state from a saved body (or a snapshot), with the fields the body does not decide. */
export function stateOf(id: string, s: WorkflowStateInput, known: Known<State>): State;
export function stateOf(id: string, s: WorkflowStateInput, known: Known<StateShape>): StateShape;
export function stateOf(id: string, s: WorkflowStateInput, known: Known<StateShape>): StateShape {
  return {
    id: id.toLowerCase(),
    workflow_id: s.workflow_id,
    workflow_name: s.workflow_name,
    status: s.status ?? 'pending',
    user_id: s.user_id ?? null,
    started_at: known.started_at,
    updated_at: known.updated_at,
    completed_at: s.completed_at ?? null,
    context: s.context === undefined ? {} : s.context,
    error: s.error ?? null,
    steps: Object.fromEntries(Object.entries(s.steps ?? {}).map(([k, step]) => [k, stepOf(k, step)])),
    version: known.version,
  };
}

/**
 * A state's document: the one place that sets a state's members and their order. Steps come in
 * the order of their ids compared as UTF-16 code units (ids that are integers first, ascending, as
 * a JavaScript object keeps them), whatever the order they were written in or the database's collation.
 */
export function stateDocument(s: StateShape): string {
  const ids = Object.keys(s.steps).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify({
    id: s.id,
    workflow_id: s.workflow_id,
    workflow_name: s.workflow_name,
    status: s.status,
    user_id: s.user_id,
    started_at: s.started_at,
    updated_at: s.updated_at,
    completed_at: s.completed_at,
    context: s.context,
    error: s.error,
    // Object.fromEntries defines each id as an own member, "__proto__" included.
    steps: Object.fromEntries(ids.map((id) => [id, stepOf(id, s.steps[id]!)])),
    version: s.version,
  });
}

/** The fields of a checkpoint other than its snapshot: its stored document. */
export type CheckpointFields = {
  id: string;
  workflow_state_id: string;
  step_id: string;
  timestamp: string;
  parent_id: string | null;
};

/** A checkpoint's fields in their order: its stored document is their JSON.stringify. */
export const checkpointFields = (c: CheckpointFields): CheckpointFields => ({
  id: c.id,
  workflow_state_id: c.workflow_state_id,
  step_id: c.step_id,
  timestamp: c.timestamp,
  parent_id: c.parent_id,
});

/** A checkpoint as answered: its fields, then its stored snapshot when one is asked for. */
export function renderCheckpoint(c: CheckpointFields, snapshot?: string | Buffer | null): Buffer {
  const fields = checkpointFields(c);
  return renderJson(snapshot == null ? fields : { ...fields, snapshot: rawJson(snapshot) });
}

const RAW = Symbol('stored JSON');
/** JSON text made by this module earlier (a stored document), to embed whole. */
export interface RawJson {
  readonly [RAW]: Buffer;
}
export const rawJson = (text: string | Buffer): RawJson => ({ [RAW]: typeof text === 'string' ? Buffer.from(text) : text });
const isRaw = (v: unknown): v is RawJson => typeof v === 'object' && v !== null && RAW in v;

/**
 * JSON.stringify of an object whose members may be stored JSON (or arrays of it), embedded as is:
 * what JSON.rawJSON does from Node 22 on, for the members of one object.
 */
export const renderJson = (members: Record<string, unknown>): Buffer => Buffer.concat(renderJsonParts(members));

/** renderJson's output as the pieces it is made of, to be sent one after another without a copy. */
export function renderJsonParts(members: Record<string, unknown>): Buffer[] {
  const parts: Buffer[] = [];
  let separator = '{';
  for (const [key, value] of Object.entries(members)) {
    parts.push(Buffer.from(`${separator}${JSON.stringify(key)}:`));
    separator = ',';
    if (isRaw(value)) {
      parts.push(value[RAW]);
    } else if (Array.isArray(value) && value.every(isRaw)) {
      value.forEach((item, i) => parts.push(Buffer.from(i ? ',' : '['), item[RAW]));
      parts.push(Buffer.from(value.length ? ']' : '[]'));
    } else {
      parts.push(Buffer.from(JSON.stringify(value)));
    }
  }
  parts.push(Buffer.from(separator === '{' ? '{}' : '}'));
  return parts;
}
