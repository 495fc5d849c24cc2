import { spawn } from 'node:child_process';

/** A runner's outcome: its exit code and, when it printed them, its counts. */
export interface RunResult {
  code: number;
  counts?: Counts;
}

export interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}

/**
 * Runs tap with `args` and `env` on top of this process's; its exit code and the counts of its
 * closing summary. TEST_RUNNER_NODE lets test/runtime.test.ts check that the workers run on this Node.
 */
export async function runTap(args: string[], env: Record<string, string>): Promise<RunResult> {
  process.stderr.write(`# Node ${process.version}\n`);
  const tap = spawn('npx', ['tap', ...args], {
    env: { ...process.env, TEST_RUNNER_NODE: process.version, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let tail = '';
  tap.stdout.on('data', (chunk: Buffer) => {
    process.stdout.write(chunk);
    tail = (tail + chunk.toString('utf8')).slice(-4000);
  });
  const code: number = await new Promise((resolve) => tap.on('close', (c) => resolve(c ?? 1)));
  const summary = [...tail.matchAll(/^# \{ total: \d+[^}]*\}/gm)].at(-1)?.[0];
  if (!summary) return { code };
  const count = (k: string) => Number(new RegExp(`${k}: (\\d+)`).exec(summary)?.[1] ?? 0);
  return { code, counts: { passed: count('pass'), failed: count('fail'), skipped: count('skip') + count('todo') } };
}

/**
 * The one plain "N passed, N failed, N skipped" line CI reads, over every runner of the run; the
 * run's exit code (a runner that failed, or ended without counts, fails it).
 */
export function summarize(results: RunResult[]): number {
  const total = { passed: 0, failed: 0, skipped: 0 };
  for (const { counts } of results) {
    total.passed += counts?.passed ?? 0;
    total.failed += counts?.failed ?? 0;
    total.skipped += counts?.skipped ?? 0;
  }
  process.stdout.write(`${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped\n`);
  return results.find((r) => r.code !== 0 || !r.counts) ? 1 : 0;
}
