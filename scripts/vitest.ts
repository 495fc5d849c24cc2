import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunResult } from './tap.js';

/** The vitest files of the repository: LangGraph's checkpointer suite and the saver's graph tests. */
export const VITEST_CONFIG = 'packages/langgraph/vitest.config.ts';
export const VITEST_DIR = 'packages/langgraph/';

/**
 * Runs vitest (the files whose paths contain one of `files`, else all of VITEST_CONFIG's) with `env` on top of this process's,
 * reporting as usual on the terminal and in JSON to a temporary file for the counts. A skipped or
 * todo test fails the run: LangGraph's suite skips tests by checkpointer name, and none may be.
 */
export async function runVitest(files: string[], env: Record<string, string>): Promise<RunResult> {
  const dir = await mkdtemp(join(tmpdir(), 'wss-vitest-'));
  const report = join(dir, 'report.json');
  try {
    const vitest = spawn('npx', ['vitest', 'run', '--config', VITEST_CONFIG, '--reporter=default', '--reporter=json',
      `--outputFile.json=${report}`, ...files], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const code: number = await new Promise((resolve) => vitest.on('close', (c) => resolve(c ?? 1)));
    let json: { numPassedTests: number; numFailedTests: number; numPendingTests: number; numTodoTests: number };
    try {
      json = JSON.parse(await readFile(report, 'utf8'));
    } catch {
      return { code: code || 1 };
    }
    const skipped = json.numPendingTests + json.numTodoTests;
    if (skipped > 0) process.stderr.write(`# vitest: ${skipped} tests skipped; none may be\n`);
    return { code: code || (skipped > 0 ? 1 : 0), counts: { passed: json.numPassedTests, failed: json.numFailedTests, skipped } };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
