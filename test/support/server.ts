import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The service as `npm start` runs it, in a child process of the test. */
export interface Server {
  proc: ChildProcess;
  port: number;
  base: string;
  output: () => string;
  /** The JSON lines the process logged. */
  logLines: () => Record<string, unknown>[];
  exited: Promise<number | null>;
}

/** Starts src/server.ts on loopback with `env` on top of the test's environment. */
export function startServer(env: Record<string, string>, port: number): Server {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'info', SHUTDOWN_DRAIN_S: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  proc.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const logLines = () => out.split('\n').flatMap((l) => {
    try {
      return [JSON.parse(l) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
  return { proc, port, base: `http://127.0.0.1:${port}`, output: () => out, logLines, exited };
}
