import type { Sql, TxSql } from '../db/client.js';

type Db = Sql | TxSql;

/** A row as postgres.js's `.raw()` gives it: each column's bytes as PostgreSQL sent them. */
export type RawRow = (Buffer | null)[];
export const rawText = (b: Buffer | null | undefined) => (b ? b.toString('utf8') : '');

/** A page of stored documents; `last`: the sort keys of its last item, for the next page's cursor. */
export interface Page<Item = Buffer> {
  items: Item[];
  last?: string[];
  more: boolean;
}

/**
 * A page in PostgreSQL: `limit` rows at most, and the first row whose document would take the
 * page's documents past `maxBytes` (with those before it; the page's own few bytes around them are
 * not counted) ends it early, unless it comes first: a row alone larger than the budget is sent
 * alone. A row that ends the page comes back without its document, so the
 * caller learns there is more without downloading it. `rows` is the query of the candidate rows in
 * page order, with the columns `doc` and `extra` (texts to send; extra may be null), `size` (their
 * bytes) and `position` (the row's sort keys as a JSON array of strings, for the next page's cursor).
 * Each item is its doc and extra, as PostgreSQL sent them.
 */
export async function pageOf(sql: Db, rows: ReturnType<Db>, limit: number, maxBytes: number): Promise<Page<RawRow>> {
  const found = await sql`
    SELECT CASE WHEN p.rn <= ${limit} AND (p.rn = 1 OR p.running <= ${maxBytes}) THEN p.doc END,
           CASE WHEN p.rn <= ${limit} AND (p.rn = 1 OR p.running <= ${maxBytes}) THEN p.extra END, p.position
    FROM (SELECT r.*, row_number() OVER page AS rn, sum(r.size) OVER page AS running
          FROM (${rows} LIMIT ${limit + 1}) r
          WINDOW page AS (ROWS UNBOUNDED PRECEDING)) p
    WHERE p.rn <= 2 OR p.running - p.size <= ${maxBytes} -- the page's rows, and the one after them
    ORDER BY p.rn`.raw() as RawRow[];
  const items = found.filter((r) => r[0] !== null);
  const tail = items.at(-1);
  return { items, more: found.length > items.length, last: tail && JSON.parse(rawText(tail[2])) };
}

