/**
 * `workflow-state`: the operator's CLI over WorkflowStateClient. main() returns the exit code:
 * 0, 1 when the service answered a problem (or could not be reached), 2 for a usage error.
 */
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { WorkflowStateClient } from './client.js';
import { ProblemError } from './errors.js';
import type { CheckpointSummary, RestorePreview, WorkflowState } from './types.js';

export const DEFAULT_URL = 'http://127.0.0.1:8080';

const HELP = `Usage: workflow-state <command> [options]

Commands:
  get <id>                      a workflow state, with its steps
  list                          states, newest updated first (every page, or --limit)
      [--status active|completed,failed|...] [--workflow-id X] [--user-id U] [--limit N]
  checkpoints <id>              a state's checkpoints, newest first [--limit N]
  restore <checkpoint-id>       [--mode apply|fork|preview] (default apply)
      [--if-match VERSION] (apply) [--new-id UUID] [--workflow-id X] (fork)
  purge --older-than 30d        delete completed and failed states not updated since (and threads past their TTL)
      [--status completed,failed] [--dry-run]  (30d, 12h, 15m, 90s, or an RFC 3339 time)

Options:
  --url URL      the service (default: $WORKFLOW_STATE_URL, else ${DEFAULT_URL})
  --token TOKEN  bearer token (default: $WORKFLOW_STATE_TOKEN)
  --table        a plain aligned table instead of JSON
  -h, --help     this help

Output: JSON; list and checkpoints print one JSON document per line (NDJSON), as pages arrive.
Exit codes: 0 done, 1 the service answered a problem or could not be reached, 2 usage error.
`;

const OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  table: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  status: { type: 'string' },
  'workflow-id': { type: 'string' },
  'user-id': { type: 'string' },
  limit: { type: 'string' },
  mode: { type: 'string' },
  'new-id': { type: 'string' },
  'if-match': { type: 'string' },
  'older-than': { type: 'string' },
  'dry-run': { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

/** Each command: its positional arguments and the options it takes besides url, token, table, help. */
const COMMANDS: Record<string, { args: string[]; options: (keyof typeof OPTIONS)[] }> = {
  get: { args: ['id'], options: [] },
  list: { args: [], options: ['status', 'workflow-id', 'user-id', 'limit'] },
  checkpoints: { args: ['id'], options: ['limit'] },
  restore: { args: ['checkpoint-id'], options: ['mode', 'if-match', 'new-id', 'workflow-id'] },
  purge: { args: [], options: ['older-than', 'status', 'dry-run'] },
};

class UsageError extends Error {}

export interface Io {
  env: Record<string, string | undefined>;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export async function main(argv: string[], io: Io): Promise<number> {
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true }));
  } catch (e) {
    return usage(io, (e as Error).message);
  }
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  const [name, ...args] = positionals;
  const command = name === undefined ? undefined : COMMANDS[name];
  if (!command) return usage(io, name === undefined ? 'no command given' : `unknown command ${name}`);
  const stray = Object.keys(values).filter((o) =>
    !['url', 'token', 'table', 'help'].includes(o) && !command.options.includes(o as keyof typeof OPTIONS));
  if (stray.length) return usage(io, `${name} does not take --${stray.join(', --')}`);
  if (args.length !== command.args.length) {
    return usage(io, `${name} takes ${command.args.map((a) => `<${a}>`).join(' ') || 'no arguments'}`);
  }

  const url = values.url ?? io.env.WORKFLOW_STATE_URL ?? DEFAULT_URL;
  const client = new WorkflowStateClient({ baseUrl: url, token: values.token ?? io.env.WORKFLOW_STATE_TOKEN });
  const out = new Output(io.stdout, values.table === true);
  try {
    await run(name!, args, values, client, out);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) return usage(io, e.message);
    if (e instanceof ProblemError) {
      io.stderr.write(`${e.status} ${e.message}\n`);
      for (const field of e.errors) io.stderr.write(`  ${field.path}: ${field.message}\n`);
      return 1;
    }
    if (e instanceof TypeError && e.message === 'fetch failed') {
      io.stderr.write(`cannot reach ${url}: ${(e.cause as Error | undefined)?.message ?? e.message}\n`);
      return 1;
    }
    throw e;
  }
}

function usage(io: Io, message: string): number {
  io.stderr.write(`workflow-state: ${message}\nRun workflow-state --help for usage.\n`);
  return 2;
}

