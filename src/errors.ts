import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';

export interface FieldError {
  path: string;
  message: string;
}

/** A failure with a stable code and HTTP status, rendered as application/problem+json. */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    detail: string,
    readonly errors?: FieldError[],
    readonly headers: Record<string, string> = {},
    /** Members of the problem document beyond RFC 9457's (a 412's current `version`). */
    readonly extensions: Record<string, unknown> = {},
  ) {
    super(detail);
  }
}

export const badRequest = (detail: string, errors?: FieldError[]) =>
  new HttpProblem(400, 'validation-failed', 'Bad Request', detail, errors);
export const notFound = (detail: string) => new HttpProblem(404, 'not-found', 'Not Found', detail);
export const conflict = (detail: string) => new HttpProblem(409, 'conflict', 'Conflict', detail);
/** 412; with the state's `current` version, when it exists, in the body and as the ETag. */
export const preconditionFailed = (detail: string, current?: number) => current === undefined
  ? new HttpProblem(412, 'precondition-failed', 'Precondition Failed', detail)
  : new HttpProblem(412, 'precondition-failed', 'Precondition Failed', `${detail} It is at version ${current}.`, undefined,
    { etag: `"${current}"` }, { version: current });
export const unprocessable = (detail: string, errors?: FieldError[]) =>
  new HttpProblem(422, 'unprocessable', 'Unprocessable Content', detail, errors);
export const unavailable = (detail: string) =>
  new HttpProblem(503, 'unavailable', 'Service Unavailable', detail, undefined, { 'retry-after': '1' });

/** A request past REQUEST_TIMEOUT_MS (src/db/work.ts cancels its statements). */
/**
 * 503 past a request's deadline. `maybeApplied`: a write statement of it was already in
 * PostgreSQL's hands and could not be cancelled, so the answer cannot say it was not applied.
 */
export const deadlineExceeded = (ms: number, maybeApplied = false) =>
  new HttpProblem(503, 'deadline-exceeded', 'Service Unavailable',
    `The request did not complete within ${ms} ms (REQUEST_TIMEOUT_MS); ` + (maybeApplied
      ? 'a statement of it was already running in PostgreSQL and may still be applied: load the state (its version) ' +
        'before retrying, or retry with If-Match.'
      : 'nothing of it was written after this answer. Retry shortly.'), undefined, { 'retry-after': '1' });

const CONNECTION_ERRORS = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED',
]);
const BAD_INPUT_STATES = new Set([
  '22P05', // untranslatable character (\u0000 in jsonb)
  '22021', // character not in repertoire (NUL in text)
  '22P02', // invalid text representation
  '22007', '22008', '22009', // datetime format / overflow / time zone displacement
  '54001', // statement too complex (nesting)
  '22003', // numeric value out of range
  '22001', // string too long
  '23514', // check violation
]);

/** Maps a driver error to a domain error by SQLSTATE or connection code, never by message text. */
export function fromDatabaseError(err: unknown): HttpProblem | undefined {
  if (err instanceof HttpProblem) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  if (CONNECTION_ERRORS.has(code) || code.startsWith('08') || code === '57P01' || code === '57P02' ||
      code === '57P03' || code === '53300') {
    return unavailable('The database is unavailable; retry shortly.');
  }
  // What transaction() did not manage to run again: the same request later will likely succeed.
  if (code === '40001' || code === '40P01') return unavailable('The request collided with concurrent ones; retry shortly.');
  // statement_timeout (or a cancel), lock_timeout, idle_in_transaction_session_timeout.
  if (code === '57014' || code === '55P03' || code === '25P03') {
    return unavailable('The database did not complete the request in time (a statement or a lock wait took too long); retry shortly.');
  }
  if (code === '23505') return conflict('A resource with this identifier already exists.');
  if (BAD_INPUT_STATES.has(code)) return badRequest('The database refused a value in the request.');
  return undefined;
}

function problemType(code: string): string {
  return `urn:workflow-state:problem:${code}`;
}

/** The RFC 9457 document of a problem: the one renderer, for routed and raw answers alike. */
export function problemDocument(p: HttpProblem, instance: string): Record<string, unknown> {
  const body: Record<string, unknown> = {
    type: problemType(p.code),
    title: p.title,
    status: p.status,
    detail: p.message,
    instance,
  };
  if (p.errors) body.errors = p.errors;
  return Object.assign(body, p.extensions);
}

