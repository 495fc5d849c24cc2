/**
 * The /v1/threads wire format: the types openapi-typescript generates from openapi.yaml (the
 * client package's), named for the saver. Values travel as the saver's serialized bytes, base64
 * in JSON: the service stores them as they are and never parses them, so NUL characters, lone
 * surrogates or deep nesting in a graph's state are kept, not refused.
 */
import type { components } from '@workflow-state/client';

type Schemas = components['schemas'];
/** What `serde.dumpsTyped` made: its type tag and its bytes in base64. */
export type Blob = Schemas['Blob'];
export type CheckpointPut = Schemas['SaveThreadCheckpoint'];
export type WritesPut = Schemas['SaveThreadWrites'];
export type Tuple = Schemas['CheckpointTuple'];
export type SearchRequest = Schemas['SearchThreadCheckpoints'];
export type SearchPage = Schemas['CheckpointTuplePage'];
export type DeltaHistory = Schemas['DeltaChannelHistory'];
