import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { tenancyOf, visibleTenant } from '../auth.js';
import { transaction } from '../db/client.js';
import { badRequest, conflict, notFound } from '../errors.js';
import { protoKeyAt } from '../json-body.js';
import { answer } from '../openapi.js';
import { deltaHistory, deltaHistoryOf, loadTuple, searchTuples, threadOf, tupleOf } from '../repositories/thread-tuples.js';
import * as threads from '../repositories/threads.js';
import { problemResponses } from '../schemas/common.js';
import {
  CheckpointParams, CheckpointTuple, CheckpointTuplePage, DeltaChannelHistory, DeltaHistoryQuery, LATEST, NamespaceQuery,
  Thread, ThreadCheckpointInput, ThreadCheckpointRef, ThreadParams, ThreadSearchInput, ThreadSettingsInput,
  ThreadWritesInput, WritesParams,
} from '../schemas/threads.js';
import { decodeCursor, encodeCursor, sendJsonText } from './http.js';

/**
 * The tenant of the thread a path names: thread ids are unique within a tenant, so a path names
 * the credential's tenant's thread; an operator's (tenant `*`) is the default tenant's, where its
 * writes go, as an operator's new workflow states do. Search and purge by an operator see every tenant.
 */
const threadTenant = (req: FastifyRequest) => tenancyOf(req).creates;

/** `latest` in a path reads the newest checkpoint, so no checkpoint can be stored under that id. */
function refuseLatest(checkpointId: string) {
  if (checkpointId === LATEST) {
    throw badRequest('`latest` names a namespace\'s newest checkpoint on reads; it cannot be a checkpoint\'s id.',
      [{ path: 'params.checkpoint_id', message: 'latest is reserved' }]);
  }
}

/** A record of the body (`key`) with a "__proto__" key, which zod would drop without a word: refused. */
function refuseProtoKey(req: FastifyRequest, key: string) {
  const bad = protoKeyAt((req.body as Record<string, unknown> | null | undefined)?.[key], `body.${key}`);
  if (bad) throw badRequest(`Invalid body: ${bad.path}`, [bad]);
}

const location = (threadId: string, checkpointId: string, ns: string) =>
  `/v1/threads/${encodeURIComponent(threadId)}/checkpoints/${encodeURIComponent(checkpointId)}` +
  (ns === '' ? '' : `?ns=${encodeURIComponent(ns)}`);
const named = (threadId: string, ns: string) => `thread ${JSON.stringify(threadId)}${ns === '' ? '' : ` (namespace ${JSON.stringify(ns)})`}`;

