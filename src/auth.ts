/**
 * Who is calling: bearer tokens (RFC 6750) from configuration, or JWTs verified against a JWKS
 * with `jose`. A credential names a tenant, whose states are the only ones it sees (`*`: an
 * operator's, which sees all), and scopes: `read` for GETs, `write` for changes to a state,
 * `admin` for purge.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { z } from 'zod';
import { type Config, ConfigError } from './config.js';
import { HttpProblem, unavailable } from './errors.js';
import type { Tenancy, Tenant } from './repositories/conditions.js';

export const SCOPES = ['read', 'write', 'admin', 'metrics'] as const;
export type Scope = (typeof SCOPES)[number];

/** The tenant of an operator's credential: it sees the states of every tenant. */
export const ALL_TENANTS = '*';
/** Where states go that are created without authentication, or created by an operator. */
export const DEFAULT_TENANT = 'default';

export interface Principal {
  /** The credential's label (a token's `name`, a JWT's `sub`): what logs and rate limits name. */
  name: string;
  tenant: string;
  scopes: ReadonlySet<Scope>;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
  interface FastifyContextConfig {
    /** The scope a route requires; GETs need read and other methods write unless a route says otherwise. */
    scope?: Scope;
  }
}

/** Everyone, when authentication is off: an operator with every scope. */
export const ANONYMOUS: Principal = { name: 'anonymous', tenant: ALL_TENANTS, scopes: new Set(SCOPES) };

const TOKEN68 = /^[\w.~+/-]+=*$/;

const TokenEntry = z
  .strictObject({
    token_sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex digits').optional(),
    // What an Authorization: Bearer header can carry (RFC 6750's b64token).
    token: z.string().regex(TOKEN68, 'must be letters, digits, -._~+/ and = at the end').optional()
      .meta({ description: 'The token in plain text, for local use.' }),
    tenant: z.string().min(1).max(255),
    scopes: z.array(z.enum(SCOPES)).min(1),
    name: z.string().min(1).max(255),
  })
  .refine((e) => (e.token === undefined) !== (e.token_sha256 === undefined), 'give exactly one of token, token_sha256');
const TokenList = z.array(TokenEntry);

interface StoredToken {
  digest: Buffer;
  principal: Principal;
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** The static tokens of AUTH_TOKENS or AUTH_TOKENS_FILE; a ConfigError names what is wrong. */
function loadTokens(config: Config): StoredToken[] {
  if (config.AUTH_TOKENS !== undefined && config.AUTH_TOKENS_FILE !== undefined) {
    throw new ConfigError('Invalid configuration:\n  AUTH_TOKENS, AUTH_TOKENS_FILE: set one, not both');
  }
  const [setting, text] = config.AUTH_TOKENS_FILE !== undefined
    ? ['AUTH_TOKENS_FILE', readSetting(config.AUTH_TOKENS_FILE)]
    : ['AUTH_TOKENS', config.AUTH_TOKENS];
  if (text === undefined) return [];
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConfigError(`Invalid configuration:\n  ${setting}: not JSON (an array of {token_sha256, tenant, scopes, name})`);
  }
  const parsed = TokenList.safeParse(json);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${setting}[${i.path.join('.')}]: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data.map((e) => ({
    digest: e.token_sha256 !== undefined ? Buffer.from(e.token_sha256, 'hex') : sha256(e.token!),
    principal: { name: e.name, tenant: e.tenant, scopes: new Set(e.scopes) },
  }));
}

function readSetting(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`Invalid configuration:\n  AUTH_TOKENS_FILE: cannot read ${path} (${(err as NodeJS.ErrnoException).code})`);
  }
}

/** True when some credential is configured: without one the service serves anonymously, on loopback only. */
export const credentialsConfigured = (c: Config) =>
  c.AUTH_TOKENS !== undefined || c.AUTH_TOKENS_FILE !== undefined || c.AUTH_JWKS_URL !== undefined;

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);

/**
 * Refuses a configuration that would serve without authentication beyond this machine; answers the
 * one line to log when the service runs without credentials.
 */
export function checkExposure(c: Config): string | undefined {
  if (c.AUTH_DISABLED) {
    if (credentialsConfigured(c)) {
      throw new ConfigError('Invalid configuration:\n  AUTH_DISABLED: true, yet credentials are configured; unset one or the other');
    }
    return `authentication is disabled (AUTH_DISABLED=true): every caller is an operator, on ${c.HOST}`;
  }
  if (credentialsConfigured(c)) return undefined;
  if (!isLoopback(c.HOST)) {
    throw new ConfigError(`Invalid configuration:\n  HOST: ${c.HOST} is reachable from a network and no credential ` +
      'is configured; set AUTH_TOKENS, AUTH_TOKENS_FILE or AUTH_JWKS_URL (or AUTH_DISABLED=true to serve without ' +
      'authentication), or HOST=127.0.0.1');
  }
  return `no credentials configured: serving without authentication, on loopback (${c.HOST}) only`;
}

