/**
 * Threads: LangGraph checkpoints over HTTP. Values are opaque: the saver's serialized bytes,
 * base64 in JSON (a Blob), stored and answered as they came; only JSON metadata is read, for
 * search's filter. Identifiers are bounded so that every key fits PostgreSQL's index entries.
 */
import { z } from 'zod';
import { StepId, Text255 } from './common.js';
import {
  checkpointTupleExample, checkpointTuplePageExample, deltaHistoryExample, EXAMPLE_CHANNEL, EXAMPLE_TASK_ID,
  EXAMPLE_THREAD_CHECKPOINT_ID, EXAMPLE_THREAD_ID, threadCheckpointExample, threadCheckpointRefExample, threadExample,
  threadSearchExample, threadSettingsExample, threadWritesExample,
} from './examples.js';

const INT32_MAX = 2_147_483_647;
/** Most items in one request's arrays (values, writes, versions); the body limit bounds their bytes. */
const MAX_ITEMS = 10_000;

const ThreadId = Text255;
/** A checkpoint namespace: `""` is the root graph's; a subgraph's are LangGraph's `node:task|…` paths. */
const Namespace = z.string().max(255);
const CheckpointId = z.string().min(1).max(128);
const TaskId = z.string().min(1).max(128);
/** A channel: a key of the graph's state, under the rule of any key a client names (a step id's: no `__proto__`). */
const Channel = StepId;
const ValueType = z.string().min(1).max(64)
  .meta({ description: 'The serializer\'s type of the bytes (`json`, `bytes`, …); `empty` only in channel_values.' });
const Version = z.union([z.string().min(1).max(128), z.number()])
  .meta({ description: 'A channel version as LangGraph has it: a string or a number (stored as its text, compared ' +
    'as text). Must be unique per channel within a namespace: a value is stored once per version.' });
const Base64 = z.base64().meta({ description: 'The bytes, base64 (RFC 4648, with padding).' });
const Idx = z.int().min(-INT32_MAX - 1).max(INT32_MAX);

/** The latest checkpoint, in a path's checkpoint_id. */
export const LATEST = 'latest';

export const Blob = z
  .strictObject({ type: ValueType, data: Base64 })
  .meta({ id: 'Blob', description: 'Serialized bytes: the serializer\'s type, and the bytes in base64.' });
export const StoredBlob = z
  .object({ type: z.string(), data: z.string().meta({ contentEncoding: 'base64' }) })
  .meta({ id: 'StoredBlob', description: 'Bytes as stored: the serializer\'s type, and the bytes in base64.' });

const ChannelValueInput = z
  .strictObject({
    channel: Channel,
    version: Version,
    type: ValueType,
    data: Base64.optional().meta({ description: 'Absent exactly when type is `empty` (the channel has no value).' }),
  })
  .refine((v) => (v.type === 'empty') === (v.data === undefined),
    { path: ['data'], message: 'required unless type is empty, and absent when it is' });

export const ThreadCheckpointInput = z
  .strictObject({
    parent_checkpoint_id: CheckpointId.nullable().default(null)
      .meta({ description: 'The id in the config the client put it with; null for a thread\'s first checkpoint.' }),
    v: z.int().min(0).max(INT32_MAX).meta({ description: 'The checkpoint\'s format version (LangGraph\'s `v`).' }),
    channel_versions: z.record(Channel, Version).refine((r) => Object.keys(r).length <= MAX_ITEMS, `at most ${MAX_ITEMS} channels`)
      .meta({ description: 'The checkpoint\'s `channel_versions`: the version of each channel a read assembles.' }),
    checkpoint: Blob.meta({ description: 'The serialized checkpoint without its `channel_values`.' }),
    metadata: Blob.meta({ description: 'The serialized metadata; when its type is `json`, search can filter on it.' }),
    channel_values: z.array(ChannelValueInput).max(MAX_ITEMS).meta({
      description: 'The values of the channels that changed (LangGraph\'s `newVersions`), each at the version ' +
        '`channel_versions` names; type `empty` without data: the channel has no value at that version.',
    }),
  })
  .superRefine((b, ctx) => {
    const seen = new Set<string>();
    b.channel_values.forEach((cv, i) => {
      const named = b.channel_versions[cv.channel];
      if (seen.has(cv.channel)) {
        ctx.addIssue({ code: 'custom', path: ['channel_values', i, 'channel'], message: 'given twice' });
      } else if (named === undefined || String(named) !== String(cv.version)) {
        ctx.addIssue({ code: 'custom', path: ['channel_values', i, 'version'],
          message: `must be the version channel_versions names for ${cv.channel}` });
      }
      seen.add(cv.channel);
    });
  })
  .meta({ id: 'SaveThreadCheckpoint', examples: [threadCheckpointExample] });
