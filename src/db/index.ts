import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
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
  | { kind: 'pglite-memory' };

/** Opens the database and applies pending migrations. */
export async function openDatabase(target: DatabaseTarget): Promise<OpenDatabase> {
  if (target.kind === 'postgres') return openPostgres(target.url, target.maxConnections ?? 10);
  return openPglite(target.kind === 'pglite' ? target.dataDir : undefined);
}

async function openPglite(dataDir: string | undefined): Promise<OpenDatabase> {
  let lock: DataDirLock | undefined;
  let client: PGlite;
  if (dataDir) {
    const dir = path.resolve(dataDir);
    await mkdir(dir, { recursive: true });
    lock = await acquireDataDirLock(dir);
    try {
      client = await PGlite.create(path.join(dir, 'pglite'));
    } catch (error) {
      await lock.release();
      throw error;
    }
  } else {
    client = await PGlite.create();
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
