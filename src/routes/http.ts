import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { badRequest, preconditionFailed } from '../errors.js';
import type { WriteCondition } from '../repositories/conditions.js';
import { rawJson, renderJsonParts } from '../repositories/render.js';
import { Uuid } from '../schemas/common.js';

export const etag = (version: number) => `"${version}"`;

/** Bodies up to this size are sent in one piece; larger ones (pages of big states) as a stream of their parts. */
const STREAM_ABOVE_BYTES = 1024 * 1024;

/**
 * Sends JSON that render.ts made (text, stored UTF-8 bytes, or the parts of a page): no parse, no
 * stringify, and a large page is not copied into one buffer.
 */
export function sendJsonText(reply: FastifyReply, status: number, body: string | Buffer | Buffer[], version?: number) {
  if (version !== undefined) reply.header('etag', etag(version));
  const payload = !Array.isArray(body) ? body
    : body.reduce((n, b) => n + b.length, 0) <= STREAM_ABOVE_BYTES ? Buffer.concat(body) : Readable.from(body);
  return reply.code(status).type('application/json; charset=utf-8').send(payload);
}

function entityTags(header: string): string[] {
  return header.split(',').map((t) => t.trim()).filter(Boolean);
}

/** RFC 9110's entity-tag: an optional W/ and a double-quoted opaque tag. */
const ENTITY_TAG = /^(W\/)?"[\x21\x23-\x7e\x80-\xff]*"$/;

/**
 * The write precondition from If-Match, If-None-Match: * and a `version` in the body.
 * If-Match is compared strongly (RFC 9110): an entity tag that can never match a version (a weak
 * W/"3", a quoted non-integer) fails the write with 412; a value that is not an entity tag at all
 * (an unquoted 3) is a 400 that shows the form.
 */
export function writeCondition(req: FastifyRequest, bodyVersion?: number, allowCreateOnly = false): WriteCondition {
  const ifMatch = req.headers['if-match'];
  const ifNoneMatch = req.headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    if (!allowCreateOnly || ifNoneMatch.trim() !== '*') {
      throw badRequest('If-None-Match is supported on writes only as "*" on PUT /v1/workflows/{id}.',
        [{ path: 'headers.if-none-match', message: 'only * is supported here' }]);
    }
    if (ifMatch !== undefined || bodyVersion !== undefined) {
      throw badRequest('If-None-Match: * cannot be combined with If-Match or a body version.',
        [{ path: 'headers.if-none-match', message: 'conflicts with If-Match / version' }]);
    }
    return { kind: 'absent' };
  }
  let versions: number[] | undefined;
  if (ifMatch !== undefined) {
    const tags = entityTags(ifMatch);
    if (tags.length === 0 || tags.some((t) => t !== '*' && !ENTITY_TAG.test(t))) {
      throw badRequest(`If-Match takes entity tags: the version in double quotes (If-Match: "3"), or *; got ${ifMatch}.`,
        [{ path: 'headers.if-match', message: 'expected "<version>" in double quotes, or *' }]);
    }
    if (tags.includes('*')) {
      if (bodyVersion === undefined) return { kind: 'exists' };
    } else {
      versions = tags.flatMap((t) => {
        const m = /^"(\d{1,10})"$/.exec(t);
        return m ? [Number(m[1])] : [];
      });
      if (versions.length === 0) throw preconditionFailed(`If-Match ${ifMatch} matches no version.`);
    }
  }
  if (bodyVersion !== undefined) {
    if (versions && !versions.includes(bodyVersion)) {
      throw preconditionFailed(`The body version ${bodyVersion} is not among If-Match ${ifMatch}.`);
    }
    versions = [bodyVersion];
  }
  return versions ? { kind: 'version', versions } : { kind: 'any' };
}

/** True when If-None-Match names the current version (or is *): the client's copy is fresh. */
export function notModified(req: FastifyRequest, version: number): boolean {
  const header = req.headers['if-none-match'];
  if (!header) return false;
  return entityTags(header).some((t) => t === '*' || t === etag(version) || t === `W/${etag(version)}`);
}

/** A timestamptz as PostgreSQL prints it in a UTC session (so one that came back in a cursor is one it issued). */
export const isDatabaseTimestamp = (s: string) => /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?\+00$/.test(s);
export const isUuid = (s: string) => Uuid.safeParse(s).success;

/** Opaque keyset cursors: base64url of a JSON array of the last row's sort keys. */
export function encodeCursor(keys: string[]): string {
  return Buffer.from(JSON.stringify(keys)).toString('base64url');
}

export function decodeCursor(cursor: string, arity: number, check: (keys: string[]) => boolean, path = 'query.cursor'): string[] {
  try {
    const keys: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(keys) && keys.length === arity && keys.every((k) => typeof k === 'string') && check(keys)) {
      return keys;
    }
  } catch {
    // fall through to the 400 below
  }
  throw badRequest('The cursor is not one this service issued.', [{ path, message: 'invalid cursor' }]);
}

/** A page of stored documents, `{"items":[...],"next_cursor":...}`, in parts for sendJsonText. */
export const pageBody = (items: (string | Buffer)[], nextCursor: string | null) =>
  renderJsonParts({ items: items.map(rawJson), next_cursor: nextCursor });
