import { z } from 'zod';

/** Any 8-4-4-4-12 hex identifier, as PostgreSQL's uuid type accepts it. */
export const Uuid = z.guid();
export const Text255 = z.string().min(1).max(255);
/**
 * RFC 3339 with a Z or an offset; any fraction is accepted, PostgreSQL keeps microseconds.
 * Years 0001-9999 and offsets within ±15:59, the ranges PostgreSQL's timestamptz accepts.
 */
export const Timestamp = z.iso
  .datetime({ offset: true })
  .refine((s) => !s.startsWith('0000'), 'year must be 0001 or later')
  .refine((s) => !/[+-](1[6-9]|2\d):\d\d$/.test(s), 'offset must be within ±15:59');
/** Any JSON value; strings inside are checked for characters PostgreSQL cannot store before validation. */
export const JsonValue = z.unknown().meta({ description: 'Any JSON value.' });

export const WORKFLOW_STATUSES = ['pending', 'running', 'paused', 'completed', 'failed'] as const;
export const STEP_STATUSES = ['pending', 'running', 'completed', 'failed', 'skipped'] as const;
export const ACTIVE_STATUSES = ['pending', 'running', 'paused'] as const;
export type WorkflowStatus = (typeof WORKFLOW_STATUSES)[number];
export type StepStatus = (typeof STEP_STATUSES)[number];

/** Status on input: case-insensitive (the Rust crate's serde writes "Running"), lowercase after parsing. */
function caseInsensitiveEnum<T extends string>(values: readonly T[]) {
  return z
    .string()
    .regex(new RegExp(`^(${values.join('|')})$`, 'i'), `must be one of ${values.join(', ')} (any case)`)
    .transform((s) => s.toLowerCase() as T)
    .meta({ description: `One of ${values.join(', ')}; case-insensitive on input.` });
}
export const WorkflowStatusInput = caseInsensitiveEnum(WORKFLOW_STATUSES);
export const StepStatusInput = caseInsensitiveEnum(STEP_STATUSES);

export const Problem = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.int(),
    detail: z.string(),
    instance: z.string(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details (application/problem+json).' });

export const IdParams = z.strictObject({ id: Uuid });

/** Optional conditional-request headers, listed so that Swagger UI offers them. */
export const IfMatchHeaders = z.object({
  'if-match': z.string().optional().meta({ description: 'Quoted version, e.g. "3": 412 unless it is the stored one.' }),
});

const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: 'Bad request: invalid JSON, schema, uuid or value (errors[] names the fields)',
  404: 'Not found',
  409: 'Conflict with an existing resource',
  412: 'Precondition failed: the stored version differs from If-Match (or the state is absent)',
  413: 'Body larger than BODY_LIMIT_BYTES',
  415: 'Body is not JSON',
  422: 'The checkpoint\'s snapshot is not a workflow state',
  503: 'Database unavailable; retry after Retry-After seconds',
};

/** Problem responses a route can give besides its own, as application/problem+json. */
export const problemResponses = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [s, {
    description: PROBLEM_DESCRIPTIONS[s] ?? 'Problem',
    content: { 'application/problem+json': { schema: Problem } },
  }]));
