import { randomBytes } from 'node:crypto';
import type { RunnableConfig } from '@langchain/core/runnables';
import {
  BaseCheckpointSaver, type ChannelVersions, type Checkpoint, type CheckpointListOptions, type CheckpointMetadata,
  type CheckpointPendingWrite, type CheckpointTuple, type DeltaChannelHistory, maxChannelVersion, type PendingWrite,
  type SerializerProtocol, TASKS, WRITES_IDX_MAP,
} from '@langchain/langgraph-checkpoint';
import { Transport, type TransportOptions } from './transport.js';
import type { Blob, CheckpointPut, DeltaHistory, SearchPage, SearchRequest, Tuple, WritesPut } from './wire.js';

export interface RemoteCheckpointSaverOptions extends TransportOptions {
  /** Tuples asked for per search request by `list` (1-1000). Default 100. */
  pageSize?: number;
  /** The serializer of values and metadata; LangGraph's JsonPlusSerializer by default. */
  serde?: SerializerProtocol;
}

type ChannelVersion = string | number;

const enc = encodeURIComponent;
const base64 = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString('base64');

/**
 * A LangGraph checkpoint saver over the workflow state service's /v1/threads API: one HTTP request
 * per call (`put`, `putWrites`, `getTuple`, `deleteThread`, `getDeltaChannelHistory`), and one per
 * page of `list`. The bearer token's tenant scopes every thread.
 */
export class RemoteCheckpointSaver extends BaseCheckpointSaver {
  readonly #http: Transport;
  readonly #pageSize: number;

  constructor(options: RemoteCheckpointSaverOptions) {
    super(options.serde);
    this.#http = new Transport(options);
    this.#pageSize = options.pageSize ?? 100;
    if (!Number.isInteger(this.#pageSize) || this.#pageSize < 1 || this.#pageSize > 1000) {
      throw new RangeError(`pageSize must be an integer from 1 to 1000: ${options.pageSize}`);
    }
  }

  async getTuple(config: RunnableConfig): Promise<CheckpointTuple | undefined> {
    const { thread_id, checkpoint_ns = '', checkpoint_id } = config.configurable ?? {};
    if (thread_id === undefined) return undefined;
    const tuple = await this.#http.request<Tuple>('GET',
      `${checkpointPath(thread_id, checkpoint_id || 'latest')}?ns=${enc(checkpoint_ns)}`, undefined, true);
    return tuple ? this.#toTuple(tuple) : undefined;
  }

