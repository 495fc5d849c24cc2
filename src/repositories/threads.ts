/**
 * Threads (sql/0004_threads.sql): a LangGraph checkpoint saver's storage. Each request is one
 * statement: the thread row is created (or its updated_at bumped, which locks it) in the same
 * statement as what is written, so writes that arrive before their checkpoint, or before the
 * thread, are stored as well. A thread is addressed by its tenant and id; reads that span threads
 * (search, purge) see one tenant, or every tenant for an operator.
 */
import { createHash } from 'node:crypto';
import type { Sql, TxSql } from '../db/client.js';
import type { ThreadCheckpointInput, ThreadSettingsInput, ThreadWritesInput } from '../schemas/threads.js';
import { deleteInBatches, type Tenant, tenantIs } from './conditions.js';
import type { ThreadRow } from './thread-tuples.js';

type Db = Sql | TxSql;

/** The thread's row, created if absent, its updated_at bumped (and so locked until the statement's transaction ends). */
const touchThread = (db: Db, tenant: string, threadId: string) => db`
  INSERT INTO threads (tenant, thread_id) VALUES (${tenant}, ${threadId})
  ON CONFLICT (tenant, thread_id) DO UPDATE SET updated_at = now()
  RETURNING id, max_checkpoints`;

/** Deepest a JSON metadata copy for search goes; deeper values are left out of it (null). */
const FILTER_DEPTH = 64;

/**
 * A JSON value as jsonb can hold it: NUL becomes U+FFFD and lone surrogates U+FFFD (jsonb refuses
 * both). Only for the filter copy: the metadata itself is stored as its bytes.
 */
export function sanitised(v: unknown, depth = 0): unknown {
  if (typeof v === 'string') return v.replace(/\u0000/g, '\uFFFD').toWellFormed();
  if (v === null || typeof v !== 'object') return v;
  if (depth >= FILTER_DEPTH) return null;
  if (Array.isArray(v)) return v.map((x) => sanitised(x, depth + 1));
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [sanitised(k) as string, sanitised(x, depth + 1)]));
}

/** The copy of JSON metadata that search filters on; `{}` for metadata that is not JSON. */
function metadataFilter(metadata: { type: string; data: string }): unknown {
  if (metadata.type !== 'json') return {};
  try {
    return sanitised(JSON.parse(Buffer.from(metadata.data, 'base64').toString('utf8')));
  } catch {
    return {};
  }
}

/** The checkpoint's channel versions as stored: their text. */
const versionTexts = (b: ThreadCheckpointInput) =>
  Object.fromEntries(Object.entries(b.channel_versions).map(([ch, v]) => [ch, String(v)]));

/** sha256 of what a PUT stores, whatever the order of its channels: a repeat is recognised by it. */
function digestOf(b: ThreadCheckpointInput, versions: Record<string, string>): Buffer {
  const channels = Object.entries(versions).sort(([a], [c]) => (a < c ? -1 : 1));
  const values = b.channel_values.map((cv) => [cv.channel, String(cv.version), cv.type, cv.data ?? null])
    .sort(([a], [c]) => (a! < c! ? -1 : 1));
  return createHash('sha256')
    .update(JSON.stringify([b.parent_checkpoint_id, b.v, channels, b.checkpoint, b.metadata, values]))
    .digest();
}

export type SaveOutcome =
  | { kind: 'created'; thread: string; prune?: number }
  | { kind: 'same' | 'conflict' };

/**
 * Stores a checkpoint and the channel values it brings, creating the thread, in one statement; the
 * values join the inserted checkpoint, so a refused one stores nothing. `prune` is the thread's
 * max_checkpoints when its namespace now holds more than that plus a tenth (pruning is amortised).
 */
