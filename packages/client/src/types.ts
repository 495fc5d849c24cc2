/**
 * Names for the generated types (openapi.ts). Responses are the schemas' own; request bodies and
 * queries are taken from their operations, so a renamed input component changes nothing here.
 */
import type { components, operations } from './openapi.js';

type Schemas = components['schemas'];
export type WorkflowState = Schemas['WorkflowState'];
export type StepState = Schemas['StepState'];
export type StepWritten = Schemas['StepWritten'];
export type WorkflowStatePage = Schemas['WorkflowStatePage'];
export type Checkpoint = Schemas['Checkpoint'];
export type CheckpointSummary = Schemas['CheckpointSummary'];
export type CheckpointPage = Schemas['CheckpointPage'];
export type RestorePreview = Schemas['RestorePreview'];
export type PurgeResult = Schemas['PurgeResult'];
export type Problem = Schemas['Problem'];

/** The JSON request body an operation takes. */
type JsonBody<Op> = Op extends { requestBody?: { content: { 'application/json': infer Body } } } ? Body : never;
/** The query parameters an operation takes. */
type Query<Op> = Op extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;

export type SaveWorkflowState = JsonBody<operations['saveWorkflowState']>;
export type PatchWorkflowState = JsonBody<operations['patchWorkflowState']>;
export type SaveStep = JsonBody<operations['saveStepState']>;
export type NewCheckpoint = JsonBody<operations['createCheckpoint']>;
export type Restore = NonNullable<JsonBody<operations['restoreCheckpoint']>>;
export type Purge = JsonBody<operations['purgeWorkflowStates']>;
export type ListQuery = Omit<Query<operations['listWorkflowStates']>, 'cursor'>;
export type CheckpointQuery = Omit<Query<operations['listCheckpoints']>, 'cursor'>;
