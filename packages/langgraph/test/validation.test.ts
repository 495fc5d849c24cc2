/**
 * LangGraph's own checkpointer suite (@langchain/langgraph-checkpoint-validation): the 718 tests of
 * validate() and the 8 opt-in delta-channel history tests, against RemoteCheckpointSaver and the real
 * service on a real PostgreSQL database. Every checkpointer the suite creates has a tenant of its own:
 * the suite's list tests expect to see only their own threads, and reuse fixed thread ids.
 */
import { deltaChannelHistoryTests, validate } from '@langchain/langgraph-checkpoint-validation';
import type { RemoteCheckpointSaver } from '../src/index.js';
import { type Service, startService } from './service.js';

let service: Service | undefined;

const initializer = {
  // Not a name the suite skips tests for (it skips some for "MemorySaver", sqlite and mongodb).
  checkpointerName: '@workflow-state/langgraph',
  beforeAll: async () => { service = await startService(); },
  beforeAllTimeout: 120_000,
  afterAll: async () => { await service?.stop(); },
  // A small page, so list's paging (next_cursor) is part of what the suite checks.
  createCheckpointer: (): RemoteCheckpointSaver => service!.saverOfFreshTenant({ pageSize: 3 }),
};

validate(initializer);
deltaChannelHistoryTests(initializer);
