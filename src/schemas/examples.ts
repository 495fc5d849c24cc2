/**
 * The examples of the OpenAPI document: one workflow, in the order Swagger UI's "Try it out" runs
 * it (save, load, patch, a step, checkpoint, restore, ...). Every request example is valid as it
 * is, every answer example is what the service answers (test/openapi.test.ts sends the requests
 * and compares the answers), and the ids are the same throughout, so each operation's prefilled
 * parameters name what the earlier ones made.
 */

export const EXAMPLE_STATE_ID = '7d9f2a6c-3b1e-4c8a-9f0d-2e5b6a1c4d3f';
export const EXAMPLE_CHECKPOINT_ID = '0b7e6f3a-9c2d-4e1f-8a5b-6c3d2e1f0a9b';
export const EXAMPLE_WORKFLOW_ID = 'invoice-pipeline';
export const EXAMPLE_STEP_ID = 'classify';

const context = { invoice_url: 'https://example.com/invoices/42.pdf', language: 'en' };
const extract = {
  status: 'completed',
  started_at: '2026-12-01T10:00:00+01:00',
  completed_at: '2026-12-01T09:00:04.25Z',
  outputs: { total: 1249.5, currency: 'EUR' },
  retry_count: 0,
};

/** PUT /v1/workflows/{id}: a running workflow with one finished step. */
export const saveExample = {
  workflow_id: EXAMPLE_WORKFLOW_ID,
  workflow_name: 'Invoice intake',
  status: 'running',
  user_id: 'user-17',
  started_at: '2026-12-01T10:00:00+01:00',
  context,
  steps: { extract },
};

/** A state as answered: the saved example, times in the stored form. */
export const stateExample = {
  id: EXAMPLE_STATE_ID,
  workflow_id: EXAMPLE_WORKFLOW_ID,
  workflow_name: 'Invoice intake',
  status: 'running',
  user_id: 'user-17',
  started_at: '2026-12-01T09:00:00.000000Z',
  updated_at: '2026-12-01T09:00:04.310522Z',
  completed_at: null,
  context,
  error: null,
  steps: {
    extract: {
      step_id: 'extract',
      status: 'completed',
      started_at: '2026-12-01T09:00:00.000000Z',
      completed_at: '2026-12-01T09:00:04.250000Z',
      outputs: { total: 1249.5, currency: 'EUR' },
      error: null,
      retry_count: 0,
    },
  },
  version: 1,
};

/** PATCH: pause for a human's approval; the steps are left as they are. */
export const patchExample = { status: 'paused', context: { ...context, awaiting: 'approval' } };

/** PUT of a step. */
export const stepExample = { status: 'running', started_at: '2026-12-01T09:00:05Z', retry_count: 0 };
export const stepWrittenExample = {
  step_id: EXAMPLE_STEP_ID,
  status: 'running',
  started_at: '2026-12-01T09:00:05.000000Z',
  completed_at: null,
  outputs: null,
  error: null,
  retry_count: 0,
  version: 3,
};

/** POST of a checkpoint: the stored state is snapshotted; the id makes a retry safe. */
export const checkpointExample = { step_id: EXAMPLE_STEP_ID, id: EXAMPLE_CHECKPOINT_ID };
/** The state then: saved, patched, with the step. */
const { version: _, ...classify } = stepWrittenExample;
const snapshotExample = {
  ...stateExample,
  status: 'paused',
  updated_at: '2026-12-01T09:00:05.402117Z',
  context: { ...context, awaiting: 'approval' },
  steps: { ...stateExample.steps, classify },
  version: 3,
};
const checkpointSummary = {
  id: EXAMPLE_CHECKPOINT_ID,
  workflow_state_id: EXAMPLE_STATE_ID,
  step_id: EXAMPLE_STEP_ID,
  timestamp: '2026-12-01T09:00:06.125301Z',
  parent_id: null,
};
export const checkpointAnswerExample = { ...checkpointSummary, snapshot: snapshotExample };
export const checkpointPageExample = { items: [checkpointSummary], next_cursor: null };

export const restoreExample = { mode: 'apply' };
export const restorePreviewExample = stateExample;

export const statePageExample = { items: [stateExample], next_cursor: null };

/** A dry run: counts what would go, deletes nothing. */
export const purgeExample = { older_than: '2026-01-01T00:00:00Z', statuses: ['completed', 'failed'], dry_run: true };
export const purgeResultExample = { matched: 0, dry_run: true, threads_matched: 0 };

export const deletedExample = { deleted: 0 };

