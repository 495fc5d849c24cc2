/**
 * Reads of threads, each one statement: a checkpoint tuple (the checkpoint, its channel values
 * assembled from the versions it names, its pending writes), a page of them, a channel's delta
 * history; and their answers, rendered here and only here (the bytes in base64).
 */
import type { Sql, TxSql } from '../db/client.js';
import { utcTimestamp } from '../schemas/common.js';
import { type Tenant, tenantIs } from './conditions.js';

type Db = Sql | TxSql;

export interface TupleRow {
  thread_id: string;
  checkpoint_ns: string;
  checkpoint_id: string;
  parent_id: string | null;
  v: number;
  checkpoint_type: string;
  checkpoint: Buffer;
  metadata_type: string;
  metadata: Buffer;
  channels: string[] | null;
  types: string[] | null;
  vals: Buffer[] | null;
  task_ids: string[] | null;
  task_paths: string[] | null;
  idxs: number[] | null;
  w_channels: string[] | null;
  w_types: string[] | null;
  w_vals: Buffer[] | null;
  s_types: string[] | null;
  s_vals: Buffer[] | null;
}

/** The columns of a tuple: `c` a checkpoint with its thread's thread_id, joined to tupleJoins. */
const tupleColumns = (db: Db) => db`
  c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_id, c.v,
  c.checkpoint_type, c.checkpoint, c.metadata_type, c.metadata,
  vals.channels, vals.types, vals.vals,
  w.task_ids, w.task_paths, w.idxs, w.channels AS w_channels, w.types AS w_types, w.vals AS w_vals,
  sends.types AS s_types, sends.vals AS s_vals`;

/**
 * The stored value of each channel a checkpoint `c` names, one lookup per channel: the cost does
 * not grow with the thread's history. (LIMIT keeps each a lookup by key, which it is: without it
 * the planner may hash all of the thread's values instead.)
 */
const namedValues = (db: Db, columns: ReturnType<Db>) => db`
  jsonb_each_text(c.channel_versions) e(channel, version)
  CROSS JOIN LATERAL (
    SELECT ${columns} FROM thread_channel_values v
    WHERE v.thread = c.thread AND v.checkpoint_ns = c.checkpoint_ns AND v.channel = e.channel AND v.version = e.version
      AND v.type <> 'empty'
    LIMIT 1) v`;

/** A checkpoint's values, its writes in LangGraph's order, and for v < 4 its parent's sends. */
const tupleJoins = (db: Db) => db`
  LEFT JOIN LATERAL (
    SELECT array_agg(v.channel ORDER BY v.channel) AS channels, array_agg(v.type ORDER BY v.channel) AS types,
           array_agg(v.value ORDER BY v.channel) AS vals
    FROM ${namedValues(db, db`v.channel, v.type, v.value`)}) vals ON true
  LEFT JOIN LATERAL (
    SELECT array_agg(w.task_id ORDER BY w.task_path, w.task_id, w.idx) AS task_ids,
           array_agg(w.task_path ORDER BY w.task_path, w.task_id, w.idx) AS task_paths,
           array_agg(w.idx ORDER BY w.task_path, w.task_id, w.idx) AS idxs,
           array_agg(w.channel ORDER BY w.task_path, w.task_id, w.idx) AS channels,
           array_agg(w.type ORDER BY w.task_path, w.task_id, w.idx) AS types,
           array_agg(w.value ORDER BY w.task_path, w.task_id, w.idx) AS vals
    FROM thread_writes w
    WHERE w.thread = c.thread AND w.checkpoint_ns = c.checkpoint_ns AND w.checkpoint_id = c.checkpoint_id) w ON true
  LEFT JOIN LATERAL (
    SELECT array_agg(s.type ORDER BY s.task_path, s.task_id, s.idx) AS types,
           array_agg(s.value ORDER BY s.task_path, s.task_id, s.idx) AS vals
    FROM thread_writes s
    WHERE c.v < 4 AND c.parent_id IS NOT NULL AND s.thread = c.thread AND s.checkpoint_ns = c.checkpoint_ns
      AND s.checkpoint_id = c.parent_id AND s.channel = '__pregel_tasks') sends ON true`;

