import { readFileSync } from 'node:fs';
import t from 'tap';
import { parse } from 'yaml';
import { CLIENT_TYPES_FILE, clientTypes, CONFIG_TABLE_FILES, servedOpenApiYaml, withConfigTable } from '../scripts/write-docs.js';
import { buildTestApp } from './helper.js';

t.test('the committed openapi.yaml is exactly what the app serves (run `npm run docs` after a change)', async (t) => {
  const committed = readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8');
  t.equal(await servedOpenApiYaml(), committed);
});

t.test('the client\'s committed types are what openapi-typescript makes of the committed openapi.yaml (run `npm run docs`)', async (t) => {
  const yaml = readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8');
  const committed = readFileSync(new URL(`../${CLIENT_TYPES_FILE}`, import.meta.url), 'utf8');
  t.equal(await clientTypes(yaml), committed);
  t.match(committed, 'WorkflowState: {', 'the schemas are in it');
});

t.test('the configuration tables of the docs are the configuration schema\'s (run `npm run docs` after a change)', async (t) => {
  for (const file of CONFIG_TABLE_FILES) {
    const committed = readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
    t.equal(withConfigTable(committed, file), committed, file);
    t.match(committed, '| `SHUTDOWN_DRAIN_S` | `5` | on SIGTERM', file);
  }
});

t.test('the spec and Swagger UI are served', async (t) => {
  const { app } = await buildTestApp(t);
  const yaml = await app.inject({ url: '/openapi.yaml' });
  t.equal(yaml.statusCode, 200);
  t.match(yaml.headers['content-type'], /^application\/yaml/);
  const doc = parse(yaml.body);
  t.equal(doc.openapi, '3.1.0');

  const json = await app.inject({ url: '/openapi.json' });
  t.equal(json.statusCode, 200);
  t.same(json.json(), doc, 'JSON and YAML are the same document');

  const ops = Object.values(doc.paths as Record<string, Record<string, { operationId?: string }>>)
    .flatMap((p) => Object.values(p).map((o) => o.operationId));
  for (const op of ['saveWorkflowState', 'loadWorkflowState', 'patchWorkflowState', 'saveStepState',
    'deleteWorkflowState', 'listWorkflowStates', 'loadLatestStateByWorkflowId', 'createCheckpoint', 'listCheckpoints',
    'latestCheckpoint', 'getCheckpoint', 'pruneCheckpoints', 'restoreCheckpoint', 'purgeWorkflowStates',
    'liveness', 'readiness', 'health']) {
    t.ok(ops.includes(op), `operation ${op} is documented`);
  }
  t.same(doc.paths['/v1/workflows/{id}'].put.responses['412'].content['application/problem+json'].schema,
    { $ref: '#/components/schemas/Problem' });

  const ui = await app.inject({ url: '/docs/' });
  t.equal(ui.statusCode, 200);
  t.match(ui.headers['content-type'], /^text\/html/);
  t.match(ui.body, /swagger-ui/i);
});
