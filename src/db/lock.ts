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
  // The lock file of earlier versions, which a crash could leave behind.
  await rm(path.join(dir, 'gatehouse.lock'), { force: true });
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

/** LevelDB reports a held lock as an open error whose cause names the lock. */
function isLockHeld(error: unknown): boolean {
  const cause = (error as { cause?: unknown }).cause;
  return /lock/i.test(String(cause ?? '')) || /LOCK/.test(String((error as Error).message));
}
