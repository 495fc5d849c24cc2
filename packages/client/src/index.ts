export { type ClientOptions, type IfMatch, type NotModified, type RestoreOptions, WorkflowStateClient } from './client.js';
export { type FieldError, PreconditionFailed, ProblemError } from './errors.js';
export type { components, operations, paths } from './openapi.js';
export type { RetryOptions } from './retry.js';
export type * from './types.js';
