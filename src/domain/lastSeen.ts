import { sql } from 'drizzle-orm';
import { type Database, schema } from '../db';

const { clients } = schema;

/** Rows per UPDATE: two parameters each, well under PostgreSQL's 65,535. */
const ROWS_PER_STATEMENT = 5000;

export interface LastSeenRecorder {
  /** Notes that a session of `clientRowId` ended at `at` (kept in memory until the next flush). */
  note(clientRowId: number, at?: Date): void;
  /** Writes what was noted since the last flush: one UPDATE (per 5,000 clients). */
  flush(): Promise<void>;
  /** Clients noted and not yet written. */
  pending(): number;
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
  let noted = new Map<number, Date>();
  let flushing: Promise<void> | null = null;
  let warned = false;

  const keepLatest = (into: Map<number, Date>, id: number, at: Date) => {
    const known = into.get(id);
    if (!known || known < at) into.set(id, at);
  };

  async function write(batch: Map<number, Date>) {
    const rows = [...batch];
    for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
      const values = sql.join(
        rows.slice(i, i + ROWS_PER_STATEMENT).map(([id, at]) => sql`(${id}::integer, ${at.toISOString()}::timestamptz)`),
        sql`, `,
      );
      await db.execute(sql`
        update ${clients} set last_seen_at = seen.at
        from (values ${values}) as seen(id, at)
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
        warned = false;
      },
      (error: Error) => {
        for (const [id, at] of batch) keepLatest(noted, id, at);
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
    note(clientRowId, at = new Date()) {
      keepLatest(noted, clientRowId, at);
    },
    flush,
    pending: () => noted.size,
    async close() {
      clearInterval(timer);
      await flush().catch(() => {});
    },
  };
}
