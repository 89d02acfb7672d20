import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, rmdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import type { PGlite } from '@electric-sql/pglite';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { acquireDataDirLock, type DataDirLock } from './lock';
import * as schema from './schema';

export { schema };

/** The one database type the domain sees, whichever driver is underneath. */
export type Database = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface OpenDatabase {
  db: Database;
  driver: 'pglite' | 'postgres';
  /** Human-readable location, without credentials. */
  location: string;
  close(): Promise<void>;
}

export const migrationsFolder = fileURLToPath(new URL('../../drizzle', import.meta.url));

/** An arbitrary constant: serialises migrations of several nodes on one server. */
const MIGRATION_LOCK_KEY = 7_231_004_117;

export type DatabaseTarget =
  | { kind: 'postgres'; url: string; maxConnections?: number }
  | { kind: 'pglite'; dataDir: string }
  /**
   * In memory, gone on close. `loadDataDir`: a `dumpDataDir()` tarball to
   * start from instead of an empty database (PGlite's initdb is its slowest
   * step); migrations still run over it.
   */
  | { kind: 'pglite-memory'; loadDataDir?: Blob };

/** Opens the database and applies pending migrations. */
export async function openDatabase(target: DatabaseTarget): Promise<OpenDatabase> {
  if (target.kind === 'postgres') return openPostgres(target.url, target.maxConnections ?? 10);
  if (target.kind === 'pglite') return openPglite(target.dataDir);
  return openPglite(undefined, target.loadDataDir);
}

/**
 * PostgreSQL's defaults assume a server with memory to spare; inside PGlite
 * every buffer is WebAssembly heap, touched at start and never given back
 * (128 MB of shared buffers alone). 16 MB still hold the tables and indexes of
 * thousands of clients; pages beyond them come from the operating system's
 * file cache. Added to PGlite's own `defaultStartParams`.
 */
const pgliteSettings = ['-c', 'shared_buffers=16MB', '-c', 'wal_buffers=1MB', '-c', 'work_mem=2MB'];

/**
 * How V8 compiles PGlite's 9 MB WebAssembly module, read when it compiles it.
 * By default it compiles all of it up front, most of it code Gatehouse never
 * runs, then recompiles the hot parts with its optimising compiler in the
 * background. Lazily, with the baseline compiler only: ≈ 60 MB less resident
 * memory, a start ≈ 1 s shorter, and no pause of the event loop while
 * optimised code is installed; the price is up to 2× the CPU time on queries
 * that scan many rows, which Gatehouse's indexed queries seldom do.
 */
const pgliteV8Flags = ['--wasm-lazy-compilation', '--liftoff-only'];

async function openPglite(dataDir: string | undefined, loadDataDir?: Blob): Promise<OpenDatabase> {
  // Loaded only here: a process on PostgreSQL never needs PGlite in memory.
  const [{ PGlite }, { pg_trgm }, { drizzle: drizzlePglite }, { migrate: migratePglite }] = await Promise.all([
    import('@electric-sql/pglite'),
    // Trigram indexes for the clients search (migration 0005 creates the index).
    import('@electric-sql/pglite/contrib/pg_trgm'),
    import('drizzle-orm/pglite'),
    import('drizzle-orm/pglite/migrator'),
  ]);
  for (const flag of pgliteV8Flags) v8.setFlagsFromString(flag);
  const options = { startParams: [...PGlite.defaultStartParams, ...pgliteSettings], extensions: { pg_trgm } };
  let lock: DataDirLock | undefined;
  let client: PGlite;
  if (dataDir) {
    const dir = path.resolve(dataDir);
    await mkdir(dir, { recursive: true });
    lock = await acquireDataDirLock(dir);
    try {
      const pgdata = path.join(dir, 'pglite');
      if (await isNewDataDirectory(pgdata)) await initPgliteInChild(pgdata, options.startParams);
      client = await PGlite.create(pgdata, options);
    } catch (error) {
      await lock.release();
      throw error;
    }
  } else {
    client = await PGlite.create({ ...options, loadDataDir });
  }
  const db = drizzlePglite({ client, schema });
  try {
    await migratePglite(db, { migrationsFolder });
  } catch (error) {
    await client.close();
    await lock?.release();
    throw error;
  }
  return {
    db: db as unknown as Database,
    driver: 'pglite',
    location: dataDir ? path.resolve(dataDir) : 'memory',
    async close() {
      await client.close();
      await lock?.release();
    },
  };
}