/** The checkpoint `checkpointId` of a thread's namespace, or its greatest id when undefined ("latest"). */
export async function loadTuple(
  db: Db, tenant: string, threadId: string, ns: string, checkpointId: string | undefined,
): Promise<TupleRow | undefined> {
  const [row] = await db<TupleRow[]>`
    SELECT ${tupleColumns(db)}
    FROM threads th
    JOIN LATERAL (
      SELECT c.*, th.thread_id FROM thread_checkpoints c
      WHERE c.thread = th.id AND c.checkpoint_ns = ${ns}
        ${checkpointId === undefined ? db`` : db`AND c.checkpoint_id = ${checkpointId}`}
      ORDER BY c.checkpoint_id DESC LIMIT 1) c ON true
    ${tupleJoins(db)}
    WHERE th.tenant = ${tenant} AND th.thread_id = ${threadId}`;
  return row;
}

export interface SearchFilter {
  tenant: Tenant;
  threadId?: string | null;
  ns?: string | null;
  checkpointId?: string | null;
  before?: string | null;
  /** Sanitised (threads.ts `sanitised`); `{}` or undefined filters nothing. */
  filter?: Record<string, unknown> | null;
  /** The last item of the previous page: its checkpoint id, thread (row id) and namespace. */
  after?: [string, string, string];
  limit: number;
  /** The page ends before the tuple that would take its stored bytes past this; one alone is sent alone. */
  maxBytes: number;
}

/**
 * A page of tuples, newest checkpoint id first (then thread and namespace, so the order is total),
 * in one statement: the page's checkpoints first, then the stored size of each (no value is read
 * for that), and only the tuples within the page's budget are assembled. With a thread_id, each
 * thread of that id (one, unless an operator's search spans tenants) gives its newest checkpoints,
 * a namespace's read backwards along the primary key.
 */
export async function searchTuples(db: Db, f: SearchFilter): Promise<{ rows: (TupleRow & { thread: string })[]; more: boolean }> {
  const none = db``;
  const filter = f.filter && Object.keys(f.filter).length ? f.filter : undefined;
  const matching = () => db`
    ${f.ns != null ? db`AND c.checkpoint_ns = ${f.ns}` : none}
    ${f.checkpointId != null ? db`AND c.checkpoint_id = ${f.checkpointId}` : none}
    ${f.before != null ? db`AND c.checkpoint_id < ${f.before}` : none}
    ${filter ? db`AND c.metadata_filter @> ${db.json(filter as never)}` : none}
    ${f.after ? db`AND c.checkpoint_id <= ${f.after[0]}
      AND (c.checkpoint_id, c.thread, c.checkpoint_ns) < (${f.after[0]}, ${f.after[1]}::bigint, ${f.after[2]})` : none}`;
  const newest = () => db`ORDER BY c.checkpoint_id DESC, c.thread DESC, c.checkpoint_ns DESC LIMIT ${f.limit + 1}`;
  const rows = await db<(TupleRow & { thread: string; candidates: number })[]>`
    WITH page_keys AS MATERIALIZED (
      ${f.threadId == null
        ? db`SELECT c.*, th.thread_id FROM thread_checkpoints c JOIN threads th ON th.id = c.thread
             WHERE true ${tenantIs(db, f.tenant, 'th.tenant')} ${matching()} ${newest()}`
        : db`SELECT c.*, th.thread_id FROM threads th
             CROSS JOIN LATERAL (SELECT c.* FROM thread_checkpoints c WHERE c.thread = th.id ${matching()} ${newest()}) c
             WHERE th.thread_id = ${f.threadId} ${tenantIs(db, f.tenant, 'th.tenant')} ${newest()}`}
    ), sized AS (
      SELECT c.*, row_number() OVER page AS rn, sum(
        octet_length(c.checkpoint) + octet_length(c.metadata)
        + coalesce((SELECT sum(octet_length(v.value)) FROM ${namedValues(db, db`v.value`)}), 0)
        + coalesce((SELECT sum(octet_length(w.value)) FROM thread_writes w WHERE w.thread = c.thread
                      AND w.checkpoint_ns = c.checkpoint_ns AND w.checkpoint_id = c.checkpoint_id), 0)) OVER page AS running
      FROM page_keys c
      WINDOW page AS (ORDER BY c.checkpoint_id DESC, c.thread DESC, c.checkpoint_ns DESC ROWS UNBOUNDED PRECEDING)
    )
    SELECT ${tupleColumns(db)}, c.thread::text AS thread, (SELECT count(*) FROM page_keys)::int AS candidates
    FROM sized c
    ${tupleJoins(db)}
    WHERE c.rn <= ${f.limit} AND (c.rn = 1 OR c.running <= ${f.maxBytes})
    ORDER BY c.rn`;
  return { rows, more: rows.length > 0 && rows[0]!.candidates > rows.length };
}

