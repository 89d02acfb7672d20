import { link, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface DataDirLock {
  release(): Promise<void>;
}

export class DataDirLockedError extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(
      `The data directory ${dir} is in use by another Gatehouse process (pid ${pid}). ` +
        'The embedded database serves one process only: stop the other process, ' +
        'or give this one its own DATA_DIR, or use DATABASE_URL for several nodes.',
    );
  }
}

/**
 * Takes an exclusive lock on `dir`: `gatehouse.lock` holds the owner's pid and
 * is created atomically (hard link of a complete temporary file), so another
 * process never reads a half-written lock. A lock whose process no longer runs
 * is taken over.
 */
export async function acquireDataDirLock(dir: string): Promise<DataDirLock> {
  const file = path.join(dir, 'gatehouse.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    const temporary = `${file}.${process.pid}`;
    await writeFile(temporary, String(process.pid));
    try {
      await link(temporary, file);
      let released = false;
      return {
        async release() {
          if (released) return;
          released = true;
          await rm(file, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      await rm(temporary, { force: true });
    }
    const holder = Number.parseInt(await readFile(file, 'utf8').catch(() => ''), 10);
    if (Number.isInteger(holder) && holder > 0 && isRunning(holder)) {
      throw new DataDirLockedError(dir, holder);
    }
    // Stale: its process is gone. Remove and retry.
    await rm(file, { force: true });
  }
  throw new Error(`Could not take the lock on ${dir}`);
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