async function run(name: string, args: string[], values: Values, client: WorkflowStateClient, out: Output) {
  switch (name) {
    case 'get': {
      const state = await client.load(args[0]!);
      if (!state) throw new ProblemError(404, { title: 'Not Found', detail: `No workflow state ${args[0]}.` });
      return out.states([state], true);
    }
    case 'list': {
      const limit = optionalInt(values.limit, '--limit');
      const states = client.list({
        status: values.status, workflow_id: values['workflow-id'], user_id: values['user-id'],
        limit: limit === undefined ? undefined : Math.min(limit, 1000),
      });
      return out.stream(take(states, limit), STATE_COLUMNS);
    }
    case 'checkpoints': {
      const limit = optionalInt(values.limit, '--limit');
      const checkpoints = client.listCheckpoints(args[0]!, { limit: limit === undefined ? undefined : Math.min(limit, 1000) });
      return out.stream(take(checkpoints, limit), CHECKPOINT_COLUMNS);
    }
    case 'restore': {
      const mode = values.mode ?? 'apply';
      if (mode !== 'apply' && mode !== 'fork' && mode !== 'preview') throw new UsageError('--mode is apply, fork or preview');
      if (mode !== 'apply' && values['if-match'] !== undefined) throw new UsageError('--if-match is for --mode apply');
      if (mode !== 'fork' && (values['new-id'] ?? values['workflow-id']) !== undefined) {
        throw new UsageError('--new-id and --workflow-id are for --mode fork');
      }
      const state = await client.restore(args[0]!, mode === 'apply'
        ? { mode, ifMatch: optionalInt(values['if-match'], '--if-match') }
        : { mode, new_id: values['new-id'], workflow_id: values['workflow-id'] });
      return out.states([state], false);
    }
    case 'purge': {
      if (values['older-than'] === undefined) throw new UsageError('purge needs --older-than (e.g. 30d)');
      const result = await client.purge({
        older_than: olderThan(values['older-than'], Date.now()),
        // The service checks them (any letter case), and its 400 names a wrong one.
        statuses: values.status?.split(',') as Parameters<typeof client.purge>[0]['statuses'],
        dry_run: values['dry-run'] === true,
      });
      return out.document(result, Object.keys(result));
    }
  }
}

function optionalInt(value: string | undefined, option: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageError(`${option} takes a positive integer, not ${value}`);
  return Number(value);
}

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `30d`, `12h`, `15m`, `90s` before `now`, as an RFC 3339 time; an RFC 3339 time as it is. */
export function olderThan(value: string, now: number): string {
  const duration = value.match(/^(\d+)([smhd])$/);
  if (duration) return new Date(now - Number(duration[1]) * UNIT_MS[duration[2]!]!).toISOString();
  if (/^\d{4}-\d\d-\d\dT/.test(value) && !Number.isNaN(Date.parse(value))) return value;
  throw new UsageError(`--older-than takes a duration (30d, 12h, 15m, 90s) or an RFC 3339 time, not ${value}`);
}

async function* take<T>(items: AsyncIterable<T>, limit: number | undefined): AsyncGenerator<T> {
  if (limit === undefined) return yield* items;
  let n = 0;
  for await (const item of items) {
    yield item;
    if (++n >= limit) return;
  }
}

const STATE_COLUMNS = ['id', 'workflow_id', 'workflow_name', 'status', 'version', 'updated_at'];
const STEP_COLUMNS = ['step_id', 'status', 'retry_count', 'started_at', 'completed_at'];
const CHECKPOINT_COLUMNS = ['id', 'step_id', 'timestamp', 'parent_id'];

/** JSON documents on stdout, or with --table plain aligned columns. */
class Output {
  /** stdout was closed by its reader (`| head`): the rest is not wanted, and no more pages are fetched. */
  private closed = false;

  constructor(private readonly stdout: NodeJS.WritableStream, private readonly table: boolean) {
    stdout.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') throw e;
      this.closed = true;
    });
  }

  async document(value: object, columns: string[]) {
    await this.write(this.table ? renderTable([value], columns) : `${JSON.stringify(value, null, 2)}\n`);
  }

  /** A state (get, restore): with --table, its row and then its steps'. */
  async states([state]: (WorkflowState | RestorePreview)[], withSteps: boolean) {
    if (!this.table) return this.write(`${JSON.stringify(state, null, 2)}\n`);
    const steps = Object.values(state!.steps);
    await this.write(renderTable([state!], STATE_COLUMNS) +
      (withSteps && steps.length ? `\n${renderTable(steps, STEP_COLUMNS)}` : ''));
  }

  /** NDJSON as the items arrive; a table once all have. */
  async stream(items: AsyncIterable<WorkflowState | CheckpointSummary>, columns: string[]) {
    const rows: object[] = [];
    for await (const item of items) {
      if (this.closed) return;
      if (this.table) rows.push(item);
      else await this.write(`${JSON.stringify(item)}\n`);
    }
    if (this.table) await this.write(renderTable(rows, columns));
  }

  private async write(text: string) {
    if (this.closed) return;
    // once() rejects when stdout errors instead of draining (EPIPE: closed is set).
    if (!this.stdout.write(text)) await once(this.stdout, 'drain').catch(() => {});
  }
}

/** A header of the field names, then one row each; columns two spaces apart, null as -. */
export function renderTable(rows: object[], columns: string[]): string {
  const cells = [columns, ...rows.map((row) => columns.map((c) => {
    const v = (row as Record<string, unknown>)[c];
    return v === null || v === undefined ? '-' : String(v);
  }))];
  const widths = columns.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}