export async function saveCheckpoint(
  db: Db, tenant: string, threadId: string, ns: string, checkpointId: string, b: ThreadCheckpointInput,
): Promise<SaveOutcome> {
  const versions = versionTexts(b);
  const digest = digestOf(b, versions);
  const cv = b.channel_values;
  const [r] = await db<{ inserted: number; existing: Buffer | null; thread: string; max_checkpoints: number | null; stored: number | null }[]>`
    WITH t AS (${touchThread(db, tenant, threadId)}),
    cp AS (
      INSERT INTO thread_checkpoints (thread, checkpoint_ns, checkpoint_id, parent_id, v, checkpoint_type, checkpoint,
                                      channel_versions, metadata_type, metadata, metadata_filter, digest)
      SELECT t.id, ${ns}, ${checkpointId}, ${b.parent_checkpoint_id}, ${b.v}, ${b.checkpoint.type},
             decode(${b.checkpoint.data}, 'base64'), ${db.json(versions)}, ${b.metadata.type},
             decode(${b.metadata.data}, 'base64'), ${db.json(metadataFilter(b.metadata) as never)}, ${digest}
      FROM t
      ON CONFLICT (thread, checkpoint_ns, checkpoint_id) DO NOTHING
      RETURNING thread),
    vals AS (
      INSERT INTO thread_channel_values (thread, checkpoint_ns, channel, version, type, value)
      SELECT cp.thread, ${ns}, u.channel, u.version, u.type, decode(u.data, 'base64')
      FROM cp, unnest(${cv.map((x) => x.channel)}::text[], ${cv.map((x) => String(x.version))}::text[],
                      ${cv.map((x) => x.type)}::text[], ${cv.map((x) => x.data ?? null) as string[]}::text[]) AS u(channel, version, type, data)
      ON CONFLICT (thread, checkpoint_ns, channel, version) DO NOTHING)
    SELECT (SELECT count(*) FROM cp)::int AS inserted, t.id::text AS thread, t.max_checkpoints,
           (SELECT c.digest FROM thread_checkpoints c
            WHERE c.thread = t.id AND c.checkpoint_ns = ${ns} AND c.checkpoint_id = ${checkpointId}) AS existing,
           CASE WHEN t.max_checkpoints IS NOT NULL THEN (
             SELECT count(*)::int FROM thread_checkpoints c WHERE c.thread = t.id AND c.checkpoint_ns = ${ns}) END AS stored
    FROM t`;
  if (r!.inserted === 1) {
    const max = r!.max_checkpoints;
    // The statement's snapshot counts the checkpoints before this one.
    const over = max !== null && r!.stored! + 1 > max + Math.floor(max / 10);
    return { kind: 'created', thread: r!.thread, ...(over ? { prune: max } : {}) };
  }
  // The checkpoint exists; one committed while this statement ran is not in its snapshot: read it.
  const existing = r!.existing ?? (await db<{ digest: Buffer }[]>`
    SELECT digest FROM thread_checkpoints
    WHERE thread = ${r!.thread}::bigint AND checkpoint_ns = ${ns} AND checkpoint_id = ${checkpointId}`)[0]?.digest;
  return { kind: existing && digest.equals(existing) ? 'same' : 'conflict' };
}

/**
 * Stores a task's writes to a checkpoint (which need not exist yet), creating the thread, in one
 * statement: a regular write (idx >= 0) is stored once, a special one (idx < 0) replaces the stored one.
 */
export async function saveWrites(
  db: Db, tenant: string, threadId: string, ns: string, checkpointId: string, taskId: string, b: ThreadWritesInput,
): Promise<void> {
  // One row per idx (the last wins): an upsert cannot touch a row twice in one statement.
  const ws = [...new Map(b.writes.map((w) => [w.idx, w])).values()];
  await db`
    WITH t AS (${touchThread(db, tenant, threadId)})
    INSERT INTO thread_writes (thread, checkpoint_ns, checkpoint_id, task_id, idx, task_path, channel, type, value)
    SELECT t.id, ${ns}, ${checkpointId}, ${taskId}, u.idx, ${b.task_path}, u.channel, u.type, decode(u.data, 'base64')
    FROM t, unnest(${ws.map((w) => w.idx)}::int[], ${ws.map((w) => w.channel)}::text[], ${ws.map((w) => w.type)}::text[],
                   ${ws.map((w) => w.data)}::text[]) AS u(idx, channel, type, data)
    ON CONFLICT (thread, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE
      SET channel = EXCLUDED.channel, type = EXCLUDED.type, value = EXCLUDED.value, task_path = EXCLUDED.task_path
      WHERE thread_writes.idx < 0`;
}

/**
 * Retention of one thread, in the caller's transaction: locks the thread (puts wait), then keeps,
 * in each namespace (or in `ns`), the newest `max` checkpoints and the ancestors a delta channel's
 * replay from them reaches (as many as their metadata's counters_since_delta_snapshot counts
 * supersteps); deletes the others with their writes, and the channel values that no kept
 * checkpoint names. Answers how many checkpoints went.
 */
