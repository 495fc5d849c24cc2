import { spawn } from 'node:child_process';

/**
 * Runs tap with `args` and `env` on top of this process's; its exit code, after one plain
 * "N passed, N failed" line. TEST_RUNNER_NODE lets test/runtime.test.ts check that the workers run
 * on this Node.
 */
export async function runTap(args: string[], env: Record<string, string>): Promise<number> {
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
  if (summary) {
    const count = (k: string) => Number(new RegExp(`${k}: (\\d+)`).exec(summary)?.[1] ?? 0);
    process.stdout.write(`${count('pass')} passed, ${count('fail')} failed, ${count('skip') + count('todo')} skipped\n`);
  }
  return code;
}
