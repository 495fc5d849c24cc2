import { createHash, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import t from 'tap';
import { checkExposure } from '../src/auth.js';
import { loadConfig } from '../src/config.js';
import { buildTestApp, stateBody } from './helper.js';
import { freePort } from './support/database.js';

const TOKENS = {
  alice: 'alice-token-0123456789', // tenant a: read, write
  aliceReader: 'alice-reader-0123456789', // tenant a: read
  aliceAdmin: 'alice-admin-0123456789', // tenant a: read, write, admin
  bob: 'bob-token-0123456789', // tenant b: read, write, admin
  operator: 'operator-token-0123456789', // every tenant
};
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const AUTH_TOKENS = JSON.stringify([
  { token: TOKENS.alice, tenant: 'a', scopes: ['read', 'write'], name: 'alice' },
  { token_sha256: sha(TOKENS.aliceReader), tenant: 'a', scopes: ['read'], name: 'alice-reader' },
  { token_sha256: sha(TOKENS.aliceAdmin).toUpperCase(), tenant: 'a', scopes: ['read', 'write', 'admin'], name: 'alice-admin' },
  { token: TOKENS.bob, tenant: 'b', scopes: ['read', 'write', 'admin'], name: 'bob' },
  { token: TOKENS.operator, tenant: '*', scopes: ['read', 'write', 'admin'], name: 'ops' },
]);
const as = (token: string) => ({ authorization: `Bearer ${token}` });
const REALM = 'Bearer realm="workflow-state"';

t.test('configuration: token lists are checked at start, and credentials are required beyond loopback', async (t) => {
  t.throws(() => checkExposure(loadConfig({ HOST: '0.0.0.0' })),
    { name: 'ConfigError', message: /HOST: 0\.0\.0\.0 is reachable from a network and no credential is configured; set AUTH_TOKENS/ });
  t.throws(() => checkExposure(loadConfig({ HOST: '::' })), { message: /HOST: ::/ });
  t.match(checkExposure(loadConfig({})), /no credentials configured: serving without authentication, on loopback \(127\.0\.0\.1\) only/);
  t.match(checkExposure(loadConfig({ HOST: '0.0.0.0', AUTH_DISABLED: 'true' })), /authentication is disabled/);
  t.equal(checkExposure(loadConfig({ HOST: '0.0.0.0', AUTH_TOKENS })), undefined);
  t.throws(() => checkExposure(loadConfig({ AUTH_DISABLED: 'true', AUTH_TOKENS })), { message: /AUTH_DISABLED/ });

  const bad = async (env: Record<string, string>, message: RegExp) =>
    t.rejects(buildTestApp(t, env), { name: 'ConfigError', message });
  await bad({ AUTH_TOKENS: 'not json' }, /AUTH_TOKENS: not JSON/);
  await bad({ AUTH_TOKENS: '[{"token":"x","tenant":"a","scopes":["read"]}]' }, /AUTH_TOKENS\[0\.name\]/);
  await bad({ AUTH_TOKENS: '[{"tenant":"a","scopes":["read"],"name":"n"}]' }, /give exactly one of token, token_sha256/);
  await bad({ AUTH_TOKENS: '[{"token_sha256":"abc","tenant":"a","scopes":["read"],"name":"n"}]' }, /token_sha256.*64 hex digits/);
  await bad({ AUTH_TOKENS: '[{"token":"x","tenant":"a","scopes":["root"],"name":"n"}]' }, /AUTH_TOKENS\[0\.scopes\.0\]/);
  await bad({ AUTH_TOKENS: '[{"token":"has space","tenant":"a","scopes":["read"],"name":"n"}]' }, /AUTH_TOKENS\[0\.token\]: must be letters/);
  await bad({ AUTH_TOKENS_FILE: '/nonexistent/tokens.json' }, /AUTH_TOKENS_FILE: cannot read \/nonexistent\/tokens\.json \(ENOENT\)/);
  await bad({ AUTH_TOKENS, AUTH_TOKENS_FILE: '/x' }, /set one, not both/);
});

t.test('every /v1 operation: 401 without a credential or with a bad one; health needs none', async (t) => {
  const { app } = await buildTestApp(t, { AUTH_TOKENS });
  await app.ready();
  const doc = app.swagger() as { paths: Record<string, Record<string, unknown>> };
  const operations = Object.entries(doc.paths).filter(([p]) => p.startsWith('/v1/'))
    .flatMap(([p, ops]) => Object.keys(ops).map((m) => ({ method: m.toUpperCase(), url: p.replace(/\{[^}]+\}/g, randomUUID()) })));
  t.equal(operations.length, 22, 'every operation of the API');
  for (const op of operations) {
    const basic = `Basic ${Buffer.from('a:b').toString('base64')}`;
    for (const headers of [{}, as('wrong-token'), { authorization: basic }] as Record<string, string>[]) {
      const res = await app.inject({ ...op, headers, payload: op.method === 'GET' || op.method === 'DELETE' ? undefined : '{}' });
      t.equal(res.statusCode, 401, `${op.method} ${op.url} ${JSON.stringify(headers)}`);
      t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
      t.equal(res.headers['www-authenticate'], headers.authorization?.startsWith('Bearer ')
        ? `${REALM}, error="invalid_token"` : REALM);
      t.match(res.json(), { status: 401, title: 'Unauthorized', type: 'urn:workflow-state:problem:unauthorized' });
    }
  }
  for (const url of ['/health/live', '/health/ready', '/health']) {
    t.equal((await app.inject({ method: 'GET', url })).statusCode, 200, url);
  }
  t.equal((await app.inject({ method: 'GET', url: '/openapi.json' })).statusCode, 200);
  t.equal((await app.inject({ method: 'GET', url: '/docs' })).statusCode, 200);
});