export const problemExample = {
  type: 'urn:workflow-state:problem:precondition-failed',
  title: 'Precondition Failed',
  status: 412,
  detail: `Workflow state ${EXAMPLE_STATE_ID} is not at the version the request requires. It is at version 2.`,
  instance: 'req-1f',
  version: 2,
};

/*
 * Threads (LangGraph checkpoints): one conversation, in the order a saver writes and reads it (a
 * checkpoint, its task's writes, the tuple, a search, delta history, settings, and delete last).
 * Values are the serializer's bytes in base64; here JSON, as LangGraph's default serializer makes.
 */
export const EXAMPLE_THREAD_ID = 'support-chat-42';
export const EXAMPLE_THREAD_CHECKPOINT_ID = '1f0d2c4e-8a6b-6c31-8001-5e7d9a2b4c6f';
export const EXAMPLE_TASK_ID = '3c9e1b7a-2f4d-5e8a-9b0c-1d2e3f4a5b6c';
export const EXAMPLE_CHANNEL = 'messages';
const MESSAGES_VERSION = '00000000000000000000000000000002.4829103756381920';

/** `{type: "json", data}`: a JSON value as LangGraph's serializer stores it, base64. */
const jsonBlob = (value: unknown) => ({ type: 'json', data: Buffer.from(JSON.stringify(value)).toString('base64') });
const question = jsonBlob([{ role: 'user', content: 'Where is my order?' }]);
const answerWrite = jsonBlob([{ role: 'assistant', content: 'It left the warehouse this morning.' }]);
const checkpointBlob = jsonBlob({
  v: 4,
  id: EXAMPLE_THREAD_CHECKPOINT_ID,
  ts: '2026-12-01T09:00:00.000Z',
  channel_versions: { [EXAMPLE_CHANNEL]: MESSAGES_VERSION },
  versions_seen: { __input__: {} },
});
const metadataBlob = jsonBlob({ source: 'loop', step: 1, parents: {} });

/** PUT of a checkpoint: the serialized checkpoint without its channel values, and the values that changed. */
export const threadCheckpointExample = {
  parent_checkpoint_id: null,
  v: 4,
  channel_versions: { [EXAMPLE_CHANNEL]: MESSAGES_VERSION },
  checkpoint: checkpointBlob,
  metadata: metadataBlob,
  channel_values: [{ channel: EXAMPLE_CHANNEL, version: MESSAGES_VERSION, ...question }],
};
export const threadCheckpointRefExample = {
  thread_id: EXAMPLE_THREAD_ID,
  checkpoint_ns: '',
  checkpoint_id: EXAMPLE_THREAD_CHECKPOINT_ID,
};

/** PUT of a task's writes to the checkpoint. */
const TASK_PATH = '~__pregel_pull, agent';
export const threadWritesExample = { task_path: TASK_PATH, writes: [{ idx: 0, channel: EXAMPLE_CHANNEL, ...answerWrite }] };

/** The tuple then: the checkpoint, its channel values assembled, and the task's pending write. */
export const checkpointTupleExample = {
  ...threadCheckpointRefExample,
  parent_checkpoint_id: null,
  v: 4,
  checkpoint: checkpointBlob,
  metadata: metadataBlob,
  channel_values: [{ channel: EXAMPLE_CHANNEL, ...question }],
  pending_writes: [{ task_id: EXAMPLE_TASK_ID, task_path: TASK_PATH, idx: 0, channel: EXAMPLE_CHANNEL, ...answerWrite }],
};
export const threadSearchExample = { thread_id: EXAMPLE_THREAD_ID, filter: { source: 'loop' }, limit: 10 };
export const checkpointTuplePageExample = { items: [checkpointTupleExample], next_cursor: null };

/** A child checkpoint's history of `messages`: its parent's value (the seed) and the parent's writes since. */
export const deltaHistoryExample = {
  channels: { [EXAMPLE_CHANNEL]: { seed: question, writes: [{ task_id: EXAMPLE_TASK_ID, channel: EXAMPLE_CHANNEL, ...answerWrite }] } },
};

/** Thread settings: keep the newest 100 checkpoints, delete the thread after 30 idle days. */
export const threadSettingsExample = { max_checkpoints: 100, ttl_seconds: 2_592_000 };
export const threadExample = {
  thread_id: EXAMPLE_THREAD_ID,
  ...threadSettingsExample,
  created_at: '2026-12-01T09:00:00.104729Z',
  updated_at: '2026-12-01T09:00:07.512003Z',
};