export interface DeltaRow {
  kind: 'seed' | 'write';
  channel: string;
  type: string;
  value: Buffer;
  task_id: string | null;
}

/** Deepest a delta history walks: a client's parent ids may form a cycle. */
const MAX_DELTA_DEPTH = 100_000;

/**
 * For each channel, from the checkpoint's parent up its ancestors to the nearest one whose value
 * of the channel is stored (the seed): the seed, and the channel's writes on every ancestor walked
 * (the seed's included), oldest first, each checkpoint's in (task_path, task_id, idx) order.
 */
export async function deltaHistory(
  db: Db, tenant: string, threadId: string, ns: string, checkpointId: string | undefined, channels: string[],
): Promise<DeltaRow[]> {
  return db<DeltaRow[]>`
    WITH RECURSIVE target AS (
      SELECT c.thread, c.parent_id FROM threads th
      JOIN thread_checkpoints c ON c.thread = th.id AND c.checkpoint_ns = ${ns}
      WHERE th.tenant = ${tenant} AND th.thread_id = ${threadId}
        ${checkpointId === undefined ? db`` : db`AND c.checkpoint_id = ${checkpointId}`}
      ORDER BY c.checkpoint_id DESC LIMIT 1
    ), chain AS (
      SELECT c.thread, c.checkpoint_id, c.parent_id, c.channel_versions, 1 AS depth, ${channels}::text[] AS remaining
      FROM target JOIN thread_checkpoints c
        ON c.thread = target.thread AND c.checkpoint_ns = ${ns} AND c.checkpoint_id = target.parent_id
      UNION ALL
      -- A channel leaves the walk after the first ancestor that stores its value.
      SELECT p.thread, p.checkpoint_id, p.parent_id, p.channel_versions, chain.depth + 1,
             ARRAY(SELECT ch FROM unnest(chain.remaining) ch WHERE NOT EXISTS (
               SELECT 1 FROM thread_channel_values v WHERE v.thread = chain.thread AND v.checkpoint_ns = ${ns}
                 AND v.channel = ch AND v.version = chain.channel_versions ->> ch AND v.type <> 'empty'))
      FROM chain JOIN thread_checkpoints p
        ON p.thread = chain.thread AND p.checkpoint_ns = ${ns} AND p.checkpoint_id = chain.parent_id
      WHERE cardinality(chain.remaining) > 0 AND chain.depth < ${MAX_DELTA_DEPTH}
    )
    SELECT kind, channel, type, value, task_id FROM (
      SELECT 'seed' AS kind, s.channel, s.type, s.value, NULL::text AS task_id, s.depth, NULL::text AS task_path, NULL::int AS idx
      FROM (SELECT DISTINCT ON (v.channel) v.channel, v.type, v.value, chain.depth
            FROM chain CROSS JOIN LATERAL unnest(chain.remaining) ch
            CROSS JOIN LATERAL ( -- a lookup by key (LIMIT: so, not a hash of the thread's values)
              SELECT v.channel, v.type, v.value FROM thread_channel_values v
              WHERE v.thread = chain.thread AND v.checkpoint_ns = ${ns} AND v.channel = ch
                AND v.version = chain.channel_versions ->> ch AND v.type <> 'empty'
              LIMIT 1) v
            ORDER BY v.channel, chain.depth) s
      UNION ALL
      SELECT 'write', w.channel, w.type, w.value, w.task_id, chain.depth, w.task_path, w.idx
      FROM chain JOIN thread_writes w ON w.thread = chain.thread AND w.checkpoint_ns = ${ns}
        AND w.checkpoint_id = chain.checkpoint_id AND w.channel = ANY (chain.remaining)
    ) h
    ORDER BY kind, depth DESC, task_path, task_id, idx`;
}

