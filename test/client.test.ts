import { randomUUID } from 'node:crypto';
import postgres from 'postgres';
import t, { type Test } from 'tap';
import {
  PreconditionFailed, ProblemError, type RetryOptions, type SaveWorkflowState, WorkflowStateClient,
} from '../packages/client/src/index.js';
import { retryAfterMs, retryDelayMs } from '../packages/client/src/retry.js';
import { buildTestApp, prepare } from './helper.js';

const daysAgo = (n: number) => new Date(Date.now() - n * 86_400_000).toISOString();

/** The service listening on a loopback port, and its URL. */
async function service(t: Test, env: Record<string, string> = {}) {
  const test = await buildTestApp(t, env);
  await test.app.listen({ port: 0, host: '127.0.0.1' });
  return { ...test, baseUrl: `http://127.0.0.1:${(test.app.server.address() as { port: number }).port}` };
}

/** The global fetch, noting the status of every answer: how many requests a call made. */
function observedFetch() {
  const statuses: number[] = [];
  return {
    statuses,
    fetch: async (request: Request) => {
      const response = await fetch(request);
      statuses.push(response.status);
      return response;
    },
  };
}

/** A client of `baseUrl` whose requests are counted. */
function counted(baseUrl: string, retry?: RetryOptions, token?: string) {
  const seen = observedFetch();
  return { client: new WorkflowStateClient({ baseUrl, retry, token, fetch: seen.fetch }), statuses: seen.statuses };
}

const body = (over: Partial<SaveWorkflowState> = {}): SaveWorkflowState =>
  ({ workflow_id: 'wf-client', workflow_name: 'Client test', status: 'running', ...over });

/** What a promise rejected with (the test fails when it did not reject). */
async function rejection(t: Test, p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  t.fail('expected a rejection');
  return undefined;
}

t.test('save, load, patch, saveStep, delete: each write answers the state at its next version', async (t) => {
  const { baseUrl } = await service(t);
  const { client, statuses } = counted(baseUrl);
  const id = randomUUID();

  const created = await client.save(id, body({ context: { n: 1 }, steps: { plan: { status: 'completed' } } }));
  t.equal(created.version, 1);
  t.equal(created.id, id);
  t.strictSame(created.context, { n: 1 });
  t.strictSame(created.steps.plan, {
    step_id: 'plan', status: 'completed', started_at: null, completed_at: null, outputs: null, error: null, retry_count: 0,
  });
  const replaced = await client.save(id, body({ context: { n: 2 } }), { ifMatch: 1 });
  t.equal(replaced.version, 2);
  t.strictSame(replaced.steps, {}, 'a save replaces the steps');
  t.strictSame(statuses, [201, 200]);

  t.strictSame(await client.load(id), replaced, 'load answers what the write answered');
  t.strictSame(await client.load(id, { ifNoneMatch: 2 }), { notModified: true, version: 2 });
  t.strictSame(await client.load(id, { ifNoneMatch: 1 }), replaced, 'an older copy is answered the state');
  t.strictSame(statuses.slice(2), [200, 304, 200]);

  const patched = await client.patch(id, { status: 'paused', steps: { act: { status: 'running' } } }, { ifMatch: 2 });
  t.equal(patched.version, 3);
  t.equal(patched.status, 'paused');
  t.strictSame(Object.keys(patched.steps), ['act']);

  const step = await client.saveStep(id, 'act', { status: 'completed', outputs: { ok: true }, retry_count: 1 }, { ifMatch: 3 });
  t.strictSame(step, {
    step_id: 'act', status: 'completed', started_at: null, completed_at: null, outputs: { ok: true }, error: null,
    retry_count: 1, version: 4,
  });
  t.equal((await client.load(id))!.version, 4);

  t.equal(await client.delete(id, { ifMatch: 4 }), undefined);
  t.equal(await client.load(id), null, 'a state that does not exist loads as null');

  const other = randomUUID();
  t.equal((await client.save(other, body(), { createOnly: true })).version, 1);
  const exists = await rejection(t, client.save(other, body({ status: 'failed' }), { createOnly: true }));
  t.type(exists, PreconditionFailed);
  t.equal((exists as PreconditionFailed).current, 1, 'createOnly on an existing state names its version');
  t.equal((await client.load(other))!.status, 'running', 'nothing written');
});

