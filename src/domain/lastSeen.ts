import { sql } from 'drizzle-orm';
import { type Database, schema } from '../db';

const { clients } = schema;

/** When a client's session ended, and the MQTT client id it had. */
interface Seen {
  at: Date;
  clientId: string | null;
}

/** Longest client id kept (longer ones are cut: it only chooses Try it's default). */
const MAX_CLIENT_ID_KEPT = 256;

/**
 * Rows per UPDATE, the event loop let in between. The embedded database runs
 * a statement on the event loop's own thread: one UPDATE of 5,000 rows held
 * every device's packets for 1-2 s (measured on one busy core, as a connect
 * storm's sessions ended), one of 200 holds them tens of milliseconds.
 */
const ROWS_PER_STATEMENT = 200;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export interface LastSeenRecorder {
  /** Notes that a session of `clientRowId` with MQTT client id `mqttClientId` ended at `at` (kept in memory until the next flush). */
  note(clientRowId: number, at?: Date, mqttClientId?: string): void;
  /** Writes what was noted since the last flush: one UPDATE per 200 clients. */
  flush(): Promise<void>;
  /** Clients noted and not yet written. */
  pending(): number;
  /** Counts the flushes that wrote something: a page showing last seen times read before the count changed may be out of date. */
  writes(): number;
  /** Stops the timer and writes what is left. */
  close(): Promise<void>;
}

/**
 * Remembers when each client was last seen, written in batches: ends of
 * sessions are collected in memory (the latest per client) and written every
 * `flushMs` and at shutdown in one `UPDATE … FROM (VALUES …)`, never one write
 * per session. A batch that fails (database down) is kept and merged into the
 * next; a later time never loses to an earlier one.
 */
export function createLastSeenRecorder(db: Database, options: { flushMs?: number; log?: (message: string) => void } = {}): LastSeenRecorder {
  const flushMs = options.flushMs ?? 5000;
  const log = options.log ?? (() => {});
  let noted = new Map<number, Seen>();
  let flushing: Promise<void> | null = null;
  let warned = false;
  let writes = 0;

  const keepLatest = (into: Map<number, Seen>, id: number, seen: Seen) => {
    const known = into.get(id);
    if (!known || known.at < seen.at) into.set(id, seen);
  };

  async function write(batch: Map<number, Seen>) {
    const rows = [...batch];
    for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
      if (i > 0) await nextTurn();
      const values = sql.join(
        rows.slice(i, i + ROWS_PER_STATEMENT).map(([id, seen]) => sql`(${id}::integer, ${seen.at.toISOString()}::timestamptz, ${seen.clientId}::text)`),
        sql`, `,
      );
      // The client id goes with its time: an older end never overwrites a newer one.
      await db.execute(sql`
        update ${clients} set last_seen_at = seen.at, last_client_id = coalesce(seen.client_id, ${clients.lastClientId})
        from (values ${values}) as seen(id, at, client_id)
        where ${clients.id} = seen.id and (${clients.lastSeenAt} is null or ${clients.lastSeenAt} < seen.at)`);
    }
  }

  async function flush() {
    // One flush at a time; a flush asked for meanwhile runs after it.
    while (flushing) await flushing;
    if (noted.size === 0) return;
    const batch = noted;
    noted = new Map();
    flushing = write(batch).then(
      () => {
        writes++;
        warned = false;
      },
      (error: Error) => {
        // Part of it may have been written.
        writes++;
        for (const [id, seen] of batch) keepLatest(noted, id, seen);
        if (!warned) log(`last seen times could not be written (kept for the next try): ${error.message}`);
        warned = true;
        throw error;
      },
    );
    try {
      await flushing;
    } finally {
      flushing = null;
    }
  }

  const timer = setInterval(() => flush().catch(() => {}), flushMs);
  timer.unref();

  return {
    note(clientRowId, at = new Date(), mqttClientId) {
      // Kept as stored text may be: a client id cannot hold U+0000 (the broker refuses it), nor be longer than a packet.
      keepLatest(noted, clientRowId, { at, clientId: mqttClientId === undefined ? null : mqttClientId.slice(0, MAX_CLIENT_ID_KEPT) });
    },
    flush,
    pending: () => noted.size,
    writes: () => writes,
    async close() {
      clearInterval(timer);
      await flush().catch(() => {});
    },
  };
}
