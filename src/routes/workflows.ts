import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { tenancyOf, visibleTenant } from '../auth.js';
import { answer } from '../openapi.js';
import { badRequest, conflict, notFound, preconditionFailed } from '../errors.js';
import * as workflows from '../repositories/workflows.js';
import {
  ACTIVE_STATUSES, IdParams, IfMatchHeaders, problemResponses, WORKFLOW_STATUSES,
} from '../schemas/common.js';
import {
  ListWorkflowsQuery, StepParams, StepStateInput, StepWritten, WorkflowIdParams, WorkflowPatch, WorkflowState,
  WorkflowStateInput, WorkflowStatePage,
} from '../schemas/workflows.js';
import {
  decodeCursor, encodeCursor, etag, isDatabaseTimestamp, isUuid, notModified, pageBody, sendJsonText, writeCondition,
} from './http.js';

function parseStatusFilter(raw: string | undefined): string[] | undefined {
  if (raw === undefined) return undefined;
  const out = new Set<string>();
  for (const part of raw.split(',').map((s) => s.trim().toLowerCase())) {
    if (part === 'active') ACTIVE_STATUSES.forEach((s) => out.add(s));
    else if ((WORKFLOW_STATUSES as readonly string[]).includes(part)) out.add(part);
    else {
      throw badRequest(`Invalid query: query.status`, [{
        path: 'query.status',
        message: `"${part}" is not one of ${WORKFLOW_STATUSES.join(', ')}, active`,
      }]);
    }
  }
  return [...out];
}

const failure = ({ reason, current }: workflows.Refused, id: string) =>
  reason === 'precondition'
    ? preconditionFailed(`Workflow state ${id} is not at the version the request requires.`, current)
    : reason === 'taken'
      ? conflict(`The id ${id} is in use; choose another.`)
      : notFound(`Workflow state ${id} does not exist.`);