t.test('a stale ifMatch throws PreconditionFailed with the current version, and writes nothing', async (t) => {
  const { baseUrl } = await service(t);
  const client = new WorkflowStateClient({ baseUrl });
  const id = randomUUID();
  await client.save(id, body({ steps: { plan: { status: 'running' } } }));
  const cp = await client.checkpoint(id, { step_id: 'plan' });
  const current = await client.save(id, body({ context: { n: 2 }, steps: { plan: { status: 'completed' } } }), { ifMatch: 1 });
  t.equal(current.version, 2);

  const writes: [string, () => Promise<unknown>][] = [
    ['save', () => client.save(id, body({ status: 'failed' }), { ifMatch: 1 })],
    ['patch', () => client.patch(id, { status: 'failed' }, { ifMatch: 1 })],
    ['saveStep', () => client.saveStep(id, 'plan', { status: 'failed' }, { ifMatch: 1 })],
    ['delete', () => client.delete(id, { ifMatch: 1 })],
    ['restore apply', () => client.restore(cp.id, { ifMatch: 1 })],
  ];
  for (const [name, write] of writes) {
    const e = await rejection(t, write());
    t.type(e, PreconditionFailed, name);
    t.type(e, ProblemError, `${name}: a PreconditionFailed is a ProblemError`);
    t.equal((e as PreconditionFailed).status, 412, name);
    t.equal((e as PreconditionFailed).title, 'Precondition Failed', name);
    t.equal((e as PreconditionFailed).current, 2, `${name}: the stored version`);
  }
  t.strictSame(await client.load(id), current, 'nothing was written');

  const absent = await rejection(t, client.patch(randomUUID(), { status: 'failed' }, { ifMatch: 1 }));
  t.type(absent, PreconditionFailed);
  t.equal((absent as PreconditionFailed).current, undefined, 'no current version when the state does not exist');
});

t.test('other problems throw ProblemError with the problem\'s members', async (t) => {
  const { baseUrl } = await service(t);
  const client = new WorkflowStateClient({ baseUrl });

  const invalid = await rejection(t, client.save(randomUUID(), body({ workflow_id: '' })));
  t.type(invalid, ProblemError);
  t.notOk(invalid instanceof PreconditionFailed);
  const p = invalid as ProblemError;
  t.equal(p.status, 400);
  t.equal(p.title, 'Bad Request');
  t.match(p.type, /validation-failed$/);
  t.strictSame(p.errors.map((e) => e.path), ['body.workflow_id']);
  t.match(p.instance, /\S/, 'the request id');

  const missing = randomUUID();
  const notFound = await rejection(t, client.patch(missing, { status: 'failed' }));
  t.type(notFound, ProblemError);
  t.equal((notFound as ProblemError).status, 404);
  t.equal((notFound as ProblemError).title, 'Not Found');
  t.strictSame((notFound as ProblemError).errors, []);
});

t.test('list follows next_cursor page after page; byWorkflowId answers the latest', async (t) => {
  const { baseUrl } = await service(t);
  const { client, statuses } = counted(baseUrl);
  const ids = Array.from({ length: 7 }, () => randomUUID());
  // Oldest first, so the list (newest updated_at first) answers them in reverse.
  for (const [i, id] of ids.entries()) {
    await client.save(id, body({ workflow_id: 'wf-list', updated_at: daysAgo(10 - i) }));
  }
  await client.save(randomUUID(), body({ workflow_id: 'wf-other' }));
  statuses.length = 0;

  const listed: string[] = [];
  for await (const state of client.list({ workflow_id: 'wf-list', limit: 3 })) listed.push(state.id);
  t.strictSame(listed, ids.toReversed());
  t.strictSame(statuses, [200, 200, 200], 'three pages of three');

  const pages: number[] = [];
  for await (const page of client.listPages({ workflow_id: 'wf-list', limit: 3 })) pages.push(page.items.length);
  t.strictSame(pages, [3, 3, 1]);

  t.equal((await client.byWorkflowId('wf-list'))!.id, ids.at(-1));
  t.equal(await client.byWorkflowId('wf-none'), null);
});

