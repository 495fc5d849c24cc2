import { z } from 'zod';
import { problemAnswer } from '../openapi.js';
import { EXAMPLE_STATE_ID, problemExample } from './examples.js';

/** Any 8-4-4-4-12 hex identifier, as PostgreSQL's uuid type accepts it. */
export const Uuid = z.guid();
export const Text255 = z.string().min(1).max(255);
/**
 * A step's id, in a path, a body or a key of `steps`: one rule for every way a step is written, so a
 * GET body can always be PUT back. `__proto__` is refused: as a key of a JSON object it is the
 * prototype, not a member, once parsed by JavaScript.
 */
export const StepId = Text255.refine((s) => s !== '__proto__', 'must not be __proto__');
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T((?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d)(?:\.(\d+))?(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/;

const daysInMonth = (year: number, month: number) =>
  month === 2 ? (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;

/**
 * A timestamp in the one form the service stores and answers: UTC, rounded to the nearest
 * microsecond (halves up), Z. Undefined for a date that does not exist or an instant outside years
 * 0001-9999 in UTC.
 */
export function utcTimestamp(s: string): string | undefined {
  const m = RFC3339.exec(s);
  if (!m) return undefined;
  const [, year, month, day, time, fraction = '', offset] = m;
  if (Number(month) < 1 || Number(month) > 12 || Number(day) < 1 || Number(day) > daysInMonth(Number(year), Number(month))) {
    return undefined;
  }
  // Already in that form: what this service answers, so what a client usually sends back.
  if (offset === 'Z' && fraction.length === 6 && year !== '0000') return s;
  let micros = Number(fraction.slice(0, 6).padEnd(6, '0')) + (fraction.charCodeAt(6) >= 53 /* '5' */ ? 1 : 0);
  const seconds = new Date(`${year}-${month}-${day}T${time}${offset}`);
  if (micros === 1_000_000) {
    micros = 0;
    seconds.setUTCSeconds(seconds.getUTCSeconds() + 1);
  }
  const utc = seconds.toISOString();
  if (!/^\d{4}-/.test(utc) || utc.startsWith('0000')) return undefined;
  return `${utc.slice(0, 19)}.${String(micros).padStart(6, '0')}Z`;
}

let lastNowMicros = 0;
/** Now, in the stored form; strictly increasing within the process, so two writes never tie. */
export function nowTimestamp(): string {
  const micros = Math.max(Date.now() * 1000, lastNowMicros + 1);
  lastNowMicros = micros;
  const seconds = new Date(Math.floor(micros / 1000)).toISOString().slice(0, 19);
  return `${seconds}.${String(micros % 1_000_000).padStart(6, '0')}Z`;
}

/**
 * RFC 3339 with a Z or an offset, any fraction; parsed into the stored form (utcTimestamp), which
 * is what the service stores and answers: it is normalised here, at the edge, and nowhere else.
 */
export const Timestamp = z.iso
  .datetime({ offset: true })
  .transform((s, ctx) => {
    const utc = utcTimestamp(s);
    if (utc === undefined) {
      ctx.addIssue({ code: 'custom', message: 'must be an existing date and time within years 0001-9999 in UTC' });
      return z.NEVER;
    }
    return utc;
  })
  .meta({ description: 'RFC 3339 date-time; stored and answered in UTC with six fraction digits and Z.' });
/** Any JSON value; strings inside are checked for characters PostgreSQL cannot store before validation. */
export const JsonValue = z.unknown().meta({ description: 'Any JSON value.' });

export const WORKFLOW_STATUSES = ['pending', 'running', 'paused', 'completed', 'failed'] as const;
export const STEP_STATUSES = ['pending', 'running', 'completed', 'failed', 'skipped'] as const;
export const ACTIVE_STATUSES = ['pending', 'running', 'paused'] as const;
export type WorkflowStatus = (typeof WORKFLOW_STATUSES)[number];
export type StepStatus = (typeof STEP_STATUSES)[number];

/**
 * Status on input: case-insensitive (the Rust crate's serde writes "Running"), lowercase after
 * parsing. Documented as the enum of the values the service answers; the description says that
 * other letter cases are accepted too.
 */
function caseInsensitiveEnum<T extends string>(values: readonly T[]) {
  return z
    .string()
    .refine((s) => (values as readonly string[]).includes(s.toLowerCase()), `must be one of ${values.join(', ')} (any case)`)
    .transform((s) => s.toLowerCase() as T)
    .meta({ enum: [...values], description: 'Case-insensitive on input (`Running` is `running`); answered in lowercase.' });
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
    version: z.int().optional().meta({ description: 'On a 412 when the state exists: its current version, also in ' +
      'the ETag header. Retry with If-Match set to it after reloading.' }),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details (application/problem+json).', examples: [problemExample] });

export const IdParams = z.strictObject({
  id: Uuid.meta({ description: 'The workflow state\'s id (a uuid the client chooses).', examples: [EXAMPLE_STATE_ID] }),
});

/** Optional conditional-request headers, listed so that Swagger UI offers them. */
export const IfMatchHeaders = z.object({
  'if-match': z.string().optional().meta({ description: 'The version as an entity tag, in double quotes (`"3"`), ' +
    'or `*` (any version): 412, with the current version, unless it is the stored one. Compared strongly (RFC 9110): ' +
    'a weak tag (`W/"3"`) never matches, 412; a value that is not an entity tag (an unquoted `3`) is a 400.' }),
});

const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: 'Bad request: invalid JSON, schema, uuid or value (its `errors` name the fields)',
  401: 'No valid bearer token (WWW-Authenticate says why)',
  403: 'The credential lacks the scope this operation needs',
  404: 'Not found',
  409: 'Conflict with an existing resource',
  412: 'Precondition failed: the stored version differs from `If-Match` (the problem\'s `version` and the ETag say which it is), or the state is absent; nothing was written',
  413: 'Body larger than the configured limit (`BODY_LIMIT_BYTES`)',
  415: 'Body is not JSON',
  422: 'The checkpoint\'s snapshot is not a workflow state',
  429: 'Too many requests for this credential; retry after Retry-After seconds',
  503: 'Database unavailable or too slow (the request\'s deadline, `REQUEST_TIMEOUT_MS`, passed, or a statement or lock wait took too long), or the request kept colliding with concurrent ones; the detail says whether anything may have been written. Retry after Retry-After seconds',
};

/** Problem responses a route can give besides its own, as application/problem+json. */
export const problemResponses = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [s, problemAnswer(PROBLEM_DESCRIPTIONS[s] ?? 'Problem', Problem, s)]));