t.test('scopes: read for GETs, write for changes to a state, admin for purge; 403 names the scope', async (t) => {
  const { app } = await buildTestApp(t, { AUTH_TOKENS });
  const id = randomUUID();
  const forbidden = (scope: string) => ({
    status: 403,
    header: `${REALM}, error="insufficient_scope", scope="${scope}"`,
  });
  const check = async (token: string, method: string, url: string, payload: unknown, expect: number | { status: number; header: string }) => {
    const res = await app.inject({ method: method as 'GET', url, headers: { ...as(token), ...(payload ? { 'content-type': 'application/json' } : {}) },
      payload: payload ? JSON.stringify(payload) : undefined });
    if (typeof expect === 'number') {
      t.equal(res.statusCode, expect, `${method} ${url}: ${res.body}`);
    } else {
      t.equal(res.statusCode, expect.status, `${method} ${url}`);
      t.equal(res.headers['www-authenticate'], expect.header);
      t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
    }
    return res;
  };
  await check(TOKENS.alice, 'PUT', `/v1/workflows/${id}`, stateBody(), 201);
  const cp = (await check(TOKENS.alice, 'POST', `/v1/workflows/${id}/checkpoints`, { step_id: 's' }, 201)).json();

  // A reader reads everything and changes nothing.
  for (const url of [`/v1/workflows/${id}`, '/v1/workflows', `/v1/workflows/${id}/checkpoints`,
    `/v1/workflows/${id}/checkpoints/latest`, `/v1/checkpoints/${cp.id}`, '/v1/workflows/by-workflow-id/wf-1']) {
    await check(TOKENS.aliceReader, 'GET', url, undefined, 200);
  }
  const writes: [string, string, unknown, number][] = [
    ['PUT', `/v1/workflows/${id}`, stateBody(), 200],
    ['PATCH', `/v1/workflows/${id}`, { status: 'paused' }, 200],
    ['PUT', `/v1/workflows/${id}/steps/s1`, { status: 'running' }, 201],
    ['POST', `/v1/workflows/${id}/checkpoints`, { step_id: 's' }, 201],
    ['DELETE', `/v1/workflows/${id}/checkpoints?keep=1`, undefined, 200],
    ['POST', `/v1/checkpoints/${cp.id}/restore`, { mode: 'apply' }, 404], // pruned by the line above
    ['DELETE', `/v1/workflows/${id}`, undefined, 204],
  ];
  for (const [method, url, body] of writes) await check(TOKENS.aliceReader, method, url, body, forbidden('write'));
  // Purge takes admin, which a writer lacks.
  const purge = { older_than: '2000-01-01T00:00:00Z' };
  await check(TOKENS.alice, 'POST', '/v1/purge', purge, forbidden('admin'));
  await check(TOKENS.aliceAdmin, 'POST', '/v1/purge', purge, 200);
  // A writer does all of the writes.
  for (const [method, url, body, status] of writes) await check(TOKENS.alice, method, url, body, status);
});

