import createClient, { type Client } from 'openapi-fetch';
import { problemOf, versionOfETag } from './errors.js';
import type { paths } from './openapi.js';
import { DEFAULT_RETRY, type Fetch, type RetryOptions, retrying } from './retry.js';
import type {
  Checkpoint, CheckpointPage, CheckpointQuery, CheckpointSummary, ListQuery, NewCheckpoint, PatchWorkflowState, Purge,
  PurgeResult, Restore, RestorePreview, SaveStep, SaveWorkflowState, StepWritten, WorkflowState, WorkflowStatePage,
} from './types.js';

export interface ClientOptions {
  /** Where the service answers, e.g. http://127.0.0.1:8080 (the /v1 paths are appended). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** Default: the global fetch. */
  fetch?: Fetch;
  retry?: RetryOptions;
}

/** A conditional write: 412 (PreconditionFailed) unless the state is at this version. */
export interface IfMatch {
  ifMatch?: number;
}

/** load's answer when the state is still at the version the caller holds (304). */
export interface NotModified {
  notModified: true;
  version: number;
}

export type RestoreOptions =
  | (Restore & { mode?: 'apply' } & IfMatch)
  | (Restore & { mode: 'fork' | 'preview' });

type Answer<Data> = { data?: Data; error?: unknown; response: Response };

/** The body of a successful answer; a problem answer throws ProblemError (PreconditionFailed on 412). */
async function body<Data>(call: Promise<Answer<Data>>): Promise<Data> {
  const { data, error, response } = await call;
  if (!response.ok) throw problemOf(response, error);
  return data as Data;
}

/** As body(), but null for a 404: a read of one thing that does not exist. */
async function bodyOrNull<Data>(call: Promise<Answer<Data>>): Promise<Data | null> {
  const { data, error, response } = await call;
  if (response.status === 404) return null;
  if (!response.ok) throw problemOf(response, error);
  return data as Data;
}

const entityTag = (version: number | undefined) => (version === undefined ? {} : { 'if-match': `"${version}"` });

/**
 * The workflow state service's API, typed by the types generated from its openapi.yaml. Writes
 * answer the state with its `version`; conditional writes take that version (`ifMatch`).
 */
export class WorkflowStateClient {
  readonly #api: Client<paths>;
  readonly #fetch: Fetch;
  readonly #retry: Required<RetryOptions>;

