import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // This package, wherever vitest is started from (npm test starts it at the repository's root).
  root: fileURLToPath(new URL('.', import.meta.url)),
  test: {
    // LangGraph's validation suite calls the global describe/it/expect/beforeAll.
    globals: true,
    include: ['test/**/*.test.ts'],
    // One file at a time: each starts the service on a database of its own, on 2 shared cores.
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
});
