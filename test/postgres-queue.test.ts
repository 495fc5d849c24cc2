/**
 * postgres.js 3.4.9 keeps its pool's connections in queues whose array grows by a hole for every
 * query while every connection is busy, and scans all of them on the next query;
 * patches/postgres+3.4.9.patch (applied by patch-package after install) fixes that. These tests
 * check that each build of the installed client carries the fix (they fail on 3.4.9 as released,
 * kept in test/fixtures), that the fixed queue is still the same FIFO queue, and that a pool kept
 * saturated for thousands of queries answers each one with its own result.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { createSql } from '../src/db/client.js';
import { freshDatabase, prepare } from './helper.js';

type QueueFactory = () => { push(x: unknown): unknown; shift(): unknown; remove(x: unknown): unknown; length: number };

/** The installed package's queue.js in each build: ESM (src), CommonJS (cjs/src), Cloudflare (cf/src). */
function installedQueues(): string[] {
  // The CommonJS entry is <package>/cjs/src/index.js.
  const root = join(dirname(createRequire(import.meta.url).resolve('postgres')), '..', '..');
  return ['src', 'cjs/src', 'cf/src'].map((d) => join(root, d, 'queue.js'));
}

async function loadQueue(file: string): Promise<QueueFactory> {
  if (file.includes('/cjs/')) return createRequire(import.meta.url)(file) as QueueFactory;
  return (await import(pathToFileURL(file).href)).default as QueueFactory;
}
const queueFiles = installedQueues;

t.test('the fixed queue is still a FIFO queue with remove', async (t) => {
  const Queue = await loadQueue(queueFiles()[0]!);
  let s = 20261126;
  const rand = (n: number) => ((s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0) % n);
  const q = Queue();
  const model: number[] = [];
  let next = 0;
  let mismatches = 0;
  for (let i = 0; i < 100_000; i++) {
    const op = rand(10);
    if (op < 4 || model.length === 0) {
      q.push(next);
      model.push(next++);
    } else if (op < 8) {
      if (q.shift() !== model.shift()) mismatches++;
    } else {
      const x = model[rand(model.length)]!;
      model.splice(model.indexOf(x), 1);
      if (q.remove(x) !== x) mismatches++;
      if (q.remove(x) !== null) mismatches++;
    }
    if (q.length !== model.length) mismatches++;
  }
  // The pool's pattern while saturated: the head is shifted and pushed back, over and over.
  for (let i = 0; i < 50_000; i++) {
    const c = q.shift() as number;
    if (c !== model.shift() || q.remove(c) !== null) mismatches++;
    q.push(c);
    model.push(c);
  }
  while (model.length) if (q.shift() !== model.shift()) mismatches++;
  t.equal(mismatches, 0);
  t.equal(q.length, 0);
});

/**
 * The pool's pattern while every connection is busy: the head is shifted, looked up with remove()
 * (as move() does), and pushed back. Returns the most array slots one remove() scanned.
 */
function saturatedScan(Queue: QueueFactory) {
  const q = Queue();
  for (const c of ['a', 'b', 'c', 'd']) q.push(c);
  const indexOf = Array.prototype.indexOf;
  let widest = 0;
  Array.prototype.indexOf = function (this: unknown[], x: unknown, from?: number) {
    widest = Math.max(widest, this.length - (from ?? 0));
    return indexOf.call(this, x, from);
  };
  try {
    for (let i = 0; i < 20_000; i++) {
      const c = q.shift();
      q.remove(c);
      q.push(c);
    }
  } finally {
    Array.prototype.indexOf = indexOf;
  }
  return widest;
}

t.test('a saturated pool scans a few slots per query, not one more per query, in every build', async (t) => {
  const { default: Original } = await import(new URL('./fixtures/postgres-3.4.9-queue.js', import.meta.url).href);
  t.ok(saturatedScan(Original) >= 19_000, "3.4.9's queue as released scans a hole for every query before (the bug)");
  for (const file of queueFiles()) {
    t.ok(saturatedScan(await loadQueue(file)) <= 200, `${file} keeps its array short`);
  }
});

t.test('a saturated pool answers every query with its own result', async (t) => {
  const url = await freshDatabase(t);
  const sql = createSql(url, { max: 2, prepare });
  t.teardown(() => sql.end({ timeout: 5 }));
  let wrong = 0;
  let done = 0;
  // 16 loops on 2 connections: every query arrives while both are busy, and is pipelined.
  await Promise.all(Array.from({ length: 16 }, async (_, loop) => {
    for (let i = 0; i < 250; i++) {
      const [row] = await sql<{ n: number }[]>`SELECT ${loop * 1000 + i}::int AS n`;
      if (row?.n !== loop * 1000 + i) wrong++;
      done++;
    }
  }));
  t.equal(done, 4000);
  t.equal(wrong, 0);
});

t.test('a statement cancelled while pipelined behind another takes its own answer; the connection stays in step', async (t) => {
  // One connection: the three statements are pipelined on it, and the second is cancelled while
  // the first runs. postgres.js 3.4.9 dropped it from the connection's queue of sent statements
  // while PostgreSQL still answered it, so every later statement on the connection got the answer
  // of the one before it: a RangeError on a row of another width, or another statement's rows.
  // Patched, it takes its own answer: its rows, or 57014 when the cancel reaches it. The cancel
  // goes out as it becomes current, when PostgreSQL may have moved on to the third, which may then
  // be the one cancelled (why the service never cancels a pipelined statement: src/db/work.ts).
  const sql = createSql(await freshDatabase(t), { max: 1 });
  t.teardown(() => sql.end({ timeout: 1 }));
  await sql`SELECT 1`; // connected
  const settled = (q: PromiseLike<unknown>) => Promise.resolve(q).then((rows) => rows, (err: { code?: string }) => err.code);
  for (let round = 0; round < 5; round++) {
    const first = sql`SELECT pg_sleep(0.2), 1 AS a`.execute();
    const second = sql`SELECT 2 AS b, 3 AS c, 'x' AS d`.execute();
    const third = sql`SELECT 4 AS e`.execute();
    await new Promise((r) => setTimeout(r, 50));
    second.cancel();
    t.same((await first).map((r) => r.a), [1], `round ${round}: the first statement's own row`);
    const s2 = await settled(second);
    t.ok(s2 === '57014' || JSON.stringify(s2) === '[{"b":2,"c":3,"d":"x"}]', `round ${round}: the second's own answer or 57014`);
    const s3 = await settled(third);
    t.ok(s3 === '57014' || JSON.stringify(s3) === '[{"e":4}]', `round ${round}: the third's own answer or 57014`);
    await new Promise((r) => setTimeout(r, 100)); // the cancel request has landed
    t.same(await sql`SELECT 5 AS f`, [{ f: 5 }], `round ${round}: the connection is in step afterwards`);
  }
});