  constructor(options: ClientOptions) {
    this.#fetch = options.fetch ?? ((request) => fetch(request));
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#api = createClient<paths>({
      baseUrl: options.baseUrl,
      headers: options.token === undefined ? {} : { authorization: `Bearer ${options.token}` },
    });
  }

  /**
   * The fetch of one call. 429 is always retried; 503 only when a repeat cannot write twice
   * (`safe`): reads, conditional writes, and writes that name what they create (README).
   */
  #via(safe: boolean): Fetch {
    return retrying(this.#fetch, this.#retry, safe);
  }

  /** Creates or replaces the whole state (PUT). `createOnly`: 412 when it exists. */
  save(id: string, state: SaveWorkflowState, options: IfMatch & { createOnly?: boolean } = {}): Promise<WorkflowState> {
    const conditional = options.ifMatch !== undefined || options.createOnly === true;
    return body(this.#api.PUT('/v1/workflows/{id}', {
      params: {
        path: { id },
        header: { ...entityTag(options.ifMatch), ...(options.createOnly ? { 'if-none-match': '*' } : {}) },
      },
      body: state,
      fetch: this.#via(conditional),
    }));
  }

  /** The state, or null when there is none; NotModified when it is still at `ifNoneMatch`. */
  load(id: string): Promise<WorkflowState | null>;
  load(id: string, options: { ifNoneMatch?: number }): Promise<WorkflowState | NotModified | null>;
  async load(id: string, options: { ifNoneMatch?: number } = {}): Promise<WorkflowState | NotModified | null> {
    const held = options.ifNoneMatch;
    const answer = await this.#api.GET('/v1/workflows/{id}', {
      params: { path: { id }, header: held === undefined ? {} : { 'if-none-match': `"${held}"` } },
      fetch: this.#via(true),
    });
    if (answer.response.status === 304) {
      return { notModified: true, version: versionOfETag(answer.response.headers.get('etag')) ?? held! };
    }
    return bodyOrNull(Promise.resolve(answer));
  }

  /** Changes the given top-level fields; upserts the given steps, deletes those given as null. */
  patch(id: string, changes: PatchWorkflowState, options: IfMatch = {}): Promise<WorkflowState> {
    return body(this.#api.PATCH('/v1/workflows/{id}', {
      params: { path: { id }, header: entityTag(options.ifMatch) },
      body: changes,
      fetch: this.#via(options.ifMatch !== undefined),
    }));
  }

  /** Creates or replaces one step; the answer carries the state's new `version`. */
  saveStep(id: string, stepId: string, step: SaveStep, options: IfMatch = {}): Promise<StepWritten> {
    return body(this.#api.PUT('/v1/workflows/{id}/steps/{step_id}', {
      params: { path: { id, step_id: stepId }, header: entityTag(options.ifMatch) },
      body: step,
      fetch: this.#via(options.ifMatch !== undefined),
    }));
  }

  /** Deletes the state with its steps and checkpoints. */
  async delete(id: string, options: IfMatch = {}): Promise<void> {
    await body(this.#api.DELETE('/v1/workflows/{id}', {
      params: { path: { id }, header: entityTag(options.ifMatch) },
      fetch: this.#via(options.ifMatch !== undefined),
    }));
  }

  /** Pages of states, newest updated_at first, following next_cursor. */
  async *listPages(query: ListQuery = {}): AsyncGenerator<WorkflowStatePage> {
    let cursor: string | undefined;
    do {
      const page = await body(this.#api.GET('/v1/workflows', {
        params: { query: { ...query, cursor } },
        fetch: this.#via(true),
      }));
      yield page;
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
  }

  /** Every state the query matches, newest updated_at first, a page at a time. */
  async *list(query: ListQuery = {}): AsyncGenerator<WorkflowState> {
    for await (const page of this.listPages(query)) yield* page.items;
  }

  /** The most recently updated state with this workflow_id, or null. */
  byWorkflowId(workflowId: string): Promise<WorkflowState | null> {
    return bodyOrNull(this.#api.GET('/v1/workflows/by-workflow-id/{workflow_id}', {
      params: { path: { workflow_id: workflowId } },
      fetch: this.#via(true),
    }));
  }

  /**
   * Checkpoints the state (the stored one when no snapshot is given). The checkpoint's id is made
   * here when not given, so a retry is answered the same checkpoint (200), never a second one.
   */
  checkpoint(id: string, checkpoint: NewCheckpoint): Promise<Checkpoint> {
    return body(this.#api.POST('/v1/workflows/{id}/checkpoints', {
      params: { path: { id } },
      body: { ...checkpoint, id: checkpoint.id ?? crypto.randomUUID() },
      fetch: this.#via(true),
    }));
  }

  /** Pages of a state's checkpoints, newest first. */
  async *listCheckpointPages(id: string, query: CheckpointQuery = {}): AsyncGenerator<CheckpointPage> {
    let cursor: string | undefined;
    do {
      const page = await body(this.#api.GET('/v1/workflows/{id}/checkpoints', {
        params: { path: { id }, query: { ...query, cursor } },
        fetch: this.#via(true),
      }));
      yield page;
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
  }

  /** A state's checkpoints, newest first (snapshots only with include_snapshot: 'true'). */
  async *listCheckpoints(id: string, query: CheckpointQuery = {}): AsyncGenerator<CheckpointSummary> {
    for await (const page of this.listCheckpointPages(id, query)) yield* page.items;
  }

  /** The newest checkpoint of a state, with its snapshot; null when it has none (or no such state). */
  latestCheckpoint(id: string): Promise<Checkpoint | null> {
    return bodyOrNull(this.#api.GET('/v1/workflows/{id}/checkpoints/latest', {
      params: { path: { id } },
      fetch: this.#via(true),
    }));
  }

  /** One checkpoint with its snapshot, or null. */
  getCheckpoint(cid: string): Promise<Checkpoint | null> {
    return bodyOrNull(this.#api.GET('/v1/checkpoints/{cid}', {
      params: { path: { cid } },
      fetch: this.#via(true),
    }));
  }

  /** Deletes all but the newest `keep` checkpoints; answers how many were deleted. */
  async pruneCheckpoints(id: string, keep: number): Promise<number> {
    const { deleted } = await body(this.#api.DELETE('/v1/workflows/{id}/checkpoints', {
      params: { path: { id }, query: { keep } },
      fetch: this.#via(false),
    }));
    return deleted;
  }

  /**
   * apply (default): the snapshot becomes the state (version bumped). fork: a new state made of it,
   * with `new_id` (made here when not given, so a retry cannot fork twice). preview: the state the
   * snapshot holds; nothing written.
   */
  restore(cid: string, options?: Restore & { mode?: 'apply' } & IfMatch): Promise<WorkflowState>;
  restore(cid: string, options: Restore & { mode: 'fork' }): Promise<WorkflowState>;
  restore(cid: string, options: Restore & { mode: 'preview' }): Promise<RestorePreview>;
  restore(cid: string, options: RestoreOptions): Promise<WorkflowState | RestorePreview>;
  restore(cid: string, options: RestoreOptions = {}): Promise<WorkflowState | RestorePreview> {
    const { ifMatch, ...restore } = options as Restore & IfMatch;
    const mode = restore.mode ?? 'apply';
    const request = mode === 'fork' ? { ...restore, new_id: restore.new_id ?? crypto.randomUUID() } : { ...restore, mode };
    return body(this.#api.POST('/v1/checkpoints/{cid}/restore', {
      params: { path: { cid }, header: entityTag(ifMatch) },
      body: request,
      fetch: this.#via(mode !== 'apply' || ifMatch !== undefined),
    }));
  }

  /** Deletes finished states last updated before `older_than` (dry_run: counts them). */
  purge(purge: Purge): Promise<PurgeResult> {
    return body(this.#api.POST('/v1/purge', { body: purge, fetch: this.#via(purge.dry_run === true) }));
  }
}
