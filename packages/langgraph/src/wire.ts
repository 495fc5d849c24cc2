/**
 * The /v1/threads wire format (openapi.yaml, "threads"). Values travel as the saver's serialized
 * bytes, base64 in JSON: the service stores them as they are and never parses them, so NUL
 * characters, lone surrogates or deep nesting in a graph's state are kept, not refused.
 */

/** What `serde.dumpsTyped` made: its type tag and its bytes in base64. */
export interface Blob {
  type: string;
  data: string;
}

/** A channel's value at the version `put` names; "empty" (no data) stores "no value". */
export interface ChannelValueIn {
  channel: string;
  version: string | number;
  type: string;
  data?: string;
}

export interface CheckpointPut {
  parent_checkpoint_id: string | null;
  v: number;
  channel_versions: Record<string, string | number>;
  /** The checkpoint without its channel_values. */
  checkpoint: Blob;
  metadata: Blob;
  /** Only the channels of newVersions. */
  channel_values: ChannelValueIn[];
}

export interface WritesPut {
  task_path: string;
  writes: Array<{ idx: number; channel: string } & Blob>;
}

export interface Tuple {
  thread_id: string;
  checkpoint_ns: string;
  checkpoint_id: string;
  parent_checkpoint_id: string | null;
  v: number;
  checkpoint: Blob;
  metadata: Blob;
  /** The checkpoint's channel values, assembled by the service (channels without a value left out). */
  channel_values: Array<{ channel: string } & Blob>;
  /** In LangGraph's order: (task_path, task_id, idx). */
  pending_writes: Array<{ task_id: string; task_path: string; idx: number; channel: string } & Blob>;
  /** Only for checkpoints of format v < 4 with a parent: the parent's `__pregel_tasks` writes, in order. */
  pending_sends?: Blob[];
}

export interface SearchRequest {
  thread_id?: string;
  checkpoint_ns?: string;
  checkpoint_id?: string;
  before?: string;
  filter?: Record<string, unknown>;
  limit: number;
  cursor?: string;
}

export interface SearchPage {
  items: Tuple[];
  next_cursor: string | null;
}

export interface DeltaHistory {
  channels: Record<string, { seed?: Blob; writes: Array<{ task_id: string; channel: string } & Blob> }>;
}
