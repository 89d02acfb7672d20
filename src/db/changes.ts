import type { PGlite } from '@electric-sql/pglite';
import postgres from 'postgres';
import type { OpenDatabase } from '.';

/** The channel migration 0003's triggers announce changes on. */
export const ACCESS_CHANNEL = 'gatehouse_access';

/**
 * Tells when what a CONNECT reads (credentials, groups, permissions, rules)
 * changed, whoever changed it: PostgreSQL triggers NOTIFY on every write (see
 * drizzle/0003_access_changes.sql), on the one database every node shares.
 */
export interface AccessChanges {
  /** True while changes are being heard; a cache may answer only then. */
  live(): boolean;
  /**
   * Calls `listener` after each change (with the notification's payload: the
   * table), and when hearing resumes after a break ('resumed': changes may
   * have been missed meanwhile).
   */
  onChange(listener: (payload: string) => void): void;
  close(): Promise<void>;
}

/** Starts listening for access changes on `database`. */
export async function listenForAccessChanges(database: OpenDatabase, log: (message: string) => void = () => {}): Promise<AccessChanges> {
  const client = (database.db as unknown as { $client: unknown }).$client;
  if (database.driver === 'pglite') return listenOnPglite(client as PGlite);
  return listenOnPostgres(client as postgres.Sql, log);
}

/**
 * PGlite runs in this process: a notification cannot be lost on the way, and
 * nothing changes once it is closed (then CONNECTs find it unavailable).
 */
async function listenOnPglite(client: PGlite): Promise<AccessChanges> {
  const listeners: Array<(payload: string) => void> = [];
  const unlisten = await client.listen(ACCESS_CHANNEL, (payload) => listeners.forEach((listener) => listener(payload)));
  return {
    live: () => !client.closed,
    onChange: (listener) => void listeners.push(listener),
    close: async () => {
      if (!client.closed) await unlisten();
    },
  };
}

/**
 * A connection of its own, as postgres.js' `listen` makes one, but whose
 * loss is seen at once: from then until LISTEN is back, `live()` is false
 * (a cache must ask the database), and a change is reported once it is back.
 */
async function listenOnPostgres(pool: postgres.Sql, log: (message: string) => void): Promise<AccessChanges> {
  const listeners: Array<(payload: string) => void> = [];
  const changed = (payload: string) => listeners.forEach((listener) => listener(payload));
  let listening = false;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  const options = {
    ...pool.options,
    max: 1,
    idle_timeout: null,
    max_lifetime: null,
    fetch_types: false,
    onnotice: () => {},
    onnotify: (channel: string, payload: string) => {
      if (channel === ACCESS_CHANNEL) changed(payload);
    },
    onclose: () => {
      if (!listening) return;
      listening = false;
      if (closed) return;
      log('Lost the database connection that hears console changes: CONNECTs read the database until it is back');
      changed('lost');
      schedule();
    },
  };
  // The pool's own options (already parsed), as postgres.js' `listen` reuses them.
  const sql = postgres(options as unknown as postgres.Options<Record<string, never>>);

  async function listen() {
    await sql`listen ${sql(ACCESS_CHANNEL)}`;
    listening = true;
  }
  function schedule() {
    retry = setTimeout(() => {
      listen().then(
        () => {
          log('Hearing console changes again');
          changed('resumed');
        },
        () => !closed && schedule(),
      );
    }, 1000);
    retry.unref();
  }

  await listen();
  return {
    live: () => listening,
    onChange: (listener) => void listeners.push(listener),
    async close() {
      closed = true;
      clearTimeout(retry);
      listening = false;
      await sql.end({ timeout: 5 });
    },
  };
}
