import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { AedesOptions } from 'aedes';
import aedesPersistenceLevel from 'aedes-persistence-level';
import { ClassicLevel } from 'classic-level';
import { connectRedis, describeRedisUrl } from '../cluster/redis';
import { coalesceWrites } from './coalescingLevel';
import { checkEngine } from './engine/check';
import { createRedisBus } from './engine/redisBus';

type Persistence = NonNullable<AedesOptions['persistence']>;
type MessageBus = NonNullable<AedesOptions['mq']>;

/**
 * Where the broker keeps retained messages, persistent sessions (their
 * subscriptions, queued and in-flight QoS 1/2 messages) and wills, and how its
 * messages travel. Credentials and rules are not here: they stay in SQL.
 */
export interface BrokerState {
  /** Aedes' message bus; undefined: Aedes' own, in this process. */
  mq?: MessageBus;
  persistence: Persistence;
  /** For the start-up line: where the state lives. */
  location: string;
  /** Closes the store; call after the broker has closed. */
  close(): Promise<void>;
}

export type BrokerStateTarget =
  /** One node: LevelDB under `dir`. */
  | { kind: 'local'; dir: string }
  /** Several nodes: message bus and state in Redis. */
  | { kind: 'redis'; url: string };

/** Thrown when another process already holds the local broker store. */
export class BrokerStateLockedError extends Error {
  constructor(readonly dir: string) {
    super(
      `The broker state in ${dir} is in use by another process. ` +
        'Each Gatehouse process needs its own DATA_DIR; several nodes share their state through REDIS_URL.',
    );
  }
}

/** Opens the store of broker state named by `target`. */
export async function openBrokerState(
  target: BrokerStateTarget,
  options: { concurrency: number; log?: (message: string) => void },
): Promise<BrokerState> {
  return target.kind === 'local' ? openLocalState(target.dir) : openRedisState(target.url, options.concurrency, options.log ?? (() => {}));
}

/**
 * `aedes-persistence-level` over `classic-level` (LevelDB). Aedes stores a
 * QoS 1/2 message (retained copy, offline queues) before it acknowledges it,
 * and LevelDB hands every write to the kernel before it resolves, so what was
 * acknowledged survives the process being killed. Writes made in one turn of
 * the event loop go to LevelDB as one batch (coalesceWrites). They are not
 * fsynced (a power loss can take the last seconds): an fsync per message
 * would cap the broker at the disk's flush rate.
 */
async function openLocalState(dir: string): Promise<BrokerState> {
  const location = path.resolve(dir);
  await mkdir(location, { recursive: true });
  const db = new ClassicLevel<string, Uint8Array>(location, { keyEncoding: 'utf8', valueEncoding: 'view' });
  try {
    await db.open();
  } catch (error) {
    // LevelDB locks its directory with fcntl(2); the kernel releases it when
    // the holder dies, so only a live process is refused here.
    if (/lock/i.test(String((error as { cause?: unknown }).cause ?? error))) throw new BrokerStateLockedError(location);
    throw error;
  }
  const store = coalesceWrites(db);
  const persistence = aedesPersistenceLevel(store) as unknown as Persistence;
  return {
    persistence,
    location,
    async close() {
      await store.close();
    },
  };
}

/**
 * `mqemitter-redis` carries messages between nodes and
 * `aedes-persistence-redis` holds the state they share, so a persistent
 * session, a retained message or a will made on one node is there on all.
 */
async function openRedisState(url: string, concurrency: number, log: (message: string) => void): Promise<BrokerState> {
  await checkEngine({ redis: true });
  // Loaded only with REDIS_URL: one node never pays for them.
  const { default: aedesPersistenceRedis } = await import('aedes-persistence-redis');
  const conn = await connectRedis(url);
  const persistence = aedesPersistenceRedis({ conn }) as unknown as Persistence & { destroy(): Promise<void> };
  // The bus listens with Redis patterns made from the filters: `#` becomes
  // `*`, every channel of the server, where other messages travel (the
  // nodes' questions about sessions, anyone else's). Its channels get their
  // own prefix, naming the logical database, which pub/sub ignores; it ends
  // with the topic separator, so the bus' matcher sees it as one more level
  // and `#` and `+` keep matching whole levels after it.
  const mq = await createRedisBus({ url, conn, prefix: `gatehouse:db${conn.options.db ?? 0}:mqtt/`, concurrency, log });
  return {
    mq,
    persistence,
    location: describeRedisUrl(url),
    async close() {
      // The broker closed the bus already; unsubscribing from it may fail.
      await persistence.destroy().catch(() => {});
      conn.disconnect();
    },
  };
}
