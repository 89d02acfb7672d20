import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { openDatabase, type Database, type OpenDatabase } from '../../src/db';
import { requireOrSkip } from './env';
import { pgliteTemplateDump } from './pgliteTemplate';
import { postgresTemplate } from './postgresTemplate';

export type DriverName = 'pglite' | 'postgres';

const testDatabaseUrl = process.env.TEST_DATABASE_URL;

/**
 * The drivers every database-backed suite runs on: PGlite always, PostgreSQL
 * when TEST_DATABASE_URL is set. Use with `describe.each(drivers)`.
 */
export const drivers: DriverName[] = [
  'pglite',
  ...(requireOrSkip('PostgreSQL (TEST_DATABASE_URL)', Boolean(testDatabaseUrl), 'set TEST_DATABASE_URL=postgres://… to run the PostgreSQL suites')
    ? (['postgres'] as const)
    : []),
];

/**
 * A fresh, migrated database. PGlite: in memory, loaded from the migrated
 * template (tests/support/pgliteTemplate.ts). On PostgreSQL each call creates
 * its own database (dropped again on close) as a copy of the migrated
 * template (tests/support/postgresTemplate.ts), so test files never share state.
 */
export async function createTestDatabase(driver: DriverName): Promise<OpenDatabase> {
  if (driver === 'pglite') return openDatabase({ kind: 'pglite-memory', loadDataDir: await pgliteTemplateDump() });
  const created = await createPostgresTestDatabase({ migrated: true });
  try {
    const database = await openDatabase({ kind: 'postgres', url: created.url, maxConnections: 5 });
    return {
      ...database,
      async close() {
        await database.close();
        await created.drop();
      },
    };
  } catch (error) {
    await created.drop();
    throw error;
  }
}

/**
 * A PostgreSQL database of its own (on TEST_DATABASE_URL's server), for tests
 * that start several nodes on one database: each opens its own pool. Empty
 * (the nodes' first start migrates it) unless `migrated`: then a copy of the
 * migrated template.
 */
export async function createPostgresTestDatabase({ migrated = false } = {}): Promise<{ url: string; drop(): Promise<void> }> {
  if (!testDatabaseUrl) throw new Error('TEST_DATABASE_URL is not set');
  const name = `gatehouse_test_${randomBytes(6).toString('hex')}`;
  const template = migrated ? ` template "${await postgresTemplate(testDatabaseUrl)}"` : '';
  const admin = postgres(testDatabaseUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database "${name}"${template}`);
  } finally {
    await admin.end();
  }
  const url = new URL(testDatabaseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const dropper = postgres(testDatabaseUrl, { max: 1, onnotice: () => {} });
      try {
        await dropper.unsafe(`drop database if exists "${name}" with (force)`);
      } finally {
        await dropper.end();
      }
    },
  };
}

/** Queries that read (what CONNECT would send), not the writes of the audit trail or of last-seen times. */
export const readsOnly = (query: string) => /^\s*select\b/i.test(query);

/**
 * Counts the queries sent through `db` (a transaction counts as one) until
 * `stop()`; with `only`, those whose SQL it accepts (a transaction always
 * counts). It swaps the logger of drizzle's session, which every query built
 * from `db` reports to.
 */
export function countQueries(db: Database, only: (query: string) => boolean = () => true): { count(): number; stop(): number } {
  const session = db._.session as unknown as {
    logger: { logQuery(query: string, params: unknown[]): void };
    transaction: (...args: unknown[]) => Promise<unknown>;
  };
  const logger = session.logger;
  const transaction = session.transaction;
  let queries = 0;
  session.logger = {
    logQuery(query, params) {
      if (only(query)) queries++;
      logger.logQuery(query, params);
    },
  };
  session.transaction = function (this: unknown, ...args: unknown[]) {
    queries++;
    return transaction.apply(this, args);
  };
  return {
    count: () => queries,
    stop() {
      session.logger = logger;
      session.transaction = transaction;
      return queries;
    },
  };
}