export async function pruneThread(tx: TxSql, thread: string, max: number, ns?: string): Promise<number> {
  await tx`SELECT 1 FROM threads WHERE id = ${thread}::bigint FOR NO KEY UPDATE`;
  const inNs = (alias: string) => (ns === undefined ? tx`` : tx`AND ${tx(alias)}.checkpoint_ns = ${ns}`);
  const [r] = await tx<{ checkpoints: number }[]>`
    WITH RECURSIVE keep AS (
      SELECT checkpoint_ns, checkpoint_id FROM (
        SELECT c.checkpoint_ns, c.checkpoint_id,
               row_number() OVER (PARTITION BY c.checkpoint_ns ORDER BY c.checkpoint_id DESC) AS n
        FROM thread_checkpoints c WHERE c.thread = ${thread}::bigint ${inNs('c')}) newest
      WHERE n <= ${max}
    ), need(checkpoint_ns, checkpoint_id, parent_id, depth, budget) AS (
      SELECT c.checkpoint_ns, c.checkpoint_id, c.parent_id, 0,
             (SELECT coalesce(max((e.value ->> 1)::int), 0)
              FROM jsonb_each(CASE WHEN jsonb_typeof(c.metadata_filter -> 'counters_since_delta_snapshot') = 'object'
                                   THEN c.metadata_filter -> 'counters_since_delta_snapshot' ELSE '{}' END) e
              WHERE jsonb_typeof(e.value -> 1) = 'number')
      FROM thread_checkpoints c JOIN keep USING (checkpoint_ns, checkpoint_id)
      WHERE c.thread = ${thread}::bigint
      UNION
      SELECT p.checkpoint_ns, p.checkpoint_id, p.parent_id, need.depth + 1, need.budget
      FROM need JOIN thread_checkpoints p ON p.thread = ${thread}::bigint AND p.checkpoint_ns = need.checkpoint_ns
        AND p.checkpoint_id = need.parent_id
      WHERE need.depth < need.budget
    ), gone AS (
      DELETE FROM thread_checkpoints c
      WHERE c.thread = ${thread}::bigint ${inNs('c')}
        AND NOT EXISTS (SELECT 1 FROM need WHERE need.checkpoint_ns = c.checkpoint_ns AND need.checkpoint_id = c.checkpoint_id)
      RETURNING c.checkpoint_ns, c.checkpoint_id, c.channel_versions
    ), gone_writes AS (
      DELETE FROM thread_writes w USING gone
      WHERE w.thread = ${thread}::bigint AND w.checkpoint_ns = gone.checkpoint_ns AND w.checkpoint_id = gone.checkpoint_id
    ), gone_values AS (
      -- Only values a pruned checkpoint named and no kept one does (a sibling DELETE is not visible here).
      DELETE FROM thread_channel_values v
      USING (SELECT DISTINCT gone.checkpoint_ns, e.key AS channel, e.value AS version
             FROM gone, jsonb_each_text(gone.channel_versions) e) g
      WHERE v.thread = ${thread}::bigint AND v.checkpoint_ns = g.checkpoint_ns AND v.channel = g.channel AND v.version = g.version
        AND NOT EXISTS (
          SELECT 1 FROM thread_checkpoints k JOIN need USING (checkpoint_ns, checkpoint_id)
          WHERE k.thread = ${thread}::bigint AND k.checkpoint_ns = v.checkpoint_ns AND k.channel_versions ->> v.channel = v.version)
    )
    SELECT count(*)::int AS checkpoints FROM gone`;
  return r!.checkpoints;
}

/** Deletes a thread with everything in it, every namespace (nothing when there is no such thread). */
export async function deleteThread(db: Db, tenant: string, threadId: string): Promise<void> {
  await db`DELETE FROM threads WHERE tenant = ${tenant} AND thread_id = ${threadId}`;
}

/**
 * Creates a thread or changes its settings (an absent one is kept, null clears it), and bumps its
 * updated_at; answers the thread with whether it was created, and its id for pruning.
 */
export async function saveThreadSettings(
  db: Db, tenant: string, threadId: string, s: ThreadSettingsInput,
): Promise<ThreadRow & { id: string; created: boolean }> {
  const [r] = await db<(ThreadRow & { id: string; created: boolean })[]>`
    INSERT INTO threads (tenant, thread_id, max_checkpoints, ttl_seconds)
    VALUES (${tenant}, ${threadId}, ${s.max_checkpoints ?? null}, ${s.ttl_seconds ?? null})
    ON CONFLICT (tenant, thread_id) DO UPDATE SET
      max_checkpoints = CASE WHEN ${s.max_checkpoints !== undefined} THEN EXCLUDED.max_checkpoints ELSE threads.max_checkpoints END,
      ttl_seconds = CASE WHEN ${s.ttl_seconds !== undefined} THEN EXCLUDED.ttl_seconds ELSE threads.ttl_seconds END,
      updated_at = now()
    RETURNING id::text AS id, thread_id, max_checkpoints, ttl_seconds, created_at, updated_at,
              xmax = 0 AS created -- no prior version: the row was inserted, not updated`;
  return r!;
}

export async function loadThread(db: Db, tenant: string, threadId: string): Promise<ThreadRow | undefined> {
  const [r] = await db<ThreadRow[]>`
    SELECT thread_id, max_checkpoints, ttl_seconds, created_at, updated_at
    FROM threads WHERE tenant = ${tenant} AND thread_id = ${threadId}`;
  return r;
}

const expired = (db: Db, tenant: Tenant) => db`
  ttl_seconds IS NOT NULL AND updated_at < now() - ttl_seconds * interval '1 second' ${tenantIs(db, tenant)}`;

/** Deletes the threads whose TTL passed, in small batches: each deletes a thread's rows in every table. */
export const purgeExpiredThreads = (sql: Sql, tenant: Tenant, batchSize = 25): Promise<number> =>
  deleteInBatches(sql, 'threads', () => expired(sql, tenant), batchSize);

export async function countExpiredThreads(db: Db, tenant: Tenant): Promise<number> {
  const [r] = await db<{ n: number }[]>`SELECT count(*)::int AS n FROM threads WHERE ${expired(db, tenant)}`;
  return r!.n;
}
