import type { Problem } from './types.js';

export type FieldError = NonNullable<Problem['errors']>[number];

/** An answer that is not a success: the RFC 9457 problem the service sent (application/problem+json). */
export class ProblemError extends Error {
  override readonly name: string = 'ProblemError';
  readonly type: string;
  readonly title: string;
  readonly detail: string | undefined;
  readonly instance: string | undefined;
  /** The fields a 400 or 422 names. */
  readonly errors: FieldError[];

  constructor(readonly status: number, problem: Partial<Problem> | undefined, statusText = '') {
    const title = problem?.title ?? (statusText || `HTTP ${status}`);
    super(problem?.detail ? `${title}: ${problem.detail}` : title);
    this.type = problem?.type ?? 'about:blank';
    this.title = title;
    this.detail = problem?.detail;
    this.instance = problem?.instance;
    this.errors = problem?.errors ?? [];
  }
}

/**
 * 412: the state is not at the version a conditional write named (If-Match), or exists when the
 * write was to create it (If-None-Match: *). Nothing was written.
 */
export class PreconditionFailed extends ProblemError {
  override readonly name: string = 'PreconditionFailed';
  /** The state's current version (the problem's `version`, also its ETag); undefined when it does not exist. */
  readonly current: number | undefined;

  constructor(problem: Partial<Problem> | undefined, etag: string | null) {
    super(412, problem);
    this.current = problem?.version ?? versionOfETag(etag);
  }
}

/** The version an ETag (`"3"`) names. */
export function versionOfETag(etag: string | null): number | undefined {
  const m = etag?.match(/^"(\d+)"$/);
  return m ? Number(m[1]) : undefined;
}

/** The error an answer that is not a success makes; `body` is what openapi-fetch read of it. */
export function problemOf(response: Response, body: unknown): ProblemError {
  const problem = typeof body === 'object' && body !== null ? (body as Partial<Problem>) : undefined;
  return response.status === 412
    ? new PreconditionFailed(problem, response.headers.get('etag'))
    : new ProblemError(response.status, problem, response.statusText);
}
