// npm runs this after every install (package.json "postinstall"): it fixes the queue that
// postgres.js (3.4.x) keeps its connections in, in each of the package's builds (ESM, CommonJS,
// Cloudflare). Plain JavaScript with no dependencies, so it also runs after `npm install --omit=dev`.
//
// The quirk: while every connection of a pool is busy, postgres.js pipelines each new query onto
// the connection at the head of its `busy` queue, with `busy.shift()` and then `busy.push()`. The
// queue's `shift()` leaves a hole at the front of its array instead of shrinking it, and only
// resets the array once it is empty; `remove()` runs `indexOf` from the start of the array. So
// while a pool stays saturated, its array grows by one hole per query and every query scans all
// of them: a service under sustained load got slower by the minute (GETs from 0.18 to 0.28 ms of
// CPU each over a minute in docs/performance.md), and the array grew without bound.
//
// The fix keeps the queue's behaviour: `remove()` searches from the live front only, and `shift()`
// drops the holes once they are more than half of the array.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const BUGGY_REMOVE = `    remove: (x) => {
      const index = xs.indexOf(x)
      return index === -1
        ? null
        : (xs.splice(index, 1), x)
    },`;
const FIXED_REMOVE = `    remove: (x) => {
      const i = xs.indexOf(x, index)
      return i === -1
        ? null
        : (xs.splice(i, 1), x)
    },`;
const BUGGY_SHIFT = `      if (index === xs.length) {
        index = 0
        xs = []
      } else {`;
const FIXED_SHIFT = `      if (index === xs.length) {
        index = 0
        xs = []
      } else if (index > 64 && index * 2 > xs.length) {
        xs = xs.slice(index)
        index = 0
      } else {`;
export const MARKER = '// patched by workflow-state-service: scripts/patch-postgres-queue.mjs';

/** The patched text of one queue.js, the same text when already patched, or null when unknown. */
export function patchQueueSource(text) {
  if (text.includes(MARKER)) return text;
  if (!text.includes(BUGGY_REMOVE) || !text.includes(BUGGY_SHIFT)) return null;
  return `${MARKER}\n${text.replace(BUGGY_REMOVE, FIXED_REMOVE).replace(BUGGY_SHIFT, FIXED_SHIFT)}`;
}

/** The package's queue.js files: src (ESM), cjs/src and cf/src beside the resolved package. */
export function queueFiles() {
  const require = createRequire(import.meta.url);
  // The CommonJS entry is <package>/cjs/src/index.js.
  const root = join(dirname(require.resolve('postgres')), '..', '..');
  return ['src', 'cjs/src', 'cf/src'].map((d) => join(root, d, 'queue.js')).filter((f) => existsSync(f));
}

function main() {
  let files;
  try {
    files = queueFiles();
  } catch {
    return; // postgres is not installed (yet): nothing to patch
  }
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const patched = patchQueueSource(text);
    if (patched === null) {
      console.warn(`patch-postgres-queue: ${file} is not the queue this patch knows (postgres.js 3.4.x); left as is`);
    } else if (patched !== text) {
      writeFileSync(file, patched);
      console.log(`patch-postgres-queue: patched ${file}`);
    }
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
