import { Writable } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import { pino } from 'pino';
import t from 'tap';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createSql } from '../src/db/client.js';
import { loadMigrations, migrate } from '../src/db/migrate.js';
import { freshDatabase, prepare, stateBody } from './helper.js';
import { LOG_REDACT_PATHS } from '../src/logger.js';

t.test('every log line of a request carries its id; the Authorization header is never logged', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) {
        raw.push(l);
        lines.push(JSON.parse(l));
      }
      done();
    },
  });
  const logger = pino({ level: 'info', redact: { paths: LOG_REDACT_PATHS, censor: '[redacted]' } }, sink);
  const url = await freshDatabase(t);
  const sql = createSql(url, { max: 2, prepare });
  const migrations = await loadMigrations();
  await migrate(sql, migrations);
  const app = await buildApp(loadConfig({}), {
    sql, schemaVersion: migrations.at(-1)!.version, logger: logger as FastifyBaseLogger,
  });
  t.teardown(async () => {
    await app.close();
    await sql.end();
  });

  const secret = 'Bearer s3cr3t-token-value';
  const given = await app.inject({
    method: 'PUT',
    url: '/v1/workflows/55555555-2222-4333-8444-555555555555',
    headers: { authorization: secret, 'x-request-id': 'req-from-client-1', 'content-type': 'application/json' },
    payload: JSON.stringify(stateBody()),
  });
  t.equal(given.statusCode, 201);
  t.equal(given.headers['x-request-id'], 'req-from-client-1', 'an incoming request id is kept and echoed');

  const made = await app.inject({ url: '/v1/workflows/not-a-uuid', headers: { authorization: secret } });
  t.equal(made.statusCode, 400);
  const madeId = made.headers['x-request-id'] as string;
  t.match(madeId, /^[0-9a-f-]{36}$/, 'a request without one gets a fresh id');
  t.equal(made.json().instance, madeId);

  const bad = await app.inject({ url: '/v1/workflows/x', headers: { 'x-request-id': 'has spaces and\u00e9' } });
  t.not(bad.headers['x-request-id'], 'has spaces and\u00e9', 'an id that does not look like one is replaced');

  const ofGiven = lines.filter((l) => l.reqId === 'req-from-client-1');
  t.ok(ofGiven.length >= 2, 'the request logged its arrival and completion');
  t.ok(ofGiven.every((l) => typeof l.msg === 'string'));
  t.ok(lines.filter((l) => l.reqId === madeId).length >= 2);
  t.notOk(raw.some((l) => l.includes('s3cr3t')), 'no log line holds the Authorization value');

  // Even a line that logs the headers on purpose has the value redacted.
  app.log.info({ headers: { authorization: secret } }, 'explicit');
  t.notOk(raw.some((l) => l.includes('s3cr3t')));
  t.ok(raw.some((l) => l.includes('[redacted]')));
});