export async function threadRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.put('/threads/:thread_id/checkpoints/:checkpoint_id', {
    preValidation: async (req) => refuseProtoKey(req, 'channel_versions'),
    schema: {
      operationId: 'saveThreadCheckpoint',
      tags: ['threads'],
      summary: 'Store a checkpoint and the channel values that changed (a saver\'s put)',
      description: 'The thread is created by its first checkpoint or write, in the same statement. Each channel value ' +
        'is stored once per version and assembled into every checkpoint that names the version, so a channel ' +
        'written once is read from where it was written. The same id and content again answers 200, other content ' +
        '409. With the thread\'s `max_checkpoints`, older checkpoints of the namespace are pruned before the answer.',
      params: CheckpointParams,
      querystring: NamespaceQuery,
      body: ThreadCheckpointInput,
      response: {
        200: answer('Already stored with this content', ThreadCheckpointRef),
        201: answer('Stored', ThreadCheckpointRef, ['location']),
        ...problemResponses(400, 409, 413, 415, 503),
      },
    },
  }, async (req, reply) => {
    const { thread_id: threadId, checkpoint_id: checkpointId } = req.params;
    const ns = req.query.ns ?? '';
    refuseLatest(checkpointId);
    const out = await threads.saveCheckpoint(req.db, threadTenant(req), threadId, ns, checkpointId, req.body);
    if (out.kind === 'conflict') {
      throw conflict(`Checkpoint ${JSON.stringify(checkpointId)} of ${named(threadId, ns)} exists with other content.`);
    }
    if (out.kind === 'created') {
      req.server.metrics?.threadCheckpointsWritten.inc();
      if (out.prune !== undefined) {
        const pruned = await transaction(req.db, (tx) => threads.pruneThread(tx, out.thread, out.prune!, ns));
        req.server.metrics?.purgedRows.inc({ table: 'thread_checkpoints' }, pruned);
      }
      reply.header('location', location(threadId, checkpointId, ns));
    }
    return reply.code(out.kind === 'created' ? 201 : 200).send({ thread_id: threadId, checkpoint_ns: ns, checkpoint_id: checkpointId });
  });

  app.put('/threads/:thread_id/checkpoints/:checkpoint_id/writes/:task_id', {
    schema: {
      operationId: 'saveThreadWrites',
      tags: ['threads'],
      summary: 'Store a task\'s pending writes to a checkpoint (a saver\'s putWrites)',
      description: 'The checkpoint need not exist yet, nor the thread (LangGraph\'s async durability sends writes ' +
        'before their checkpoint): the thread is created here if needed. A write with idx >= 0 is stored once; one ' +
        'with a negative idx (a special channel) replaces the stored one.',
      params: WritesParams,
      querystring: NamespaceQuery,
      body: ThreadWritesInput,
      response: { 204: answer('Stored', null), ...problemResponses(400, 413, 415, 503) },
    },
  }, async (req, reply) => {
    const { thread_id: threadId, checkpoint_id: checkpointId, task_id: taskId } = req.params;
    refuseLatest(checkpointId);
    await threads.saveWrites(req.db, threadTenant(req), threadId, req.query.ns ?? '', checkpointId, taskId, req.body);
    return reply.code(204).send(null);
  });

  app.get('/threads/:thread_id/checkpoints/:checkpoint_id', {
    schema: {
      operationId: 'loadThreadCheckpoint',
      tags: ['threads'],
      summary: 'A checkpoint tuple: the checkpoint, its channel values, metadata, parent and pending writes (a saver\'s getTuple)',
      description: 'One statement, whose cost does not grow with the thread\'s history. `latest` answers the ' +
        'namespace\'s checkpoint with the greatest id (code point order).',
      params: CheckpointParams,
      querystring: NamespaceQuery,
      response: { 200: answer('The tuple', CheckpointTuple), ...problemResponses(400, 404, 503) },
    },
  }, async (req, reply) => {
    const { thread_id: threadId, checkpoint_id: checkpointId } = req.params;
    const ns = req.query.ns ?? '';
    const row = await loadTuple(req.db, threadTenant(req), threadId, ns, checkpointId === LATEST ? undefined : checkpointId);
    if (!row) {
      throw notFound(checkpointId === LATEST ? `No checkpoint in ${named(threadId, ns)}.`
        : `Checkpoint ${JSON.stringify(checkpointId)} of ${named(threadId, ns)} does not exist.`);
    }
    return sendJsonText(reply, 200, JSON.stringify(tupleOf(row)));
  });

  app.post('/threads/search', {
    config: { scope: 'read' },
    preValidation: async (req) => refuseProtoKey(req, 'filter'),
    schema: {
      operationId: 'searchThreadCheckpoints',
      tags: ['threads'],
      summary: 'Checkpoint tuples by thread, namespace, id, `before` and metadata, newest first (a saver\'s list)',
      description: 'Across the tenant\'s threads unless `thread_id` is given (an operator\'s: every tenant\'s). Keyset ' +
        'pages: `next_cursor` is null on the last page. A POST so that the metadata filter can be an object; it needs ' +
        'the `read` scope only.',
      body: ThreadSearchInput,
      response: { 200: answer('A page of tuples', CheckpointTuplePage), ...problemResponses(400, 413, 415, 503) },
    },
  }, async (req, reply) => {
    const b = req.body;
    const after = b.cursor == null ? undefined
      : decodeCursor(b.cursor, 3, ([, thread]) => /^\d{1,19}$/.test(thread!), 'body.cursor') as [string, string, string];
    const page = await searchTuples(req.db, {
      tenant: visibleTenant(req),
      threadId: b.thread_id,
      ns: b.checkpoint_ns,
      checkpointId: b.checkpoint_id,
      before: b.before,
      filter: b.filter && (threads.sanitised(b.filter) as Record<string, unknown>),
      after,
      limit: b.limit,
      maxBytes: app.config.LIST_MAX_BYTES,
    });
    const last = page.rows.at(-1);
    const next = page.more && last ? encodeCursor([last.checkpoint_id, last.thread, last.checkpoint_ns]) : null;
    return sendJsonText(reply, 200, JSON.stringify({ items: page.rows.map(tupleOf), next_cursor: next }));
  });

  app.get('/threads/:thread_id/checkpoints/:checkpoint_id/delta-history', {
    // One channel comes as a string, several as an array: always an array.
    preValidation: async (req) => {
      const q = req.query as { channel?: unknown };
      if (typeof q.channel === 'string') q.channel = [q.channel];
    },
    schema: {
      operationId: 'loadDeltaChannelHistory',
      tags: ['threads'],
      summary: 'What rebuilds delta channels\' values at a checkpoint (a saver\'s getDeltaChannelHistory)',
      description: 'For each channel, walking from the checkpoint\'s parent up its ancestors to the nearest one that ' +
        'stores the channel\'s value: that value (the seed) and the channel\'s writes on every ancestor walked, the ' +
        'seed\'s included, oldest first. One statement. An unknown checkpoint has no history: each channel answers ' +
        'no writes.',
      params: CheckpointParams,
      querystring: DeltaHistoryQuery,
      response: { 200: answer('Each channel\'s seed and writes', DeltaChannelHistory), ...problemResponses(400, 503) },
    },
  }, async (req, reply) => {
    const { thread_id: threadId, checkpoint_id: checkpointId } = req.params;
    const channels = [...new Set(req.query.channel)];
    const rows = await deltaHistory(req.db, threadTenant(req), threadId, req.query.ns ?? '',
      checkpointId === LATEST ? undefined : checkpointId, channels);
    return sendJsonText(reply, 200, JSON.stringify(deltaHistoryOf(channels, rows)));
  });

  app.delete('/threads/:thread_id', {
    schema: {
      operationId: 'deleteThread',
      tags: ['threads'],
      summary: 'Delete a thread: every checkpoint, value and write, in every namespace (a saver\'s deleteThread)',
      description: 'In one statement, so atomically. Idempotent: 204 whether or not the thread existed.',
      params: ThreadParams,
      response: { 204: answer('Deleted, or there was no such thread', null), ...problemResponses(400, 503) },
    },
  }, async (req, reply) => {
    await threads.deleteThread(req.db, threadTenant(req), req.params.thread_id);
    return reply.code(204).send(null);
  });

  app.put('/threads/:thread_id', {
    schema: {
      operationId: 'saveThreadSettings',
      tags: ['threads'],
      summary: 'Create a thread or change its retention: `max_checkpoints`, `ttl_seconds`',
      description: 'A setting absent from the body is kept, null clears it. By default a thread keeps every ' +
        'checkpoint and has no TTL (`CHECKPOINT_RETENTION` is for workflow states only). A new `max_checkpoints` ' +
        'prunes every namespace of the thread at once; later puts keep it so.',
      params: ThreadParams,
      body: ThreadSettingsInput,
      response: {
        200: answer('Changed: the thread', Thread),
        201: answer('Created: the thread, without checkpoints', Thread, ['location']),
        ...problemResponses(400, 413, 415, 503),
      },
    },
  }, async (req, reply) => {
    const { thread_id: threadId } = req.params;
    const max = req.body.max_checkpoints;
    const out = await transaction(req.db, async (tx) => {
      const saved = await threads.saveThreadSettings(tx, threadTenant(req), threadId, req.body);
      const pruned = max == null ? 0 : await threads.pruneThread(tx, saved.id, max);
      return { ...saved, pruned };
    });
    if (out.pruned) req.server.metrics?.purgedRows.inc({ table: 'thread_checkpoints' }, out.pruned);
    if (out.created) reply.header('location', `/v1/threads/${encodeURIComponent(threadId)}`);
    return sendJsonText(reply, out.created ? 201 : 200, JSON.stringify(threadOf(out)));
  });

  app.get('/threads/:thread_id', {
    schema: {
      operationId: 'loadThread',
      tags: ['threads'],
      summary: 'A thread\'s retention settings and times',
      description: '`updated_at` is the time of its last checkpoint, write or settings change; a TTL counts from it.',
      params: ThreadParams,
      response: { 200: answer('The thread', Thread), ...problemResponses(400, 404, 503) },
    },
  }, async (req, reply) => {
    const row = await threads.loadThread(req.db, threadTenant(req), req.params.thread_id);
    if (!row) throw notFound(`No ${named(req.params.thread_id, '')}.`);
    return sendJsonText(reply, 200, JSON.stringify(threadOf(row)));
  });
}
