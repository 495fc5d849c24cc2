import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildTestApp } from '../../../test/helper.js';
import { RemoteCheckpointSaver } from '../src/index.js';

/** Credentials of the service under test: one tenant each, so checkpointers never see each other's threads. */
export const TENANTS = 128;

export interface Service {
  baseUrl: string;
  /** A saver with a tenant of its own, over the one keep-alive agent of this file. */
  saverOfFreshTenant(options?: { pageSize?: number }): RemoteCheckpointSaver;
  stop(): Promise<void>;
}

/**
 * The real service (buildApp, as server.ts builds it) on a fresh, migrated PostgreSQL database
 * (TEST_DATABASE_URL from `npm test`, else one started for this file), listening on 127.0.0.1 on a
 * free port, with TENANTS static tokens (read and write) of tenants `lg-0` ... `lg-127`.
 */
export async function startService(): Promise<Service> {
  const teardowns: Array<() => unknown> = [];
  const tokens = Array.from({ length: TENANTS }, (_, i) => ({
    token: randomBytes(24).toString('base64url'), tenant: `lg-${i}`, scopes: ['read', 'write'], name: `langgraph-${i}`,
  }));
  try {
    const { app } = await buildTestApp({ teardown: (fn) => teardowns.push(fn) }, { AUTH_TOKENS: JSON.stringify(tokens) });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const baseUrl = `http://127.0.0.1:${port}`;
    const agent = new http.Agent({ keepAlive: true, timeout: 4_000, maxSockets: 32 });
    teardowns.push(() => agent.destroy());
    let next = 0;
    return {
      baseUrl,
      saverOfFreshTenant: (options = {}) => {
        const credential = tokens[next++];
        if (!credential) throw new Error(`more than ${TENANTS} checkpointers: raise TENANTS`);
        return new RemoteCheckpointSaver({ baseUrl, token: credential.token, agent, ...options });
      },
      stop: () => runTeardowns(teardowns),
    };
  } catch (err) {
    await runTeardowns(teardowns);
    throw err;
  }
}

async function runTeardowns(fns: Array<() => unknown>) {
  for (const fn of fns.splice(0).reverse()) await fn();
}
