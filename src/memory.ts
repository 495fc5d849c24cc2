import type { FastifyInstance } from 'fastify';

export interface LargeBodyGcOptions {
  /** A full collection: `globalThis.gc`, present when node runs with --expose-gc (as `npm start` does). */
  gc?: (() => void) | undefined;
  /** A request or response body above this many bytes counts as large. */
  thresholdBytes?: number;
  /** At most one collection per this many milliseconds. */
  intervalMs?: number;
}

/**
 * Full garbage collections around large bodies (a state with a context of megabytes), at most one
 * a second. Such a request leaves several copies of its body behind (raw bytes, text, the parsed
 * value, the JSON sent to PostgreSQL, the answer); V8 collects them only once the heap has grown
 * further, so a few large saves in a row would add hundreds of MB of resident memory. One
 * collection runs before the handler of a large request (the raw bytes and text are garbage by
 * then, so they are gone before the database work allocates more), one soon after a large answer.
 * Without --expose-gc this does nothing.
 */
export function registerLargeBodyGc(app: FastifyInstance, opts: LargeBodyGcOptions = {}) {
  const gc = opts.gc ?? (globalThis as { gc?: () => void }).gc;
  if (typeof gc !== 'function') return;
  const threshold = opts.thresholdBytes ?? 1024 * 1024;
  const interval = opts.intervalMs ?? 1000;
  let last = -Infinity;
  let timer: NodeJS.Timeout | undefined;
  const collect = () => {
    last = Date.now();
    gc();
  };

  // Callback hooks, not async ones: they run on every request and mostly do nothing.
  app.addHook('preHandler', (req, _reply, done) => {
    if (Number(req.headers['content-length'] ?? 0) > threshold && Date.now() - last >= interval) collect();
    done();
  });
  app.addHook('onResponse', (req, reply, done) => {
    const large = Number(req.headers['content-length'] ?? 0) > threshold ||
      Number(reply.getHeader('content-length') ?? 0) > threshold;
    if (large && !timer) {
      timer = setTimeout(() => {
        timer = undefined;
        collect();
      }, Math.max(10, last + interval - Date.now()));
      timer.unref();
    }
    done();
  });
  app.addHook('onClose', async () => clearTimeout(timer));
}
