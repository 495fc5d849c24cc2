/**
 * README's LangGraph example, run: a 2-node StateGraph compiled with RemoteCheckpointSaver against
 * the real service. A second invoke on the thread resumes from its checkpoint; a fork (updateState
 * on an older checkpoint) reads the fork's values, not the other branch's (the first two tests are
 * README's sequence of calls).
 */
import { Annotation, END, START, StateGraph } from '@langchain/langgraph';
import { emptyCheckpoint, uuid6 } from '@langchain/langgraph-checkpoint';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RemoteCheckpointSaver } from '../src/index.js';
import { type Service, startService } from './service.js';

const State = Annotation.Root({
  topic: Annotation<string>(),
  notes: Annotation<string[]>({ reducer: (all, more) => all.concat(more), default: () => [] }),
  drafts: Annotation<number>({ reducer: (_, n) => n, default: () => 0 }),
});

const reportGraph = (saver: RemoteCheckpointSaver) => new StateGraph(State)
  .addNode('research', (s) => ({ notes: [`${s.topic}: fact ${s.notes.length + 1}`] }))
  .addNode('write', (s) => ({ notes: [`draft ${s.drafts + 1} from ${s.notes.length} notes`], drafts: s.drafts + 1 }))
  .addEdge(START, 'research')
  .addEdge('research', 'write')
  .addEdge('write', END)
  .compile({ checkpointer: saver });

let service: Service;
beforeAll(async () => { service = await startService(); });
afterAll(async () => { await service?.stop(); });

describe('a StateGraph compiled with RemoteCheckpointSaver', () => {
  it('resumes a thread from its checkpoint on the next invoke', async () => {
    const graph = reportGraph(service.saverOfFreshTenant());
    const config = { configurable: { thread_id: 'report-42' } };

    expect(await graph.invoke({ topic: 'tides' }, config)).toEqual({
      topic: 'tides', notes: ['tides: fact 1', 'draft 1 from 1 notes'], drafts: 1,
    });
    expect(await graph.invoke({ topic: 'tides' }, config)).toEqual({
      topic: 'tides',
      notes: ['tides: fact 1', 'draft 1 from 1 notes', 'tides: fact 3', 'draft 2 from 3 notes'],
      drafts: 2,
    });
    // Per invoke: the input's checkpoint, then one before research, one before write, one at the end.
    const history = [];
    for await (const s of graph.getStateHistory(config)) history.push(`${s.metadata?.source} ${s.metadata?.step}`);
    expect(history).toEqual(['loop 6', 'loop 5', 'loop 4', 'input 3', 'loop 2', 'loop 1', 'loop 0', 'input -1']);
  });

  it('keeps threads named "." and ".." apart, as threads like any other (their ids are path segments)', async () => {
    const graph = reportGraph(service.saverOfFreshTenant());
    for (const [thread_id, topic] of [['..', 'dots'], ['.', 'dot']]) {
      await graph.invoke({ topic }, { configurable: { thread_id } });
    }
    for (const [thread_id, topic] of [['..', 'dots'], ['.', 'dot']]) {
      const state = await graph.getState({ configurable: { thread_id } });
      expect(state.values).toEqual({ topic, notes: [`${topic}: fact 1`, 'draft 1 from 1 notes'], drafts: 1 });
    }
  });

  it('reads a fork\'s values after updateState on an older checkpoint', async () => {
    const graph = reportGraph(service.saverOfFreshTenant());
    const config = { configurable: { thread_id: 'report-42' } };
    await graph.invoke({ topic: 'tides' }, config);
    await graph.invoke({ topic: 'tides' }, config);
    const history = [];
    for await (const snapshot of graph.getStateHistory(config)) history.push(snapshot);
    const before = history.findLast((s) => s.next.join() === 'research')!;
    expect(before.values).toEqual({ topic: 'tides', notes: [], drafts: 0 });

    // The fork runs research and write again from the same channel versions as the main branch
    // did: with versions counted up from the same numbers, it would read the main branch's values.
    const fork = await graph.updateState(before.config, { topic: 'storms' });
    expect(await graph.invoke(null, fork)).toEqual({
      topic: 'storms', notes: ['storms: fact 1', 'draft 1 from 1 notes'], drafts: 1,
    });
    expect((await graph.getState(config)).values).toEqual({
      topic: 'storms', notes: ['storms: fact 1', 'draft 1 from 1 notes'], drafts: 1,
    });
    // The main branch still reads its own values.
    expect((await graph.getState(history[0]!.config)).values).toEqual({
      topic: 'tides',
      notes: ['tides: fact 1', 'draft 1 from 1 notes', 'tides: fact 3', 'draft 2 from 3 notes'],
      drafts: 2,
    });
  });

  it('keeps NUL characters and lone surrogates in state and metadata', async () => {
    const saver = service.saverOfFreshTenant();
    const config = { configurable: { thread_id: 'odd-text' } };
    const topic = 'a\u0000b \ud800 c';
    expect(await reportGraph(saver).invoke({ topic }, config))
      .toEqual({ topic, notes: [`${topic}: fact 1`, 'draft 1 from 1 notes'], drafts: 1 });
    expect((await reportGraph(saver).getState(config)).values.topic).toBe(topic);

    const metadata = { source: 'input' as const, step: -1, parents: {}, reviewer: 'x\u0000y \udc00' };
    const stored = await saver.put({ configurable: { thread_id: 'odd-metadata' } },
      { ...emptyCheckpoint(), id: uuid6(-1) }, metadata, {});
    expect((await saver.getTuple(stored))?.metadata).toEqual(metadata);
  });
});