// Answers.

const base64 = (b: Buffer) => b.toString('base64');
const blob = (type: string, bytes: Buffer) => ({ type, data: base64(bytes) });
type Blob = ReturnType<typeof blob>;

/** A tuple as answered (CheckpointTuple): the one place that sets its members and their order. */
export function tupleOf(r: TupleRow) {
  const channels = r.channels ?? [];
  const writes = r.task_ids ?? [];
  return {
    thread_id: r.thread_id,
    checkpoint_ns: r.checkpoint_ns,
    checkpoint_id: r.checkpoint_id,
    parent_checkpoint_id: r.parent_id,
    v: r.v,
    checkpoint: blob(r.checkpoint_type, r.checkpoint),
    metadata: blob(r.metadata_type, r.metadata),
    channel_values: channels.map((channel, i) => ({ channel, ...blob(r.types![i]!, r.vals![i]!) })),
    pending_writes: writes.map((taskId, i) => ({
      task_id: taskId, task_path: r.task_paths![i]!, idx: r.idxs![i]!, channel: r.w_channels![i]!, ...blob(r.w_types![i]!, r.w_vals![i]!),
    })),
    // What LangGraph's savers migrate into an old (v < 4) checkpoint: its parent's sends, possibly none.
    ...(r.v < 4 && r.parent_id !== null
      ? { pending_sends: (r.s_types ?? []).map((type, i) => blob(type, r.s_vals![i]!)) }
      : {}),
  };
}

interface DeltaHistory {
  seed?: Blob;
  writes: { task_id: string; channel: string; type: string; data: string }[];
}

/** A delta history as answered (DeltaChannelHistory): a member for each channel asked for. */
export function deltaHistoryOf(channels: string[], rows: DeltaRow[]) {
  const out = new Map<string, DeltaHistory>(channels.map((c) => [c, { writes: [] }]));
  for (const r of rows) {
    const h = out.get(r.channel)!;
    if (r.kind === 'seed') h.seed = blob(r.type, r.value);
    else h.writes.push({ task_id: r.task_id!, channel: r.channel, ...blob(r.type, r.value) });
  }
  // Seed first in each member, as documented; fromEntries keeps any channel name an own member.
  return { channels: Object.fromEntries([...out].map(([c, h]) => [c, h.seed ? { seed: h.seed, writes: h.writes } : h])) };
}

export interface ThreadRow {
  thread_id: string;
  max_checkpoints: number | null;
  ttl_seconds: number | null;
  created_at: string;
  updated_at: string;
}

/** A timestamptz as a UTC session prints it (`2026-12-01 09:00:00.1+00`), in the service's form. */
const stored = (t: string) => utcTimestamp(t.replace(' ', 'T').replace(/\+00$/, 'Z'))!;

/** A thread as answered (Thread). */
export const threadOf = (r: ThreadRow) => ({
  thread_id: r.thread_id,
  max_checkpoints: r.max_checkpoints,
  ttl_seconds: r.ttl_seconds,
  created_at: stored(r.created_at),
  updated_at: stored(r.updated_at),
});