t.test('checkpoints: a retry with the same id is answered the same checkpoint; list, latest, get, prune', async (t) => {
  const { baseUrl } = await service(t);
  const { client, statuses } = counted(baseUrl);
  const id = randomUUID();
  const saved = await client.save(id, body({ steps: { plan: { status: 'completed' } } }));
  t.equal(await client.latestCheckpoint(id), null, 'no checkpoint yet');

  const first = await client.checkpoint(id, { step_id: 'plan' });
  t.match(first.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'an id made by the client');
  t.equal(first.workflow_state_id, id);
  t.equal(first.parent_id, null);
  t.strictSame(first.snapshot, saved, 'the stored state');

  const cid = randomUUID();
  statuses.length = 0;
  const second = await client.checkpoint(id, { step_id: 'plan', snapshot: { n: 2 }, id: cid });
  const replayed = await client.checkpoint(id, { step_id: 'plan', snapshot: { n: 2 }, id: cid });
  t.strictSame(replayed, second, 'the same checkpoint');
  t.strictSame(statuses, [201, 200], 'created, then replayed');
  t.equal(second.parent_id, first.id);
  const conflict = await rejection(t, client.checkpoint(id, { step_id: 'plan', snapshot: { n: 3 }, id: cid }));
  t.equal((conflict as ProblemError).status, 409, 'the same id with other content');

  const listed = [];
  for await (const c of client.listCheckpoints(id, { limit: 1 })) listed.push(c.id);
  t.strictSame(listed, [cid, first.id], 'newest first, one page each');
  t.strictSame(await client.latestCheckpoint(id), second);
  t.strictSame(await client.getCheckpoint(first.id), first);
  t.equal(await client.getCheckpoint(randomUUID()), null);

  t.equal(await client.pruneCheckpoints(id, 1), 1);
  t.equal(await client.pruneCheckpoints(id, 1), 0);
  t.equal(await client.getCheckpoint(first.id), null, 'the older one is gone');
});

t.test('restore: preview writes nothing, apply bumps the version, fork makes a new state', async (t) => {
  const { baseUrl } = await service(t);
  const client = new WorkflowStateClient({ baseUrl });
  const id = randomUUID();
  await client.save(id, body({ context: { n: 1 } }));
  const cp = await client.checkpoint(id, { step_id: 'plan' });
  const later = await client.patch(id, { context: { n: 2 } });
  t.equal(later.version, 2);

  const preview = await client.restore(cp.id, { mode: 'preview' });
  t.strictSame(preview.context, { n: 1 });
  t.equal(preview.version, 1, 'the version recorded in the snapshot');
  t.strictSame(await client.load(id), later, 'nothing written');

  const applied = await client.restore(cp.id, { ifMatch: 2 });
  t.equal(applied.id, id);
  t.equal(applied.version, 3);
  t.strictSame(applied.context, { n: 1 });

  const forked = await client.restore(cp.id, { mode: 'fork', workflow_id: 'wf-fork' });
  t.not(forked.id, id);
  t.equal(forked.version, 1);
  t.equal(forked.workflow_id, 'wf-fork');
  t.strictSame(forked.context, { n: 1 });
  const newId = randomUUID();
  t.equal((await client.restore(cp.id, { mode: 'fork', new_id: newId })).id, newId);
  t.equal((await client.load(newId))!.workflow_id, 'wf-client');
});

t.test('purge: a dry run counts what a purge then deletes', async (t) => {
  const { baseUrl } = await service(t);
  const client = new WorkflowStateClient({ baseUrl });
  await client.save(randomUUID(), body({ status: 'completed', updated_at: daysAgo(40) }));
  await client.save(randomUUID(), body({ status: 'completed', updated_at: daysAgo(40) }));
  await client.save(randomUUID(), body({ status: 'failed', updated_at: daysAgo(40) }));
  await client.save(randomUUID(), body({ status: 'running', updated_at: daysAgo(40) }));
  const recent = await client.save(randomUUID(), body({ status: 'completed' }));

  t.strictSame(await client.purge({ older_than: daysAgo(30), dry_run: true }), { matched: 3, dry_run: true, threads_matched: 0 });
  t.strictSame(await client.purge({ older_than: daysAgo(30), statuses: ['completed'], dry_run: true }),
    { matched: 2, dry_run: true, threads_matched: 0 });
  t.strictSame(await client.purge({ older_than: daysAgo(30) }), { deleted: 3, threads_deleted: 0 });
  t.strictSame(await client.purge({ older_than: daysAgo(30), dry_run: true }), { matched: 0, dry_run: true, threads_matched: 0 });
  const left = [];
  for await (const s of client.list()) left.push(s.status);
  t.strictSame(left.toSorted(), ['completed', 'running']);
  t.strictSame(await client.load(recent.id), recent);
});

