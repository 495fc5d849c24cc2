import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import type { FastifyBaseLogger, FastifyInstance, LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createSql } from '../src/db/client.js';
import { loadMigrations, migrate } from '../src/db/migrate.js';
import { createLogger } from '../src/logger.js';
import { buildTestApp, freshDatabase, json, prepare, stateBody } from './helper.js';

const ID = '55555555-2222-4333-8444-555555555555';
const PROBLEM_TYPE = /^urn:workflow-state:problem:[a-z-]+$/;

/** An answer read off a raw socket: status, lower-cased headers, body, and when the server closed. */
interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  closedAfterMs: number;
}

/**
 * Connects, lets `talk` write to the socket, and reads until the server closes it. A socket the
 * server has not closed within `limitMs` is a failure (a wait that is not bounded).
 */
function exchange(port: number, talk: (s: Socket) => void, limitMs = 3000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const started = Date.now();
    const chunks: Buffer[] = [];
    const limit = setTimeout(() => {
      s.destroy();
      reject(new Error(`the server did not close the connection within ${limitMs} ms`));
    }, limitMs);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => {}); // a reset after the answer: what was read is what counts
    s.on('close', () => {
      clearTimeout(limit);
      const text = Buffer.concat(chunks).toString('utf8');
      const end = text.indexOf('\r\n\r\n');
      const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
      const headers = Object.fromEntries(lines.map((l) => {
        const colon = l.indexOf(':');
        return [l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim()];
      }));
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: text.slice(end + 4), closedAfterMs: Date.now() - started });
    });
    s.on('connect', () => talk(s));
  });
}

/** The raw answer is a problem+json with this status, a correct length, and closes the connection. */
function expectRawProblem(t: Test, a: RawAnswer, status: number, code?: string) {
  t.equal(a.status, status, `status ${status}`);
  t.equal(a.headers['content-type'], 'application/problem+json');
  t.equal(a.headers.connection, 'close');
  t.equal(a.headers['x-content-type-options'], 'nosniff');
  t.equal(Number(a.headers['content-length']), Buffer.byteLength(a.body), 'content-length is the body length');
  const p = JSON.parse(a.body) as Record<string, unknown>;
  t.match(p, { type: PROBLEM_TYPE, title: /\S/, status, detail: /\S/ });
  if (code) t.equal(p.type, `urn:workflow-state:problem:${code}`);
  t.match(p.instance, /^[0-9a-f-]{36}$/, 'instance is a generated id');
  t.equal(p.instance, a.headers['x-request-id'], 'and the same id as x-request-id');
  return p;
}

/** A routed problem answer, as light-my-request gives it. */
function expectProblem(t: Test, res: LightMyRequestResponse, status: number, paths: string[] = []) {
  t.equal(res.statusCode, status, `status ${status}`);
  t.match(res.headers['content-type'], /^application\/problem\+json/);
  const p = res.json();
  t.match(p, { type: PROBLEM_TYPE, status, instance: res.headers['x-request-id'] });
  t.same((p.errors ?? []).map((e: { path: string }) => e.path), paths, `errors name ${paths.join(', ') || 'nothing'}`);
  return p;
}

async function listening(app: FastifyInstance): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  return (app.server.address() as { port: number }).port;
}

const TIMEOUTS = { HEADERS_TIMEOUT_MS: '300', REQUEST_BODY_TIMEOUT_MS: '600' };

t.test('a client too slow with its headers gets a 408 problem and is dropped at the headers timeout', async (t) => {
  const { app } = await buildTestApp(t, TIMEOUTS);
  const port = await listening(app);
  const a = await exchange(port, (s) => s.write('GET /health/live HTTP/1.1\r\nHost: localhost\r\nX-Slow: '));
  expectRawProblem(t, a, 408, 'request-timeout');
  t.ok(a.closedAfterMs >= 290 && a.closedAfterMs < 1000, `dropped after ${a.closedAfterMs} ms (timeout 300 ms)`);
});

