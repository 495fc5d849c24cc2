import http from 'node:http';
import https from 'node:https';
import { retryDelayMs } from '@workflow-state/client/retry';

/** The problem type of a 404 about a thing the service does not have (not of a URL it has no route for). */
const NOT_FOUND = 'urn:workflow-state:problem:not-found';

/** An answer that is not a success: the service's RFC 9457 problem (application/problem+json). */
export class RemoteCheckpointError extends Error {
  override readonly name = 'RemoteCheckpointError';
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    /** The problem's members (title, detail, instance = the request id, errors), when the body was one. */
    readonly problem: Record<string, unknown> | undefined,
  ) {
    const what = problem && typeof problem.title === 'string'
      ? `${problem.title}${typeof problem.detail === 'string' ? `: ${problem.detail}` : ''}`
      : `HTTP ${status}`;
    super(`${method} ${path}: ${status} ${what}`);
  }
}

export interface TransportOptions {
  baseUrl: string | URL;
  token?: string;
  /** By default, one with keep-alive and at most 32 connections; give your own to size or share the pool. */
  agent?: http.Agent;
  /** A request's deadline, from sending it to the end of its answer. Default 30,000 ms. */
  timeoutMs?: number;
  /** Tries in all for 429 and 503 answers, waiting what Retry-After asks (at most maxRetryDelayMs). Default 3. */
  attempts?: number;
  /** The longest wait before a retry. Default 5,000 ms. */
  maxRetryDelayMs?: number;
}

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: Buffer }

/**
 * One JSON request per call over node:http with a keep-alive agent (global fetch cost 2.3 times the
 * client CPU per request in the design's measurements). Every call the saver makes is idempotent
 * (a put of the same checkpoint again is a 200, writes are insert-once or upserts), so 429, 503 and
 * a reused keep-alive socket the server had just closed are retried.
 */
export class Transport {
  readonly #base: URL;
  readonly #module: typeof http | typeof https;
  readonly #agent: http.Agent;
  readonly #ownAgent: boolean;
  readonly #headers: Record<string, string>;
  readonly #timeoutMs: number;
  readonly #attempts: number;
  readonly #maxRetryDelayMs: number;

  constructor(opts: TransportOptions) {
    this.#base = new URL(String(opts.baseUrl).replace(/\/*$/, '/'));
    if (this.#base.protocol !== 'http:' && this.#base.protocol !== 'https:') {
      throw new TypeError(`baseUrl must be http(s): ${this.#base.protocol}`);
    }
    this.#module = this.#base.protocol === 'https:' ? https : http;
    // At most 32 connections: LangGraph does not wait for putWrites (nor, with durability "async",
    // for put) before its next superstep, so without a bound a busy graph opens a connection for
    // about every other request (6,464 for 6,400 supersteps in the bench) and pays for each on both
    // sides. An idle socket is closed after 4 s, before the server's keep-alive timeout could close it under a request.
    this.#ownAgent = opts.agent === undefined;
    this.#agent = opts.agent ?? new this.#module.Agent({ keepAlive: true, timeout: 4_000, maxSockets: 32 });
    this.#headers = { accept: 'application/json', ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) };
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#attempts = Math.max(1, opts.attempts ?? 3);
    this.#maxRetryDelayMs = opts.maxRetryDelayMs ?? 5_000;
  }

  /**
   * The answer's JSON, `null` for 204, `undefined` for the service's "not found" problem when
   * `notFound` allows it (any other 404, such as a URL no route has, throws); `path` is relative to baseUrl.
   */
  async request<T>(method: string, path: string, body?: unknown, notFound = false): Promise<T | null | undefined> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), 'utf8');
    // Joined, not resolved as a URL would be: an id of ".." (sent as it is by encodeURIComponent)
    // stays a segment of the path instead of removing the one before it.
    const target = this.#base.pathname + path;
    for (let attempt = 1; ; attempt++) {
      const answer = await this.#send(method, target, payload, attempt < this.#attempts);
      if (answer === 'reset') continue; // a reused socket the server had closed: it never read the request
      const { status, headers, body: raw } = answer;
      if (status === 204) return null;
      if (status >= 200 && status < 300) return JSON.parse(raw.toString('utf8')) as T;
      if ((status === 429 || status === 503) && attempt < this.#attempts) {
        await new Promise((r) => setTimeout(r, retryDelayMs(headers['retry-after'], attempt, this.#maxRetryDelayMs)));
        continue;
      }
      let problem: Record<string, unknown> | undefined;
      try {
        const parsed: unknown = JSON.parse(raw.toString('utf8'));
        if (parsed && typeof parsed === 'object') problem = parsed as Record<string, unknown>;
      } catch {
        // not JSON: the status alone
      }
      if (status === 404 && notFound && problem?.type === NOT_FOUND) return undefined;
      throw new RemoteCheckpointError(method, target, status, problem);
    }
  }

  #send(method: string, target: string, payload: Buffer | undefined, mayRetry: boolean): Promise<Answer | 'reset'> {
    const headers = payload === undefined
      ? this.#headers
      : { ...this.#headers, 'content-type': 'application/json', 'content-length': String(payload.length) };
    return new Promise((resolve, reject) => {
      const { hostname, port } = this.#base;
      const req = this.#module.request({
        hostname: hostname.replace(/^\[(.*)\]$/, '$1'), port, path: target, method, agent: this.#agent, headers,
      });
      const deadline = setTimeout(() => req.destroy(new Error(`${method} ${target}: no answer within ${this.#timeoutMs} ms`)),
        this.#timeoutMs);
      const fail = (err: NodeJS.ErrnoException) => {
        clearTimeout(deadline);
        if (mayRetry && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) resolve('reset');
        else reject(err);
      };
      req.on('error', fail);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', fail);
        res.on('end', () => {
          clearTimeout(deadline);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        });
      });
      req.end(payload);
    });
  }

  /** Closes the agent's idle sockets (only the agent this transport made). */
  close(): void {
    if (this.#ownAgent) this.#agent.destroy();
  }
}

