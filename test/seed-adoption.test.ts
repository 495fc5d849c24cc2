import { readFileSync } from 'node:fs';
import t from 'tap';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createSql } from '../src/db/client.js';
import { loadMigrations, migrate } from '../src/db/migrate.js';
import { freshDatabase, json, prepare } from './helper.js';

const seedSchema = readFileSync(new URL('./fixtures/seed-schema.sql', import.meta.url), 'utf8');
const fixtureText = readFileSync(new URL('./fixtures/seed-workflow-state.json', import.meta.url), 'utf8');
const fixture = JSON.parse(fixtureText);

t.test('a database the seed created is adopted in place on boot', async (t) => {
  const url = await freshDatabase(t);
  const sql = createSql(url, { max: 2, prepare });
  t.teardown(() => sql.end());

  // The seed's schema and rows, written as the Rust crate writes them: JSON as TEXT, statuses lowercase.
  await sql.unsafe(seedSchema);
  const active = fixture.id as string;
  const done = '7a2b3c4d-0000-4000-8000-000000000001';
  await sql`
    INSERT INTO workflow_states (id, workflow_id, workflow_name, status, user_id, started_at, updated_at, completed_at, context, error)
    VALUES (${active}, 'rag-pipeline-7f3a', 'RAG Pipeline', 'running', 'user-456',
            '2025-11-14T10:00:00.123456Z', '2025-11-14T10:00:05.987654Z', NULL, ${JSON.stringify(fixture.context)}, NULL),
           (${done}, 'old-job', 'Old job', 'completed', NULL,
            '2025-10-01T00:00:00Z', '2025-10-01T01:00:00Z', '2025-10-01T01:00:00Z', '{}', NULL)`;
  await sql`
    INSERT INTO step_states (workflow_state_id, step_id, status, started_at, completed_at, outputs, error, retry_count)
    VALUES (${active}, 'search_docs', 'completed', '2025-11-14T10:00:00.2Z', '2025-11-14T10:00:02.5Z',
            ${JSON.stringify(fixture.steps.search_docs.outputs)}, NULL, 0),
           (${active}, 'generate_answer', 'running', '2025-11-14T10:00:02.6Z', NULL, 'null', NULL, 1)`;
  const checkpointId = '7a2b3c4d-0000-4000-8000-0000000000c1';
  await sql`
    INSERT INTO checkpoints (id, workflow_state_id, step_id, timestamp, snapshot)
    VALUES (${checkpointId}, ${active}, 'search_docs', '2025-11-14T10:00:03Z', ${fixtureText})`;

  const migrations = await loadMigrations();
  const result = await migrate(sql, migrations);
  t.same(result.applied, migrations.map((m) => m.name), 'every migration ran on the seed database');

  const columns = await sql<{ table_name: string; column_name: string; data_type: string }[]>`
    SELECT table_name, column_name, data_type FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name IN ('workflow_states', 'step_states', 'checkpoints')
    ORDER BY table_name, ordinal_position`;
  t.same(columns.map((r) => `${r.table_name}.${r.column_name}:${r.data_type}`), [
    'checkpoints.id:uuid', 'checkpoints.workflow_state_id:uuid', 'checkpoints.snapshot:json', 'checkpoints.seq:bigint',
    'checkpoints.doc:json',
    'workflow_states.id:uuid', 'workflow_states.workflow_id:character varying', 'workflow_states.status:character varying',
    'workflow_states.user_id:character varying', 'workflow_states.updated_at:timestamp with time zone',
    'workflow_states.version:integer', 'workflow_states.doc:json', 'workflow_states.tenant:text',
  ], 'a state is its document and the columns lists filter on; steps live in the document');
  t.same(await sql`SELECT DISTINCT tenant FROM workflow_states`, [{ tenant: 'default' }], 'the seed\'s states go to the default tenant');

  const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent' }), { sql, schemaVersion: migrations.at(-1)!.version });
  t.teardown(() => app.close());

  const loaded = await app.inject({ url: `/v1/workflows/${active}` });
  t.equal(loaded.statusCode, 200);
  t.equal(loaded.headers.etag, '"1"', 'adopted rows start at version 1');
  const state = loaded.json();
  t.same(state.context, fixture.context);
  t.equal(state.updated_at, '2025-11-14T10:00:05.987654Z');
  t.same(state.steps.search_docs.outputs, fixture.steps.search_docs.outputs);
  t.equal(state.steps.generate_answer.outputs, null);
  t.equal(state.steps.generate_answer.retry_count, 1);

  const list = (await app.inject({ url: '/v1/workflows?status=active' })).json();
  t.same(list.items.map((s: { id: string }) => s.id), [active], 'list active excludes the completed seed row');

  const latest = await app.inject({ url: `/v1/workflows/${active}/checkpoints/latest` });
  t.equal(latest.statusCode, 200);
  t.equal(latest.json().id, checkpointId);
  t.equal(latest.json().parent_id, null);
  t.equal(latest.json().snapshot.status, 'Running', 'the stored snapshot is returned as the seed wrote it');

  const restored = await app.inject({ method: 'POST', url: `/v1/checkpoints/${checkpointId}/restore`, ...json({}) });
  t.equal(restored.statusCode, 200);
  t.equal(restored.json().status, 'running');
  t.equal(restored.json().version, 2);

  const saved = await app.inject({ method: 'PUT', url: `/v1/workflows/${done}`, headers: { 'if-match': '"1"' },
    payload: { workflow_id: 'old-job', workflow_name: 'Old job', status: 'failed' } });
  t.equal(saved.statusCode, 200);
  t.equal(saved.json().version, 2);

  const purged = await app.inject({ method: 'POST', url: '/v1/purge', ...json({ older_than: '2100-01-01T00:00:00Z' }) });
  t.same(purged.json(), { deleted: 1, threads_deleted: 0 });
});
