import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { visibleTenant } from '../auth.js';
import { transaction } from '../db/client.js';
import { badRequest, conflict, type FieldError, notFound, preconditionFailed, unprocessable } from '../errors.js';
import { findUnstorable } from '../json-body.js';
import { answer } from '../openapi.js';
import * as checkpoints from '../repositories/checkpoints.js';
import { stateDocument, stateOf } from '../repositories/render.js';
import { lockStateVersion, saveWorkflowState } from '../repositories/workflows.js';
import { IdParams, IfMatchHeaders, problemResponses } from '../schemas/common.js';
import {
  Checkpoint, CheckpointInput, CheckpointPage, CheckpointParams, Deleted, ListCheckpointsQuery, PruneCheckpointsQuery,
  RestoreInput, RestorePreview,
} from '../schemas/checkpoints.js';
import { WorkflowState, WorkflowStateInput } from '../schemas/workflows.js';
import { decodeCursor, encodeCursor, pageBody, sendJsonText, writeCondition } from './http.js';

/** A checkpoint's snapshot read as a WorkflowState, or a 422 naming what is wrong with it. */
function snapshotAsState(snapshot: unknown) {
  const parsed = WorkflowStateInput.safeParse(snapshot);
  if (!parsed.success) {
    const errors: FieldError[] = parsed.error.issues.flatMap((i) => {
      const base = ['snapshot', ...i.path.map(String)];
      return i.code === 'unrecognized_keys'
        ? i.keys.map((k) => ({ path: [...base, k].join('.'), message: 'unknown field' }))
        : [{ path: base.join('.'), message: i.message }];
    });
    throw unprocessable('The checkpoint\'s snapshot is not a workflow state.', errors);
  }
  return parsed.data;
}

