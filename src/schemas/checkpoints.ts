import { z } from 'zod';
import { JsonValue, StepId, Text255, Uuid } from './common.js';
import {
  checkpointAnswerExample, checkpointExample, checkpointPageExample, deletedExample, EXAMPLE_CHECKPOINT_ID,
  restoreExample, restorePreviewExample,
} from './examples.js';
import { StepState, WorkflowState } from './workflows.js';

export const CheckpointInput = z
  .strictObject({
    step_id: StepId,
    snapshot: JsonValue.optional().meta({
      description: 'Any JSON. When absent the server snapshots the stored state (with steps and version).',
    }),
    id: Uuid.optional().meta({
      description: 'Client-chosen id for safe retries: the same id and content answers 200, other content 409.',
    }),
  })
  .meta({ id: 'NewCheckpoint', examples: [checkpointExample] });

const checkpointFields = {
  id: z.string(),
  workflow_state_id: z.string(),
  step_id: z.string(),
  timestamp: z.string(),
  parent_id: z.string().nullable().meta({ description: 'The latest checkpoint of the workflow when this one was made.' }),
};
export const Checkpoint = z.object({ ...checkpointFields, snapshot: JsonValue })
  .meta({ id: 'Checkpoint', examples: [checkpointAnswerExample] });
export const CheckpointSummary = z
  .object({ ...checkpointFields, snapshot: JsonValue.optional() })
  .meta({ id: 'CheckpointSummary', description: 'A checkpoint; snapshot only with include_snapshot=true.' });
export const CheckpointPage = z
  .object({ items: z.array(CheckpointSummary), next_cursor: z.string().nullable() })
  .meta({ id: 'CheckpointPage', examples: [checkpointPageExample] });

export const ListCheckpointsQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100)
    .meta({ description: 'Most items on a page; a page also ends before `LIST_MAX_BYTES` of snapshots.' }),
  cursor: z.string().max(200).optional().meta({ description: 'The `next_cursor` of the previous page.' }),
  include_snapshot: z.enum(['true', 'false']).default('false').meta({ description: 'Each item with its snapshot.' }),
});

export const PruneCheckpointsQuery = z.strictObject({
  keep: z.coerce.number().int().min(0).max(1_000_000).meta({ description: 'How many of the newest to keep.', examples: [10] }),
});

export const CheckpointParams = z.strictObject({
  cid: Uuid.meta({ description: 'The checkpoint\'s id.', examples: [EXAMPLE_CHECKPOINT_ID] }),
});

export const RestoreInput = z
  .strictObject({
    mode: z.enum(['apply', 'fork', 'preview']).default('apply')
      .meta({ description: 'apply: the workflow becomes the snapshot; fork: a new state from it; preview: nothing written.' }),
    new_id: Uuid.optional().meta({ description: 'fork only: the new state\'s id (default: a fresh uuid).' }),
    workflow_id: Text255.optional().meta({ description: 'fork only: the new state\'s workflow_id.' }),
  })
  .meta({ id: 'Restore', examples: [restoreExample] })
  .nullish()
  .meta({ description: 'Optional: no body means `{"mode": "apply"}`.' });

export const RestorePreview = WorkflowState.extend({
  started_at: z.string().nullable(),
  updated_at: z.string().nullable(),
  steps: z.record(z.string(), StepState),
  version: z.int().nullable().meta({ description: 'The version recorded in the snapshot, if any.' }),
}).meta({
  id: 'RestorePreview',
  description: 'The state the snapshot holds, parsed; nothing is written.',
  examples: [restorePreviewExample],
});

export const Deleted = z.object({ deleted: z.int() }).meta({ id: 'Deleted', examples: [deletedExample] });
