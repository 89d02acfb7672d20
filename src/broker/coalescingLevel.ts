import type { ClassicLevel } from 'classic-level';

type Range = { gt?: string; gte?: string; lt?: string; lte?: string };
type Write = { type: 'put'; value: Uint8Array } | { type: 'del' };

/** Writes not yet on disk, in order; a `clear` entry takes no more writes after it. */
interface Entry {
  writes: Map<string, Write>;
  clear?: Range;
  /** Its batch has gone to LevelDB: later writes need a new entry. */
  sealed: boolean;
  written: Promise<void>;
  settle(error?: unknown): void;
}

const BUFFER = { valueEncoding: 'buffer' } as const;

/**
 * The part of a LevelDB handle `aedes-persistence-level` uses (get, put, del,
 * batch, clear, values, close), with writes coalesced: every write made in
 * one turn of the event loop goes to disk as one LevelDB batch, and each
 * write's promise resolves once that batch is written. A QoS 1 message for a
 * persistent session costs Aedes about six writes (queue, in flight,
 * acknowledged); one batch per turn for all messages in flight makes that a
 * fraction of a write each, and the promise still resolves only after the
 * write, so Aedes still acknowledges only what is stored.
 *
 * Reads see writes not yet on disk: `get` looks at the waiting batches first
 * (newest first), then asks LevelDB synchronously; `values` and `clear` wait
 * until everything before them is written.
 */
export function coalesceWrites(db: ClassicLevel<string, Uint8Array>) {
  const entries: Entry[] = [];
  let chain: Promise<void> = Promise.resolve();
  let closing = false;

  function newEntry(clear?: Range): Entry {
    let settle!: (error?: unknown) => void;
    const written = new Promise<void>((resolve, reject) => {
      settle = (error) => (error === undefined ? resolve() : reject(error));
    });
    const entry: Entry = { writes: new Map(), clear, sealed: false, written, settle };
    entries.push(entry);
    // Batches go to disk one after another, in order.
    chain = chain.then(() => new Promise<void>((resolve) => setImmediate(resolve))).then(async () => {
      entry.sealed = true;
      try {
        if (entry.clear) await db.clear(entry.clear);
        if (entry.writes.size > 0) {
          await db.batch(
            [...entry.writes].map(([key, write]) => (write.type === 'put' ? { type: 'put' as const, key, value: write.value } : { type: 'del' as const, key })),
            BUFFER,
          );
        }
        entry.settle();
      } catch (error) {
        entry.settle(error);
      } finally {
        entries.splice(entries.indexOf(entry), 1);
      }
    });
    return entry;
  }

  /** The entry taking writes now: the newest, unless it is a clear or already on its way to disk. */
  function openEntry(): Entry {
    const last = entries.at(-1);
    return last && !last.clear && !last.sealed ? last : newEntry();
  }

  function write(ops: Iterable<[string, Write]>): Promise<void> {
    const entry = openEntry();
    for (const [key, op] of ops) entry.writes.set(key, op);
    return entry.written;
  }

  /** Resolves once everything written so far is on disk. */
  function drained(): Promise<void> {
    const last = entries.at(-1);
    return last ? last.written.catch(() => {}) : Promise.resolve();
  }

  const inRange = (key: string, range: Range) =>
    (range.gt === undefined || key > range.gt) &&
    (range.gte === undefined || key >= range.gte) &&
    (range.lt === undefined || key < range.lt) &&
    (range.lte === undefined || key <= range.lte);

  return {
    async get(key: string, options?: object): Promise<Uint8Array | undefined> {
      for (let i = entries.length - 1; i >= 0; i--) {
        const entry = entries[i]!;
        const pending = entry.writes.get(key);
        if (pending) return pending.type === 'put' ? pending.value : undefined;
        if (entry.clear && inRange(key, entry.clear)) return undefined;
      }
      // Synchronous: a point lookup of a recent key is served from LevelDB's
      // memtable or block cache in microseconds, far less than the round trip
      // through libuv's thread pool an asynchronous get costs.
      return db.getSync(key, options ?? BUFFER);
    },
    put(key: string, value: Uint8Array): Promise<void> {
      return write([[key, { type: 'put', value }]]);
    },
    del(key: string): Promise<void> {
      return write([[key, { type: 'del' }]]);
    },
    batch(ops?: Array<{ type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string }>): any {
      if (ops) return write(ops.map((op) => [op.key, op.type === 'put' ? { type: 'put', value: op.value } : { type: 'del' }]));
      const chained = new Map<string, Write>();
      return {
        put(key: string, value: Uint8Array) {
          chained.set(key, { type: 'put', value });
          return this;
        },
        del(key: string) {
          chained.set(key, { type: 'del' });
          return this;
        },
        write: () => write(chained),
      };
    },
    clear(range: Range): Promise<void> {
      return newEntry(range).written;
    },
    async *values(options: Range & object): AsyncGenerator<Uint8Array> {
      await drained();
      try {
        yield* db.values(options);
      } catch (error) {
        // A read still running when the broker stopped (a SUBSCRIBE's
        // retained messages) ends quietly instead of failing after the fact.
        if (closing) return;
        throw error;
      }
    },
    async close(): Promise<void> {
      closing = true;
      // A write made as an earlier one lands (Aedes chains them) opens a new
      // batch: wait until none is left, not only for those there were.
      while (entries.length > 0) await drained();
      await db.close();
    },
  };
}