export type ThreadCheckpointInput = z.output<typeof ThreadCheckpointInput>;

export const ThreadWritesInput = z
  .strictObject({
    task_path: z.string().max(1024).default('')
      .meta({ description: 'The task\'s path (LangGraph\'s `taskPath`); writes are answered in (task_path, task_id, idx) order.' }),
    writes: z.array(z.strictObject({
      idx: Idx.meta({ description: 'The write\'s index in the task\'s writes; negative for a special channel ' +
        '(`__error__` -1, `__scheduled__` -2, `__interrupt__` -3, `__resume__` -4).' }),
      channel: Channel,
      type: ValueType,
      data: Base64,
    })).max(MAX_ITEMS).meta({ description: 'A write with idx >= 0 is stored once (a repeat keeps the first); one with ' +
      'a negative idx replaces the stored one. Within a request the last write with an idx wins.' }),
  })
  .meta({ id: 'SaveThreadWrites', examples: [threadWritesExample] });
export type ThreadWritesInput = z.output<typeof ThreadWritesInput>;

const Optional = <T extends z.ZodType>(s: T, description: string) => s.nullish().meta({ description });
export const ThreadSearchInput = z
  .strictObject({
    thread_id: Optional(ThreadId, 'Only this thread (absent or null: every thread of the tenant).'),
    checkpoint_ns: Optional(Namespace, 'Only this namespace (absent or null: every namespace; `""` is the root graph\'s).'),
    checkpoint_id: Optional(CheckpointId, 'Only the checkpoint with this id.'),
    before: Optional(CheckpointId, 'Only checkpoints whose id is less than this one (code point order), in any thread.'),
    filter: Optional(z.record(z.string(), z.unknown()),
      'Only checkpoints whose JSON metadata contains this object (PostgreSQL\'s jsonb `@>`: each member equal); ' +
      '`{}` filters nothing.'),
    limit: z.int().min(1).max(1000).default(100)
      .meta({ description: 'Most items on a page; a page also ends before `LIST_MAX_BYTES` of values.' }),
    cursor: Optional(z.string().max(4096), 'The `next_cursor` of the previous page, with the same filters.'),
  })
  .meta({ id: 'SearchThreadCheckpoints', examples: [threadSearchExample] });
export type ThreadSearchInput = z.output<typeof ThreadSearchInput>;

const NullableInt = (description: string) => z.int().min(1).max(INT32_MAX).nullable().optional().meta({ description });
export const ThreadSettingsInput = z
  .strictObject({
    max_checkpoints: NullableInt('Keep the newest this many checkpoints of each namespace (and the ancestors their ' +
      'delta channels need); null keeps all (the default). Absent: unchanged.'),
    ttl_seconds: NullableInt('`POST /v1/purge` deletes the thread once no checkpoint or write came for this many ' +
      'seconds; null: never (the default). Absent: unchanged.'),
  })
  .meta({ id: 'ThreadSettings', examples: [threadSettingsExample] });
export type ThreadSettingsInput = z.output<typeof ThreadSettingsInput>;