  async *list(config: RunnableConfig, options: CheckpointListOptions = {}): AsyncGenerator<CheckpointTuple> {
    const { thread_id, checkpoint_ns, checkpoint_id } = config.configurable ?? {};
    const before = options.before?.configurable?.checkpoint_id;
    let remaining = options.limit ?? Infinity;
    let cursor: string | undefined;
    while (remaining > 0) {
      const search: SearchRequest = {
        ...(thread_id != null && { thread_id: String(thread_id) }),
        ...(checkpoint_ns != null && { checkpoint_ns }),
        ...(checkpoint_id && { checkpoint_id }),
        ...(before && { before }),
        ...(options.filter && { filter: options.filter }),
        limit: Math.min(this.#pageSize, remaining),
        ...(cursor && { cursor }),
      };
      const page = (await this.#http.request<SearchPage>('POST', 'v1/threads/search', search))!;
      for (const t of page.items) yield await this.#toTuple(t);
      remaining -= page.items.length;
      if (page.next_cursor === null) return;
      cursor = page.next_cursor;
    }
  }

  async put(config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
    newVersions: ChannelVersions): Promise<RunnableConfig> {
    if (config.configurable === undefined) throw new Error('Missing "configurable" field in "config" param');
    const { thread_id, checkpoint_ns = '', checkpoint_id: parent } = config.configurable;
    if (thread_id === undefined) throw new Error('Missing "thread_id" field in "config.configurable" param');
    const { channel_values: values, ...skeleton } = checkpoint;
    const [checkpointBlob, metadataBlob, channelValues] = await Promise.all([
      this.#dump(skeleton), this.#dump(metadata),
      Promise.all(Object.entries(newVersions).map(async ([channel, version]) => (
        channel in values ? { channel, version, ...await this.#dump((values as Record<string, unknown>)[channel]) }
          : { channel, version, type: 'empty' }))),
    ]);
    const body: CheckpointPut = {
      parent_checkpoint_id: parent ?? null,
      v: checkpoint.v,
      channel_versions: checkpoint.channel_versions,
      checkpoint: checkpointBlob,
      metadata: metadataBlob,
      channel_values: channelValues,
    };
    await this.#http.request('PUT', `${checkpointPath(thread_id, checkpoint.id)}?ns=${enc(checkpoint_ns)}`, body);
    return { configurable: { thread_id, checkpoint_ns, checkpoint_id: checkpoint.id } };
  }

  async putWrites(config: RunnableConfig, writes: PendingWrite[], taskId: string, taskPath = ''): Promise<void> {
    const { thread_id, checkpoint_ns = '', checkpoint_id } = config.configurable ?? {};
    if (thread_id === undefined) throw new Error('Missing "thread_id" field in "config.configurable" param');
    if (checkpoint_id === undefined) throw new Error('Missing "checkpoint_id" field in "config.configurable" param');
    const body: WritesPut = {
      task_path: taskPath,
      writes: await Promise.all(writes.map(async ([channel, value], i) => (
        { idx: WRITES_IDX_MAP[channel] ?? i, channel, ...await this.#dump(value) }))),
    };
    await this.#http.request('PUT',
      `${checkpointPath(thread_id, checkpoint_id)}/writes/${enc(taskId)}?ns=${enc(checkpoint_ns)}`, body);
  }

  async deleteThread(threadId: string): Promise<void> {
    await this.#http.request('DELETE', `v1/threads/${enc(String(threadId))}`);
  }

  /** One request: the service walks the parent chain (the default would call getTuple once per ancestor). */
  override async getDeltaChannelHistory({ config, channels }: { config: RunnableConfig; channels: string[] }):
    Promise<Record<string, DeltaChannelHistory>> {
    if (channels.length === 0) return {};
    const { thread_id, checkpoint_ns = '', checkpoint_id } = config.configurable ?? {};
    const query = channels.map((c) => `&channel=${enc(c)}`).join('');
    const history = thread_id === undefined ? undefined : await this.#http.request<DeltaHistory>('GET',
      `${checkpointPath(thread_id, checkpoint_id || 'latest')}/delta-history?ns=${enc(checkpoint_ns)}${query}`,
      undefined, true);
    const out: Record<string, DeltaChannelHistory> = {};
    for (const channel of channels) {
      const h = history?.channels[channel];
      out[channel] = { writes: h ? await Promise.all(h.writes.map((w) => this.#pendingWrite(w))) : [] };
      if (h?.seed) out[channel].seed = await this.#load(h.seed);
    }
    return out;
  }

  /**
   * Versions unique per write, `<32-digit counter>.<16 random digits>` as LangGraph's Python savers
   * make them: channel values are stored once per (thread, namespace, channel, version), so a fork
   * (updateState on an older checkpoint) counting up from the same number would otherwise read the
   * other branch's values.
   */
  override getNextVersion(current: ChannelVersion | undefined): number {
    const n = current === undefined ? 0 : typeof current === 'number' ? current : Number.parseInt(current.split('.')[0]!, 10);
    const random = (randomBytes(8).readBigUInt64BE() % 10n ** 16n).toString().padStart(16, '0');
    // LangGraph accepts string versions from savers that override this; the base class types them as numbers.
    return `${String(n + 1).padStart(32, '0')}.${random}` as unknown as number;
  }

  /** Closes the idle keep-alive sockets (of the agent the saver made, not of one it was given). */
  close(): void {
    this.#http.close();
  }

  async #dump(value: unknown): Promise<Blob> {
    const [type, bytes] = await this.serde.dumpsTyped(value);
    return { type, data: base64(bytes) };
  }

  #load(blob: Blob): Promise<unknown> {
    return this.serde.loadsTyped(blob.type, Buffer.from(blob.data, 'base64'));
  }

  async #pendingWrite(w: { task_id: string; channel: string } & Blob): Promise<CheckpointPendingWrite> {
    return [w.task_id, w.channel, await this.#load(w)];
  }

  async #toTuple(t: Tuple): Promise<CheckpointTuple> {
    const [skeleton, metadata, values, pendingWrites] = await Promise.all([
      this.#load(t.checkpoint) as Promise<Omit<Checkpoint, 'channel_values'>>,
      this.#load(t.metadata) as Promise<CheckpointMetadata>,
      Promise.all(t.channel_values.map(async (v) => [v.channel, await this.#load(v)] as const)),
      Promise.all(t.pending_writes.map((w) => this.#pendingWrite(w))),
    ]);
    const checkpoint: Checkpoint = { ...skeleton, channel_values: Object.fromEntries(values) };
    if (t.pending_sends) {
      // Format v < 4: the parent's pending sends become this checkpoint's TASKS channel, as the
      // reference savers migrate them.
      checkpoint.channel_values[TASKS] = await Promise.all(t.pending_sends.map((s) => this.#load(s)));
      const versions = Object.values(checkpoint.channel_versions);
      checkpoint.channel_versions[TASKS] = versions.length > 0 ? maxChannelVersion(...versions) : this.getNextVersion(undefined);
    }
    const ids = { thread_id: t.thread_id, checkpoint_ns: t.checkpoint_ns };
    return {
      config: { configurable: { ...ids, checkpoint_id: t.checkpoint_id } },
      checkpoint,
      metadata,
      parentConfig: t.parent_checkpoint_id === null ? undefined
        : { configurable: { ...ids, checkpoint_id: t.parent_checkpoint_id } },
      pendingWrites,
    };
  }
}

function checkpointPath(threadId: unknown, checkpointId: string): string {
  return `v1/threads/${enc(String(threadId))}/checkpoints/${enc(checkpointId)}`;
}
