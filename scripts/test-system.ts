/**
 * `npm run test:system`: the tests that need system packages (.ci/run installs them after `npm test`).
 * PgBouncer (Debian's `pgbouncer`) in transaction mode in front of the test PostgreSQL, then
 *  - test/system/*.test.ts (Swagger UI in Debian's `chromium` among them), and
 *  - the service's own test files again, every pool they make going through that PgBouncer with
 *    DATABASE_PREPARE=false (databases are still made and dropped on PostgreSQL directly), and
 *  - the vitest files (LangGraph's checkpointer suite and the saver's graph tests) likewise.
 * A missing pgbouncer or chromium fails the run, naming the package; it never skips.
 */
import { readdir } from 'node:fs/promises';
import { chromiumBinary } from '../test/support/chromium.js';
import { provideTestPostgres } from '../test/support/database.js';
import { pgbouncerBinary, startPgBouncer } from '../test/support/pgbouncer.js';
import { type RunResult, runTap, summarize } from './tap.js';
import { runVitest, VITEST_DIR } from './vitest.js';

/** Test files that cannot go through a pooler by design, and why. */
const NOT_POOLED: Record<string, string> = {
  // Starts and stops PostgreSQL clusters of its own (no DATABASE_URL): no pooler is in front of them.
  'test/embedded.test.ts': 'embedded PostgreSQL start-up',
  // Stops and restarts a throwaway PostgreSQL of its own under the service, or points it at closed
  // ports: what it tests is the service's answer to its database going away, not the pooler's.
  'test/outage.test.ts': 'its own PostgreSQL, stopped under the service',
};

const missing = (await Promise.allSettled([pgbouncerBinary(), chromiumBinary()]))
  .flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
if (missing.length) {
  process.stderr.write(`${missing.join('\n')}\n`);
  process.exit(1);
}

const pooled = (await readdir('test')).filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`)
  .filter((f) => !(f in NOT_POOLED)).sort();
const system = (await readdir('test/system')).filter((f) => f.endsWith('.test.ts')).map((f) => `test/system/${f}`);

const pg = await provideTestPostgres((m) => process.stderr.write(`# ${m}\n`));
process.stderr.write(`# test PostgreSQL from ${pg.source}\n`);
let code = 1;
try {
  const bouncer = await startPgBouncer(pg.url, { poolSize: 25 });
  process.stderr.write(`# PgBouncer ${bouncer.version} (transaction mode) on port ${bouncer.port}\n`);
  for (const [file, why] of Object.entries(NOT_POOLED)) process.stderr.write(`# not through the pooler: ${file} (${why})\n`);
  try {
    // tap's include leaves test/system out of `npm test`; files named here run all the same.
    // Arguments (files, tap options) replace the default list, as with `npm test -- test/x.test.ts`;
    // files under packages/langgraph/ go to vitest.
    const given = process.argv.slice(2);
    const vitestFiles = given.filter((a) => a.startsWith(VITEST_DIR));
    const tapArgs = given.filter((a) => !a.startsWith(VITEST_DIR));
    const env = { TEST_DATABASE_URL: pg.url, TEST_POOLER_URL: bouncer.url, DATABASE_PREPARE: 'false' };
    const results: RunResult[] = [];
    if (given.length === 0) results.push(await runTap([...system, ...pooled], env), await runVitest([], env));
    else {
      if (tapArgs.length > 0) results.push(await runTap(tapArgs, env));
      if (vitestFiles.length > 0) results.push(await runVitest(vitestFiles, env));
    }
    code = summarize(results);
  } finally {
    await bouncer.stop();
  }
} finally {
  await pg.stop();
}
process.exit(code);
