import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';


/** A Gatehouse process started by a test, with everything it printed. */
export interface Running {
  child: ChildProcessWithoutNullStreams;
  output: () => string;
  exited: Promise<number | null>;
}

/**
 * Starts `src/main.ts` on free ports (and no PostgreSQL unless `env` names
 * one) in one node process: the `tsx` command would run it in a child of its
 * own, which a SIGKILL to the parent leaves running.
 */
export function startProcess(env: Record<string, string>): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: '0', MQTT_PORT: '0', DATABASE_URL: '', REDIS_URL: '', ...env },
    stdio: 'pipe',
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** The ports the process printed once it listens; throws if it stopped first. */
export async function waitForPorts(running: Running): Promise<{ http: number; mqtt: number }> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const http = /console\s+http:\/\/[^:]+:(\d+)\//.exec(running.output());
    const mqtt = /MQTT over TCP\s+mqtt:\/\/[^:]+:(\d+)/.exec(running.output());
    if (http && mqtt) return { http: Number(http[1]), mqtt: Number(mqtt[1]) };
    if (running.child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`Gatehouse did not start:\n${running.output()}`);
}

/** Stops the process with `signal` and resolves with its exit code. */
export async function stopProcess(running: Running, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (running.child.exitCode === null && running.child.signalCode === null) running.child.kill(signal);
  return running.exited;
}