export async function workflowRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.put('/workflows/:id', {
    schema: {
      operationId: 'saveWorkflowState',
      tags: ['workflows'],
      summary: 'Save (create or replace) a whole workflow state',
      description:
        'Steps are replaced exactly: steps absent from the body are deleted. `If-Match: "3"` (or a body ' +
        '`version`) writes only over that version, against lost updates; `If-None-Match: *` creates only. ' +
        'Accepts the Rust crate\'s serde JSON.',
      params: IdParams,
      headers: IfMatchHeaders.extend({
        'if-none-match': z.string().optional().meta({ description: '`*` creates only: 412 when the state exists.' }),
      }),
      body: WorkflowStateInput,
      response: {
        200: answer('Replaced: the state as stored, its version in the body and the ETag', WorkflowState, ['etag']),
        201: answer('Created: the state as stored, version 1', WorkflowState, ['etag', 'location']),
        ...problemResponses(400, 412, 413, 415, 503),
      },
    },
  }, async (req, reply) => {
    const { id } = req.params;
    if (req.body.id !== undefined && req.body.id.toLowerCase() !== id.toLowerCase()) {
      throw badRequest('Invalid body: body.id', [{ path: 'body.id', message: 'must equal the id in the path' }]);
    }
    const cond = writeCondition(req, req.body.version, true);
    const out = await workflows.saveWorkflowState(req.db, tenancyOf(req), id, req.body, cond);
    if (!out.ok) throw failure(out, id);
    req.server.metrics?.statesWritten.inc({ operation: 'save' });
    if (out.created) reply.header('location', `/v1/workflows/${id.toLowerCase()}`);
    return sendJsonText(reply, out.created ? 201 : 200, out.body, out.version);
  });

  app.get('/workflows/:id', {
    schema: {
      operationId: 'loadWorkflowState',
      tags: ['workflows'],
      summary: 'Load a workflow state with its steps',
      description: 'With `If-None-Match` set to the ETag of a copy the client holds, a 304 says it is current.',
      params: IdParams,
      headers: z.object({ 'if-none-match': z.string().optional().meta({ description: 'ETags of copies the client ' +
        'holds (`"3"`): 304 without a body when one names the stored version. Compared weakly (RFC 9110): `W/"3"` ' +
        'matches too.' }) }),
      response: {
        200: answer('The state', WorkflowState, ['etag']),
        304: answer('Not modified: the client\'s copy is the stored version', null, ['etag']),
        ...problemResponses(400, 404, 503),
      },
    },
  }, async (req, reply) => {
    const doc = await workflows.loadWorkflowState(req.db, visibleTenant(req), req.params.id);
    if (!doc) throw notFound(`Workflow state ${req.params.id} does not exist.`);
    if (notModified(req, doc.version)) return reply.code(304).header('etag', etag(doc.version)).send(null);
    return sendJsonText(reply, 200, doc.body, doc.version);
  });

  app.patch('/workflows/:id', {
    schema: {
      operationId: 'patchWorkflowState',
      tags: ['workflows'],
      summary: 'Change some top-level fields; upsert or delete (null) the given steps',
      description: 'Fields absent from the body are kept. A status of completed or failed without completed_at ' +
        'sets completed_at to now. `If-Match` (or a body `version`) writes only over that version.',
      params: IdParams,
      headers: IfMatchHeaders,
      body: WorkflowPatch,
      response: {
        200: answer('The state as stored after the change', WorkflowState, ['etag']),
        ...problemResponses(400, 404, 412, 413, 415, 503),
      },
    },
  }, async (req, reply) => {
    const { id } = req.params;
    const cond = writeCondition(req, req.body.version);
    const out = await workflows.patchWorkflowState(req.db, visibleTenant(req), id, req.body, cond);
    if (!out.ok) throw failure(out, id);
    req.server.metrics?.statesWritten.inc({ operation: 'patch' });
    return sendJsonText(reply, 200, out.body, out.version);
  });

  app.put('/workflows/:id/steps/:step_id', {
    schema: {
      operationId: 'saveStepState',
      tags: ['workflows'],
      summary: 'Create or replace one step; bumps the state\'s version and updated_at',
      description: 'Answers the step with the state\'s new `version` (also the ETag); `If-Match` refers to the ' +
        'state\'s version.',
      params: StepParams,
      headers: IfMatchHeaders,
      body: StepStateInput,
      response: {
        200: answer('Replaced: the step, and the state\'s new version', StepWritten, ['etag']),
        201: answer('Created: the step, and the state\'s new version', StepWritten, ['etag', 'location']),
        ...problemResponses(400, 404, 412, 413, 415, 503),
      },
    },
  }, async (req, reply) => {
    const { id, step_id: stepId } = req.params;
    if (req.body.step_id !== undefined && req.body.step_id !== stepId) {
      throw badRequest('Invalid body: body.step_id', [{ path: 'body.step_id', message: 'must equal the step_id in the path' }]);
    }
    const cond = writeCondition(req);
    const out = await workflows.saveStepState(req.db, visibleTenant(req), id, stepId, req.body, cond);
    if (!out.ok) throw failure(out, id);
    req.server.metrics?.statesWritten.inc({ operation: 'step' });
    if (out.created) reply.header('location', `/v1/workflows/${id.toLowerCase()}/steps/${encodeURIComponent(stepId)}`);
    return sendJsonText(reply, out.created ? 201 : 200, out.body, out.version);
  });

  app.delete('/workflows/:id', {
    schema: {
      operationId: 'deleteWorkflowState',
      tags: ['workflows'],
      summary: 'Delete a state with its steps and checkpoints',
      description: 'With `If-Match`, only if the state is at that version.',
      params: IdParams,
      headers: IfMatchHeaders,
      response: { 204: answer('Deleted', null), ...problemResponses(400, 404, 412, 503) },
    },
  }, async (req, reply) => {
    const out = await workflows.deleteWorkflowState(req.db, visibleTenant(req), req.params.id, writeCondition(req));
    if (!out.ok) throw failure(out, req.params.id);
    return reply.code(204).send(null);
  });

  app.get('/workflows', {
    schema: {
      operationId: 'listWorkflowStates',
      tags: ['workflows'],
      summary: 'List states, newest updated_at first, with keyset pagination',
      description: 'Filters combine; `next_cursor` is null on the last page. Pages are consistent under concurrent ' +
        'writes: a state is never listed twice, though one updated during the listing may move past the cursor.',
      querystring: ListWorkflowsQuery,
      response: { 200: answer('A page of states', WorkflowStatePage), ...problemResponses(400, 503) },
    },
  }, async (req, reply) => {
    const q = req.query;
    const after = q.cursor === undefined ? undefined
      : decodeCursor(q.cursor, 2, ([u, i]) => isDatabaseTimestamp(u!) && isUuid(i!));
    const page = await workflows.listWorkflowStates(req.db, {
      tenant: visibleTenant(req),
      statuses: parseStatusFilter(q.status),
      workflowId: q.workflow_id,
      userId: q.user_id,
      updatedBefore: q.updated_before,
      updatedAfter: q.updated_after,
      after: after && { updatedAt: after[0]!, id: after[1]! },
      limit: q.limit,
      maxBytes: app.config.LIST_MAX_BYTES,
    });
    const next = page.more && page.last ? encodeCursor(page.last) : null;
    return sendJsonText(reply, 200, pageBody(page.items, next));
  });

  app.get('/workflows/by-workflow-id/:workflow_id', {
    schema: {
      operationId: 'loadLatestStateByWorkflowId',
      tags: ['workflows'],
      summary: 'The most recently updated state with this workflow_id',
      description: 'The seed\'s load by workflow id: several states may share a workflow_id; this is the newest.',
      params: WorkflowIdParams,
      response: { 200: answer('The newest state with this workflow_id', WorkflowState, ['etag']), ...problemResponses(400, 404, 503) },
    },
  }, async (req, reply) => {
    const doc = await workflows.latestStateForWorkflowId(req.db, visibleTenant(req), req.params.workflow_id);
    if (!doc) throw notFound(`No workflow state has workflow_id ${JSON.stringify(req.params.workflow_id)}.`);
    return sendJsonText(reply, 200, doc.body, doc.version);
  });
}
