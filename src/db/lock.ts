import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';

export interface DataDirLock {
  release(): Promise<void>;
}

export class DataDirLockedError extends Error {
  constructor(
    readonly dir: string,
    /** The holder's pid as it wrote it, when it did. */
    readonly pid: number | undefined,
  ) {
    super(
      `The data directory ${dir} is in use by another Gatehouse process${pid ? ` (pid ${pid})` : ''}. ` +
        'The embedded database serves one process only: stop the other process, ' +
        'or give this one its own DATA_DIR, or use DATABASE_URL for several nodes.',
    );
  }
}

/**
 * Takes an exclusive lock on `dir` that the kernel releases when its holder
 * dies, however it dies: LevelDB's own lock (fcntl(2) on `dir/lock/LOCK`,
 * through `classic-level`, which Gatehouse ships for the broker store anyway).
 * A lock that trusted a pid file would refuse to start after a crash whenever
 * a new process got the dead one's pid, as containers often do. The holder
 * writes its pid to `gatehouse.pid` for the message a second process prints;
 * that file is never what decides.
 */
export async function acquireDataDirLock(dir: string): Promise<DataDirLock> {
  const pidFile = path.join(dir, 'gatehouse.pid');
  const lock = new ClassicLevel(path.join(dir, 'lock'));
  try {
    await lock.open();
  } catch (error) {
    if (!isLockHeld(error)) throw error;
    const pid = Number.parseInt(await readFile(pidFile, 'utf8').catch(() => ''), 10);
    throw new DataDirLockedError(dir, Number.isInteger(pid) && pid > 0 ? pid : undefined);
  }
  // The lock file of earlier versions: they took no kernel lock, so one still
  // running is seen only by the pid its file names. A file that names no live
  // Gatehouse (a crash left it; the pid is now another program's) is removed.
  const oldLockFile = path.join(dir, 'gatehouse.lock');
  const oldHolder = Number.parseInt(await readFile(oldLockFile, 'utf8').catch(() => ''), 10);
  if (Number.isInteger(oldHolder) && oldHolder > 0 && oldHolder !== process.pid && (await isGatehouseProcess(oldHolder))) {
    await lock.close();
    throw new DataDirLockedError(dir, oldHolder);
  }
  await rm(oldLockFile, { force: true });
  await writeFile(pidFile, String(process.pid));
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      await rm(pidFile, { force: true });
      await lock.close();
    },
  };
}

/**
 * True only for LevelDB's "lock held" error (classic-level: code
 * LEVEL_LOCKED, as the cause of the open error). Any other failure to open
 * (permissions, a full disk, a path that is not a directory) is thrown as
 * itself, not reported as another process.
 */
function isLockHeld(error: unknown): boolean {
  const code = (value: unknown) => (value as { code?: unknown } | undefined)?.code;
  return code(error) === 'LEVEL_LOCKED' || code((error as { cause?: unknown }).cause) === 'LEVEL_LOCKED';
}

/** True when `pid` runs a Gatehouse (or any node) process, by its /proc command line. */
async function isGatehouseProcess(pid: number): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  if (!cmdline) return false;
  const [program = ''] = cmdline.split('\0');
  return /gatehouse/i.test(cmdline) || /(^|\/)node(js)?$/.test(program);
}
