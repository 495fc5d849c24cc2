/**
 * The OpenAPI document: made by @fastify/swagger from the routes' zod schemas (through
 * fastify-type-provider-zod), so the schemas that validate are the schemas documented. What this
 * module adds is what those two leave out:
 *  - response headers (ETag, Location, Retry-After, X-Request-Id), declared on the routes' responses;
 *  - each request body's example (its zod schema's `.meta({ examples })`) on the request itself,
 *    where Swagger UI's "Try it out" takes it from (answers show their schemas' examples);
 *  - a request body is required only if its schema refuses no body;
 *  - components: one per schema a route uses, named by its zod id (an input-only schema without
 *    the "Input" suffix), and none that nothing refers to.
 */
import type { FastifyDynamicSwaggerOptions } from '@fastify/swagger';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { globalRegistry, z } from 'zod';
import { EXAMPLE_STATE_ID } from './schemas/examples.js';
import { SERVICE_VERSION } from './version.js';

/** The response headers the service sends, described once. */
const HEADERS = {
  etag: {
    type: 'string',
    description: 'The state\'s version as a strong entity tag (`"3"`): send it back in `If-Match` to write only ' +
      'over this version, or in `If-None-Match` to load only if it changed.',
    examples: ['"1"'],
  },
  location: { type: 'string', description: 'Where the created resource is.', examples: [`/v1/workflows/${EXAMPLE_STATE_ID}`] },
  'retry-after': { type: 'string', description: 'Seconds to wait before retrying.', examples: ['1'] },
  'x-request-id': {
    type: 'string',
    description: 'The request\'s id: the caller\'s `X-Request-Id` when it looks like one, else made here; ' +
      'in every log line of the request and in a problem\'s `instance`.',
    examples: ['req-1f'],
  },
} as const;
export type ResponseHeader = keyof typeof HEADERS;
const HEADER_NAMES: Record<ResponseHeader, string> = {
  etag: 'ETag', location: 'Location', 'retry-after': 'Retry-After', 'x-request-id': 'X-Request-Id',
};
/** The names of problem answers in components.responses. */
const PROBLEM_NAMES: Record<number, string> = {
  400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 409: 'Conflict', 412: 'PreconditionFailed',
  413: 'ContentTooLarge', 415: 'UnsupportedMediaType', 422: 'UnprocessableContent', 429: 'TooManyRequests',
  503: 'ServiceUnavailable',
};

const headersOf = (names: ResponseHeader[]) =>
  Object.fromEntries([...new Set<ResponseHeader>([...names, 'x-request-id'])].map((h) => [h, HEADERS[h]]));

/** A documented answer: its description, its JSON body (or none), the headers it carries besides X-Request-Id. */
export function answer<S extends z.ZodType>(description: string, schema: S, headers?: ResponseHeader[]):
  { description: string; content: { 'application/json': { schema: S } }; headers: Record<string, unknown> };
export function answer(description: string, schema: null, headers?: ResponseHeader[]): z.ZodNull;
export function answer(description: string, schema: z.ZodType | null, headers: ResponseHeader[] = []): unknown {
  if (schema === null) {
    // No body (204, 304): a schema of its own, whose headers transform() finds by it.
    const none = z.null().meta({ description });
    headersOfNoBody.set(none, headersOf(headers));
    return none;
  }
  return { description, content: { 'application/json': { schema } }, headers: headersOf(headers) };
}
const headersOfNoBody = new WeakMap<z.ZodType, Record<string, unknown>>();

/** A problem+json answer, with its headers (Retry-After on 429 and 503, the current ETag on 412). */
export function problemAnswer(description: string, schema: z.ZodType, status: number) {
  const headers: ResponseHeader[] = status === 429 || status === 503 ? ['retry-after'] : status === 412 ? ['etag'] : [];
  return { description, content: { 'application/problem+json': { schema } }, headers: headersOf(headers) };
}

type Json = Record<string, any>;
/** Marks of an operation, from transform to transformObject: its body may be absent; its body's example. */
const BODY_OPTIONAL = 'x-body-optional';
const BODY_EXAMPLE = 'x-body-example';
/** The examples of a zod schema's metadata, or of the schema it makes optional or nullable. */
function examplesOf(schema: unknown): unknown[] | undefined {
  const own = (globalRegistry.get(schema as z.ZodType) as { examples?: unknown[] } | undefined)?.examples;
  const inner = (schema as z.ZodType | undefined)?._zod.def as { innerType?: z.ZodType } | undefined;
  return own ?? (inner?.innerType ? examplesOf(inner.innerType) : undefined);
}

/**
 * Per route: the type provider's transform, then what it drops: the responses' headers, and marks
 * for transformObject (the body's example, whether the body may be absent).
 */
