/**
 * Everything the benchmark starts is registered here, so that a normal end,
 * an exception and Ctrl-C alike leave no broker, worker or database behind.
 * Brokers run in process groups of their own (spawned `detached`): a broker's
 * children (npm's, PGlite's, Mosquitto's) go with it when its group is killed.
 */
import { spawnSync } from 'node:child_process';

const groups = new Set<number>();
const children = new Set<number>();
const finalizers = new Set<() => void>();

/** A process group (the pid of its leader) to SIGKILL when the run ends. */
export function trackGroup(pid: number): () => void {
  groups.add(pid);
  return () => groups.delete(pid);
}

/** A child process (not a group leader) to SIGKILL when the run ends. */
export function trackChild(pid: number): () => void {
  children.add(pid);
  return () => children.delete(pid);
}

/** Synchronous work (stopping a database, removing a directory) for the end of the run. */
export function atExit(finalizer: () => void): () => void {
  finalizers.add(finalizer);
  return () => finalizers.delete(finalizer);
}

export function killGroup(pid: number, signal: NodeJS.Signals = 'SIGKILL') {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** Kills every tracked process and runs the finalizers; safe to call twice. */
export function cleanupNow() {
  for (const pid of groups) killGroup(pid);
  groups.clear();
  for (const pid of children) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
  for (const finalizer of [...finalizers].reverse()) {
    try {
      finalizer();
    } catch (error) {
      console.error(`cleanup: ${(error as Error).message}`);
    }
  }
  finalizers.clear();
}

let installed = false;

/** Ctrl-C, SIGTERM and process exit all end in cleanupNow(). */
export function installCleanup() {
  if (installed) return;
  installed = true;
  process.on('exit', cleanupNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      console.error(`\n${signal}: stopping every broker and database the benchmark started`);
      cleanupNow();
      process.exit(130);
    });
  }
}

/** Pids still alive among `pids`. */
export function alive(pids: number[]): number[] {
  return pids.filter((pid) => {
    try {
      process.kill(pid, 0);
      return spawnSync('ps', ['-o', 'stat=', '-p', String(pid)]).stdout.toString().trim().startsWith('Z') === false;
    } catch {
      return false;
    }
  });
}
