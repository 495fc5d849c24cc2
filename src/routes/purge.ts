import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { visibleTenant } from '../auth.js';
import { badRequest } from '../errors.js';
import { countExpiredThreads, purgeExpiredThreads } from '../repositories/threads.js';
import { countPurgeable, purgeWorkflowStates } from '../repositories/workflows.js';
import { problemResponses, Timestamp, WorkflowStatusInput } from '../schemas/common.js';
import { purgeExample, purgeResultExample } from '../schemas/examples.js';
import { answer } from '../openapi.js';

const PurgeInput = z
  .strictObject({
    older_than: Timestamp.meta({ description: 'States whose updated_at is before this are purged.' }),
    statuses: z.array(WorkflowStatusInput).min(1).optional()
      .meta({ description: 'A subset of completed, failed (default both); active statuses are refused.' }),
    dry_run: z.boolean().default(false).meta({ description: 'Count what would be purged; delete nothing.' }),
  })
  .meta({ id: 'Purge', examples: [purgeExample] });

const PurgeResult = z
  .object({
    deleted: z.int().meta({ description: 'States deleted, with their steps and checkpoints.' }),
    threads_deleted: z.int().meta({ description: 'Threads deleted because their TTL passed, with everything in them.' }),
  })
  .or(z.object({
    matched: z.int().meta({ description: 'States a purge would delete now.' }),
    dry_run: z.literal(true),
    threads_matched: z.int().meta({ description: 'Threads past their TTL, which a purge would delete now.' }),
  }))
  .meta({ id: 'PurgeResult', examples: [purgeResultExample] });

export async function purgeRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  app.post('/purge', {
    config: { scope: 'admin' },
    schema: {
      operationId: 'purgeWorkflowStates',
      tags: ['maintenance'],
      summary: 'Delete finished states last updated before a time (the seed\'s delete_old_states), and threads past their TTL',
      description: 'Deletes in batches, so no long lock is held; steps and checkpoints go with their states. ' +
        'Threads whose `ttl_seconds` passed since their last checkpoint or write go too, whatever `older_than` ' +
        'says; threads without a TTL are never purged. Needs the `admin` scope. With `dry_run` it counts them and ' +
        'deletes nothing.',
      body: PurgeInput,
      response: {
        200: answer('How many states were deleted, or with `dry_run` how many would be', PurgeResult),
        ...problemResponses(400, 415, 503),
      },
    },
  }, async (req) => {
    const statuses = [...new Set(req.body.statuses ?? ['completed', 'failed'])];
    const active = statuses.filter((s) => s !== 'completed' && s !== 'failed');
    if (active.length) {
      throw badRequest('Invalid body: body.statuses', [{
        path: 'body.statuses',
        message: `only completed and failed states can be purged, not ${active.join(', ')}`,
      }]);
    }
    const tenant = visibleTenant(req);
    if (req.body.dry_run) {
      const [matched, threads] = await Promise.all([
        countPurgeable(req.db, tenant, req.body.older_than, statuses), countExpiredThreads(req.db, tenant)]);
      return { matched, dry_run: true as const, threads_matched: threads };
    }
    const deleted = await purgeWorkflowStates(req.db, tenant, req.body.older_than, statuses);
    req.server.metrics?.purgedRows.inc({ table: 'workflow_states' }, deleted);
    req.log.info({ deleted, older_than: req.body.older_than, statuses }, 'purged workflow states');
    const threads = await purgeExpiredThreads(req.db, tenant);
    req.server.metrics?.purgedRows.inc({ table: 'threads' }, threads);
    if (threads) req.log.info({ threads_deleted: threads }, 'purged threads past their TTL');
    return { deleted, threads_deleted: threads };
  });
}