export const transform: NonNullable<FastifyDynamicSwaggerOptions['transform']> = (input) => {
  const out = jsonSchemaTransform(input as Parameters<typeof jsonSchemaTransform>[0]) as { schema: Json; url: string };
  const source = (input as { schema?: Json }).schema;
  if (!source || out.schema.hide) return out;
  if (source.body) {
    const example = examplesOf(source.body)?.[0];
    if (example !== undefined) out.schema[BODY_EXAMPLE] = example;
    // @fastify/swagger marks every body required.
    if ((source.body as z.ZodType).safeParse(undefined).success) out.schema[BODY_OPTIONAL] = true;
  }
  for (const [status, response] of Object.entries((source.response ?? {}) as Record<string, Json>)) {
    const documented = out.schema.response?.[status] as Json | undefined;
    const headers = response.headers ?? headersOfNoBody.get(response as z.ZodType);
    if (documented && headers) documented.headers = headers;
  }
  return out;
};

const sorted = (o: Json) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));

/** Every `$ref` in `value`, recursively. */
function refsIn(value: unknown, found = new Set<string>()): Set<string> {
  if (Array.isArray(value)) value.forEach((v) => refsIn(v, found));
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref' && typeof v === 'string') found.add(v.replace('#/components/schemas/', ''));
      else refsIn(v, found);
    }
  }
  return found;
}

/** `value` with every `$ref` to a renamed component pointing to its new name. */
function renameRefs(value: unknown, names: Map<string, string>): unknown {
  return JSON.parse(JSON.stringify(value), (k, v) =>
    k === '$ref' && typeof v === 'string' && names.has(v.replace('#/components/schemas/', ''))
      ? `#/components/schemas/${names.get(v.replace('#/components/schemas/', ''))}`
      : v);
}

/**
 * The whole document: the type provider's components, then only those the operations reach, an
 * input-only schema named without "Input"; request bodies that may be absent marked so.
 */
export function transformObject(input: Parameters<typeof jsonSchemaTransformObject>[0]) {
  const doc = jsonSchemaTransformObject(input) as Json;
  const all: Json = doc.components.schemas;
  const reached = new Set<string>();
  const visit = (names: Set<string>) => names.forEach((n) => {
    if (reached.has(n) || !(n in all)) return;
    reached.add(n);
    visit(refsIn(all[n]));
  });
  visit(refsIn(doc.paths));
  const renames = new Map<string, string>();
  for (const name of reached) {
    const plain = name.replace(/Input$/, '');
    if (plain !== name && !reached.has(plain)) renames.set(name, plain);
  }
  const schemas = sorted(Object.fromEntries([...reached].map((n) => [renames.get(n) ?? n, all[n]])));
  const paths = renameRefs(doc.paths, renames) as Json;
  const headers: Json = {};
  const responses: Json = {};
  for (const operations of Object.values(paths)) {
    for (const operation of Object.values(operations as Record<string, Json>)) {
      if (operation[BODY_OPTIONAL]) operation.requestBody.required = false;
      if (operation[BODY_EXAMPLE] !== undefined) operation.requestBody.content['application/json'].example = operation[BODY_EXAMPLE];
      delete operation[BODY_OPTIONAL];
      delete operation[BODY_EXAMPLE];
      for (const [status, response] of Object.entries(operation.responses as Record<string, Json>)) {
        // Each header described once, in components.headers, by its usual spelling.
        for (const [name, header] of Object.entries((response.headers ?? {}) as Record<string, Json>)) {
          const canonical = HEADER_NAMES[name as ResponseHeader];
          headers[canonical] = header;
          delete response.headers[name];
          response.headers[canonical] = { $ref: `#/components/headers/${canonical}` };
        }
        // A problem answer is the same on every operation: once, in components.responses.
        if (response.content?.['application/problem+json']) {
          const name = PROBLEM_NAMES[Number(status)] ?? `Problem${status}`;
          if (responses[name] && JSON.stringify(responses[name]) !== JSON.stringify(response)) {
            throw new Error(`OpenAPI: two different ${status} problem answers (${operation.operationId})`);
          }
          responses[name] = response;
          operation.responses[status] = { $ref: `#/components/responses/${name}` };
        }
      }
    }
  }
  return {
    ...doc,
    paths,
    components: { ...doc.components, schemas: renameRefs(schemas, renames), responses: sorted(responses), headers: sorted(headers) },
  };
}

export const DOCUMENT_INFO = {
  title: 'Workflow state service',
  description:
    'Saves, loads, lists, checkpoints, restores and purges the execution state of LLM workflows, ' +
    'in PostgreSQL. Writes take `If-Match` / `If-None-Match` for optimistic concurrency; errors are ' +
    '`application/problem+json` (RFC 9457).\n\n' +
    'The examples are one workflow, with the same ids throughout: in Swagger UI, "Try it out" and "Execute" ' +
    'with them as they are, in the order a workflow goes (save, load, patch, a step, list, checkpoint, the ' +
    'checkpoint reads, restore, prune; then a LangGraph thread\'s checkpoint, writes, tuple, search, delta history ' +
    'and settings; purge, and the deletes last), and each succeeds.',
  version: SERVICE_VERSION,
  license: { name: 'MIT OR Apache-2.0', identifier: 'MIT OR Apache-2.0' },
};
