import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..', '..');

/** A Gatehouse process started by a test, with everything it printed. */
export interface Running {
  child: ChildProcessWithoutNullStreams;
  output: () => string;
  exited: Promise<number | null>;
}

let built: string | undefined;

/** Set by the process project's global setup (tests/support/bundleSetup.ts): the run's bundle. */
export const BUNDLE_ENV = 'GATEHOUSE_TEST_BUNDLE';

/**
 * What ships: `npm run build`'s bundle of the current source. Under vitest the
 * process project's global setup builds it once per run; otherwise (a file run
 * outside that project, `npm run soak`) once per process.
 */
function bundle(): string {
  built ??= process.env[BUNDLE_ENV] || buildBundle().main;
  return built;
}

/** The admin command of the same bundle (`npm run admin` runs `node dist/bin/admin.js`). */
export function bundledAdminCommand(): string {
  return path.join(path.dirname(bundle()), 'admin.js');
}

/**
 * Builds the bundle into a directory of this process' own (test files run in
 * parallel, and a bundle being rewritten must not be started), removed when
 * the process exits. It sits two levels under the repository, as
 * `dist/bin/main.js` does, because the bundle finds `drizzle/`, `public/` and
 * `node_modules/` relative to itself. Building again rewrites it in place.
 */
export function buildBundle(): { main: string; remove(): void } {
  removeBundlesOfDeadProcesses();
  const outdir = path.join(root, 'dist', `test-${process.pid}`);
  execFileSync('npm', ['run', '--silent', 'build', '--', `--outdir=${outdir}`], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  const remove = () => rmSync(outdir, { recursive: true, force: true });
  process.once('exit', remove);
  return { main: path.join(outdir, 'main.js'), remove };
}

/** Test runners may kill their workers before `exit` handlers run: clean up after them. */
function removeBundlesOfDeadProcesses() {
  const dist = path.join(root, 'dist');
  for (const entry of existsSync(dist) ? readdirSync(dist) : []) {
    const pid = Number(/^test-(\d+)$/.exec(entry)?.[1]);
    if (!pid || isAlive(pid)) continue;
    rmSync(path.join(dist, entry), { recursive: true, force: true });
  }
}

/** Whether a process `pid` lives (signal 0). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Starts Gatehouse as the README's start command does (`node
 * dist/bin/main.js`: one node process, compiled JavaScript) on free ports,
 * with no PostgreSQL or Redis unless `env` names them.
 */
export function startProcess(env: Record<string, string>): Running {
  const child = spawn(process.execPath, [bundle()], {
    cwd: root,
    env: { ...process.env, HOST: '127.0.0.1', PORT: '0', MQTT_PORT: '0', DATABASE_URL: '', REDIS_URL: '', ...env },
    stdio: 'pipe',
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/**
 * Starts a script of the test support (TypeScript, through tsx) as startProcess
 * starts the service: same environment and free ports. It prints the ports as
 * main.js does.
 */
export function startScript(script: string, env: Record<string, string>): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'tests', 'support', script)], {
    cwd: root,
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

/** The live child processes of `pid` (Linux /proc). */
export function childProcesses(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name may hold spaces: fields are counted after its closing parenthesis.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/** Resident memory of `pid` in bytes (Linux /proc). */
export function residentBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}
