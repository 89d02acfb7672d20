import { randomBytes } from 'node:crypto';
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
  /**
   * Resolves once every change committed before the call has been reported
   * to the listeners (or at once while not live, or after a few seconds
   * when the database does not answer: check `live()` after it).
   */
  heard(): Promise<void>;
  close(): Promise<void>;
}

export interface ListenOptions {
  /**
   * PostgreSQL: how often the listener checks that it still hears, by
   * NOTIFYing itself through the pool; not heard back before the next check
   * means it does not (a connection dropped silently by a NAT or a proxy).
   */
  selfCheckMs?: number;
}

/** Starts listening for access changes on `database`. */
export async function listenForAccessChanges(database: OpenDatabase, log: (message: string) => void = () => {}, options: ListenOptions = {}): Promise<AccessChanges> {
  const client = (database.db as unknown as { $client: unknown }).$client;
  if (database.driver === 'pglite') return listenOnPglite(client as PGlite);
  return listenOnPostgres(client as postgres.Sql, log, options.selfCheckMs ?? 5000);
}

/**
 * PGlite runs in this process: a notification cannot be lost on the way, and
 * nothing changes once it is closed (then CONNECTs find it unavailable). It
 * reports a notification before the query that caused it resolves, and only
 * this process writes to it: whatever committed has been heard already.
 */
async function listenOnPglite(client: PGlite): Promise<AccessChanges> {
  const listeners: Array<(payload: string) => void> = [];
  const unlisten = await client.listen(ACCESS_CHANNEL, (payload) => listeners.forEach((listener) => listener(payload)));
  return {
    live: () => !client.closed,
    onChange: (listener) => void listeners.push(listener),
    heard: () => Promise.resolve(),
    close: async () => {
      if (!client.closed) await unlisten();
    },
  };
}

/** Payloads of the listener's self-checks (never reported as changes). */
const SELF_CHECK_PREFIX = 'gatehouse-self-check:';
/** Payloads of `heard()` (never reported as changes). */
const HEARD_PREFIX = 'gatehouse-heard:';

/**
 * A connection of its own, as postgres.js' `listen` makes one, trusted only
 * while it is seen to hear: LISTEN is issued, then every `selfCheckMs` the
 * node NOTIFYs itself through the pool and must hear that back before the next
 * check. Until the first check comes back, and from a closed socket or a
 * check not heard back until one is again, `live()` is false (a cache must
 * ask the database) and the connection is replaced; a change is reported on
 * each of these turns. A connection that hears nothing at all (LISTEN through
 * PgBouncer in transaction mode) is never trusted.
 */