t.test('a client trickling its body gets a 408 problem and is dropped at the request timeout', async (t) => {
  const { app } = await buildTestApp(t, TIMEOUTS);
  const port = await listening(app);
  let trickle: NodeJS.Timeout | undefined;
  const a = await exchange(port, (s) => {
    s.write(`PUT /v1/workflows/${ID} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
    // A byte every 50 ms: the connection is never idle, the request simply never ends.
    trickle = setInterval(() => s.writable && s.write(' '), 50);
  });
  clearInterval(trickle);
  expectRawProblem(t, a, 408, 'request-timeout');
  t.ok(a.closedAfterMs >= 590 && a.closedAfterMs < 1300, `dropped after ${a.closedAfterMs} ms (timeout 600 ms)`);
});

t.test('requests the HTTP parser refuses are answered as problems on the socket, which then closes', async (t) => {
  const { app } = await buildTestApp(t);
  const port = await listening(app);
  const put = `PUT /v1/workflows/${ID} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n`;
  const cases: { name: string; request: string; status: number; code: string }[] = [
    { name: 'headers over 16 KiB', status: 431, code: 'header-fields-too-large',
      request: `GET /health/live HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n` },
    { name: 'Content-Length and Transfer-Encoding together', status: 400, code: 'malformed-request',
      request: `${put}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n` },
    { name: 'a bare LF as line end', status: 400, code: 'malformed-request',
      request: 'GET /health/live HTTP/1.1\nHost: localhost\n\n' },
    { name: 'an unknown method FOO', status: 501, code: 'not-implemented',
      request: 'FOO /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n' },
    { name: 'CONNECT', status: 501, code: 'not-implemented',
      request: 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n' },
    { name: 'an invalid chunk size', status: 400, code: 'malformed-request',
      request: `${put}Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n` },
    { name: 'a space inside a header name', status: 400, code: 'malformed-request',
      request: 'GET /health/live HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n' },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const a = await exchange(port, (s) => s.write(c.request));
      expectRawProblem(t, a, c.status, c.code);
    });
  }
  t.test('an HTTP/1.1 request without Host is a 400 problem from the app (with its security headers)', async (t) => {
    const a = await exchange(port, (s) => s.write('GET /health/live HTTP/1.1\r\nConnection: close\r\n\r\n'));
    t.equal(a.status, 400);
    t.match(a.headers['content-type'], /^application\/problem\+json/);
    t.equal(a.headers['x-content-type-options'], 'nosniff');
    t.match(JSON.parse(a.body), { errors: [{ path: 'headers.host' }] });
  });
});

t.test('fastify\'s own rejections are problems with security headers', async (t) => {
  const { app } = await buildTestApp(t, { BODY_LIMIT_BYTES: '1024' });

  t.test('a body over BODY_LIMIT_BYTES is a 413 problem', async (t) => {
    const res = await app.inject({ method: 'PUT', url: `/v1/workflows/${ID}`, ...json(stateBody({ context: { pad: 'x'.repeat(2000) } })) });
    expectProblem(t, res, 413);
    t.equal(res.headers['x-content-type-options'], 'nosniff');
  });
  t.test('a body that is not JSON is a 415 problem', async (t) => {
    const res = await app.inject({
      method: 'PUT', url: `/v1/workflows/${ID}`, headers: { 'content-type': 'text/plain' }, payload: 'hello',
    });
    expectProblem(t, res, 415);
    t.equal(res.headers['x-content-type-options'], 'nosniff');
  });
});

t.test('security headers', async (t) => {
  const { app } = await buildTestApp(t);
  const API_CSP = "default-src 'none';frame-ancestors 'none'";

  const expectApiHeaders = (t: Test, res: LightMyRequestResponse) => {
    t.equal(res.headers['x-content-type-options'], 'nosniff');
    t.equal(res.headers['content-security-policy'], API_CSP);
    t.equal(res.headers['x-frame-options'], 'DENY');
    t.equal(res.headers['referrer-policy'], 'no-referrer');
    t.equal(res.headers['cross-origin-resource-policy'], 'same-origin');
    t.notOk(res.headers['strict-transport-security'], 'no HSTS: TLS ends in front of the service');
    t.notOk(res.headers['x-powered-by']);
  };
  t.test('on a JSON answer', async (t) => {
    const res = await app.inject({ url: '/health/live' });
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^application\/json/);
    expectApiHeaders(t, res);
  });
  t.test('on a problem answer (validation, unknown route)', async (t) => {
    const invalid = await app.inject({ url: '/v1/workflows/not-a-uuid' });
    expectProblem(t, invalid, 400, ['params.id']);
    expectApiHeaders(t, invalid);
    const missing = await app.inject({ url: '/no/such/route' });
    expectProblem(t, missing, 404);
    expectApiHeaders(t, missing);
    t.equal(missing.json().type, 'urn:workflow-state:problem:no-route', 'a URL without a route is not a missing thing');
    const absent = await app.inject({ url: '/v1/workflows/00000000-0000-4000-8000-000000000000' });
    t.equal(absent.json().type, 'urn:workflow-state:problem:not-found');
  });
  t.test('a malformed path, which no hook sees, still says nosniff', async (t) => {
    const res = await app.inject({ url: '/v1/workflows/%ff' });
    expectProblem(t, res, 400, ['path']);
    t.equal(res.headers['x-content-type-options'], 'nosniff');
  });
  t.test('Swagger UI gets a policy that lets it load its own scripts and styles, and nothing inline', async (t) => {
    const page = await app.inject({ url: '/docs/' });
    t.equal(page.statusCode, 200);
    const csp = page.headers['content-security-policy'] as string;
    const directive = (name: string) => csp.split(';').map((d) => d.trim()).find((d) => d.startsWith(`${name} `)) ?? '';
    t.match(directive('script-src'), /^script-src 'self'\s*$/, 'scripts from the service itself');
    t.match(directive('style-src'), /'self'/, 'styles from the service itself');
    t.match(directive('img-src'), /data:/, 'the data: images of its stylesheet');
    t.notMatch(csp, /upgrade-insecure-requests/, 'nothing that breaks /docs over plain HTTP');
    t.equal(page.headers['x-content-type-options'], 'nosniff');
    // The page needs nothing inline (which script-src 'self' would block) and its assets are served.
    const html = page.body;
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    t.ok(scripts.length >= 3);
    t.ok(scripts.every(([, attrs, body]) => /\bsrc="\.\/static\//.test(attrs!) && body!.trim() === ''), 'every script is a same-origin file');
    t.notMatch(html, /<style\b|\sstyle="/, 'no inline styles');
    const assets = [...html.matchAll(/(?:src|href)="\.\/(static\/[^"]+)"/g)].map((m) => m[1]!);
    for (const asset of assets) {
      const res = await app.inject({ url: `/docs/${asset}` });
      t.equal(res.statusCode, 200, `/docs/${asset} is served`);
    }
    const initializer = await app.inject({ url: '/docs/static/swagger-initializer.js' });
    t.equal(initializer.statusCode, 200);
    t.match(initializer.body, /url: resolveUrl\('\.\/json'\)/, 'the document comes from the service itself');
    t.match(initializer.body, /validatorUrl: null/, 'and is not sent to an outside validator');
    t.equal((await app.inject({ url: '/docs/json' })).statusCode, 200);
  });
});

t.test('CORS', async (t) => {
  const preflight = (origin: string) => ({
    method: 'OPTIONS' as const,
    url: `/v1/workflows/${ID}`,
    headers: { origin, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type, if-match' },
  });
  const corsHeaders = (res: LightMyRequestResponse) => Object.keys(res.headers).filter((h) => h.startsWith('access-control-'));

  t.test('is off by default: no CORS header on any answer, preflights are not found', async (t) => {
    const { app } = await buildTestApp(t);
    const get = await app.inject({ url: '/health/live', headers: { origin: 'https://app.example' } });
    t.equal(get.statusCode, 200);
    t.same(corsHeaders(get), []);
    const pre = await app.inject(preflight('https://app.example'));
    expectProblem(t, pre, 404);
    t.same(corsHeaders(pre), []);
  });

  t.test('with CORS_ORIGINS, exactly those origins', async (t) => {
    const { app } = await buildTestApp(t, { CORS_ORIGINS: 'https://app.example, http://localhost:3000' });

    const pre = await app.inject(preflight('https://app.example'));
    t.equal(pre.statusCode, 204, 'an allowed preflight');
    t.equal(pre.headers['access-control-allow-origin'], 'https://app.example');
    t.same(String(pre.headers['access-control-allow-methods']).split(', ').sort(), ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT']);
    t.equal(pre.headers['access-control-allow-headers'], 'content-type, if-match');
    t.equal(pre.headers['access-control-max-age'], '600');
    t.match(pre.headers.vary, /Origin/);

    const get = await app.inject({ url: '/health/live', headers: { origin: 'http://localhost:3000' } });
    t.equal(get.statusCode, 200);
    t.equal(get.headers['access-control-allow-origin'], 'http://localhost:3000');
    t.same(String(get.headers['access-control-expose-headers']).split(', '), ['etag', 'location', 'retry-after', 'x-request-id']);
    const problem = await app.inject({ url: '/v1/workflows/not-a-uuid', headers: { origin: 'https://app.example' } });
    expectProblem(t, problem, 400, ['params.id']);
    t.equal(problem.headers['access-control-allow-origin'], 'https://app.example', 'a browser can read a problem too');

    for (const origin of ['https://evil.example', 'https://app.example.evil.example', 'http://app.example', 'null']) {
      const denied = await app.inject(preflight(origin));
      expectProblem(t, denied, 404);
      t.same(corsHeaders(denied), [], `${origin}: a preflight gets no CORS header`);
      const read = await app.inject({ url: '/health/live', headers: { origin } });
      t.same(corsHeaders(read), [], `${origin}: an answer carries no CORS header`);
    }
    t.same(corsHeaders(await app.inject({ url: '/health/live' })), [], 'a request without Origin gets none');
  });
});

t.test('settings: the headers are part of the request; CORS_ORIGINS holds exact origins only', async (t) => {
  t.throws(() => loadConfig({ HEADERS_TIMEOUT_MS: '40000' }), /HEADERS_TIMEOUT_MS: must not exceed REQUEST_BODY_TIMEOUT_MS/);
  for (const bad of ['*', 'https://app.example/', 'app.example', 'https://app.example/path']) {
    t.throws(() => loadConfig({ CORS_ORIGINS: bad }), /CORS_ORIGINS/, bad);
  }
});

t.test('invalid percent-encoding is a 400 problem naming where it is', async (t) => {
  const { app } = await buildTestApp(t);
  const cases: [url: string, path: string][] = [
    ['/v1/workflows?workflow_id=%ff', 'query.workflow_id'], // a byte that is not UTF-8
    ['/v1/workflows?workflow_id=%zz', 'query.workflow_id'],
    ['/v1/workflows?workflow_id=%', 'query.workflow_id'],
    ['/v1/workflows?workflow_id=%e2%82', 'query.workflow_id'], // a truncated sequence
    ['/v1/workflows?workflow_id=%ed%a0%80', 'query.workflow_id'], // an encoded surrogate
    ['/v1/workflows?limit=2&workflow_id=wf%c3', 'query.workflow_id'],
    ['/v1/workflows?%ff=1', 'query'],
    ['/v1/workflows/%ff', 'path'],
    ['/v1/workflows/%zz', 'path'],
    [`/v1/workflows/${ID}/steps/%`, 'path'],
  ];
  for (const [url, path] of cases) {
    t.test(url, async (t) => {
      expectProblem(t, await app.inject({ url }), 400, [path]);
    });
  }
  t.test('valid encodings still match', async (t) => {
    t.equal((await app.inject({ method: 'PUT', url: `/v1/workflows/${ID}`, ...json(stateBody({ workflow_id: 'wf-€ 1' })) })).statusCode, 201);
    const res = await app.inject({ url: '/v1/workflows?workflow_id=wf-%E2%82%AC+1' });
    t.equal(res.statusCode, 200);
    t.same(res.json().items.map((s: { id: string }) => s.id), [ID]);
  });
});

t.test('logs carry no query string and no raw request bytes', async (t) => {
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      raw.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const url = await freshDatabase(t);
  const sql = createSql(url, { max: 2, prepare });
  const migrations = await loadMigrations();
  await migrate(sql, migrations);
  const app = await buildApp(loadConfig({}), {
    sql, schemaVersion: migrations.at(-1)!.version, logger: createLogger('info', sink) as FastifyBaseLogger,
  });
  t.teardown(async () => {
    await app.close();
    await sql.end();
  });

  t.equal((await app.inject({ url: '/v1/workflows?workflow_id=tok-list-1' })).statusCode, 200);
  t.equal((await app.inject({ url: '/no/such/route?access_token=tok-missing-2' })).statusCode, 404);
  t.equal((await app.inject({ url: '/v1/workflows/%ff?access_token=tok-badpath-3' })).statusCode, 400);
  const port = await listening(app);
  const refused = await exchange(port, (s) => s.write('GET /health/live?t=tok-raw-4 HTTP/1.1\r\nAuthorization: Bearer tok-raw-5\r\nBad Header: x\r\n\r\n'));
  t.equal(refused.status, 400);

  t.notMatch(raw.join('\n'), /tok-/, 'no token from a query or a refused request reached the log');
  const urls = raw.map((l) => JSON.parse(l) as { req?: { url?: string } }).flatMap((l) => (l.req?.url ? [l.req.url] : []));
  t.ok(urls.includes('/v1/workflows?[redacted]'), 'the request line is logged with its query redacted');
  t.ok(urls.includes('/no/such/route?[redacted]'));
  const answered = raw.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'client error answered');
  t.match(answered, { status: 400, code: /^HPE_/, instance: JSON.parse(refused.body).instance }, 'the raw answer is logged with its id');
});
