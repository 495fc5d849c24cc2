#!/usr/bin/env node
// The CLI is this package's TypeScript, compiled to dist/ by its `prepare` script (npm install, npm ci).
import { main } from '../dist/cli.js';

process.exitCode = await main(process.argv.slice(2), { env: process.env, stdout: process.stdout, stderr: process.stderr });
