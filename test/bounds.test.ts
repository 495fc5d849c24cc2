import { randomUUID } from 'node:crypto';
import t from 'tap';
import { buildTestApp, json, stateBody } from './helper.js';

/** A state whose document is about `bytes` long, updated at second `k` so the list order is known. */
const sized = (k: number, bytes: number) => stateBody({
  workflow_id: `sized-${k}`,
  updated_at: new Date(Date.UTC(2025, 0, 1, 0, 0, k)).toISOString(),
  context: { pad: 'x'.repeat(bytes) },
});

t.test('LIST_MAX_BYTES: a page ends before the item that would cross it; an item alone larger is sent alone', async (t) => {
  const { app } = await buildTestApp(t, { LIST_MAX_BYTES: '2048' });
  // Newest first: 700, 700, 700, 5000 (larger than the budget), 700 bytes of padding.
  const pads = [700, 5000, 700, 700, 700]; // oldest first
  const ids: string[] = [];
  for (const [k, pad] of pads.entries()) {
    const id = randomUUID();
    ids.unshift(id);
    t.equal((await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(sized(k, pad)) })).statusCode, 201);
  }
  const pages: string[][] = [];
  let cursor: string | null = null;
  do {
    const res: { statusCode: number; rawPayload: Buffer; json(): any } = await app.inject({ url: `/v1/workflows?limit=100${cursor ? `&cursor=${cursor}` : ''}` });
    t.equal(res.statusCode, 200);
    const page: { items: { id: string }[]; next_cursor: string | null } = res.json();
    const itemBytes = page.items.reduce((n, s) => n + Buffer.byteLength(JSON.stringify(s)), 0);
    t.ok(itemBytes <= 2048 || page.items.length === 1, `a page's documents are within the budget, or one (${itemBytes} bytes)`);
    pages.push(page.items.map((s: { id: string }) => s.id));
    cursor = page.next_cursor;
  } while (cursor && pages.length < 10);
  // ~800-byte documents: two fit in 2048 bytes, the third would cross; the 5000-byte one goes alone.
  t.same(pages, [[ids[0], ids[1]], [ids[2]], [ids[3]], [ids[4]]]);
  t.same(pages.flat().sort(), [...ids].sort(), 'every state once, none skipped');
});

t.test('checkpoints with snapshots are paged by bytes too', async (t) => {
  const { app } = await buildTestApp(t, { LIST_MAX_BYTES: '4096' });
  const id = randomUUID();
  await app.inject({ method: 'PUT', url: `/v1/workflows/${id}`, ...json(sized(0, 1500)) });
  const made: string[] = [];
  for (let i = 0; i < 5; i++) {
    made.unshift((await app.inject({ method: 'POST', url: `/v1/workflows/${id}/checkpoints`, ...json({ step_id: `s${i}` }) })).json().id);
  }
  const seen: string[][] = [];
  let cursor: string | null = null;
  do {
    const page: { items: { id: string; snapshot: { id: string } }[]; next_cursor: string | null } = (await app.inject({ url: `/v1/workflows/${id}/checkpoints?include_snapshot=true${cursor ? `&cursor=${cursor}` : ''}` })).json();
    seen.push(page.items.map((c: { id: string; snapshot: { id: string } }) => {
      t.equal(c.snapshot.id, id);
      return c.id;
    }));
    cursor = page.next_cursor;
  } while (cursor && seen.length < 10);
  // Each checkpoint with its snapshot is about 1,900 bytes: two to a page of 4096.
  t.same(seen, [made.slice(0, 2), made.slice(2, 4), made.slice(4)]);
  // Without snapshots the same checkpoints fit one page.
  t.equal((await app.inject({ url: `/v1/workflows/${id}/checkpoints` })).json().items.length, 5);
});

t.test('a page over 1 MiB is streamed in its parts; a small one is sent whole with its length', async (t) => {
  const { app } = await buildTestApp(t);
  for (let k = 0; k < 3; k++) {
    await app.inject({ method: 'PUT', url: `/v1/workflows/${randomUUID()}`, ...json(sized(k, 400_000)) });
  }
  const big = await app.inject({ url: '/v1/workflows' });
  t.equal(big.statusCode, 200);
  t.equal(big.headers['content-length'], undefined, 'streamed');
  t.equal(big.headers['transfer-encoding'], 'chunked');
  t.equal(big.json().items.length, 3);
  const small = await app.inject({ url: '/v1/workflows?limit=1' });
  t.equal(small.headers['content-length'], String(small.rawPayload.length));
  t.equal(small.json().items.length, 1);
});