export function sendProblem(req: FastifyRequest, reply: FastifyReply, p: HttpProblem) {
  return reply.code(p.status).headers(p.headers).type('application/problem+json').send(problemDocument(p, req.id));
}

/**
 * The security header of answers made where no hook runs, so neither does helmet's (a malformed
 * URL, the raw answers below): a browser must not sniff their JSON into a page.
 */
export const UNHOOKED_ANSWER_HEADERS = { 'x-content-type-options': 'nosniff' };

/**
 * A whole HTTP/1.1 answer, for a socket that no request object owns (a parser error, a timeout,
 * CONNECT): the same document with `instance` as its id, and the connection closes after it.
 */
export function rawProblemAnswer(p: HttpProblem, instance: string): string {
  const body = JSON.stringify(problemDocument(p, instance));
  const headers = {
    ...p.headers,
    ...UNHOOKED_ANSWER_HEADERS,
    'content-type': 'application/problem+json',
    'content-length': String(Buffer.byteLength(body)),
    'x-request-id': instance,
    connection: 'close',
  };
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return `HTTP/1.1 ${p.status} ${STATUS_CODES[p.status]}\r\n${lines}\r\n${body}`;
}

/** Dotted paths of the fields a validation issue is about; an unknown-keys issue names each key. */
function issuePaths(location: string, instancePath: string, keyword: string, params: unknown): string[] {
  const base = [location, ...instancePath.split('/').filter(Boolean)];
  const keys = (params as { keys?: unknown } | undefined)?.keys;
  if (keyword === 'unrecognized_keys' && Array.isArray(keys) && keys.length) {
    return keys.map((k) => [...base, String(k)].join('.'));
  }
  return [base.join('.')];
}

/** Turns fastify's own errors (body parsing, limits, schema validation) into problems. */
function fromFastifyError(err: FastifyError): HttpProblem | undefined {
  if (hasZodFastifySchemaValidationErrors(err)) {
    const location = err.validationContext === 'querystring' ? 'query' : (err.validationContext ?? 'body');
    const errors: FieldError[] = [];
    for (const v of err.validation) {
      const message = v.keyword === 'unrecognized_keys' ? 'unknown field' : (v.message ?? 'invalid');
      for (const path of issuePaths(location, v.instancePath, v.keyword ?? '', v.params)) errors.push({ path, message });
    }
    const names = [...new Set(errors.map((e) => e.path))].join(', ');
    return badRequest(`Invalid ${location}: ${names}`, errors);
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HttpProblem(413, 'payload-too-large', 'Content Too Large', err.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HttpProblem(415, 'unsupported-media-type', 'Unsupported Media Type',
        'Send the request body as application/json.');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return badRequest('The request body is empty; send a JSON document.', [{ path: 'body', message: 'required' }]);
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return badRequest(err.message);
  }
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
    return new HttpProblem(err.statusCode, 'client-error', 'Bad Request', err.message);
  }
  return undefined;
}

export function registerErrorHandling(app: FastifyInstance) {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    let problem = err instanceof HttpProblem ? err : (fromFastifyError(err) ?? fromDatabaseError(err));
    // Past its deadline a request's statements were cancelled: whatever failed, that is why.
    if (req.work?.expired && !(problem && problem.status < 500)) problem = deadlineExceeded(req.work.timeoutMs);
    if (problem) {
      // A client that went away had its write cancelled: what it asked for, not a failure.
      if (req.work?.abandoned) req.log.info({ code: problem.code }, 'client closed the connection: its write was cancelled');
      else if (problem.status >= 500) req.log.error({ err }, 'request failed');
      return sendProblem(req, reply, problem);
    }
    req.log.error({ err }, 'unhandled error');
    return sendProblem(req, reply, new HttpProblem(500, 'internal', 'Internal Server Error',
      'The server failed to handle the request; the request id names it in the logs.'));
  });
  app.setNotFoundHandler((req, reply) =>
    // Its own type: a client can tell "no such thing" from "no such endpoint" (a wrong base URL).
    sendProblem(req, reply, new HttpProblem(404, 'no-route', 'Not Found', `No route for ${req.method} ${req.url.split('?')[0]}.`)));
}
