/**
 * Swagger UI at /docs works as it comes: in Debian's chromium (driven by playwright-core), every
 * operation's "Try it out" with the prefilled example, then "Execute", succeeds against a fresh
 * service, in a workflow order (save before load, checkpoint before restore). Nothing is typed
 * into the form. A missing chromium fails the run, naming the package (npm run test:system).
 * Screenshots of each operation go to test/screenshots/swagger-ui/ (ignored by git).
 */
import { mkdir, rm } from 'node:fs/promises';
import type { Page } from 'playwright-core';
import t, { type Test } from 'tap';
import { buildTestApp } from '../helper.js';
import { launchChromium } from '../support/chromium.js';

/** The values of the document's examples, which chain one operation to the next. */
const STATE_ID = '7d9f2a6c-3b1e-4c8a-9f0d-2e5b6a1c4d3f';
const WORKFLOW_ID = 'invoice-pipeline';
const STEP_ID = 'classify';
const CHECKPOINT_ID = '0b7e6f3a-9c2d-4e1f-8a5b-6c3d2e1f0a9b';
const THREAD_ID = 'support-chat-42';
const THREAD_CHECKPOINT_ID = '1f0d2c4e-8a6b-6c31-8001-5e7d9a2b4c6f';
const TASK_ID = '3c9e1b7a-2f4d-5e8a-9b0c-1d2e3f4a5b6c';
const THREAD_CHECKPOINT = `/v1/threads/${THREAD_ID}/checkpoints/${THREAD_CHECKPOINT_ID}`;

const SHOTS = new URL('../screenshots/swagger-ui/', import.meta.url);

interface Executed {
  status: number;
  /** The "Server response" body as Swagger UI shows it ('' when it shows none). */
  body: string;
  /** What Swagger UI says it requested ("Request URL"). */
  requestUrl: string;
}

type Api = Awaited<ReturnType<typeof buildTestApp>>['app'];
type Check = (t: Test, got: Executed, api: Api) => Promise<void> | void;

interface Operation {
  tag: string;
  operationId: string;
  /** The exact status the prefilled example must get. */
  status: number;
  /** The path and query Swagger UI must have requested (the examples' and defaults' values). */
  path: string;
  /** What must be true afterwards, seen through the API. */
  check: Check;
}

const oneLine = (body: string) => body.replace(/\s*\n\s*/g, ' ').trim() || '(no body)';
const json = (got: Executed) => JSON.parse(got.body) as Record<string, unknown>;
const state = async (api: Api) => api.inject({ url: `/v1/workflows/${STATE_ID}` });
const checkpoint = async (api: Api) => api.inject({ url: `/v1/checkpoints/${CHECKPOINT_ID}` });
const tuple = async (api: Api) => api.inject({ url: THREAD_CHECKPOINT });
const thread = async (api: Api) => api.inject({ url: `/v1/threads/${THREAD_ID}` });

