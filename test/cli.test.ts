import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { WorkflowStateClient } from '../packages/client/src/index.js';
import { buildTestApp } from './helper.js';

/** The package's bin, as `npx workflow-state` runs it (its compiled dist/, built by `npm test`). */
const BIN = fileURLToPath(new URL('../packages/client/bin/workflow-state.js', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `args`; the environment has no WORKFLOW_STATE_* unless `env` sets them. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WORKFLOW_STATE_')));
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...clean, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
    });
  });
}

async function service(t: Test, env: Record<string, string> = {}) {
  const { app } = await buildTestApp(t, env);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  return { url, client: new WorkflowStateClient({ baseUrl: url }) };
}

const ID = '00000000-0000-4000-8000-000000000001';
const OLD = '00000000-0000-4000-8000-000000000002';
const daysAgo = (n: number) => new Date(Date.now() - n * 86_400_000).toISOString();

t.test('the workflow-state CLI against the service', async (t) => {
  const { url, client } = await service(t);
  // Times given on create are kept, so the output is known to the character.
  const state = await client.save(ID, {
    workflow_id: 'wf-cli', workflow_name: 'CLI test', status: 'running', updated_at: '2026-01-02T03:04:05Z',
    started_at: '2026-01-02T03:00:00Z', steps: { plan: { status: 'completed', started_at: '2026-01-02T03:00:00Z' } },
  });
  const old = await client.save(OLD, {
    workflow_id: 'wf-cli', workflow_name: 'Old run', status: 'completed', updated_at: '2025-01-01T00:00:00Z',
    started_at: '2025-01-01T00:00:00Z',
  });
  await client.save(randomUUID(), { workflow_id: 'wf-recent', workflow_name: 'Recent', status: 'failed' });

  t.test('get: the state as one JSON document', async (t) => {
    const run = await cli(['get', ID, '--url', url]);
    t.strictSame(run, { code: 0, stdout: `${JSON.stringify(state, null, 2)}\n`, stderr: '' });
  });

  t.test('get --table: the state\'s row, then its steps\'', async (t) => {
    const run = await cli(['get', ID, '--table', '--url', url]);
    t.equal(run.stdout, [
      'id                                    workflow_id  workflow_name  status   version  updated_at',
      '00000000-0000-4000-8000-000000000001  wf-cli       CLI test       running  1        2026-01-02T03:04:05.000000Z',
      '',
      'step_id  status     retry_count  started_at                   completed_at',
      'plan     completed  0            2026-01-02T03:00:00.000000Z  -',
      '',
    ].join('\n'));
    t.equal(run.code, 0);
  });

  t.test('get of a state that does not exist: the problem on stderr, exit 1', async (t) => {
    const missing = randomUUID();
    t.strictSame(await cli(['get', missing, '--url', url]),
      { code: 1, stdout: '', stderr: `404 Not Found: No workflow state ${missing}.\n` });
  });

  t.test('list: NDJSON, newest first, filtered, every page or --limit', async (t) => {
    const run = await cli(['list', '--workflow-id', 'wf-cli', '--url', url]);
    t.strictSame(run, { code: 0, stdout: `${JSON.stringify(state)}\n${JSON.stringify(old)}\n`, stderr: '' });
    const limited = await cli(['list', '--workflow-id', 'wf-cli', '--limit', '1', '--url', url]);
    t.equal(limited.stdout, `${JSON.stringify(state)}\n`);
    const active = await cli(['list', '--status', 'active', '--url', url]);
    t.equal(active.stdout, `${JSON.stringify(state)}\n`);
  });

  t.test('list --table', async (t) => {
    const run = await cli(['list', '--workflow-id', 'wf-cli', '--table', '--url', url]);
    t.equal(run.stdout, [
      'id                                    workflow_id  workflow_name  status     version  updated_at',
      '00000000-0000-4000-8000-000000000001  wf-cli       CLI test       running    1        2026-01-02T03:04:05.000000Z',
      '00000000-0000-4000-8000-000000000002  wf-cli       Old run        completed  1        2025-01-01T00:00:00.000000Z',
      '',
    ].join('\n'));
  });

  t.test('a problem answer: its title, detail and fields on stderr, exit 1', async (t) => {
    const run = await cli(['list', '--status', 'done', '--url', url]);
    t.equal(run.code, 1);
    t.equal(run.stdout, '');
    t.match(run.stderr, /^400 Bad Request: .+\n {2}query\.status: .+\n$/);
  });

  t.test('checkpoints and restore', async (t) => {
    const cid = '00000000-0000-4000-8000-0000000000c1';
    const cp = await client.checkpoint(ID, { step_id: 'plan', id: cid });
    const summary = { id: cid, workflow_state_id: ID, step_id: 'plan', timestamp: cp.timestamp, parent_id: null };

    t.strictSame(await cli(['checkpoints', ID, '--url', url]),
      { code: 0, stdout: `${JSON.stringify(summary)}\n`, stderr: '' });
    const table = await cli(['checkpoints', ID, '--table', '--url', url]);
    t.equal(table.stdout, [
      'id                                    step_id  timestamp                    parent_id',
      `${cid}  plan     ${cp.timestamp}  -`,
      '',
    ].join('\n'));

    const preview = await cli(['restore', cid, '--mode', 'preview', '--url', url]);
    t.strictSame(JSON.parse(preview.stdout), state, 'the snapshot: the state as it was');
    t.equal(preview.code, 0);

    const fork = '00000000-0000-4000-8000-0000000000f1';
    const forked = await cli(['restore', cid, '--mode', 'fork', '--new-id', fork, '--workflow-id', 'wf-fork', '--url', url]);
    t.strictSame(JSON.parse(forked.stdout), await client.load(fork));
    t.equal(JSON.parse(forked.stdout).workflow_id, 'wf-fork');

    const stale = await cli(['restore', cid, '--if-match', '7', '--url', url]);
    t.equal(stale.code, 1);
    t.match(stale.stderr, /^412 Precondition Failed: .*It is at version 1\.\n$/);

    const applied = await cli(['restore', cid, '--if-match', '1', '--table', '--url', url]);
    t.equal(applied.code, 0);
    t.match(applied.stdout, /^id +workflow_id +workflow_name +status +version +updated_at\n0{8}-0000-4000-8000-0{11}1 +wf-cli +CLI test +running +2 +\S+\n$/);
  });

  t.test('purge --older-than 30d --dry-run counts; without --dry-run deletes', async (t) => {
    t.strictSame(await cli(['purge', '--older-than', '30d', '--dry-run', '--url', url]),
      { code: 0, stdout: '{\n  "matched": 1,\n  "dry_run": true,\n  "threads_matched": 0\n}\n', stderr: '' });
    t.equal((await cli(['purge', '--older-than', '30d', '--status', 'failed', '--dry-run', '--table', '--url', url])).stdout,
      'matched  dry_run  threads_matched\n0        true     0\n');
    t.equal((await cli(['purge', '--older-than', daysAgo(30), '--dry-run', '--url', url])).stdout,
      '{\n  "matched": 1,\n  "dry_run": true,\n  "threads_matched": 0\n}\n', 'an RFC 3339 time');
    t.strictSame(await cli(['purge', '--older-than', '30d', '--url', url]),
      { code: 0, stdout: '{\n  "deleted": 1,\n  "threads_deleted": 0\n}\n', stderr: '' });
    t.equal(await client.load(OLD), null);
  });

  t.test('a reader that closes stdout early (| head) ends the CLI quietly, exit 0', async (t) => {
    const child = spawn(process.execPath, [BIN, 'list', '--url', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy(); // before the CLI writes: its first write meets EPIPE
    let stderr = '';
    child.stderr.on('data', (chunk) => { stderr += chunk; });
    const [code] = await once(child, 'exit');
    t.equal(code, 0);
    t.equal(stderr, '');
  });

  t.test('WORKFLOW_STATE_URL is the default --url', async (t) => {
    const run = await cli(['get', ID], { WORKFLOW_STATE_URL: url });
    t.equal(run.code, 0);
    t.equal(JSON.parse(run.stdout).id, ID);
  });
});

t.test('a token from --token or WORKFLOW_STATE_TOKEN', async (t) => {
  const token = 'cli-test-token-0123456789';
  const { url } = await service(t, {
    AUTH_TOKENS: JSON.stringify([{ token, tenant: 't', scopes: ['read', 'admin'], name: 'cli' }]),
  });
  const none = await cli(['list', '--url', url]);
  t.equal(none.code, 1);
  t.match(none.stderr, /^401 Unauthorized: /);
  t.strictSame(await cli(['list', '--url', url, '--token', token]), { code: 0, stdout: '', stderr: '' });
  t.strictSame(await cli(['purge', '--older-than', '1d', '--dry-run', '--url', url], { WORKFLOW_STATE_TOKEN: token }),
    { code: 0, stdout: '{\n  "matched": 0,\n  "dry_run": true,\n  "threads_matched": 0\n}\n', stderr: '' });
});

t.test('usage errors exit 2 and say what is wrong; --help exits 0', async (t) => {
  const help = await cli(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /^Usage: workflow-state <command> \[options\]\n/);
  t.match(help.stdout, /--url URL +the service \(default: \$WORKFLOW_STATE_URL, else http:\/\/127\.0\.0\.1:8080\)/);

  const cases: [string[], string][] = [
    [[], 'no command given'],
    [['show', ID], 'unknown command show'],
    [['get'], 'get takes <id>'],
    [['list', ID], 'list takes no arguments'],
    [['list', '--mode', 'fork'], 'list does not take --mode'],
    [['list', '--limit', '0'], '--limit takes a positive integer, not 0'],
    [['purge'], 'purge needs --older-than (e.g. 30d)'],
    [['purge', '--older-than', 'last week'], '--older-than takes a duration (30d, 12h, 15m, 90s) or an RFC 3339 time, not last week'],
    [['restore', ID, '--mode', 'undo'], '--mode is apply, fork or preview'],
    [['restore', ID, '--mode', 'fork', '--if-match', '1'], '--if-match is for --mode apply'],
    [['restore', ID, '--new-id', ID], '--new-id and --workflow-id are for --mode fork'],
  ];
  for (const [args, message] of cases) {
    // No service at this URL: a usage error is found before any request.
    t.strictSame(await cli([...args, '--url', 'http://127.0.0.1:1']),
      { code: 2, stdout: '', stderr: `workflow-state: ${message}\nRun workflow-state --help for usage.\n` }, args.join(' '));
  }
});

t.test('a service that cannot be reached: exit 1, naming the URL', async (t) => {
  // A loopback port that was free a moment ago: nothing listens there.
  const probe = createServer();
  await new Promise<void>((listening) => probe.listen(0, '127.0.0.1', listening));
  const { port } = probe.address() as AddressInfo;
  await new Promise((closed) => probe.close(closed));
  t.strictSame(await cli(['get', ID, '--url', `http://127.0.0.1:${port}`]),
    { code: 1, stdout: '', stderr: `cannot reach http://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}\n` });
});
