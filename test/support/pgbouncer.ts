import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './database.js';

const run = promisify(execFile);

/** Debian's package puts it in /usr/sbin, which is not on every user's PATH. */
const CANDIDATES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'];

export class PgBouncerMissing extends Error {
  override name = 'PgBouncerMissing';
}

export interface PgBouncer {
  /** The PostgreSQL URL it was given, with PgBouncer's host and port instead. */
  url: string;
  port: number;
  version: string;
  /** What PgBouncer wrote to stderr (its log). */
  log: () => string;
  stop(): Promise<void>;
}

export interface PgBouncerOptions {
  /** Server connections per database and user (each test file has a database of its own). */
  poolSize?: number;
}

/** The pgbouncer binary; a missing one is an error that names the package, never a reason to skip. */
export async function pgbouncerBinary(): Promise<string> {
  const found = CANDIDATES.find((p) => existsSync(p)) ??
    (await run('sh', ['-c', 'command -v pgbouncer']).then((r) => r.stdout.trim(), () => ''));
  if (!found) {
    throw new PgBouncerMissing('pgbouncer is not installed: the system tests need it ' +
      '(Debian/Ubuntu: apt-get install -y pgbouncer; .ci/run installs it).');
  }
  return found;
}

/**
 * PgBouncer in transaction mode in front of the PostgreSQL at `pgUrl`, on a free loopback port.
 * Every database name is forwarded (a wildcard entry), so databases made later with CREATE DATABASE
 * are reachable through it; clients authenticate with the same user and password (SCRAM), which
 * PgBouncer also uses towards PostgreSQL. As root it runs as the OS user `postgres` (it refuses root).
 */
export async function startPgBouncer(pgUrl: string, opts: PgBouncerOptions = {}): Promise<PgBouncer> {
  const bin = await pgbouncerBinary();
  const { stdout: versionOut } = await run(bin, ['--version']);
  const version = /PgBouncer (\S+)/.exec(versionOut)?.[1] ?? 'unknown';
  const pg = new URL(pgUrl);
  const user = decodeURIComponent(pg.username);
  const password = decodeURIComponent(pg.password);
  const port = await freePort();

  const dir = await mkdtemp(join(tmpdir(), 'wss-pgbouncer-'));
  const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;
  const ini = [
    '[databases]',
    `* = host=${pg.hostname} port=${pg.port || 5432}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'pool_mode = transaction',
    'auth_type = scram-sha-256',
    `auth_file = ${join(dir, 'userlist.txt')}`,
    // Every test file's app makes two pools of up to 10 connections, plus its own clients.
    'max_client_conn = 2000',
    `default_pool_size = ${opts.poolSize ?? 20}`,
    'ignore_startup_parameters = extra_float_digits',
    'log_connections = 0',
    'log_disconnections = 0',
    '',
  ].join('\n');
  await writeFile(join(dir, 'pgbouncer.ini'), ini, { mode: 0o600 });
  await writeFile(join(dir, 'userlist.txt'), `${quote(user)} ${quote(password)}\n`, { mode: 0o600 });

  const runAs = process.getuid?.() === 0 ? await postgresUser() : undefined;
  if (runAs) {
    await chmod(dir, 0o700);
    for (const f of [dir, join(dir, 'pgbouncer.ini'), join(dir, 'userlist.txt')]) await chown(f, runAs.uid, runAs.gid);
  }
  const proc: ChildProcess = spawn(bin, [join(dir, 'pgbouncer.ini')], { ...runAs, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (c: Buffer) => { log = (log + c.toString('utf8')).slice(-64_000); });
  const exited = new Promise<void>((done) => proc.once('close', () => done()));
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);

  const stop = async () => {
    process.off('exit', killOnExit);
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGINT'); // immediate shutdown
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await listening(port, exited, () => log);
  } catch (err) {
    await stop();
    throw err;
  }
  const url = new URL(pgUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return { url: url.toString(), port, version, log: () => log, stop };
}

async function postgresUser() {
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
    return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
  } catch {
    throw new Error('As root, pgbouncer runs as the OS user "postgres", which does not exist: create it ' +
      '(useradd --system --user-group postgres) or run the tests as another user.');
  }
}

/** Resolves once the port accepts connections; rejects with PgBouncer's log when it exits first. */
async function listening(port: number, exited: Promise<void>, log: () => string) {
  let gone = false;
  void exited.then(() => { gone = true; });
  for (const until = Date.now() + 10_000; Date.now() < until;) {
    if (gone) throw new Error(`pgbouncer exited at start:\n${log()}`);
    const open = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`pgbouncer did not listen on 127.0.0.1:${port} within 10 s:\n${log()}`);
}
