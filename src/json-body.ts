import type { FastifyInstance } from 'fastify';
import { badRequest, type FieldError } from './errors.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });
/** Escapes or numbers that may hide a value PostgreSQL refuses or JSON.parse cannot keep exactly. */
const SUSPECT = /\\u0000|\\u[dD][89a-fA-F]|[eE][+-]?\d{3}|\d{300}/;

/** The first string PostgreSQL cannot store (NUL, lone surrogate) or number JSON cannot carry. */
export function findUnstorable(value: unknown, path: string): FieldError | undefined {
  if (typeof value === 'string') {
    if (value.includes('\u0000')) return { path, message: 'contains a NUL character (\\u0000), which cannot be stored' };
    if (!value.isWellFormed()) return { path, message: 'contains a lone UTF-16 surrogate, which cannot be stored' };
    return undefined;
  }
  if (typeof value === 'number') {
    return Number.isFinite(value) ? undefined : { path, message: 'number is out of the range a JSON number can carry' };
  }
  if (value === null || typeof value !== 'object') return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = findUnstorable(value[i], `${path}.${i}`);
      if (bad) return bad;
    }
    return undefined;
  }
  for (const [k, v] of Object.entries(value)) {
    const sub = `${path}.${k}`;
    const bad = findUnstorable(k, sub) ?? findUnstorable(v, sub);
    if (bad) return bad;
  }
  return undefined;
}

/**
 * JSON bodies: strict UTF-8, parsed once; values PostgreSQL would refuse or alter are a 400 naming
 * the field, so they never reach the database as a 500 or get silently changed.
 */
export function registerJsonBody(app: FastifyInstance) {
  app.removeContentTypeParser(['application/json']);
  const parser = (_req: unknown, buf: Buffer, done: (err: Error | null, body?: unknown) => void) => {
    if (buf.length === 0) return done(null, undefined);
    let text: string;
    try {
      text = utf8.decode(buf);
    } catch {
      return done(badRequest('The request body is not valid UTF-8.', [{ path: 'body', message: 'invalid UTF-8' }]));
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (e) {
      return done(badRequest(`The request body is not valid JSON: ${(e as Error).message}`,
        [{ path: 'body', message: 'invalid JSON' }]));
    }
    if (SUSPECT.test(text)) {
      const bad = findUnstorable(body, 'body');
      if (bad) return done(badRequest(`Invalid body: ${bad.path}`, [bad]));
    }
    done(null, body);
  };
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, parser);
  app.addContentTypeParser(/^application\/[\w.-]+\+json$/, { parseAs: 'buffer' }, parser);
  // Path and query strings come percent-decoded, so %00 reaches here as a NUL.
  app.addHook('preValidation', async (req) => {
    const bad = findUnstorable(req.params, 'params') ?? findUnstorable(req.query, 'query');
    if (bad) throw badRequest(`Invalid ${bad.path.split('.')[0]}: ${bad.path}`, [bad]);
  });
}