t.test('the wait before a retry: what Retry-After asks (seconds or a date), else 0.2 s doubling, at most the cap', async (t) => {
  const now = Date.parse('2026-12-02T09:00:00Z');
  t.equal(retryAfterMs('2', now), 2000);
  t.equal(retryAfterMs(' 0 ', now), 0);
  t.equal(retryAfterMs('Wed, 02 Dec 2026 09:00:03 GMT', now), 3000);
  t.equal(retryAfterMs('Wed, 02 Dec 2026 08:59:00 GMT', now), 0, 'a date passed: no wait');
  t.equal(retryAfterMs('soon', now), undefined);
  t.equal(retryAfterMs(null, now), undefined);
  t.equal(retryDelayMs('2', 1, 5_000), 2000);
  t.equal(retryDelayMs('60', 1, 5_000), 5000, 'capped');
  t.same([1, 2, 3].map((attempt) => retryDelayMs(undefined, attempt, 5_000)), [200, 400, 800]);
});

t.test('a token is sent as a bearer credential', async (t) => {
  const { baseUrl } = await service(t, {
    AUTH_TOKENS: JSON.stringify([{ token: 'client-test-token-0123', tenant: 't', scopes: ['read', 'write'], name: 'ci' }]),
  });
  const anonymous = await rejection(t, new WorkflowStateClient({ baseUrl }).load(randomUUID()));
  t.equal((anonymous as ProblemError).status, 401);
  const client = new WorkflowStateClient({ baseUrl, token: 'client-test-token-0123' });
  const id = randomUUID();
  t.equal((await client.save(id, body())).version, 1);
  t.equal((await client.load(id))!.version, 1);
});

t.test('429: retried after Retry-After, each wait capped, a bounded number of attempts', async (t) => {
  const { baseUrl } = await service(t, { RATE_LIMIT_MAX: '1', RATE_LIMIT_WINDOW_MS: '2000' });
  const id = randomUUID();

  // Retry-After says 2 (seconds, rounded up from the window's rest): the one retry waits that long,
  // and the window has passed by then. Without it the retry would come after 0.2 s, inside the
  // window, and be refused again.
  const waits = counted(baseUrl, { attempts: 2, maxDelayMs: 5_000 });
  await waits.client.save(id, body());
  t.equal((await waits.client.load(id))!.version, 1);
  t.strictSame(waits.statuses, [201, 429, 200]);

  // A window of 10 minutes: every attempt is refused, and the last refusal is thrown. Each wait is
  // capped at maxDelayMs: waiting the 600 s Retry-After asks would outlast the test's timeout.
  const { baseUrl: strict } = await service(t, { RATE_LIMIT_MAX: '1', RATE_LIMIT_WINDOW_MS: '600000' });
  const refused = counted(strict, { attempts: 3, maxDelayMs: 20 });
  await refused.client.save(id, body());
  const e = await rejection(t, refused.client.save(id, body()));
  t.equal((e as ProblemError).status, 429);
  t.equal((e as ProblemError).title, 'Too Many Requests');
  t.strictSame(refused.statuses, [201, 429, 429, 429], 'three attempts in all');

  const once = counted(strict, { attempts: 1, maxDelayMs: 20 });
  t.equal((await rejection(t, once.client.load(id)) as ProblemError).status, 429);
  t.strictSame(once.statuses, [429], 'attempts: 1 never retries');
});

t.test('503: reads and conditional writes are retried, unconditional writes are not', async (t) => {
  const { baseUrl, url } = await service(t, { DATABASE_LOCK_TIMEOUT_MS: '300' });
  const id = randomUUID();
  await new WorkflowStateClient({ baseUrl }).save(id, body());

  // Another client holds the table: every statement of the service gives up after its lock timeout (503).
  const locker = postgres(url, { max: 1, prepare, onnotice: () => {} });
  const held = await locker.reserve();
  await held`BEGIN`;
  await held`LOCK TABLE workflow_states IN ACCESS EXCLUSIVE MODE`;
  t.teardown(async () => {
    await held`ROLLBACK`;
    held.release();
    await locker.end();
  });

  const calls: [string, (c: WorkflowStateClient) => Promise<unknown>, number[]][] = [
    ['load', (c) => c.load(id), [503, 503, 503]],
    ['patch with ifMatch', (c) => c.patch(id, { status: 'paused' }, { ifMatch: 1 }), [503, 503, 503]],
    ['patch', (c) => c.patch(id, { status: 'paused' }), [503]],
    ['save', (c) => c.save(id, body()), [503]],
    ['checkpoint (its id made by the client)', (c) => c.checkpoint(id, { step_id: 'plan' }), [503, 503, 503]],
  ];
  for (const [name, call, attempts] of calls) {
    const { client, statuses } = counted(baseUrl, { attempts: 3, maxDelayMs: 10 });
    const e = await rejection(t, call(client));
    t.equal((e as ProblemError).status, 503, name);
    t.strictSame(statuses, attempts, name);
  }
});
