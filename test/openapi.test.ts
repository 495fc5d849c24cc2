import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import t from 'tap';
import { parse } from 'yaml';
import { CLIENT_TYPES_FILE, clientTypes, CONFIG_TABLE_FILES, servedOpenApiYaml, withConfigTable } from '../scripts/write-docs.js';
import { buildTestApp } from './helper.js';

t.test('the committed openapi.yaml is exactly what the app serves (run `npm run docs` after a change)', async (t) => {
  const committed = readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8');
  t.equal(await servedOpenApiYaml(), committed);
});

t.test('Redocly\'s recommended rules find nothing in the document (one problem ignored, with its reason, in .redocly.lint-ignore.yaml)', async (t) => {
  const cli = createRequire(import.meta.url).resolve('@redocly/cli/bin/cli.js');
  const { stdout } = await promisify(execFile)(process.execPath, [cli, 'lint', 'openapi.yaml', '--extends=recommended', '--format=json'], {
    cwd: new URL('..', import.meta.url).pathname,
    env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
  });
  const report = JSON.parse(stdout);
  t.same(report.totals, { errors: 0, warnings: 0, ignored: 1 });
  t.same(report.problems, []);
  t.match(readFileSync(new URL('../.redocly.lint-ignore.yaml', import.meta.url), 'utf8'),
    /no-ambiguous-paths:\n {4}- '#\/paths\/~1v1~1workflows~1\{id\}~1checkpoints'\n$/);
});

t.test('the document is the same whatever the deployment\'s settings', async () => {
  const committed = readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8');
  t.equal(await servedOpenApiYaml({
    CHECKPOINT_RETENTION: '3', DATABASE_POOL_MAX: '40', BODY_LIMIT_BYTES: '5000', REQUEST_TIMEOUT_MS: '900',
    LIST_MAX_BYTES: '100000', RATE_LIMIT_MAX: '0', METRICS_ENABLED: 'false', AUTH_TOKENS: JSON.stringify([{ token: 'a-long-enough-secret-token-0123456789', tenant: 'acme', scopes: ['read'], name: 'ci' }]),
  }), committed);
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
  t.same(doc.paths['/v1/workflows/{id}'].put.responses['412'], { $ref: '#/components/responses/PreconditionFailed' });
  t.same(doc.components.responses.PreconditionFailed.content['application/problem+json'].schema,
    { $ref: '#/components/schemas/Problem' });

  const ui = await app.inject({ url: '/docs/' });
  t.equal(ui.statusCode, 200);
  t.match(ui.headers['content-type'], /^text\/html/);
  t.match(ui.body, /swagger-ui/i);
});