async function listenOnPostgres(pool: postgres.Sql, log: (message: string) => void, selfCheckMs: number): Promise<AccessChanges> {
  const listeners: Array<(payload: string) => void> = [];
  const changed = (payload: string) => listeners.forEach((listener) => listener(payload));
  const selfCheckId = `${SELF_CHECK_PREFIX}${randomBytes(6).toString('hex')}:`;
  let checks = 0;
  /** `heard()` calls waiting for their notification, by payload. */
  const barriers = new Map<string, () => void>();
  /** The self-check sent and not heard back yet, with who waits for it. */
  let awaiting: { payload: string; heard(): void } | undefined;
  let live = false;
  let closed = false;
  let connecting: Promise<'heard' | 'unheard' | 'failed'> | undefined;
  let retry: NodeJS.Timeout | undefined;
  let lostLogged = false;

  function connect(): postgres.Sql {
    const instance: postgres.Sql = postgres({
      ...pool.options,
      max: 1,
      idle_timeout: null,
      max_lifetime: null,
      fetch_types: false,
      onnotice: () => {},
      onnotify: (channel: string, payload: string) => {
        if (channel !== ACCESS_CHANNEL || instance !== sql) return;
        if (payload.startsWith(SELF_CHECK_PREFIX)) {
          if (awaiting?.payload === payload) awaiting.heard();
          return;
        }
        if (payload.startsWith(HEARD_PREFIX)) {
          barriers.get(payload)?.();
          return;
        }
        changed(payload);
      },
      onclose: () => {
        if (instance !== sql) return;
        lost('Lost the database connection that hears console changes');
        clearTimeout(retry);
        retry = setTimeout(reconnect, 1000);
        retry.unref();
      },
      // The pool's own options (already parsed), as postgres.js' `listen` reuses them.
    } as unknown as postgres.Options<Record<string, never>>) as unknown as postgres.Sql;
    return instance;
  }
  let sql = connect();

  function lost(why: string) {
    awaiting = undefined;
    if (!live) return;
    live = false;
    if (closed) return;
    if (!lostLogged) log(`${why}: CONNECTs read the database until it is back`);
    lostLogged = true;
    changed('lost');
  }

  /** NOTIFYs itself through the pool; resolves true once heard back, false after `timeoutMs`. */
  function selfCheck(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const payload = `${selfCheckId}${++checks}`;
      const timer = setTimeout(() => resolve(false), timeoutMs);
      timer.unref();
      awaiting = {
        payload,
        heard() {
          awaiting = undefined;
          clearTimeout(timer);
          resolve(true);
        },
      };
      // A failed NOTIFY is a check not heard back.
      pool`select pg_notify(${ACCESS_CHANNEL}, ${payload})`.catch(() => {});
    });
  }

  /** LISTENs on the current connection and waits for a self-check to come back. */
  async function listen(): Promise<'heard' | 'unheard' | 'failed'> {
    // A LISTEN never answered (a connection that carries nothing) must not
    // hold every later attempt back: it counts as not heard.
    let timer: NodeJS.Timeout | undefined;
    const unanswered = new Promise<'unheard'>((resolve) => {
      timer = setTimeout(() => resolve('unheard'), 2 * selfCheckMs);
      timer.unref();
    });
    try {
      const answered = await Promise.race([sql`listen ${sql(ACCESS_CHANNEL)}`.then(() => 'listening' as const), unanswered]);
      if (answered === 'unheard') return 'unheard';
    } catch {
      return 'failed';
    } finally {
      clearTimeout(timer);
    }
    if (!(await selfCheck(selfCheckMs)) || closed) return 'unheard';
    live = true;
    return 'heard';
  }

  /** A new connection in place of one that does not hear; reports the turn once it does. */
  function reconnect() {
    if (closed || live || connecting) return;
    const old = sql;
    sql = connect();
    void old.end({ timeout: 0 }).catch(() => {});
    connecting = listen().finally(() => (connecting = undefined));
    void connecting.then((outcome) => {
      if (outcome !== 'heard' || closed) return;
      if (lostLogged) log('Hearing console changes again');
      lostLogged = false;
      changed('resumed');
    });
  }

  const checker = setInterval(() => {
    if (closed || connecting) return;
    if (!live) return reconnect();
    if (awaiting) {
      lost(`The database connection that hears console changes did not hear a check within ${selfCheckMs} ms`);
      return reconnect();
    }
    void selfCheck(2 * selfCheckMs);
  }, selfCheckMs);
  checker.unref();

  connecting = listen().finally(() => (connecting = undefined));
  const outcome = await connecting;
  if (outcome !== 'heard') {
    lostLogged = true;
    log(
      outcome === 'failed'
        ? 'Could not LISTEN for console changes: CONNECTs read the database until it can'
        : 'LISTEN for console changes hears nothing: CONNECTs read the database until it does. ' +
            'Behind PgBouncer, DATABASE_URL needs session pooling (transaction pooling does not keep LISTEN)',
    );
  }
  return {
    live: () => live,
    onChange: (listener) => void listeners.push(listener),
    heard() {
      if (!live) return Promise.resolve();
      // Notifications arrive in commit order: hearing one sent now means
      // every change committed before it was heard first.
      const payload = `${HEARD_PREFIX}${selfCheckId.slice(SELF_CHECK_PREFIX.length)}${++checks}`;
      return new Promise<void>((resolve) => {
        const done = () => {
          barriers.delete(payload);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(done, 2 * selfCheckMs);
        timer.unref();
        barriers.set(payload, done);
        pool`select pg_notify(${ACCESS_CHANNEL}, ${payload})`.catch(done);
      });
    },
    async close() {
      closed = true;
      for (const done of [...barriers.values()]) done();
      clearTimeout(retry);
      clearInterval(checker);
      live = false;
      await sql.end({ timeout: 5 });
    },
  };
}
