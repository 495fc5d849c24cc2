/**
 * The saver's HTTP behaviour that the service cannot be made to show on demand (a 503, a request
 * never answered), against a plain node:http server on loopback that answers as scripted.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RemoteCheckpointError, RemoteCheckpointSaver } from '../src/index.js';

type Answer = { status: number; headers?: Record<string, string>; body?: unknown } | 'hang';

let server: http.Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  server = undefined;
});

/** A server answering its requests with `answers` in turn; what it was asked, and on how many connections. */
async function scripted(answers: Answer[]) {
  const seen: Array<{ method: string; url: string; authorization?: string; body: string }> = [];
  let connections = 0;
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization,
        body: Buffer.concat(chunks).toString('utf8') });
      const answer = answers.shift() ?? { status: 500 };
      if (answer === 'hang') return;
      const body = answer.body === undefined ? '' : JSON.stringify(answer.body);
      res.writeHead(answer.status, { 'content-type': 'application/problem+json', ...answer.headers });
      res.end(body);
    });
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { baseUrl, seen, connections: () => connections };
}

const config = { configurable: { thread_id: 't 1', checkpoint_ns: 'sub:x', checkpoint_id: 'c/1' } };

describe('RemoteCheckpointSaver over HTTP', () => {
  it('repeats a 503 with the same request', async () => {
    const s = await scripted([{ status: 503, headers: { 'retry-after': '0' }, body: { title: 'Service Unavailable' } },
      { status: 204 }]);
    const saver = new RemoteCheckpointSaver({ baseUrl: s.baseUrl, token: 'tok-1' });
    await saver.putWrites(config, [['a', 1]], 'task', 'path');
    expect(s.seen.map((r) => `${r.method} ${r.url} ${r.authorization}`)).toEqual([
      'PUT /v1/threads/t%201/checkpoints/c%2F1/writes/task?ns=sub%3Ax Bearer tok-1',
      'PUT /v1/threads/t%201/checkpoints/c%2F1/writes/task?ns=sub%3Ax Bearer tok-1',
    ]);
    expect(s.seen[1]!.body).toBe(s.seen[0]!.body);
    expect(JSON.parse(s.seen[0]!.body)).toEqual({
      task_path: 'path', writes: [{ idx: 0, channel: 'a', type: 'json', data: Buffer.from('1').toString('base64') }],
    });
    saver.close();
  });

  it('throws the service\'s problem after `attempts` tries', async () => {
    const problem = { type: 'urn:workflow-state:problem:unavailable', title: 'Service Unavailable', status: 503,
      detail: 'The database did not answer in time.', instance: 'req-7' };
    const s = await scripted([503, 503].map((status) => ({ status, headers: { 'retry-after': '0' }, body: problem })));
    const saver = new RemoteCheckpointSaver({ baseUrl: s.baseUrl, attempts: 2 });
    const err = await saver.deleteThread('t').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteCheckpointError);
    expect(err).toMatchObject({ status: 503, method: 'DELETE', path: '/v1/threads/t', problem,
      message: 'DELETE /v1/threads/t: 503 Service Unavailable: The database did not answer in time.' });
    expect(s.seen).toHaveLength(2);
    saver.close();
  });

  it('sends ids of "." and ".." as path segments, not as a URL\'s dot segments', async () => {
    const s = await scripted([{ status: 204 }, { status: 204 }]);
    const saver = new RemoteCheckpointSaver({ baseUrl: `${s.baseUrl}/prefix` });
    await saver.putWrites({ configurable: { thread_id: '..', checkpoint_ns: '', checkpoint_id: '.' } }, [['a', 1]], '..');
    await saver.deleteThread('..');
    expect(s.seen.map((r) => `${r.method} ${r.url}`)).toEqual([
      'PUT /prefix/v1/threads/../checkpoints/./writes/..?ns=', 'DELETE /prefix/v1/threads/..',
    ]);
    saver.close();
  });

  it('answers undefined for a missing checkpoint, and throws on any other 404', async () => {
    const missing = { type: 'urn:workflow-state:problem:not-found', title: 'Not Found', status: 404 };
    const noRoute = { type: 'urn:workflow-state:problem:no-route', title: 'Not Found', status: 404 };
    const s = await scripted([{ status: 404, body: missing }, { status: 404, body: noRoute }, { status: 404, body: missing }]);
    const saver = new RemoteCheckpointSaver({ baseUrl: s.baseUrl });
    expect(await saver.getTuple({ configurable: { thread_id: 't' } })).toBeUndefined();
    // A base URL that is not the service's: not an empty thread.
    await expect(saver.getTuple({ configurable: { thread_id: 't' } })).rejects.toMatchObject({ status: 404, problem: noRoute });
    await expect(saver.deleteThread('t')).rejects.toMatchObject({ status: 404 });
    expect(s.seen.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /v1/threads/t/checkpoints/latest?ns=',
      'GET /v1/threads/t/checkpoints/latest?ns=', 'DELETE /v1/threads/t']);
    saver.close();
  });

  it('gives up on a request not answered within timeoutMs', async () => {
    const s = await scripted(['hang']);
    const saver = new RemoteCheckpointSaver({ baseUrl: s.baseUrl, timeoutMs: 200 });
    await expect(saver.getTuple(config)).rejects.toThrow('GET /v1/threads/t%201/checkpoints/c%2F1?ns=sub%3Ax: no answer within 200 ms');
    saver.close();
  });

  it('keeps at most 32 connections open however many calls are in flight', async () => {
    const s = await scripted(Array.from({ length: 200 }, () => ({ status: 204 })));
    const saver = new RemoteCheckpointSaver({ baseUrl: s.baseUrl });
    await Promise.all(Array.from({ length: 200 }, (_, i) => saver.deleteThread(`t${i}`)));
    expect(s.seen).toHaveLength(200);
    expect(s.connections()).toBe(32);
    saver.close();
  });
});