const WORKFLOW: Operation[] = [
  {
    tag: 'workflows', operationId: 'saveWorkflowState', status: 201, path: `/v1/workflows/${STATE_ID}`,
    check: async (t, got, api) => {
      t.match(json(got), { id: STATE_ID, workflow_id: WORKFLOW_ID, status: 'running', version: 1 });
      const res = await state(api);
      t.equal(res.statusCode, 200, 'the state is stored');
      t.same(res.json(), json(got), 'as answered');
    },
  },
  {
    tag: 'workflows', operationId: 'loadWorkflowState', status: 200, path: `/v1/workflows/${STATE_ID}`,
    check: async (t, got, api) => { t.same(json(got), (await state(api)).json(), 'the stored state'); },
  },
  {
    tag: 'workflows', operationId: 'patchWorkflowState', status: 200, path: `/v1/workflows/${STATE_ID}`,
    check: async (t, got, api) => {
      t.match(json(got), { id: STATE_ID, status: 'paused', version: 2 });
      t.same((await state(api)).json(), json(got), 'the stored state is the one answered');
    },
  },
  {
    tag: 'workflows', operationId: 'saveStepState', status: 201, path: `/v1/workflows/${STATE_ID}/steps/${STEP_ID}`,
    check: async (t, got, api) => {
      const { version, ...step } = json(got);
      t.match({ version, ...step }, { step_id: STEP_ID, status: 'running', version: 3 });
      const stored = (await state(api)).json();
      t.equal(stored.version, 3, 'the state\'s version went up');
      t.same(stored.steps[STEP_ID], step, 'the stored step is the one answered');
    },
  },
  {
    tag: 'workflows', operationId: 'listWorkflowStates', status: 200, path: '/v1/workflows?status=active&limit=100',
    check: (t, got) => {
      t.same((json(got).items as { id: string }[]).map((s) => s.id), [STATE_ID], 'the one state is listed');
    },
  },
  {
    tag: 'workflows', operationId: 'loadLatestStateByWorkflowId', status: 200,
    path: `/v1/workflows/by-workflow-id/${WORKFLOW_ID}`,
    check: async (t, got, api) => { t.same(json(got), (await state(api)).json(), 'the stored state'); },
  },
  {
    tag: 'checkpoints', operationId: 'createCheckpoint', status: 201, path: `/v1/workflows/${STATE_ID}/checkpoints`,
    check: async (t, got, api) => {
      t.match(json(got), { id: CHECKPOINT_ID, workflow_state_id: STATE_ID, step_id: STEP_ID, snapshot: { version: 3 } });
      const res = await checkpoint(api);
      t.equal(res.statusCode, 200, 'the checkpoint is stored');
      t.same(res.json(), json(got), 'as answered');
    },
  },
  {
    tag: 'checkpoints', operationId: 'listCheckpoints', status: 200,
    path: `/v1/workflows/${STATE_ID}/checkpoints?limit=100&include_snapshot=false`,
    check: (t, got) => {
      t.same((json(got).items as { id: string }[]).map((c) => c.id), [CHECKPOINT_ID], 'the one checkpoint is listed');
    },
  },
  {
    tag: 'checkpoints', operationId: 'latestCheckpoint', status: 200, path: `/v1/workflows/${STATE_ID}/checkpoints/latest`,
    check: async (t, got, api) => { t.same(json(got), (await checkpoint(api)).json(), 'the stored checkpoint'); },
  },
  {
    tag: 'checkpoints', operationId: 'getCheckpoint', status: 200, path: `/v1/checkpoints/${CHECKPOINT_ID}`,
    check: async (t, got, api) => { t.same(json(got), (await checkpoint(api)).json(), 'the stored checkpoint'); },
  },
  {
    // mode apply: the snapshot (version 3) becomes the current state, at a new version.
    tag: 'checkpoints', operationId: 'restoreCheckpoint', status: 200, path: `/v1/checkpoints/${CHECKPOINT_ID}/restore`,
    check: async (t, got, api) => {
      t.match(json(got), { id: STATE_ID, status: 'paused', version: 4 });
      t.same((await state(api)).json(), json(got), 'the stored state is the restored one');
    },
  },
  {
    tag: 'checkpoints', operationId: 'pruneCheckpoints', status: 200,
    path: `/v1/workflows/${STATE_ID}/checkpoints?keep=10`,
    check: async (t, got, api) => {
      t.same(json(got), { deleted: 0 }, 'the one checkpoint is among those kept');
      t.equal((await checkpoint(api)).statusCode, 200, 'and is still there');
    },
  },
  {
    tag: 'threads', operationId: 'saveThreadCheckpoint', status: 201, path: THREAD_CHECKPOINT,
    check: async (t, got, api) => {
      t.same(json(got), { thread_id: THREAD_ID, checkpoint_ns: '', checkpoint_id: THREAD_CHECKPOINT_ID });
      const res = await tuple(api);
      t.equal(res.statusCode, 200, 'the checkpoint is stored');
      t.same(res.json().channel_values.map((v: { channel: string }) => v.channel), ['messages'], 'with its value');
    },
  },
  {
    tag: 'threads', operationId: 'saveThreadWrites', status: 204, path: `${THREAD_CHECKPOINT}/writes/${TASK_ID}`,
    check: async (t, got, api) => {
      t.equal(got.body, '', 'no body');
      t.same((await tuple(api)).json().pending_writes.map((w: { task_id: string }) => w.task_id), [TASK_ID],
        'the write is pending on the checkpoint');
    },
  },
  {
    tag: 'threads', operationId: 'loadThreadCheckpoint', status: 200, path: THREAD_CHECKPOINT,
    check: async (t, got, api) => { t.same(json(got), (await tuple(api)).json(), 'the stored tuple'); },
  },
  {
    tag: 'threads', operationId: 'searchThreadCheckpoints', status: 200, path: '/v1/threads/search',
    check: async (t, got, api) => {
      const { items, next_cursor: next } = json(got) as { items: unknown[]; next_cursor: unknown };
      t.same([items, next], [[(await tuple(api)).json()], null], 'the one checkpoint is found');
    },
  },
  {
    tag: 'threads', operationId: 'loadDeltaChannelHistory', status: 200,
    path: `${THREAD_CHECKPOINT}/delta-history?channel=messages`,
    check: (t, got) => { t.same(json(got), { channels: { messages: { writes: [] } } }, 'the first checkpoint has no ancestors'); },
  },
  {
    tag: 'threads', operationId: 'saveThreadSettings', status: 200, path: `/v1/threads/${THREAD_ID}`,
    check: async (t, got, api) => {
      t.match(json(got), { thread_id: THREAD_ID, max_checkpoints: 100, ttl_seconds: 2592000 });
      t.same((await thread(api)).json(), json(got), 'the stored settings are the ones answered');
    },
  },
  {
    tag: 'threads', operationId: 'loadThread', status: 200, path: `/v1/threads/${THREAD_ID}`,
    check: async (t, got, api) => { t.same(json(got), (await thread(api)).json(), 'the stored thread'); },
  },
  {
    // A dry run: it counts, and deletes nothing (the state is paused, not finished; the thread's TTL is far).
    tag: 'maintenance', operationId: 'purgeWorkflowStates', status: 200, path: '/v1/purge',
    check: async (t, got, api) => {
      t.same(json(got), { matched: 0, dry_run: true, threads_matched: 0 });
      t.equal((await state(api)).statusCode, 200, 'the state is still there');
      t.equal((await thread(api)).statusCode, 200, 'and the thread');
    },
  },
  {
    tag: 'workflows', operationId: 'deleteWorkflowState', status: 204, path: `/v1/workflows/${STATE_ID}`,
    check: async (t, got, api) => {
      t.equal(got.body, '', 'no body');
      t.equal((await state(api)).statusCode, 404, 'the state is gone');
      t.equal((await checkpoint(api)).statusCode, 404, 'with its checkpoint');
    },
  },
  {
    tag: 'threads', operationId: 'deleteThread', status: 204, path: `/v1/threads/${THREAD_ID}`,
    check: async (t, got, api) => {
      t.equal(got.body, '', 'no body');
      t.equal((await thread(api)).statusCode, 404, 'the thread is gone');
      t.equal((await tuple(api)).statusCode, 404, 'with its checkpoint');
    },
  },
  {
    tag: 'health', operationId: 'liveness', status: 200, path: '/health/live',
    check: (t, got) => { t.same(json(got), { status: 'ok' }); },
  },
  {
    tag: 'health', operationId: 'readiness', status: 200, path: '/health/ready',
    check: (t, got) => { t.match(json(got), { status: 'ok' }); },
  },
  {
    tag: 'health', operationId: 'health', status: 200, path: '/health',
    check: (t, got) => { t.match(json(got), { status: 'ok' }); },
  },
];

