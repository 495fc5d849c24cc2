/**
 * wrk as the load generator, where it is installed (`apt-get install wrk`): written in C, it spends
 * about a third of autocannon's CPU per request, which on a 2-core machine is CPU the service and
 * PostgreSQL then have. Each scenario's requests are built by a Lua script with the same
 * distributions as the autocannon scenarios in workload.ts.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Measure } from './run.js';
import { STATES, STEPS, stateBody } from './workload.js';

export function wrkInstalled(): boolean {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    // wrk --version prints its usage and exits 1; only a missing binary is "not installed".
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/** Lua helpers mirroring workload.ts: stateId, randomFinished, randomActive, stateBodyAfterStep. */
const PRELUDE = `
local states = ${STATES}
local steps = ${STEPS}
local function state_id(n) return string.format('00000000-0000-4000-8000-%012x', n) end
local function any_state() return math.random(1, states) end
local function finished()
  local n
  repeat n = math.random(1, states) until n % 10 ~= 0
  return n
end
local function active() return 10 * math.random(1, states / 10) end
local json = { ['content-type'] = 'application/json' }
-- Each thread its own random sequence (Lua's default seed is the same in every state).
local next_thread = 1
setup = function(thread)
  thread:set('thread_no', next_thread)
  next_thread = next_thread + 1
end
init = function(args)
  math.randomseed(os.time() * 1000 + (thread_no or 0) * 7919)
end
local template = ${luaString(JSON.stringify(stateBody()))}
-- One random step of the 20 carries a new output, as stateBodyAfterStep does.
local function body_after_step()
  local k = math.random(1, steps)
  return (template:gsub('"tokens":' .. (k * 10) .. ',', '"tokens":' .. math.random() .. ',', 1))
end
done = function(summary, latency, requests)
  io.write(string.format('WRK {"requests":%d,"duration_us":%d,"p50":%.3f,"p99":%.3f,"status_errors":%d,"socket_errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
`;

/** A Lua long-bracket string literal holding s as is. */
export function luaString(s: string): string {
  let level = '';
  while (s.includes(`]${level}]`)) level += '=';
  return `[${level}[${s}]${level}]`;
}

/** A scenario's `request` function body in Lua, using the prelude's helpers. */
export function wrkRunner(base: string, connections: number, requestLua: string) {
  const dir = mkdtempSync(join(tmpdir(), 'wss-wrk-'));
  const script = join(dir, 'scenario.lua');
  writeFileSync(script, `${PRELUDE}\nrequest = function()\n${requestLua}\nend\n`);
  return (seconds: number) => new Promise<Measure>((resolve, reject) => {
    execFile('wrk', ['-t2', `-c${connections}`, `-d${Math.round(seconds)}s`, '-s', script, base],
      { encoding: 'utf8' }, (err, stdout, stderr) => {
        const line = /^WRK (.*)$/m.exec(stdout);
        if (err || !line) return reject(new Error(`wrk failed: ${err?.message ?? ''} ${stderr} ${stdout}`));
        const r = JSON.parse(line[1]!) as { requests: number; duration_us: number; p50: number; p99: number;
          status_errors: number; socket_errors: number };
        const secs = r.duration_us / 1e6;
        resolve({ rps: r.requests / secs, p50: r.p50, p99: r.p99, errors: r.status_errors + r.socket_errors,
          count: r.requests, seconds: secs });
      });
  });
}
