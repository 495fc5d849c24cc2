/**
 * The LangGraph scenario of `npm run bench` (issue 13): one graph run on 32 threads at once for 200
 * supersteps each, checkpointed by RemoteCheckpointSaver over HTTP to the service, and by
 * PostgresSaver (@langchain/langgraph-checkpoint-postgres) in this process, on the same database
 * (its own schema, langgraph_bench: the service has a `checkpoints` table of its own). The two
 * arms alternate; then getTuple of the checkpoints at supersteps 10 and 200, time and bytes.
 */
import { Annotation, END, START, StateGraph } from '@langchain/langgraph';
import type { BaseCheckpointSaver, CheckpointTuple } from '@langchain/langgraph-checkpoint';
import { PostgresSaver } from '@langchain/langgraph-checkpoint-postgres';
import pg from 'pg';
import { RemoteCheckpointSaver } from '../packages/langgraph/src/index.js';
import { cpuSeconds, postgresProcesses } from './capacity.js';

export const LG_THREADS = 32;
export const LG_SUPERSTEPS = 200;
/**
 * The graph's state is bounded, as getTuple can only stay flat over a bounded state: a window of
 * the last 8 messages of 1 KB (each node adds one, so it is full from superstep 8), and overwritten
 * scalars.
 */
const WINDOW = 8;
const MESSAGE_BYTES = 1024;

const message = (thread: number, step: number) =>
  `thread ${thread} step ${step}: `.padEnd(MESSAGE_BYTES, 'lorem ipsum dolor sit amet ');

const State = Annotation.Root({
  messages: Annotation<string[]>({ reducer: (window, more) => window.concat(more).slice(-WINDOW), default: () => [] }),
  step: Annotation<number>({ reducer: (_, n) => n, default: () => 0 }),
  goal: Annotation<string>({ reducer: (_, g) => g, default: () => '' }),
  verdict: Annotation<string>({ reducer: (_, v) => v, default: () => '' }),
  thread: Annotation<number>({ reducer: (_, t) => t, default: () => 0 }),
});
type S = typeof State.State;

/** plan -> act -> review -> plan ...: one node per superstep, ending after `supersteps`. */
function benchGraph(saver: BaseCheckpointSaver, supersteps: number) {
  const next = (to: 'plan' | 'act' | 'review') => (s: S) => (s.step >= supersteps ? END : to);
  return new StateGraph(State)
    .addNode('plan', (s) => ({ step: s.step + 1, goal: `goal ${s.step}`, messages: [message(s.thread, s.step)] }))
    .addNode('act', (s) => ({ step: s.step + 1, messages: [message(s.thread, s.step)] }))
    .addNode('review', (s) => ({ step: s.step + 1, verdict: s.step % 2 ? 'go on' : 'fine', messages: [message(s.thread, s.step)] }))
    .addEdge(START, 'plan')
    .addConditionalEdges('plan', next('act'), ['act', END])
    .addConditionalEdges('act', next('review'), ['review', END])
    .addConditionalEdges('review', next('plan'), ['plan', END])
    .compile({ checkpointer: saver });
}

interface ArmRun { supersteps: number; seconds: number; errors: number; firstError?: string; cpu: Cpu; threadIds: string[] }
interface Cpu { graph: number; service: number; postgres: number | null }

export interface TupleCost { step: number; ms: number; stateBytes: number; responseBytes: number | null }
export interface LangGraphArm {
  name: string; supersteps: number; seconds: number; errors: number; firstError?: string;
  /** CPU milliseconds per superstep: this process (the graph and, for PostgresSaver, the saver), the service, PostgreSQL. */
  cpuMsPerSuperstep: Cpu; tuples: TupleCost[];
}
export interface LangGraphResult { rounds: number; arms: [LangGraphArm, LangGraphArm]; ratio: number; misses: string[] }

/** Target of the issue: supersteps per second over HTTP at least this times PostgresSaver's in process. */
export const LG_TARGET_RATIO = 1.5;

