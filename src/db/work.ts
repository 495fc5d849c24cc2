/**
 * Bounds on a request's database work: a pool for reads and one for writes (so writes stuck on a
 * lock cannot take the connections reads need), and a deadline that cancels the request's
 * statements, so that a request answered 503 for lack of time does not write later.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import { deadlineExceeded, sendProblem } from '../errors.js';
import type { Sql, TxSql } from './client.js';
import { isTemplateCall } from './observe.js';

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

/**
 * A postgres.js query as this module sees it: `executed` once handed to the pool, `state` once
 * written to a connection, `active` once it is the connection's current statement, `canceller`
 * until cancelled.
 */
interface TrackedQuery extends PromiseLike<unknown> {
  executed: boolean;
  state: unknown;
  active?: boolean;
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
  /** The client closed the connection before the answer: its statements were cancelled for that. */
  abandoned = false;
  /** Statements the deadline could not cancel, while they have not ended. */
  readonly uncancelled = new Set<TrackedQuery>();
  private readonly queries = new Set<TrackedQuery>();
  private timer?: NodeJS.Timeout;

  constructor(readonly timeoutMs: number) {}

  /** Starts the deadline; `overdue` runs if the request is still unanswered `graceMs` after it. */
  start(overdue: () => void, graceMs = OVERDUE_GRACE_MS) {
    this.timer = setTimeout(() => {
      this.expire();
      this.timer = setTimeout(overdue, graceMs);
    }, this.timeoutMs);
  }

  /** The request was answered (or abandoned): no deadline, nothing to cancel. */
  finish() {
    this.finished = true;
    clearTimeout(this.timer);
    this.queries.clear();
  }

  /** `db`, with every statement made through it (and through its transactions) recorded here. */
  track<T extends Sql | TxSql>(db: T): T {
    const work = this;
    return new Proxy(db, {
      apply(target, self, args: unknown[]) {
        if (work.expired) throw deadlineExceeded(work.timeoutMs);
        const made = Reflect.apply(target as unknown as (...a: unknown[]) => unknown, self, args);
        if (isTemplateCall(args)) work.queries.add(made as TrackedQuery);
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
   *
   * A statement written to a connection behind another one (postgres.js pipelines statements of
   * several requests on a busy connection) is left to run: PostgreSQL cancels whatever a
   * connection runs when the cancel arrives, which by then may be the statement of another
   * request. It is recorded in `uncancelled` until it ends.
   */
  expire() {
    this.expired = true;
    for (const q of this.queries) {
      if (!q.executed || !q.canceller) continue;
      if (q.state && !q.active) {
        this.uncancelled.add(q);
        const ended = () => { this.uncancelled.delete(q); };
        q.then(ended, ended);
        continue;
      }
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
 * Gives every request of `app` (an encapsulated scope) its deadline once it has arrived and was
 * validated, and its pool: reads use `pools.read`, writes `pools.write`, so writes waiting on a
 * locked row never hold (or sit in front of) the connections reads use.
 */
export function registerRequestWork(app: FastifyInstance, pools: { read: Sql; write: Sql }, config: Config) {
  app.decorateRequest('db', null as unknown as Sql);
  app.decorateRequest('work', null);
  app.addHook('preHandler', (req: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const work = new RequestWork(config.REQUEST_TIMEOUT_MS);
    req.work = work;
    // A read: a GET, or a POST that only reads (thread search, whose route requires the read scope).
    const read = req.method === 'GET' || req.method === 'HEAD' || req.routeOptions.config.scope === 'read';
    // A read past its deadline writes nothing when it ends later, so its statements are not
    // recorded (a proxy of the pool costs a GET a quarter of its throughput: docs/performance.md);
    // statement_timeout bounds them. A write's are, to be cancelled.
    req.db = read ? pools.read : work.track(pools.write);
    // The connection closed before the answer was sent: the client is gone, and so is its write's
    // work (it does not land later). A read has nothing to undo.
    if (!read) {
      reply.raw.once('close', () => {
        if (work.finished) return;
        if (!reply.raw.writableFinished) {
          work.abandoned = true;
          work.expire();
        }
        work.finish();
      });
    }
    // A read is answered 503 at its deadline; a write once its cancelled statements ended (the
    // handler's error), or a grace period later when they did not.
    work.start(() => {
      if (reply.sent) return;
      if (!read) req.log.error({ timeout_ms: work.timeoutMs }, 'request overdue: cancelled statements did not end; answering 503');
      void sendProblem(req, reply, deadlineExceeded(work.timeoutMs, work.uncancelled.size > 0));
    }, read ? 0 : OVERDUE_GRACE_MS);
    done();
  });
  app.addHook('onResponse', (req: FastifyRequest, _reply: FastifyReply, done: () => void) => {
    req.work?.finish();
    done();
  });
}