t.test('tenants: another tenant\'s state is a 404 everywhere, lists and purge see one tenant, an operator sees all', async (t) => {
  const { app, sql } = await buildTestApp(t, { AUTH_TOKENS });
  const send = (token: string, method: string, url: string, payload?: unknown) =>
    app.inject({ method: method as 'GET', url, headers: { ...as(token), ...(payload ? { 'content-type': 'application/json' } : {}) },
      payload: payload === undefined ? undefined : JSON.stringify(payload) });
  const old = '2001-01-01T00:00:00.000000Z';
  const ida = randomUUID();
  const idb = randomUUID();
  t.equal((await send(TOKENS.alice, 'PUT', `/v1/workflows/${ida}`, stateBody({ workflow_id: 'shared', status: 'completed', updated_at: old }))).statusCode, 201);
  t.equal((await send(TOKENS.bob, 'PUT', `/v1/workflows/${idb}`, stateBody({ workflow_id: 'shared', status: 'completed', updated_at: old }))).statusCode, 201);
  const cpa = (await send(TOKENS.alice, 'POST', `/v1/workflows/${ida}/checkpoints`, { step_id: 's' })).json();

  const hidden: [string, string, unknown][] = [
    ['GET', `/v1/workflows/${ida}`, undefined],
    ['PATCH', `/v1/workflows/${ida}`, { status: 'paused' }],
    ['PUT', `/v1/workflows/${ida}/steps/s1`, { status: 'running' }],
    ['GET', `/v1/workflows/${ida}/checkpoints`, undefined],
    ['GET', `/v1/workflows/${ida}/checkpoints/latest`, undefined],
    ['POST', `/v1/workflows/${ida}/checkpoints`, { step_id: 's' }],
    ['DELETE', `/v1/workflows/${ida}/checkpoints?keep=0`, undefined],
    ['GET', `/v1/checkpoints/${cpa.id}`, undefined],
    ['POST', `/v1/checkpoints/${cpa.id}/restore`, { mode: 'apply' }],
    ['POST', `/v1/checkpoints/${cpa.id}/restore`, { mode: 'fork' }],
    ['POST', `/v1/checkpoints/${cpa.id}/restore`, { mode: 'preview' }],
    ['DELETE', `/v1/workflows/${ida}`, undefined],
  ];
  for (const [method, url, body] of hidden) {
    const res = await send(TOKENS.bob, method, url, body);
    t.equal(res.statusCode, 404, `${method} ${url}`);
    t.equal(res.json().title, 'Not Found');
  }
  // Ids are unique across tenants: another tenant's id cannot be taken, and saying so reveals no content.
  const taken = await send(TOKENS.bob, 'PUT', `/v1/workflows/${ida}`, stateBody());
  t.equal(taken.statusCode, 409);
  t.equal(taken.json().detail, `The id ${ida} is in use; choose another.`);
  t.equal((await send(TOKENS.bob, 'GET', '/v1/workflows/by-workflow-id/shared')).json().id, idb);
  t.same((await send(TOKENS.bob, 'GET', '/v1/workflows')).json().items.map((s: { id: string }) => s.id), [idb]);
  t.same((await send(TOKENS.operator, 'GET', '/v1/workflows')).json().items.map((s: { id: string }) => s.id).sort(), [ida, idb].sort());

  // Purge: bob's reaches bob's states only.
  const purge = { older_than: '2020-01-01T00:00:00Z' };
  t.same((await send(TOKENS.bob, 'POST', '/v1/purge', { ...purge, dry_run: true })).json(), { matched: 1, dry_run: true, threads_matched: 0 });
  t.same((await send(TOKENS.bob, 'POST', '/v1/purge', purge)).json(), { deleted: 1, threads_deleted: 0 });
  t.equal((await send(TOKENS.alice, 'GET', `/v1/workflows/${ida}`)).statusCode, 200, 'alice\'s state survived bob\'s purge');

  // A fork stays in its tenant, whoever forks: alice's fork is alice's, and so is the operator's fork of it.
  const fork = (await send(TOKENS.alice, 'POST', `/v1/checkpoints/${cpa.id}/restore`, { mode: 'fork' })).json();
  const opFork = await send(TOKENS.operator, 'POST', `/v1/checkpoints/${cpa.id}/restore`, { mode: 'fork' });
  t.equal(opFork.statusCode, 201);
  const tenants = await sql<{ id: string; tenant: string }[]>`
    SELECT id::text, tenant FROM workflow_states WHERE id = ANY(${[fork.id, opFork.json().id]}::uuid[])`;
  t.same(tenants.map((r) => r.tenant), ['a', 'a']);
  // An operator's new state goes to the default tenant, and the operator reaches every tenant's states.
  const opId = randomUUID();
  t.equal((await send(TOKENS.operator, 'PUT', `/v1/workflows/${opId}`, stateBody())).statusCode, 201);
  t.same((await sql`SELECT tenant FROM workflow_states WHERE id = ${opId}::uuid`)[0], { tenant: 'default' });
  t.equal((await send(TOKENS.operator, 'PATCH', `/v1/workflows/${ida}`, { status: 'paused' })).statusCode, 200);
  t.equal((await send(TOKENS.alice, 'GET', `/v1/workflows/${ida}`)).json().status, 'paused');
  t.same((await send(TOKENS.operator, 'POST', '/v1/purge', { older_than: '2999-01-01T00:00:00Z', dry_run: true })).json(),
    { matched: 2, dry_run: true, threads_matched: 0 }, 'the operator\'s purge reaches every tenant: the two finished forks');
});