/**
 * Expands the operation, clicks "Try it out" and "Execute" without touching the form, and reads
 * Swagger UI's live response. Swagger UI refusing to send (a required field it left empty) is an
 * error naming what it said.
 */
async function tryItOut(page: Page, op: Operation, shot: string): Promise<Executed> {
  const block = page.locator(`#operations-${op.tag}-${op.operationId}`);
  try {
    await block.locator('.opblock-summary-control').click();
    await block.locator('button.try-out__btn').click();
    await block.locator('button.execute').click();
    const status = block.locator('.live-responses-table tbody .response-col_status');
    const refused = block.locator('.validation-errors');
    await status.or(refused).first().waitFor();
    if (await refused.isVisible()) {
      throw new Error(`Swagger UI did not send the request: ${(await refused.innerText()).replace(/\s+/g, ' ').trim()}`);
    }
    const statusText = (await status.innerText()).trim();
    const bodyBlock = block.locator('.live-responses-table tbody .response-col_description .highlight-code pre');
    const body = (await bodyBlock.count()) ? (await bodyBlock.first().textContent() ?? '') : '';
    const requestUrl = (await block.locator('.request-url pre').textContent() ?? '').trim();
    const code = /^\d{3}/.exec(statusText)?.[0];
    if (!code) {
      const details = (await block.locator('.live-responses-table tbody .response-col_description').innerText()).trim();
      throw new Error(`Swagger UI shows no HTTP status but "${statusText}": ${details}`);
    }
    return { status: Number(code), body, requestUrl };
  } finally {
    await block.screenshot({ path: shot }).catch(() => {});
  }
}

