import type { Sql, TxSql } from './client.js';

/**
 * True when `sql(...args)` was a tagged template, which makes a Query (a statement, or a fragment
 * nested in one, which never runs); `sql('name')` makes an identifier. For the proxies of a pool.
 */
export const isTemplateCall = (args: unknown[]) => Array.isArray((args[0] as { raw?: unknown } | undefined)?.raw);

/** A statement as it is handed to its pool. */
export interface Statement {
  /** The first SQL keyword, upper case (a CTE's is WITH), or undefined. */
  operation: string | undefined;
  /** The text sent, with $n parameters (never values); known once the statement is built. */
  text(): string | undefined;
}

/** Called as a statement is sent; the function it returns is called as it settles. */
export type StatementObserver = (statement: Statement) => (error?: unknown) => void;

/**
 * What observedSql uses of a postgres.js Query: `handler` sends it to the pool, `string` is its
 * SQL once built, and the connection settles it through `resolve` / `reject`.
 */
interface SentQuery {
  strings: readonly string[];
  handler(q: SentQuery): unknown;
  string?: string;
  resolve(result: unknown): void;
  reject(err: unknown): void;
}

/**
 * `sql` (a pool or a transaction) with `observers` told of every statement it runs: metrics time
 * them, tracing spans them. postgres.js has no hook of its own, and its queries are lazy: a tagged
 * template makes a Query that runs only once awaited, and fragments nested in other queries never
 * run. So a statement is observed when the Query is handed to its pool (`query.handler`, called
 * once, by `execute`), in the context that awaited it, and until it settles, before the awaiting
 * code resumes. Transactions' statements are observed too (not postgres.js's own BEGIN and COMMIT).
 * A cursor settles through promises of its own, so its end would not be seen: the service uses none.
 */
export function observedSql<T extends Sql | TxSql>(sql: T, observers: StatementObserver[]): T {
  const observed = (query: SentQuery) => {
    const send = query.handler;
    query.handler = function (q) {
      const operation = /^\s*([A-Za-z]+)/.exec(q.strings[0] ?? '')?.[1]?.toUpperCase();
      const ends = observers.map((o) => o({ operation, text: () => q.string }));
      const { resolve, reject } = q;
      q.resolve = (result) => {
        for (const end of ends) end();
        resolve(result);
      };
      q.reject = (err) => {
        for (const end of ends) end(err);
        reject(err);
      };
      return send.call(this, q);
    };
    return query;
  };
  // sql.begin(fn) and tx.savepoint(fn) hand `fn` a new sql of the transaction: observed as well.
  const observedScope = (begin: (...a: unknown[]) => unknown) => (...args: unknown[]) => {
    const fn = args.pop() as (tx: TxSql) => unknown;
    return begin(...args, (tx: TxSql) => fn(observedSql(tx, observers)));
  };
  return new Proxy(sql, {
    apply(target, self, args: unknown[]) {
      const made = Reflect.apply(target as unknown as (...a: unknown[]) => unknown, self, args);
      return isTemplateCall(args) ? observed(made as SentQuery) : made;
    },
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver);
      if (typeof value !== 'function') return value;
      if (key === 'unsafe') return (...a: unknown[]) => observed(value.apply(target, a));
      if (key === 'begin' || key === 'savepoint') return observedScope(value.bind(target));
      return value;
    },
  });
}
