/**
 * The steps of a whole-state save, rendered by the service from the validated body, so that
 * PostgreSQL neither reads them back nor renders them (wss_replace_state, migrations 0005-0006).
 * Timestamps come out exactly as PostgreSQL stores and wss_ts prints them: UTC, microseconds, Z.
 */
import type { StepStateInput } from '../schemas/workflows.js';

const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:Z|([+-])(\d{2}):(\d{2}))$/;
const CANONICAL = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const SECONDS_PER_DAY = 86_400;

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

function civilFromDays(days: number): [number, number, number] {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

/** C's rint (round half to even), as PostgreSQL rounds a fraction of a second to microseconds. */
function rint(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff !== 0.5) return diff < 0.5 ? f : f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** One step as a state's document shows it (and as the step-writing functions read it). */
export interface StepRecord {
  step_id: string;
  status: string;
  started_at: string | null;
  completed_at: string | null;
  outputs: unknown;
  error: string | null;
  retry_count: number;
}

export function stepRecord(stepId: string, s: StepStateInput): StepRecord {
  return {
    step_id: stepId,
    status: s.status,
    started_at: s.started_at ?? null,
    completed_at: s.completed_at ?? null,
    outputs: s.outputs ?? null,
    error: s.error ?? null,
    retry_count: s.retry_count ?? 0,
  };
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');

/**
 * An RFC 3339 timestamp (as the Timestamp schema accepts it) as PostgreSQL's timestamptz keeps it
 * and wss_ts prints it; undefined when the instant in UTC falls outside years 1-9999, which
 * wss_ts cannot print in this form (PostgreSQL renders those).
 */
export function canonicalTimestamp(s: string): string | undefined {
  // Already in that form (what GET answers, so what an orchestrator usually sends back).
  if (s.length === 27 && CANONICAL.test(s)) return s;
  const m = TIMESTAMP.exec(s);
  if (!m) return undefined;
  // PostgreSQL reads the fraction with strtod and rounds fraction * 1e6 with rint.
  let micros = m[7] ? rint(Number(`0${m[7]}`) * 1e6) : 0;
  const offset = m[8] ? (m[8] === '-' ? -1 : 1) * (Number(m[9]) * 3600 + Number(m[10]) * 60) : 0;
  let secs = daysFromCivil(Number(m[1]), Number(m[2]), Number(m[3])) * SECONDS_PER_DAY +
    Number(m[4]) * 3600 + Number(m[5]) * 60 + Number(m[6]) - offset;
  if (micros >= 1_000_000) {
    secs += 1;
    micros -= 1_000_000;
  }
  const days = Math.floor(secs / SECONDS_PER_DAY);
  const rest = secs - days * SECONDS_PER_DAY;
  const [y, mo, d] = civilFromDays(days);
  if (y < 1 || y > 9999) return undefined;
  return `${pad(y, 4)}-${pad(mo, 2)}-${pad(d, 2)}T${pad(Math.floor(rest / 3600), 2)}:` +
    `${pad(Math.floor((rest % 3600) / 60), 2)}:${pad(rest % 60, 2)}.${pad(micros, 6)}Z`;
}

/**
 * A save's steps as the document shows them: a JSON object of step records by step id, ordered by
 * id, timestamps as wss_ts prints them. wss_replace_state puts it in the state's document as is
 * (where steps are stored, 0006). Undefined when a timestamp is one the service does not render itself.
 */
export function renderSteps(steps: Record<string, StepStateInput> | undefined): string | undefined {
  const out: Record<string, StepRecord> = {};
  for (const id of Object.keys(steps ?? {}).sort()) {
    const record = stepRecord(id, steps![id]!);
    const startedAt = record.started_at === null ? null : canonicalTimestamp(record.started_at);
    const completedAt = record.completed_at === null ? null : canonicalTimestamp(record.completed_at);
    if (startedAt === undefined || completedAt === undefined) return undefined;
    out[id] = { ...record, started_at: startedAt, completed_at: completedAt };
  }
  return JSON.stringify(out);
}
