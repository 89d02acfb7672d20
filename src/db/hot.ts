/**
 * Statements run many times a second (the pipelines' outbox), as named
 * prepared statements on PostgreSQL.
 *
 * Drizzle runs every statement unnamed, and postgres.js describes an unnamed
 * statement that has parameters before it binds them: two round trips and two
 * socket writes per statement, and the server parses it each time. A named
 * statement is parsed and described once per connection, then each run is one
 * Bind/Execute. The texts given here must be fixed (parameters for every
 * value): postgres.js keeps each text it prepared for the life of the
 * connection. PgBouncer in session mode (README "Using PostgreSQL") keeps them.
 *
 * PGlite (in this process, no round trips) runs them through drizzle as usual.
 */
import type { SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import type { Database } from './index';

export type HotRow = Record<string, unknown>;

interface PostgresJsClient {
  unsafe(query: string, params: unknown[], options: { prepare: boolean }): Promise<HotRow[]>;
  begin<T>(run: (sql: PostgresJsClient) => Promise<T>): Promise<T>;
}

const dialect = new PgDialect();

/** `db.$client` when it is postgres.js (drizzle set its serializers: JSON and timestamps pass as text, as through drizzle). */
function postgresClientOf(db: Database): PostgresJsClient | null {
  const client = (db as { $client?: unknown }).$client;
  if (typeof client !== 'function') return null;
  const candidate = client as unknown as { unsafe?: unknown; begin?: unknown };
  return typeof candidate.unsafe === 'function' && typeof candidate.begin === 'function' ? (client as unknown as PostgresJsClient) : null;
}

/** Runs `query` (a fixed text: see the module comment) and returns its rows. */
export async function executeHot(db: Database, query: SQL): Promise<HotRow[]> {
  const client = postgresClientOf(db);
  if (client) {
    const { sql, params } = dialect.sqlToQuery(query);
    return client.unsafe(sql, params, { prepare: true });
  }
  return rowsOf(await db.execute(query));
}

/** Runs `queries` one after the other in one transaction; returns the last one's rows. */
export async function executeHotInTransaction(db: Database, queries: SQL[]): Promise<HotRow[]> {
  const client = postgresClientOf(db);
  if (client) {
    return client.begin(async (sql) => {
      let rows: HotRow[] = [];
      for (const query of queries) {
        const { sql: text, params } = dialect.sqlToQuery(query);
        rows = await sql.unsafe(text, params, { prepare: true });
      }
      return rows;
    });
  }
  return db.transaction(async (tx) => {
    let rows: HotRow[] = [];
    for (const query of queries) rows = rowsOf(await tx.execute(query));
    return rows;
  });
}

/** `db.execute` answers an array (postgres.js) or `{ rows }` (PGlite). */
export function rowsOf<T = HotRow>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[];
  return (result as { rows?: T[] }).rows ?? [];
}