// Answers.
const ThreadCheckpointFields = {
  thread_id: z.string(),
  checkpoint_ns: z.string(),
  checkpoint_id: z.string(),
};
export const ThreadCheckpointRef = z.object(ThreadCheckpointFields)
  .meta({ id: 'ThreadCheckpointRef', examples: [threadCheckpointRefExample] });

const blobFields = { type: z.string(), data: StoredBlob.shape.data };
export const CheckpointTuple = z
  .object({
    ...ThreadCheckpointFields,
    parent_checkpoint_id: z.string().nullable(),
    v: z.int(),
    checkpoint: StoredBlob,
    metadata: StoredBlob,
    channel_values: z.array(z.object({ channel: z.string(), ...blobFields }))
      .meta({ description: 'The value of each channel of channel_versions that has one, in channel order.' }),
    pending_writes: z.array(z.object({ task_id: z.string(), task_path: z.string(), idx: z.int(), channel: z.string(), ...blobFields }))
      .meta({ description: 'The checkpoint\'s writes in (task_path, task_id, idx) order, strings by code point.' }),
    pending_sends: z.array(StoredBlob).optional().meta({
      description: 'Only when v < 4 and the checkpoint has a parent: the parent\'s `__pregel_tasks` writes, in order, ' +
        'for the saver to migrate into channel_values as LangGraph\'s savers do.',
    }),
  })
  .meta({ id: 'CheckpointTuple', examples: [checkpointTupleExample] });

export const CheckpointTuplePage = z
  .object({ items: z.array(CheckpointTuple), next_cursor: z.string().nullable() })
  .meta({ id: 'CheckpointTuplePage', examples: [checkpointTuplePageExample] });

export const DeltaChannelHistory = z
  .object({
    channels: z.record(z.string(), z.object({
      seed: StoredBlob.optional().meta({ description: 'The value at the nearest ancestor that has one; absent when none has.' }),
      writes: z.array(z.object({ task_id: z.string(), channel: z.string(), ...blobFields }))
        .meta({ description: 'The channel\'s writes on every ancestor from the seed\'s (included) to the parent, oldest first.' }),
    })).meta({ description: 'One member per channel asked for.' }),
  })
  .meta({ id: 'DeltaChannelHistory', examples: [deltaHistoryExample] });

export const Thread = z
  .object({
    thread_id: z.string(),
    max_checkpoints: z.int().nullable(),
    ttl_seconds: z.int().nullable(),
    created_at: z.string(),
    updated_at: z.string().meta({ description: 'The last checkpoint, write or settings change.' }),
  })
  .meta({ id: 'Thread', examples: [threadExample] });

// Parameters.
const threadIdParam = ThreadId.meta({ description: 'The thread\'s id, the client\'s (1-255 characters), unique within ' +
  'the credential\'s tenant.', examples: [EXAMPLE_THREAD_ID] });
export const ThreadParams = z.strictObject({ thread_id: threadIdParam });
export const CheckpointParams = z.strictObject({
  thread_id: threadIdParam,
  checkpoint_id: CheckpointId.meta({ description: 'The checkpoint\'s id (1-128 characters); on a read, `latest` is the ' +
    'namespace\'s greatest id.', examples: [EXAMPLE_THREAD_CHECKPOINT_ID] }),
});
export const WritesParams = CheckpointParams.extend({
  task_id: TaskId.meta({ description: 'The task\'s id (1-128 characters).', examples: [EXAMPLE_TASK_ID] }),
});
const ns = Namespace.optional()
  .meta({ description: 'The checkpoint namespace (up to 255 characters); absent: `""`, the root graph\'s.' });
export const NamespaceQuery = z.strictObject({ ns });
export const DeltaHistoryQuery = z.strictObject({
  ns,
  channel: z.array(Channel).min(1).max(100)
    .meta({ description: 'The channels whose history to answer; repeat it for several.', examples: [[EXAMPLE_CHANNEL]] }),
});