export async function checkpointRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const retention = app.config.CHECKPOINT_RETENTION;

  app.post('/workflows/:id/checkpoints', {
    schema: {
      operationId: 'createCheckpoint',
      tags: ['checkpoints'],
      summary: 'Checkpoint a workflow state',
      description:
        'Without `snapshot` the stored state is snapshotted in the same transaction. With a client-chosen `id` ' +
        'a retry is safe: the same id and content answers 200 with the stored checkpoint. Only the newest ' +
        '`CHECKPOINT_RETENTION` checkpoints of a workflow are kept (a setting of the deployment; 0 keeps all).',
      params: IdParams,
      body: CheckpointInput,
      response: {
        200: answer('Already made: the checkpoint with this id, as stored', Checkpoint, ['location']),
        201: answer('Created: the checkpoint', Checkpoint, ['location']),
        ...problemResponses(400, 404, 409, 413, 415, 503),
      },
    },
  }, async (req, reply) => {
    const { id } = req.params;
    const cid = req.body.id ?? randomUUID();
    const snapshot = req.body.snapshot === undefined ? undefined : JSON.stringify(req.body.snapshot);
    const out = await transaction(req.db, (tx) =>
      checkpoints.createCheckpoint(tx, visibleTenant(req), id, { id: cid, stepId: req.body.step_id, snapshot }, retention));
    switch (out.kind) {
      case 'state-not-found':
        throw notFound(`Workflow state ${id} does not exist.`);
      case 'conflict':
        throw conflict(`Checkpoint ${cid} already exists with other content.`);
      case 'created':
        req.server.metrics?.checkpointsWritten.inc();
        reply.header('location', `/v1/checkpoints/${out.id.toLowerCase()}`);
        return sendJsonText(reply, 201, out.body);
      case 'replayed':
        reply.header('location', `/v1/checkpoints/${out.id.toLowerCase()}`);
        return sendJsonText(reply, 200, out.body);
    }
  });

  app.get('/workflows/:id/checkpoints', {
    schema: {
      operationId: 'listCheckpoints',
      tags: ['checkpoints'],
      summary: 'A workflow\'s checkpoints, newest first',
      description: 'Without their snapshots unless `include_snapshot=true`; `next_cursor` is null on the last page.',
      params: IdParams,
      querystring: ListCheckpointsQuery,
      response: { 200: answer('A page of checkpoints', CheckpointPage), ...problemResponses(400, 404, 503) },
    },
  }, async (req, reply) => {
    const q = req.query;
    const after = q.cursor === undefined ? undefined
      : decodeCursor(q.cursor, 1, ([seq]) => /^\d{1,18}$/.test(seq!));
    const page = await checkpoints.listCheckpoints(req.db, visibleTenant(req), req.params.id, {
      limit: q.limit,
      withSnapshot: q.include_snapshot === 'true',
      afterSeq: after?.[0],
      maxBytes: app.config.LIST_MAX_BYTES,
    });
    if (!page.stateExists) throw notFound(`Workflow state ${req.params.id} does not exist.`);
    const next = page.more && page.last ? encodeCursor(page.last) : null;
    return sendJsonText(reply, 200, pageBody(page.items, next));
  });

  app.get('/workflows/:id/checkpoints/latest', {
    schema: {
      operationId: 'latestCheckpoint',
      tags: ['checkpoints'],
      summary: 'The newest checkpoint of a workflow, with its snapshot',
      description: '404 when the state does not exist or has no checkpoint.',
      params: IdParams,
      response: { 200: answer('The newest checkpoint', Checkpoint), ...problemResponses(400, 404, 503) },
    },
  }, async (req, reply) => {
    const body = await checkpoints.latestCheckpoint(req.db, visibleTenant(req), req.params.id);
    if (!body) throw notFound(`Workflow state ${req.params.id} has no checkpoint.`);
    return sendJsonText(reply, 200, body);
  });

  app.delete('/workflows/:id/checkpoints', {
    schema: {
      operationId: 'pruneCheckpoints',
      tags: ['checkpoints'],
      summary: 'Delete all but the newest `keep` checkpoints',
      description: 'The state itself is not changed.',
      params: IdParams,
      querystring: PruneCheckpointsQuery,
      response: { 200: answer('How many checkpoints were deleted', Deleted), ...problemResponses(400, 404, 503) },
    },
  }, async (req) => {
    const deleted = await checkpoints.pruneCheckpoints(req.db, visibleTenant(req), req.params.id, req.query.keep);
    if (deleted === undefined) throw notFound(`Workflow state ${req.params.id} does not exist.`);
    req.server.metrics?.purgedRows.inc({ table: 'checkpoints' }, deleted);
    return { deleted };
  });

  app.get('/checkpoints/:cid', {
    schema: {
      operationId: 'getCheckpoint',
      tags: ['checkpoints'],
      summary: 'One checkpoint, with its snapshot',
      description: 'By the checkpoint\'s own id, as its Location names it.',
      params: CheckpointParams,
      response: { 200: answer('The checkpoint', Checkpoint), ...problemResponses(400, 404, 503) },
    },
  }, async (req, reply) => {
    const body = await checkpoints.getCheckpoint(req.db, visibleTenant(req), req.params.cid);
    if (!body) throw notFound(`Checkpoint ${req.params.cid} does not exist.`);
    return sendJsonText(reply, 200, body);
  });

  app.post('/checkpoints/:cid/restore', {
    schema: {
      operationId: 'restoreCheckpoint',
      tags: ['checkpoints'],
      summary: 'Restore a workflow from a checkpoint',
      description:
        '`apply`: the snapshot becomes the workflow\'s current state (steps replaced, version bumped; `If-Match` ' +
        'applies). `fork`: a new state built from the snapshot (201). `preview`: the parsed state, nothing written. ' +
        'No body is `{"mode": "apply"}`.',
      params: CheckpointParams,
      headers: IfMatchHeaders,
      body: RestoreInput,
      response: {
        200: answer('`apply`: the state as stored (a WorkflowState, with the ETag); `preview`: the snapshot\'s state ' +
          '(a RestorePreview, whose times and version may be null; no ETag)', WorkflowState.or(RestorePreview), ['etag']),
        201: answer('`fork`: the new state as stored', WorkflowState, ['etag', 'location']),
        ...problemResponses(400, 404, 409, 412, 415, 422, 503),
      },
    },
  }, async (req, reply) => {
    const { cid } = req.params;
    const { mode = 'apply', new_id: newId, workflow_id: workflowId } = req.body ?? {};
    if (mode !== 'fork') {
      const stray = [newId !== undefined && 'new_id', workflowId !== undefined && 'workflow_id'].filter(Boolean);
      if (stray.length) {
        throw badRequest(`Invalid body: ${stray.map((s) => `body.${s}`).join(', ')}`,
          stray.map((s) => ({ path: `body.${s}`, message: 'only with mode fork' })));
      }
    }
    const cond = mode === 'apply' ? writeCondition(req) : undefined;
    if (mode !== 'apply' && req.headers['if-match'] !== undefined) {
      throw badRequest('If-Match applies to mode apply only.', [{ path: 'headers.if-match', message: 'only with mode apply' }]);
    }

    const tenant = visibleTenant(req);
    const result = await transaction(req.db, async (tx) => {
      const cp = await checkpoints.checkpointSnapshot(tx, tenant, cid);
      if (!cp) throw notFound(`Checkpoint ${cid} does not exist.`);
      const unstorable = findUnstorable(cp.snapshot, 'snapshot');
      if (unstorable) throw unprocessable('The checkpoint\'s snapshot cannot be stored as a state.', [unstorable]);
      const state = snapshotAsState(cp.snapshot);
      if (mode === 'preview') return { mode, state, workflowStateId: cp.workflowStateId } as const;
      // A restored state is a new write: updated_at is now, the snapshot's version is history.
      const input = { ...state, updated_at: undefined, version: undefined };
      if (mode === 'apply') {
        const current = await lockStateVersion(tx, tenant, cp.workflowStateId);
        if (current === undefined) throw notFound(`Workflow state ${cp.workflowStateId} does not exist.`);
        if (cond?.kind === 'version' && !cond.versions.includes(current)) {
          throw preconditionFailed(`Workflow state ${cp.workflowStateId} is not at the version If-Match names.`, current);
        }
        const out = await saveWorkflowState(tx, { sees: tenant, creates: cp.tenant }, cp.workflowStateId, input,
          { kind: 'version', versions: [current] });
        return { mode, out, id: cp.workflowStateId } as const;
      }
      const forkId = newId ?? randomUUID();
      // A fork stays in the tenant of the state it came from (an operator's too).
      const out = await saveWorkflowState(tx, { sees: tenant, creates: cp.tenant }, forkId,
        { ...input, workflow_id: workflowId ?? state.workflow_id }, { kind: 'absent' });
      if (!out.ok) throw conflict(`Workflow state ${forkId} already exists.`);
      return { mode, out, id: forkId } as const;
    });

    if (result.mode === 'preview') {
      req.server.metrics?.restores.inc({ mode: 'preview' });
      // The snapshot's state as apply would store it; its times and version as the snapshot has them.
      const { state } = result;
      return sendJsonText(reply, 200, stateDocument(stateOf(state.id ?? result.workflowStateId, state, {
        version: state.version ?? null, started_at: state.started_at ?? null, updated_at: state.updated_at ?? null,
      })));
    }
    const { out, id } = result;
    if (!out.ok) throw preconditionFailed(`Workflow state ${id} changed during the restore.`, out.current);
    req.server.metrics?.restores.inc({ mode: result.mode });
    req.server.metrics?.statesWritten.inc({ operation: result.mode === 'fork' ? 'fork' : 'restore' });
    if (result.mode === 'fork') {
      reply.header('location', `/v1/workflows/${id.toLowerCase()}`);
      return sendJsonText(reply, 201, out.body, out.version);
    }
    return sendJsonText(reply, 200, out.body, out.version);
  });
}