/** No database yet: no `PG_VERSION`, and nothing else either (an unknown directory is left to PGlite, as before). */
async function isNewDataDirectory(pgdata: string): Promise<boolean> {
  if (existsSync(path.join(pgdata, 'PG_VERSION'))) return false;
  const entries = await readdir(pgdata).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  return entries.length === 0;
}

/**
 * Creates a new database in `pgdata` in a child process. PGlite's initdb runs
 * a second PostgreSQL and the initdb program beside the first, each with its
 * own WebAssembly heap: ≈ 800 MB at the peak, and a process that ran it stays
 * near 550 MB (300 MB if it ran in a worker thread) where reopening the
 * database needs 150 MB. A child gives all of it back when it exits.
 *
 * It writes to a directory of its own, renamed into place once complete: a
 * first start killed halfway leaves no half-made database, and a child that
 * outlived its killed parent (it stops when its stdin closes, but only between
 * two steps of initdb) cannot write into the next start's database.
 */
async function initPgliteInChild(pgdata: string, startParams: string[]): Promise<void> {
  const parent = path.dirname(pgdata);
  const prefix = `${path.basename(pgdata)}.creating-`;
  for (const entry of await readdir(parent)) {
    if (entry.startsWith(prefix)) await rm(path.join(parent, entry), { recursive: true, force: true });
  }
  const creating = path.join(parent, `${prefix}${process.pid}`);
  const pglite = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  const script = [
    'process.stdin.on("end", () => process.exit(1)).resume();',
    `require(${JSON.stringify(pglite)}).PGlite.create(${JSON.stringify(creating)}, { startParams: ${JSON.stringify(startParams)} })`,
    '  .then((db) => db.close())',
    '  .then(() => process.exit(0), (error) => { console.error(error); process.exit(1); });',
  ].join('\n');
  const { NODE_OPTIONS: _inherited, ...env } = process.env;
  const child = spawn(process.execPath, [...pgliteV8Flags, '-e', script], {
    // Not NODE_OPTIONS: a loader or an inspector of the parent has no business here.
    env,
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (exitCode, signal) => resolve(signal ? null : exitCode));
  });
  child.stdin.destroy();
  if (code !== 0) {
    await rm(creating, { recursive: true, force: true });
    throw new Error(`Creating the embedded database in ${pgdata} failed:\n${stderr.trim()}`);
  }
  await rmdir(pgdata).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
  await rename(creating, pgdata);
}

async function openPostgres(url: string, maxConnections: number): Promise<OpenDatabase> {
  await migratePostgresWithLock(url);
  const client = postgres(url, { max: maxConnections, onnotice: () => {} });
  const db = drizzlePostgres({ client, schema });
  return {
    db: db as unknown as Database,
    driver: 'postgres',
    location: describePostgresUrl(url),
    async close() {
      await client.end({ timeout: 5 });
    },
  };
}

/**
 * Several Gatehouse nodes may start against one server at once: an advisory
 * lock held on a dedicated connection lets one of them migrate at a time.
 */
async function migratePostgresWithLock(url: string): Promise<void> {
  const client = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await client`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
    await migratePostgres(drizzlePostgres({ client }), { migrationsFolder });
    await client`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`;
  } finally {
    await client.end({ timeout: 5 });
  }
}

/** `postgres://user:secret@host:5432/db` → `postgres://host:5432/db`. */
export function describePostgresUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return 'postgres';
  }
}

/** True when `error` (or its cause) is a PostgreSQL unique violation. */
export function isUniqueViolation(error: unknown): boolean {
  return pgErrorCode(error) === '23505';
}

/** True when `error` (or its cause) is a PostgreSQL foreign-key violation. */
export function isForeignKeyViolation(error: unknown): boolean {
  return pgErrorCode(error) === '23503';
}

function pgErrorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current && typeof current === 'object'; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