export async function measureLangGraph(opts: {
  base: string; databaseUrl: string; servicePid: number; pool: number; rounds: number; log: (m: string) => void;
}): Promise<LangGraphResult> {
  const remote = new RemoteCheckpointSaver({ baseUrl: opts.base });
  // As many connections as the service has (its reads' and its writes' pools).
  const pool = new pg.Pool({ connectionString: opts.databaseUrl, max: 2 * opts.pool, idleTimeoutMillis: 0 });
  const inProcess = new PostgresSaver(pool, undefined, { schema: 'langgraph_bench' });
  const postgresPort = Number(new URL(opts.databaseUrl).port);
  try {
    await inProcess.setup();
    const arms = [
      { name: 'RemoteCheckpointSaver over HTTP', saver: remote as BaseCheckpointSaver, servicePid: opts.servicePid },
      { name: 'PostgresSaver in process', saver: inProcess as BaseCheckpointSaver, servicePid: undefined },
    ];
    // PostgreSQL's CPU per backend: a backend that exits during a run (an idle connection closed)
    // takes its CPU time with it, so a sum over the processes alive would go down.
    const postgresCpu = () => new Map(postgresProcesses(postgresPort).map((p) => [p, cpuSeconds(p)]));
    const cpu = (servicePid: number | undefined) => {
      const own = process.cpuUsage();
      return { graph: (own.user + own.system) / 1e6, service: servicePid === undefined ? 0 : cpuSeconds(servicePid),
        postgres: postgresCpu() };
    };
    const used = (a: ReturnType<typeof cpu>, b: ReturnType<typeof cpu>): Cpu => ({
      graph: b.graph - a.graph,
      service: b.service - a.service,
      postgres: b.postgres.size === 0 ? null : [...b.postgres].reduce((sum, [p, s]) => sum + s - (a.postgres.get(p) ?? 0), 0),
    });
    let run = 0;
    const runArm = async (arm: (typeof arms)[number], supersteps: number): Promise<ArmRun> => {
      const graph = benchGraph(arm.saver, supersteps);
      const threadIds = Array.from({ length: LG_THREADS }, (_, i) => `bench-${Date.now()}-${run}-${i}`);
      run++;
      const c0 = cpu(arm.servicePid);
      const t0 = performance.now();
      const results = await Promise.allSettled(threadIds.map((thread_id, i) =>
        graph.invoke({ thread: i }, { configurable: { thread_id }, recursionLimit: supersteps + 10 })));
      const seconds = (performance.now() - t0) / 1000;
      const c1 = cpu(arm.servicePid);
      const failed = results.filter((r) => r.status === 'rejected');
      return {
        supersteps: results.reduce((a, r) => a + (r.status === 'fulfilled' ? r.value.step : 0), 0),
        seconds, errors: failed.length, firstError: failed[0] && String((failed[0] as PromiseRejectedResult).reason),
        cpu: used(c0, c1),
        threadIds,
      };
    };

    for (const arm of arms) await runArm(arm, 20);
    const runs: ArmRun[][] = arms.map(() => []);
    for (let r = 0; r < opts.rounds; r++) {
      // Each round in the other order: neither arm always runs on the database the other just wrote to.
      const order = r % 2 === 0 ? [0, 1] : [1, 0];
      for (const k of order) {
        const m = await runArm(arms[k]!, LG_SUPERSTEPS);
        runs[k]!.push(m);
        opts.log(`  ${arms[k]!.name}: ${(m.supersteps / m.seconds).toFixed(0)} supersteps/s (${m.seconds.toFixed(1)} s, ` +
          `${m.errors} errors)`);
      }
    }

    const result = await Promise.all(arms.map(async (arm, k): Promise<LangGraphArm> => {
      const ms = runs[k]!;
      const supersteps = ms.reduce((a, m) => a + m.supersteps, 0);
      const per = (f: (m: ArmRun) => number | null) => {
        const xs = ms.map(f);
        return xs.some((x) => x === null) ? null : (xs.reduce<number>((a, x) => a + x!, 0) * 1000) / supersteps;
      };
      return {
        name: arm.name, supersteps, seconds: ms.reduce((a, m) => a + m.seconds, 0),
        errors: ms.reduce((a, m) => a + m.errors, 0), firstError: ms.find((m) => m.firstError)?.firstError,
        cpuMsPerSuperstep: { graph: per((m) => m.cpu.graph)!, service: per((m) => m.cpu.service)!, postgres: per((m) => m.cpu.postgres) },
        tuples: [],
      };
    }));
    // getTuple, one call at a time, once the load is over: the checkpoints after superstep 10 and 200
    // of the last round's first thread.
    for (const [k, arm] of arms.entries()) {
      const thread_id = runs[k]!.at(-1)!.threadIds[0]!;
      for (const step of [10, LG_SUPERSTEPS]) {
        result[k]!.tuples.push(await tupleCost(arm.saver, thread_id, step, k === 0 ? opts.base : undefined));
      }
    }
    const [http, local] = result as [LangGraphArm, LangGraphArm];
    const ratio = (http.supersteps / http.seconds) / (local.supersteps / local.seconds);
    const misses = [
      ratio < LG_TARGET_RATIO && `HTTP/in-process ${ratio.toFixed(2)} < ${LG_TARGET_RATIO}`,
      ...result.flatMap((a) => {
        const [at10, at200] = a.tuples as [TupleCost, TupleCost];
        return [
          a.errors > 0 && `${a.name}: ${a.errors} errors (${a.firstError})`,
          at200.stateBytes > at10.stateBytes * 1.1 && `${a.name}: getTuple bytes grew ${at10.stateBytes} -> ${at200.stateBytes}`,
          at200.ms > Math.max(at10.ms * 1.5, at10.ms + 1) &&
            `${a.name}: getTuple time grew ${at10.ms.toFixed(2)} -> ${at200.ms.toFixed(2)} ms`,
        ];
      }),
    ].filter(Boolean) as string[];
    return { rounds: opts.rounds, arms: [http, local], ratio, misses };
  } finally {
    remote.close();
    await pool.end();
  }
}

