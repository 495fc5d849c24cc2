/**
 * Bounds on a request's database work: admission of writes to the pool (a bounded wait, and
 * connections kept for reads that writes stuck on a lock cannot take), and a deadline that cancels
 * the request's statements, so that a request answered 503 for lack of time does not write later.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import { deadlineExceeded, sendProblem, unavailable } from '../errors.js';
import type { Sql, TxSql } from './client.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The pool as this request uses it: its statements end with its deadline. */
    db: Sql;
    work: RequestWork | null;
  }
}

/**
 * After the deadline, how long cancelled statements have to fail before the request is answered
 * 503 anyway (PostgreSQL may be unreachable, and the cancel request with it).
 */
const OVERDUE_GRACE_MS = 1000;

/** A postgres.js query as this module sees it: `executed` once sent to the pool, `canceller` until cancelled. */
interface TrackedQuery {
  executed: boolean;
  canceller: ((q: TrackedQuery) => Promise<void>) | null;
}

const WORK = Symbol('work');

/**
 * The statements of one request. `sql` is the pool as the request uses it: each statement it makes
 * is recorded, and once the deadline passes, those still waiting or running are cancelled and no
 * new one starts.
 */
export class RequestWork {
  expired = false;
  finished = false;
  private readonly queries = new Set<TrackedQuery>();
  private timer?: NodeJS.Timeout;
  /** Gives back the request's admission to the database. */
  release?: () => void;

  constructor(readonly timeoutMs: number) {}

  /** Starts the deadline; `overdue` runs if the request is still unanswered `graceMs` after it. */
  start(overdue: () => void, graceMs = OVERDUE_GRACE_MS) {
    this.timer = setTimeout(() => {
      this.expire();
      this.timer = setTimeout(overdue, graceMs);
    }, this.timeoutMs);
  }

  /** The request was answered (or abandoned): no deadline, no admission, nothing to cancel. */
  finish() {
    this.finished = true;
    clearTimeout(this.timer);
    this.release?.();
    this.queries.clear();
  }

  /** `db`, with every statement made through it (and through its transactions) recorded here. */
  track<T extends Sql | TxSql>(db: T): T {
    const work = this;
    return new Proxy(db, {
      apply(target, self, args: unknown[]) {
        if (work.expired) throw deadlineExceeded(work.timeoutMs);
        const made = Reflect.apply(target as unknown as (...a: unknown[]) => unknown, self, args);
        // A tagged template makes a query (or a fragment, which is never executed); sql('name') an identifier.
        if (Array.isArray((args[0] as { raw?: unknown } | undefined)?.raw)) work.queries.add(made as TrackedQuery);
        return made;
      },
      get: (target, key, receiver) => (key === WORK ? work : Reflect.get(target, key, receiver)),
    });
  }

  /**
   * Cancels every statement sent and not finished: one waiting for a connection leaves the queue,
   * one running is cancelled by PostgreSQL (its transaction rolls back). A statement that already
   * finished is left alone; a COMMIT, which postgres.js makes itself, is never cancelled, so a
   * request whose transaction committed in time is answered as it succeeded.
   */
  expire() {
    this.expired = true;
    for (const q of this.queries) {
      if (!q.executed || !q.canceller) continue;
      // Query.cancel() drops the promise that the cancel request makes; it is caught here instead
      // (with PostgreSQL gone the cancel request fails, and so does the statement).
      const cancel = q.canceller;
      q.canceller = null;
      cancel(q).catch(() => {});
    }
    this.queries.clear();
  }
}

/** The request work a tracked pool records into, if any: transactions record into it as well. */
export const workOf = (db: Sql | TxSql): RequestWork | undefined => (db as unknown as { [WORK]?: RequestWork })[WORK];

/**
 * Admission of writes to the database: at most `max` at once, so that writes waiting on a row lock
 * hold no more than their share of the pool and reads (which are not admitted, only pipelined by
 * postgres.js onto the pool's connections) still find connections. A write waits at most `waitMs`
 * for its place, then gets a 503.
 */
export class WriteAdmission {
  private writers = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly max: number, readonly waitMs: number) {}

  /** Admits a write; resolves with its release. */
  async acquire(): Promise<() => void> {
    if (this.writers < this.max) return this.enter();
    return new Promise((resolve, reject) => {
      const admit = () => {
        clearTimeout(timer);
        resolve(this.enter());
      };
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(admit), 1);
        reject(unavailable(`No database connection became free for a write within ${this.waitMs} ms ` +
          '(DATABASE_POOL_WAIT_MS); retry shortly.'));
      }, this.waitMs);
      this.waiting.push(admit);
    });
  }

  private enter(): () => void {
    this.writers++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.writers--;
      this.waiting.shift()?.();
    };
  }
}

/** Connections of a pool of `max` that writes may hold: a quarter (at least one) is kept for reads. */
export const writerShare = (max: number) => (max === 1 ? 1 : max - Math.max(1, Math.floor(max / 4)));

/**
 * Gives every request of `app` (an encapsulated scope) its deadline, and every write its admission
 * to the database, once the request has arrived and was validated.
 */
export function registerRequestWork(app: FastifyInstance, sql: Sql, config: Config) {
  const writes = new WriteAdmission(writerShare(config.DATABASE_POOL_MAX), config.DATABASE_POOL_WAIT_MS);
  app.decorateRequest('db', null as unknown as Sql);
  app.decorateRequest('work', null);
  app.addHook('preHandler', async (req: FastifyRequest, reply: FastifyReply) => {
    const work = new RequestWork(config.REQUEST_TIMEOUT_MS);
    req.work = work;
    const read = req.method === 'GET' || req.method === 'HEAD';
    // A read past its deadline writes nothing when it ends later, so its statements are not
    // recorded (a proxy of the pool costs a GET a quarter of its throughput: docs/performance.md);
    // statement_timeout bounds them. A write's are, to be cancelled.
    req.db = read ? sql : work.track(sql);
    // The connection closed before the answer was sent: the client is gone, and so is its work
    // (a write it gave up on does not land later; its admission is given back now).
    reply.raw.once('close', () => {
      if (work.finished) return;
      if (!reply.raw.writableFinished) work.expire();
      work.finish();
    });
    // A read is answered 503 at its deadline; a write once its cancelled statements ended (the
    // handler's error), or a grace period later when they did not.
    work.start(() => {
      if (reply.sent) return;
      if (!read) req.log.error({ timeout_ms: work.timeoutMs }, 'request overdue: cancelled statements did not end; answering 503');
      void sendProblem(req, reply, deadlineExceeded(work.timeoutMs));
    }, read ? 0 : OVERDUE_GRACE_MS);
    if (read) return;
    const release = await writes.acquire();
    // A client that went away while the write waited has had its request finished already.
    if (work.finished) release();
    else work.release = release;
  });
  app.addHook('onResponse', async (req: FastifyRequest) => req.work?.finish());
}
