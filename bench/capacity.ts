/**
 * Where the work of a request goes: CPU time of the service's process and of PostgreSQL's
 * processes, WAL written and WAL fsyncs, per request, measured around a run of one scenario. The
 * figures behind docs/scaling.md: how many requests one replica and one PostgreSQL serve, and how
 * many replicas one PostgreSQL feeds.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Sql } from '../src/db/client.js';
import type { Measure } from './run.js';

/** Linux's clock ticks per second for /proc's CPU times (USER_HZ). */
const TICKS = 100;

/** CPU seconds (user + system) a process has used, from /proc (0 once it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return 0;
  }
}

/**
 * The PostgreSQL server listening on `port` on this machine: its postmaster (found by its
 * command line) and every process it started, each sampled for CPU.
 */
export function postgresProcesses(port: number): number[] {
  const pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  const parentOf = new Map<number, number>();
  let postmaster: number | undefined;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      parentOf.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (/(^|\/)postgres$/.test(cmd[0] ?? '') && cmd.includes('-p') && cmd[cmd.indexOf('-p') + 1] === String(port)) postmaster = pid;
    } catch {
      // gone meanwhile
    }
  }
  if (postmaster === undefined) return [];
  return [postmaster, ...pids.filter((p) => parentOf.get(p) === postmaster)];
}

/** PostgreSQL's WAL position and count of WAL fsyncs (pg_stat_io in 16+, pg_stat_wal before). */
async function walCounters(sql: Sql): Promise<{ lsn: string; syncs: number }> {
  const [at] = await sql<{ lsn: string; v: number }[]>`
    SELECT pg_current_wal_lsn()::text AS lsn, current_setting('server_version_num')::int AS v`;
  const [wal] = await sql.unsafe<{ syncs: string }[]>(at!.v >= 180000
    ? `SELECT COALESCE(sum(fsyncs), 0)::text AS syncs FROM pg_stat_io WHERE object = 'wal'`
    : 'SELECT wal_sync::text AS syncs FROM pg_stat_wal');
  return { lsn: at!.lsn, syncs: Number(wal!.syncs) };
}

export interface Capacity {
  scenario: string;
  rps: number;
  errors: number;
  /** CPU milliseconds per request, of the service's process and of PostgreSQL's. */
  serviceCpuMs: number;
  postgresCpuMs: number | null;
  /** Share of one core each used over the run. */
  serviceCores: number;
  postgresCores: number | null;
  walBytesPerRequest: number;
  walSyncsPerRequest: number;
}

/**
 * Runs `load` for `seconds` and returns what each request cost; `servicePid` is the process that
 * issues the statements (the service's, or this one for the direct arm). PostgreSQL's CPU is measured when
 * it runs on this machine (the embedded one); against BENCH_DATABASE_URL elsewhere it is null.
 */
export async function measureCapacity(scenario: string, load: (seconds: number) => Promise<Measure>, seconds: number,
  opts: { servicePid: number; postgresPort: number; sql: Sql }): Promise<Capacity> {
  // Backends started during the run count from 0; the pools' connections outlive it.
  const pgCpu = () => postgresProcesses(opts.postgresPort).reduce((a, p) => a + cpuSeconds(p), 0);
  const local = postgresProcesses(opts.postgresPort).length > 0;
  const wal0 = await walCounters(opts.sql);
  const svc0 = cpuSeconds(opts.servicePid);
  const pg0 = pgCpu();
  const t0 = performance.now();
  const m = await load(seconds);
  const elapsed = (performance.now() - t0) / 1000;
  const svcCpu = cpuSeconds(opts.servicePid) - svc0;
  const pgCpuUsed = pgCpu() - pg0;
  const wal1 = await walCounters(opts.sql);
  const [diff] = await opts.sql<{ bytes: string }[]>`
    SELECT pg_wal_lsn_diff(${wal1.lsn}::pg_lsn, ${wal0.lsn}::pg_lsn)::text AS bytes`;
  const n = m.count;
  return {
    scenario,
    rps: m.rps,
    errors: m.errors,
    serviceCpuMs: (svcCpu * 1000) / n,
    postgresCpuMs: local ? (pgCpuUsed * 1000) / n : null,
    serviceCores: svcCpu / elapsed,
    postgresCores: local ? pgCpuUsed / elapsed : null,
    walBytesPerRequest: Number(diff!.bytes) / n,
    walSyncsPerRequest: (wal1.syncs - wal0.syncs) / n,
  };
}