t.test('AUTH_TOKENS_FILE: the same JSON from a file', async (t) => {
  const file = join(tmpdir(), `wss-tokens-${randomUUID()}.json`);
  writeFileSync(file, AUTH_TOKENS, { mode: 0o600 });
  t.teardown(() => import('node:fs').then((fs) => fs.rmSync(file, { force: true })));
  const { app } = await buildTestApp(t, { AUTH_TOKENS_FILE: file });
  t.equal((await app.inject({ method: 'GET', url: '/v1/workflows', headers: as(TOKENS.bob) })).statusCode, 200);
  t.equal((await app.inject({ method: 'GET', url: '/v1/workflows', headers: as(`${TOKENS.bob}x`) })).statusCode, 401);
});

t.test('JWTs verified against a JWKS: issuer, audience, expiry, tenant and scope claims', async (t) => {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const jwksServer: Server = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => jwksServer.close(r)));
  const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as { port: number }).port}/jwks.json`;
  const { app } = await buildTestApp(t, {
    AUTH_JWKS_URL: jwksUrl, AUTH_JWT_ISSUER: 'https://issuer.test', AUTH_JWT_AUDIENCE: 'workflow-state',
    AUTH_JWT_TENANT_CLAIM: 'org', AUTH_JWT_SCOPES_CLAIM: 'scope',
  });
  const sign = (claims: Record<string, unknown>, o: { iss?: string; aud?: string; exp?: string | number; key?: Parameters<SignJWT['sign']>[0] } = {}) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setSubject('svc-1')
      .setIssuer(o.iss ?? 'https://issuer.test').setAudience(o.aud ?? 'workflow-state').setIssuedAt()
      .setExpirationTime(o.exp ?? '5m').sign(o.key ?? privateKey);
  const get = async (token: string) => app.inject({ method: 'GET', url: '/v1/workflows', headers: as(token) });
  const put = async (token: string) => app.inject({ method: 'PUT', url: `/v1/workflows/${randomUUID()}`,
    headers: { ...as(token), 'content-type': 'application/json' }, payload: JSON.stringify(stateBody()) });

  t.equal((await get(await sign({ org: 'a', scope: 'read write' }))).statusCode, 200);
  t.equal((await put(await sign({ org: 'a', scope: 'read write' }))).statusCode, 201);
  t.equal((await put(await sign({ org: 'a', scope: ['read', 'write'] }))).statusCode, 201, 'scopes as an array');
  t.equal((await put(await sign({ org: 'a', scope: 'read' }))).statusCode, 403);
  t.equal((await get(await sign({ org: 'a', scope: 'read' }, { iss: 'https://evil.test' }))).statusCode, 401, 'issuer');
  t.equal((await get(await sign({ org: 'a', scope: 'read' }, { aud: 'other' }))).statusCode, 401, 'audience');
  t.equal((await get(await sign({ org: 'a', scope: 'read' }, { exp: Math.floor(Date.now() / 1000) - 60 }))).statusCode, 401, 'expired');
  t.equal((await get(await sign({ scope: 'read' }))).statusCode, 401, 'no tenant claim');
  const other = await generateKeyPair('ES256');
  t.equal((await get(await sign({ org: 'a', scope: 'read' }, { key: other.privateKey }))).statusCode, 401, 'signed by another key');
  // The tenant claim scopes what the token sees.
  t.equal((await get(await sign({ org: 'b', scope: 'read' }))).json().items.length, 0);
  t.equal((await get(await sign({ org: 'a', scope: 'read' }))).json().items.length, 2);

  // A key set that cannot be fetched is the service's problem, not the token's: 503, not 401.
  const down = await buildTestApp(t, { AUTH_JWKS_URL: `http://127.0.0.1:${await freePort()}/jwks.json` });
  const res = await down.app.inject({ method: 'GET', url: '/v1/workflows', headers: as(await sign({ org: 'a', scope: 'read' })) });
  t.equal(res.statusCode, 503);
  t.equal(res.headers['retry-after'], '1');
});