/**
 * The median time of 21 getTuple calls of the checkpoint after superstep `step`, the bytes of its
 * channel values as JSON, and (over HTTP) of the service's answer.
 */
async function tupleCost(saver: BaseCheckpointSaver, threadId: string, step: number, base?: string): Promise<TupleCost> {
  let found: CheckpointTuple | undefined;
  for await (const t of saver.list({ configurable: { thread_id: threadId, checkpoint_ns: '' } }, { filter: { step } })) found = t;
  if (!found) throw new Error(`no checkpoint at superstep ${step} of ${threadId}`);
  const times: number[] = [];
  let tuple: CheckpointTuple | undefined;
  for (let i = 0; i < 21; i++) {
    const t0 = performance.now();
    tuple = await saver.getTuple(found.config);
    times.push(performance.now() - t0);
  }
  let responseBytes: number | null = null;
  if (base) {
    const id = found.config.configurable!.checkpoint_id as string;
    const res = await fetch(`${base}/v1/threads/${encodeURIComponent(threadId)}/checkpoints/${encodeURIComponent(id)}?ns=`);
    responseBytes = (await res.arrayBuffer()).byteLength;
  }
  times.sort((a, b) => a - b);
  return { step, ms: times[10]!, stateBytes: Buffer.byteLength(JSON.stringify(tuple!.checkpoint.channel_values)), responseBytes };
}

export function renderLangGraph(r: LangGraphResult): string[] {
  const fmt = (n: number | null, d = 1) => (n === null || !Number.isFinite(n) ? 'n/a' : n.toFixed(d));
  const lines = [
    `LangGraph: ${LG_THREADS} threads at once × ${LG_SUPERSTEPS} supersteps (plan -> act -> review -> plan ..., one ` +
      `node per superstep, each adding a ${MESSAGE_BYTES} B message to a window of the last ${WINDOW}; the other ` +
      `channels overwritten scalars), ${r.rounds} alternating rounds after a warm-up of 20 supersteps each`, '',
    '| saver | supersteps/s | errors | getTuple ms at 10 | at 200 | state bytes at 10 | at 200 | response bytes at 10 | at 200 | ' +
      'CPU ms per superstep: graph process | service | PostgreSQL |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const a of r.arms) {
    const [at10, at200] = a.tuples as [TupleCost, TupleCost];
    lines.push(`| ${a.name} | ${fmt(a.supersteps / a.seconds, 0)} | ${a.errors} | ${fmt(at10.ms, 2)} | ${fmt(at200.ms, 2)} | ` +
      `${at10.stateBytes} | ${at200.stateBytes} | ${at10.responseBytes ?? 'n/a'} | ${at200.responseBytes ?? 'n/a'} | ` +
      `${fmt(a.cpuMsPerSuperstep.graph, 2)} | ${fmt(a.cpuMsPerSuperstep.service, 2)} | ${fmt(a.cpuMsPerSuperstep.postgres, 2)} |`);
  }
  lines.push('', `HTTP / in-process supersteps/s: ${fmt(r.ratio, 2)} (target ≥ ${LG_TARGET_RATIO}); getTuple flat from ` +
    `superstep 10 to ${LG_SUPERSTEPS}; zero errors: ${r.misses.length ? `FAIL: ${r.misses.join('; ')}` : 'pass'}`, '');
  return lines;
}
