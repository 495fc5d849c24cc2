/** The benchmark's data set and request bodies, shared by the HTTP scenarios and the baselines. */
import { readFileSync } from 'node:fs';
import type { Sql, TxSql } from '../src/db/client.js';
import { stateOf } from '../src/repositories/render.js';
import { DEFAULT_TENANT } from '../src/auth.js';
import { insertStates } from '../src/repositories/workflows.js';
import { WorkflowStateInput } from '../src/schemas/workflows.js';

export const STATES = 10_000;
export const STEPS = 20;
/** States whose number is a multiple of 10 are running: 10% active, 1,000 of 10,000. */
export const isActive = (n: number) => n % 10 === 0;

export const stateId = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
export const workflowId = (n: number) => `wf-${n}`;
export const stepId = (s: number) => `step-${String(s).padStart(2, '0')}`;

export const randomInt = (max: number) => 1 + Math.floor(Math.random() * max);
/** A random active state (never written by the write scenarios, so lookups by workflow_id always hit). */
export function randomActive(): number {
  return 10 * randomInt(STATES / 10);
}

/** A random finished state (saves and step updates leave the active set as it is). */
export function randomFinished(): number {
  for (;;) {
    const n = randomInt(STATES);
    if (!isActive(n)) return n;
  }
}

/** The seed's tables' states: the same ids, workflow ids, statuses and users as seedStates'. */
const seedStateRows = (sql: Sql | TxSql) => sql`
  INSERT INTO workflow_states (id, workflow_id, workflow_name, status, user_id, started_at, updated_at, completed_at, context)
  SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'wf-' || i, 'Bench workflow',
         CASE WHEN i % 10 = 0 THEN 'running' ELSE 'completed' END, 'user-' || (i % 100),
         now() - make_interval(secs => i), now() - make_interval(secs => i),
         CASE WHEN i % 10 = 0 THEN NULL ELSE now() - make_interval(secs => i) END,
         json_build_object('inputs', json_build_object('query', 'question ' || i, 'top_k', 5), 'model', 'claude')::text
  FROM generate_series(1, ${STATES}::int) i`;

/**
 * The service's tables: 10,000 states, each with the 20 steps of stepBody() in its document, each
 * document rendered by the service's renderer, as a save would write it.
 */
export async function seedStates(sql: Sql): Promise<void> {
  await sql`TRUNCATE workflow_states CASCADE`;
  const { steps } = WorkflowStateInput.parse(stateBody());
  const now = Date.now();
  for (let from = 1; from <= STATES; from += 1000) {
    const states = Array.from({ length: Math.min(1000, STATES - from + 1) }, (_, k) => {
      const i = from + k;
      const at = `${new Date(now - i * 1000).toISOString().slice(0, 19)}.000000Z`;
      return stateOf(stateId(i), {
        workflow_id: workflowId(i), workflow_name: 'Bench workflow', status: isActive(i) ? 'running' : 'completed',
        user_id: `user-${i % 100}`, completed_at: isActive(i) ? null : at,
        context: { inputs: { query: `question ${i}`, top_k: 5 }, model: 'claude' }, steps,
      }, { version: 1, started_at: at, updated_at: at });
    });
    await insertStates(sql, DEFAULT_TENANT, states);
  }
  await sql`ANALYZE workflow_states`;
}

/**
 * The seed's own tables, created by its schema (verbatim, test/fixtures/seed-schema.sql) in schema
 * `seed` of the same database, with the same states and steps as seedStates: JSON as TEXT, one row
 * per step, and one checkpoint per state.
 */
export async function seedSeedSchema(sql: Sql): Promise<void> {
  const schema = readFileSync(new URL('../test/fixtures/seed-schema.sql', import.meta.url), 'utf8');
  await sql`DROP SCHEMA IF EXISTS seed CASCADE`;
  await sql`CREATE SCHEMA seed`;
  await sql.begin(async (tx) => {
    await tx`SET LOCAL search_path = seed`;
    await tx.unsafe(schema);
    await seedStateRows(tx);
    await tx`
      INSERT INTO step_states (workflow_state_id, step_id, status, started_at, completed_at, outputs, error, retry_count)
      SELECT w.id, 'step-' || lpad(s::text, 2, '0'), 'completed', '2026-01-01T00:00:00.000001Z', '2026-01-01T00:00:01.000001Z',
             json_build_object('tokens', s * 10, 'text', repeat('y', 100))::text, NULL, 0
      FROM workflow_states w, generate_series(1, ${STEPS}::int) s`;
    await tx`
      INSERT INTO checkpoints (id, workflow_state_id, step_id, timestamp, snapshot)
      SELECT gen_random_uuid(), w.id, 'step-20', now(), d.doc::text
      FROM workflow_states w JOIN public.workflow_states d ON d.id = w.id`;
  });
  await sql`ANALYZE seed.workflow_states`;
  await sql`ANALYZE seed.step_states`;
  await sql`ANALYZE seed.checkpoints`;
}

export function stepBody(s: number) {
  return {
    status: 'completed',
    started_at: '2026-01-01T00:00:00.000001Z',
    completed_at: '2026-01-01T00:00:01.000001Z',
    outputs: { tokens: s * 10, text: 'y'.repeat(100) },
    error: null,
    retry_count: 0,
  };
}

/** A whole state as an orchestrator saves it after a step: `steps` steps, `contextBytes` of context. */
export function stateBody(steps = STEPS, contextBytes = 0) {
  return {
    workflow_id: 'wf-bench',
    workflow_name: 'Bench workflow',
    status: 'completed',
    user_id: 'user-1',
    started_at: '2026-01-01T00:00:00.000001Z',
    completed_at: '2026-01-01T00:00:09.000001Z',
    context: { inputs: { query: 'question', top_k: 5 }, blob: 'z'.repeat(contextBytes) },
    error: null,
    steps: Object.fromEntries(Array.from({ length: steps }, (_, i) => [stepId(i + 1), stepBody(i + 1)])),
  };
}

/**
 * The save an orchestrator makes after a step: the whole state, with one step (a random one of the
 * 20) carrying a new output. Every request changes something, as in real use.
 */
export function stateBodyAfterStep(template = stateBody()) {
  const k = stepId(randomInt(STEPS));
  return {
    ...template,
    steps: { ...template.steps, [k]: { ...template.steps[k]!, outputs: { tokens: Math.random(), text: 'y'.repeat(100) } } },
  };
}