t.test('Swagger UI: every operation\'s prefilled example, executed in a browser, succeeds', async (t) => {
  const { app } = await buildTestApp(t);
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  const origin = new URL(base).origin;
  await rm(SHOTS, { recursive: true, force: true });
  await mkdir(SHOTS, { recursive: true });

  const browser = await launchChromium();
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(15_000);
  const consoleErrors: string[] = [];
  const elsewhere: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(`${m.text()} (${m.location().url})`); });
  page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));
  page.on('request', (r) => { if (!r.url().startsWith(`${origin}/`) && !r.url().startsWith('data:')) elsewhere.push(r.url()); });

  const loaded = await page.goto(`${base}/docs/`);
  t.equal(loaded?.status(), 200, '/docs/ is served');
  await page.locator('.opblock').first().waitFor();
  await page.screenshot({ path: new URL('00-docs.png', SHOTS).pathname });

  const shown = await page.locator('.opblock').evaluateAll((els) => els.map((e) => e.id));
  t.same(shown.sort(), WORKFLOW.map((o) => `operations-${o.tag}-${o.operationId}`).sort(),
    'every operation Swagger UI shows is tried below, and no other');

  for (const [i, op] of WORKFLOW.entries()) {
    await t.test(`${op.operationId}: Try it out, Execute -> ${op.status}`, async (t) => {
      const shot = new URL(`${String(i + 1).padStart(2, '0')}-${op.operationId}.png`, SHOTS).pathname;
      const got = await tryItOut(page, op, shot);
      const url = new URL(got.requestUrl);
      t.equal(url.origin, origin, `${op.operationId} is sent to the service that serves the page`);
      const path = url.pathname + url.search;
      t.equal(path, op.path, `${op.operationId} requests ${op.path}`);
      // On failure the diagnostic shows the body Swagger UI shows (a problem+json naming the field).
      t.equal(got.status, op.status, `${op.operationId} answered ${op.status}`, { request: path, body: oneLine(got.body) });
      if (got.status === op.status) await op.check(t, got, app);
    });
  }

  t.same(consoleErrors, [], 'the page logs no error');
  t.same(elsewhere, [], 'the page requests nothing from another origin');
});
