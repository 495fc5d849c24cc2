import type { FastifyInstance } from 'fastify';
import { badRequest, type FieldError } from './errors.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });
/** Escapes that may hide a string PostgreSQL refuses (NUL) or cannot encode (a lone surrogate). */
const SUSPECT_ESCAPE = /\\u0000|\\u[dD][89a-fA-F]/;
/** Deeper documents are refused: recursion over them (stringify, jsonb) would exhaust the stack. */
export const MAX_JSON_DEPTH = 512;

/** Sign, significant digits and exponent of a decimal number token, to compare values exactly. */
function canonicalNumber(token: string): string {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(token);
  if (!m) return token;
  const all = (m[2]! + (m[3] ?? '')).replace(/^0+/, '');
  if (!all) return '0';
  const digits = all.replace(/0+$/, '');
  const exp = Number(m[4] ?? 0) - (m[3]?.length ?? 0) + (all.length - digits.length);
  return `${m[1]}${digits}e${exp}`;
}

/**
 * One pass over the raw JSON text: nesting depth, and number tokens that JSON.parse would change
 * (more digits than a double keeps, or out of its range). Strings are skipped with indexOf.
 */
function scanJson(text: string): { tooDeep: boolean; inexact?: string } {
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      for (;;) {
        const j = text.indexOf('"', i + 1);
        let k = j - 1;
        while (text.charCodeAt(k) === 92 /* backslash */) k--;
        i = j;
        if ((j - 1 - k) % 2 === 0) break;
      }
    } else if (c === 123 || c === 91) {
      if (++depth > MAX_JSON_DEPTH) return { tooDeep: true };
    } else if (c === 125 || c === 93) {
      depth--;
    } else if (c === 45 || (c >= 48 && c <= 57)) {
      let j = i + 1;
      for (; j < n; j++) {
        const d = text.charCodeAt(j);
        if (!((d >= 48 && d <= 57) || d === 46 || d === 101 || d === 69 || d === 43 || d === 45)) break;
      }
      // Up to 15 significant digits without an exponent always survive a double exactly.
      if (j - i > 15 || /[eE]/.test(text.slice(i, j))) {
        const token = text.slice(i, j);
        const parsed = Number(token);
        if (!Number.isFinite(parsed) || canonicalNumber(token) !== canonicalNumber(String(parsed).replace('e+', 'e'))) {
          return { tooDeep: false, inexact: token };
        }
      }
      i = j - 1;
    }
  }
  return { tooDeep: false };
}

/** Depth of a parsed value, counted no further than `limit` (so the walk itself stays shallow). */
function depthExceeds(v: unknown, limit: number): boolean {
  if (v === null || typeof v !== 'object') return false;
  if (limit <= 0) return true;
  return Object.values(v).some((x) => depthExceeds(x, limit - 1));
}

/** The top-level field holding the too-deep value, to name it in the error. */
function topLevelFieldTooDeep(body: unknown): string | undefined {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return undefined;
  const hit = Object.entries(body).find(([, v]) => depthExceeds(v, MAX_JSON_DEPTH - 1));
  return hit && `body.${hit[0]}`;
}

/** The path of the first number equal to `value`, to name the field an inexact number was in. */
function pathOfNumber(v: unknown, value: number, path: string): string | undefined {
  if (typeof v === 'number') return v === value ? path : undefined;
  if (v === null || typeof v !== 'object') return undefined;
  for (const [k, x] of Object.entries(v)) {
    const hit = pathOfNumber(x, value, `${path}.${k}`);
    if (hit) return hit;
  }
  return undefined;
}

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

const own = (o: unknown, k: string) => o !== null && typeof o === 'object' && Object.hasOwn(o, k);

/**
 * A "__proto__" key of `value`, an object that a schema validates (`path` names it). JSON.parse
 * keeps such a key, but zod skips it, so it would be dropped without a word; it is refused instead.
 * (Inside free JSON, such as context, outputs and snapshots, it is kept and stored.)
 */
export const protoKeyAt = (value: unknown, path: string): FieldError | undefined =>
  own(value, '__proto__') ? { path: `${path}.__proto__`, message: 'a key named __proto__ is not accepted here' } : undefined;

/** A "__proto__" key of the body, its steps or a step (a route's other records check theirs: protoKeyAt). */
function protoKey(body: unknown): FieldError | undefined {
  const steps = own(body, 'steps') ? (body as { steps: unknown }).steps : undefined;
  const bad = protoKeyAt(body, 'body') ?? protoKeyAt(steps, 'body.steps');
  if (bad || steps === null || typeof steps !== 'object') return bad;
  for (const [k, step] of Object.entries(steps)) {
    const inStep = protoKeyAt(step, `body.steps.${k}`);
    if (inStep) return inStep;
  }
  return undefined;
}

/**
 * JSON bodies: strict UTF-8, parsed once; values PostgreSQL would refuse or alter are a 400 naming
 * the field, so they never reach the database as a 500 or get silently changed.
 */
export function registerJsonBody(app: FastifyInstance) {
  // Only JSON is accepted: fastify's text/plain parser goes too, so such bodies are a 415.
  app.removeContentTypeParser(['application/json', 'text/plain']);
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
    const scan = scanJson(text);
    if (scan.tooDeep) {
      const path = topLevelFieldTooDeep(body) ?? 'body';
      return done(badRequest(`Invalid body: ${path} nests deeper than ${MAX_JSON_DEPTH} levels.`,
        [{ path, message: `nested deeper than ${MAX_JSON_DEPTH} levels` }]));
    }
    if (scan.inexact !== undefined) {
      const path = pathOfNumber(body, Number(scan.inexact), 'body') ?? 'body';
      return done(badRequest(`Invalid body: ${path}`, [{
        path,
        message: `the number ${scan.inexact.slice(0, 40)} cannot be kept exactly (beyond a double's precision or range)`,
      }]));
    }
    if (SUSPECT_ESCAPE.test(text)) {
      const bad = findUnstorable(body, 'body');
      if (bad) return done(badRequest(`Invalid body: ${bad.path}`, [bad]));
    }
    done(null, body);
  };
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, parser);
  app.addContentTypeParser(/^application\/[\w.-]+\+json$/, { parseAs: 'buffer' }, parser);
  // Path and query strings come percent-decoded, so %00 reaches here as a NUL.
  app.addHook('preValidation', (req, _reply, done) => {
    const bad = findUnstorable(req.params, 'params') ?? findUnstorable(req.query, 'query') ?? protoKey(req.body);
    done(bad ? badRequest(`Invalid ${bad.path.split('.')[0]}: ${bad.path}`, [bad]) : undefined);
  });
}
