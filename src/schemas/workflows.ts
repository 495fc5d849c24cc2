import { z } from 'zod';
import {
  JsonValue, STEP_STATUSES, StepId, StepStatusInput, Text255, Timestamp, Uuid, WORKFLOW_STATUSES, WorkflowStatusInput,
} from './common.js';
import {
  EXAMPLE_STATE_ID, EXAMPLE_STEP_ID, EXAMPLE_WORKFLOW_ID, patchExample, saveExample, stateExample, statePageExample,
  stepExample, stepWrittenExample,
} from './examples.js';

const RetryCount = z.int().min(0).max(2_147_483_647);
const Version = z.int().min(1).max(2_147_483_647);

export const StepStateInput = z
  .strictObject({
    step_id: StepId.optional().meta({ description: 'Equal to its key in steps; filled from the key when absent.' }),
    status: StepStatusInput,
    started_at: Timestamp.nullable().optional(),
    completed_at: Timestamp.nullable().optional(),
    outputs: JsonValue.optional(),
    error: z.string().nullable().optional(),
    retry_count: RetryCount.optional(),
  })
  .meta({ id: 'SaveStep', examples: [stepExample] });
export type StepStateInput = z.output<typeof StepStateInput>;

function stepIdsMatchKeys(steps: Record<string, { step_id?: string } | null> | undefined, ctx: z.RefinementCtx) {
  for (const [key, step] of Object.entries(steps ?? {})) {
    if (step?.step_id !== undefined && step.step_id !== key) {
      ctx.addIssue({ code: 'custom', path: ['steps', key, 'step_id'], message: `must equal its key "${key}"` });
    }
  }
}

export const WorkflowStateInput = z
  .strictObject({
    id: Uuid.optional().meta({ description: 'Must equal the id in the path when present.' }),
    workflow_id: Text255,
    workflow_name: Text255,
    status: WorkflowStatusInput.optional().meta({ description: 'Defaults to pending; case-insensitive.' }),
    user_id: z.string().max(255).nullable().optional(),
    started_at: Timestamp.nullable().optional().meta({ description: 'Defaults to now on create; kept on replace.' }),
    updated_at: Timestamp.nullable().optional().meta({
      description: 'Defaults to now. Kept as given on create; on replace only when later than the stored one ' +
        '(a state never moves back in time, so a GET body sent back is stamped now).',
    }),
    completed_at: Timestamp.nullable().optional(),
    context: JsonValue.optional(),
    error: z.string().nullable().optional(),
    steps: z.record(StepId, StepStateInput).optional(),
    version: Version.optional().meta({ description: 'Same as If-Match: 412 unless it is the stored version.' }),
  })
  .superRefine((s, ctx) => stepIdsMatchKeys(s.steps, ctx))
  .meta({ id: 'SaveWorkflowState', examples: [saveExample] });
export type WorkflowStateInput = z.output<typeof WorkflowStateInput>;

export const WorkflowPatch = z
  .strictObject({
    workflow_name: Text255.optional(),
    status: WorkflowStatusInput.optional(),
    user_id: z.string().max(255).nullable().optional(),
    context: JsonValue.optional(),
    error: z.string().nullable().optional(),
    started_at: Timestamp.optional(),
    completed_at: Timestamp.nullable().optional(),
    steps: z
      .record(StepId, StepStateInput.nullable())
      .optional()
      .meta({ description: 'Steps to upsert; a step given as null is deleted. Other steps are kept.' }),
    version: Version.optional().meta({ description: 'Same as If-Match.' }),
  })
  .superRefine((s, ctx) => stepIdsMatchKeys(s.steps, ctx))
  .meta({ id: 'PatchWorkflowState', examples: [patchExample] });
export type WorkflowPatch = z.output<typeof WorkflowPatch>;

const NullableTimestamp = z.string().nullable();

export const StepState = z
  .object({
    step_id: z.string(),
    status: z.enum(STEP_STATUSES),
    started_at: NullableTimestamp,
    completed_at: NullableTimestamp,
    outputs: JsonValue,
    error: z.string().nullable(),
    retry_count: z.int(),
  })
  .meta({ id: 'StepState' });
/** A step as stored in its state's document and answered: the service's one type of a step. */
export type Step = z.infer<typeof StepState>;

/** A step PUT's answer: the step, and its state's version after the write (the ETag's, in the body). */
export const StepWritten = StepState.extend({
  version: z.int().meta({ description: 'The state\'s version after this write, as in the ETag header.' }),
}).meta({ id: 'StepWritten', examples: [stepWrittenExample] });

export const WorkflowState = z
  .object({
    id: z.string(),
    workflow_id: z.string(),
    workflow_name: z.string(),
    status: z.enum(WORKFLOW_STATUSES),
    user_id: z.string().nullable(),
    started_at: z.string(),
    updated_at: z.string(),
    completed_at: NullableTimestamp,
    context: JsonValue,
    error: z.string().nullable(),
    steps: z.record(z.string(), StepState),
    version: z.int(),
  })
  .meta({ id: 'WorkflowState', examples: [stateExample] });
/** A state as stored (its document) and answered. */
export type State = z.infer<typeof WorkflowState>;

export const WorkflowStatePage = z
  .object({ items: z.array(WorkflowState), next_cursor: z.string().nullable() })
  .meta({ id: 'WorkflowStatePage', examples: [statePageExample] });

export const ListWorkflowsQuery = z.strictObject({
  status: z
    .string()
    .optional()
    .meta({
      description: `Only these statuses: a comma-separated list of ${WORKFLOW_STATUSES.join(', ')}, or \`active\` ` +
        '(pending, running, paused); any letter case.',
      examples: ['active'],
    }),
  workflow_id: Text255.optional().meta({ description: 'Only states with this workflow_id.' }),
  user_id: z.string().max(255).optional().meta({ description: 'Only states with this user_id.' }),
  updated_before: Timestamp.optional().meta({ description: 'Only states updated before this time.' }),
  updated_after: Timestamp.optional().meta({ description: 'Only states updated after this time.' }),
  limit: z.coerce.number().int().min(1).max(1000).default(100)
    .meta({ description: 'Most items on a page; a page also ends before `LIST_MAX_BYTES` of states.' }),
  cursor: z.string().max(200).optional()
    .meta({ description: 'The `next_cursor` of the previous page, with the same filters.' }),
});

export const StepParams = z.strictObject({
  id: Uuid.meta({ description: 'The workflow state\'s id.', examples: [EXAMPLE_STATE_ID] }),
  step_id: StepId.meta({ description: 'The step\'s id within the state.', examples: [EXAMPLE_STEP_ID] }),
});
export const WorkflowIdParams = z.strictObject({
  workflow_id: Text255.meta({ description: 'The workflow_id the states were saved with.', examples: [EXAMPLE_WORKFLOW_ID] }),
});
