/**
 * Concurrency never becomes a 500: every path locks a state before its checkpoints, and a
 * transaction PostgreSQL still aborts (deadlock, serialization failure) runs again, then is a 503.
 */
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { createSql, transaction } from '../src/db/client.js';
import { fromDatabaseError } from '../src/errors.js';
import { buildTestApp, freshDatabase, json, prepare, stateBody } from './helper.js';

t.test('a transaction aborted as a deadlock runs again, and takes effect once', async (t) => {
  const url = await freshDatabase(t);
  const sql = createSql(url, { max: 4, prepare });
  t.teardown(() => sql.end({ timeout: 5 }));
  await sql`CREATE TABLE pair (id int PRIMARY KEY, n int NOT NULL)`;
  await sql`INSERT INTO pair VALUES (1, 0), (2, 0)`;

  // Each takes its first row, waits until the other has too, then asks for the other's: a deadlock.
  let arrived = 0;
  let release!: () => void;
  const bothHoldOne = new Promise<void>((r) => { release = r; });
  let attempts = 0;
  const runs: Promise<void>[] = [];
  const crosswise = (run: number, first: number, second: number) => transaction(sql, async (tx) => {
    // Run again, it waits for the other to commit: else, on a busy machine, it can take its first
    // row back before the other (woken by the abort) takes it, and deadlock a second time.
    if (++attempts === 3) await runs[1 - run];
    await tx`UPDATE pair SET n = n + 1 WHERE id = ${first}`;
    if (++arrived === 2) release();
    await bothHoldOne;
    await tx`UPDATE pair SET n = n + 1 WHERE id = ${second}`;
  });
  runs.push(crosswise(0, 1, 2), crosswise(1, 2, 1));
  await Promise.all(runs);
  t.equal(attempts, 3, 'PostgreSQL aborted one of the two, which ran again');
  t.same((await sql<{ n: number }[]>`SELECT n FROM pair ORDER BY id`).map((r) => r.n), [2, 2], 'each took effect once');

  let tries = 0;
  await t.rejects(transaction(sql, async () => {
    tries++;
    throw Object.assign(new Error('could not serialize access'), { code: '40001' });
  }), { code: '40001' });
  t.equal(tries, 3, 'at most three attempts');
  for (const code of ['40001', '40P01']) {
    const problem = fromDatabaseError({ code });
    t.equal(problem?.status, 503, `${code} left over is a 503`);
    t.same(problem?.headers, { 'retry-after': '1' });
  }
});

t.test('restores, checkpoints, retention and purge racing on the same states for 10 s: never a 5xx', async (t) => {
  const { app } = await buildTestApp(t, { CHECKPOINT_RETENTION: '3' });
  const ids = [randomUUID(), randomUUID()];

  const statuses = new Map<number, number>();
  const count = (status: number) => statuses.set(status, (statuses.get(status) ?? 0) + 1);
  let purged = 0;
  let restored = 0;
  const end = Date.now() + 10_000; // the bar: 10 s of clients racing on two workflows
  const loop = async (request: () => Promise<{ statusCode: number }>) => {
    while (Date.now() < end) count((await request()).statusCode);
  };
  const latest = async (id: string) => (await app.inject({ url: `/v1/workflows/${id}/checkpoints/latest` })).json().id;
  // Purge takes every finished state it finds; each state's PUT loop creates it again, so purge
  // keeps deleting (with their checkpoints) the states that checkpoints and restores work on.
  const finished = stateBody({ status: 'completed' });
  await Promise.all([
    ...ids.flatMap((id) => [
      loop(() => app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(finished) })),
      loop(() => app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json({ step_id: 's' }) })),
      loop(async () => {
        const res = await app.inject({ method: 'POST', url: `/v1/checkpoints/${await latest(id)}/restore`, ...json({}) });
        if (res.statusCode === 200) restored++;
        return res;
      }),
    ]),
    loop(async () => {
      const res = await app.inject({ method: 'POST', url: '/v1/purge', ...json({ older_than: '2100-01-01T00:00:00Z' }) });
      if (res.statusCode === 200) purged += res.json().deleted;
      await new Promise((r) => setTimeout(r, 20)); // leaves the states alive long enough to be restored
      return res;
    }),
  ]);
  t.comment(JSON.stringify([...statuses]));
  const fivexx = [...statuses].filter(([s]) => s >= 500);
  t.same(fivexx, [], `no 5xx among ${[...statuses.values()].reduce((a, b) => a + b, 0)} answers`);
  t.ok(restored > 0, `checkpoints were restored (${restored} times)`);
  t.ok(purged > 0, `purge deleted racing states (${purged} times)`);
});