const scopesOf = (claim: unknown): Scope[] => {
  const given = typeof claim === 'string' ? claim.split(' ') : Array.isArray(claim) ? claim : [];
  return SCOPES.filter((s) => given.includes(s));
};

/** Finds the principal of a bearer token, or undefined when no credential has it. */
export type Authenticate = (token: string) => Promise<Principal | undefined>;

/**
 * The authenticator of the configured credentials, or undefined when the service serves without
 * (none configured, or AUTH_DISABLED). A bad token list is a ConfigError, thrown at start.
 */
export const authenticatorFor = (c: Config): Authenticate | undefined =>
  c.AUTH_DISABLED || !credentialsConfigured(c) ? undefined : createAuthenticator(c);

function createAuthenticator(c: Config): Authenticate {
  const tokens = loadTokens(c);
  const jwks = c.AUTH_JWKS_URL === undefined ? undefined : createRemoteJWKSet(new URL(c.AUTH_JWKS_URL));

  async function fromJwt(token: string): Promise<Principal | undefined> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, jwks!, { issuer: c.AUTH_JWT_ISSUER, audience: c.AUTH_JWT_AUDIENCE }));
    } catch (err) {
      // The key set cannot be fetched: the token may well be good, so the caller should retry, not re-authenticate.
      if (err instanceof joseErrors.JWKSTimeout || !(err instanceof joseErrors.JOSEError)) {
        throw unavailable('The key set that verifies JWTs cannot be fetched; retry shortly.');
      }
      return undefined;
    }
    const tenant = payload[c.AUTH_JWT_TENANT_CLAIM];
    if (typeof tenant !== 'string' || tenant === '') return undefined;
    return { name: payload.sub ?? 'jwt', tenant, scopes: new Set(scopesOf(payload[c.AUTH_JWT_SCOPES_CLAIM])) };
  }

  return async (token) => {
    // Every stored digest is compared, in constant time, so the time taken says nothing of which matched.
    const digest = sha256(token);
    let found: Principal | undefined;
    for (const t of tokens) if (timingSafeEqual(digest, t.digest) && !found) found = t.principal;
    if (found) return found;
    return jwks && token.split('.').length === 3 ? fromJwt(token) : undefined;
  };
}

const REALM = 'Bearer realm="workflow-state"';
const unauthorized = (detail: string, error?: string) =>
  new HttpProblem(401, 'unauthorized', 'Unauthorized', detail, undefined, {
    'www-authenticate': error ? `${REALM}, error="${error}"` : REALM,
  });
const forbidden = (scope: Scope) =>
  new HttpProblem(403, 'forbidden', 'Forbidden', `This credential lacks the "${scope}" scope.`, undefined, {
    'www-authenticate': `${REALM}, error="insufficient_scope", scope="${scope}"`,
  });

/** The scope a route requires. */
export const requiredScope = (method: string, declared?: Scope): Scope =>
  declared ?? (method === 'GET' || method === 'HEAD' ? 'read' : 'write');

/**
 * Authenticates every request of the routes registered in `app` (an encapsulated scope) and checks
 * the route's scope: 401 without a valid credential, 403 without the scope.
 */
export function registerAuth(app: FastifyInstance, authenticate: Authenticate | undefined) {
  app.decorateRequest('principal', null as unknown as Principal);
  if (!authenticate) {
    app.addHook('onRequest', (req: FastifyRequest, _reply: FastifyReply, done: () => void) => {
      req.principal = ANONYMOUS;
      done();
    });
    return;
  }
  app.addHook('onRequest', async (req: FastifyRequest) => {
    const header = req.headers.authorization;
    const m = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
    if (!m) throw unauthorized('Send a bearer token: Authorization: Bearer <token>.');
    if (!TOKEN68.test(m[1]!)) throw unauthorized('The bearer token is not valid.', 'invalid_token');
    const principal = await authenticate(m[1]!);
    if (!principal) throw unauthorized('The bearer token is not valid.', 'invalid_token');
    const scope = requiredScope(req.method, req.routeOptions.config.scope);
    if (!principal.scopes.has(scope)) throw forbidden(scope);
    req.principal = principal;
  });
}

/** The tenant whose states a request sees, or null for an operator, who sees all. */
export const visibleTenant = (req: FastifyRequest): Tenant =>
  req.principal.tenant === ALL_TENANTS ? null : req.principal.tenant;

/** What a request sees, and where the states it creates go: its tenant, or the default one for an operator. */
export const tenancyOf = (req: FastifyRequest): Tenancy => {
  const sees = visibleTenant(req);
  return { sees, creates: sees ?? DEFAULT_TENANT };
};