t.test('DOCS_ENABLED=false: no Swagger UI and no OpenAPI document', async (t) => {
  const { app } = await buildTestApp(t, { DOCS_ENABLED: 'false' });
  for (const url of ['/docs', '/openapi.json', '/openapi.yaml']) {
    t.equal((await app.inject({ method: 'GET', url })).statusCode, 404, url);
  }
  t.equal((await app.inject({ method: 'GET', url: '/v1/workflows' })).statusCode, 200);
});

t.test('RATE_LIMIT_MAX: per credential, 429 problem with Retry-After; off by default', async (t) => {
  const { app } = await buildTestApp(t, { AUTH_TOKENS, RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW_MS: '60000' });
  const get = (token: string) => app.inject({ method: 'GET', url: '/v1/workflows', headers: as(token) });
  for (let i = 0; i < 3; i++) t.equal((await get(TOKENS.alice)).statusCode, 200);
  const limited = await get(TOKENS.alice);
  t.equal(limited.statusCode, 429);
  t.equal(limited.headers['content-type'], 'application/problem+json; charset=utf-8');
  t.equal(limited.headers['retry-after'], '60');
  t.match(limited.json(), { status: 429, title: 'Too Many Requests', type: 'urn:workflow-state:problem:too-many-requests',
    detail: /more than 3 requests in 60000 ms/ });
  t.equal((await get(TOKENS.aliceReader)).statusCode, 200, 'another credential of the same tenant has its own count');
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200, 'probes are not limited');

  const { app: unlimited } = await buildTestApp(t, { AUTH_TOKENS });
  for (let i = 0; i < 5; i++) {
    const res = await unlimited.inject({ method: 'GET', url: '/v1/workflows', headers: as(TOKENS.alice) });
    t.equal(res.statusCode, 200);
    t.equal(res.headers['x-ratelimit-limit'], undefined);
  }
});
