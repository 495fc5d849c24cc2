import t from 'tap';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createSql } from '../src/db/client.js';
import { buildTestApp } from './helper.js';

t.test('health probes with a working database', async (t) => {
  const { app } = await buildTestApp(t);

  const live = await app.inject({ url: '/health/live' });
  t.equal(live.statusCode, 200);
  t.same(live.json(), { status: 'ok' });

  const ready = await app.inject({ url: '/health/ready' });
  t.equal(ready.statusCode, 200);
  t.same(ready.json(), {
    status: 'ok',
    checks: { accepting_requests: { status: 'ok' }, database: { status: 'ok' }, migrations: { status: 'ok' } },
  });

  const health = await app.inject({ url: '/health' });
  t.equal(health.statusCode, 200);
  const h = health.json();
  t.equal(h.status, 'ok');
  t.equal(h.schema.expected_version, h.schema.applied_version);
  t.ok(h.schema.applied_version >= 2);
  t.type(h.database.latency_ms, 'number');
  t.equal(h.database.pool_max, 10, 'the test helper\'s pool');
  t.match(h.service.version, /^\d+\.\d+\.\d+/);
  t.type(h.service.uptime_s, 'number');

  app.lifecycle.draining = true;
  const draining = await app.inject({ url: '/health/ready' });
  t.equal(draining.statusCode, 503, 'readiness turns 503 while draining');
  t.same(draining.json().checks.accepting_requests, { status: 'failing', detail: 'shutting down' });
  t.equal((await app.inject({ url: '/health/live' })).statusCode, 200, 'liveness stays 200 while draining');
  app.lifecycle.draining = false;
});

t.test('with the database unreachable: readiness 503 naming it, data endpoints 503 problems with Retry-After', async (t) => {
  // Port 1 on loopback refuses connections at once.
  const sql = createSql('postgres://nobody@127.0.0.1:1/none', { max: 2, connectTimeout: 2 });
  const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent' }), { sql, schemaVersion: 2 });
  t.teardown(async () => {
    await app.close();
    await sql.end({ timeout: 1 });
  });

  t.equal((await app.inject({ url: '/health/live' })).statusCode, 200, 'liveness makes no database call');

  const ready = await app.inject({ url: '/health/ready' });
  t.equal(ready.statusCode, 503);
  t.equal(ready.headers['retry-after'], '5');
  t.same(ready.json().checks.database, { status: 'failing', detail: 'database unreachable' });
  t.equal(ready.json().checks.migrations.status, 'failing');

  const health = await app.inject({ url: '/health' });
  t.equal(health.statusCode, 503);
  t.equal(health.json().database.latency_ms, null);

  const load = await app.inject({ url: '/v1/workflows/00000000-0000-4000-8000-000000000000' });
  t.equal(load.statusCode, 503);
  t.equal(load.headers['retry-after'], '1');
  t.match(load.headers['content-type'], /^application\/problem\+json/);
  t.equal(load.json().status, 503);
  t.notMatch(load.body, /ECONNREFUSED|127\.0\.0\.1/, 'the problem shows no internals');
});
