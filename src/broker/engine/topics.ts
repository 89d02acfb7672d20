import type { Readable } from 'node:stream';
import type { Aedes } from 'aedes';
import type { Expectation } from './expectation';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { packageDirectory, packageSource } from './packages';

/**
 * What the Topics page reads from the engine: the retained messages (from
 * the persistence's retained stream), clearing one (an empty retained
 * PUBLISH, as a device would clear it), and a tap on the engine's message
 * bus (mqemitter: every node's messages with a shared bus) for the live
 * tail. Only this file knows where those sit in Aedes.
 */

export interface RetainedMessage {
  topic: string;
  payload: Buffer;
  qos: number;
  /** When this node saw it published (ms since the epoch); undefined when it did not (kept from before it started, or published on another node). */
  at?: number;
}

export interface TappedMessage {
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  at: number;
}

interface StoredPacket {
  topic: string;
  payload: Buffer | string;
  qos: number;
}

interface RetainedStore {
  createRetainedStream(pattern: string): Readable;
}

/** Topics whose retained message this node saw published, kept at most this many (the oldest go first). */
const SEEN_LIMIT = 100_000;

export interface EngineTopics {
  /** The retained messages, at most `limit` (and whether there are more), in the store's order. */
  retained(limit: number): Promise<{ messages: RetainedMessage[]; more: boolean }>;
  /** The retained message of `topic` (a topic name, no wildcard), if there is one. */
  retainedOf(topic: string): Promise<RetainedMessage | undefined>;
  /** Clears the retained message of `topic` (subscribers get the empty message, as from a device). */
  clearRetained(topic: string): Promise<void>;
  /** Calls `onMessage` for every message matching `filter` on any node; resolves with the way to stop. */
  tap(filter: string, onMessage: (message: TappedMessage) => void): Promise<() => Promise<void>>;
}

const bytes = (payload: Buffer | string) => (Buffer.isBuffer(payload) ? payload : Buffer.from(payload));

export function engineTopics(aedes: Aedes): EngineTopics {
  const seen = new Map<string, number>();
  aedes.on('publish', (packet) => {
    if (!packet.retain || packet.topic.startsWith('$')) return;
    seen.delete(packet.topic);
    if (packet.payload.length === 0) return;
    seen.set(packet.topic, Date.now());
    if (seen.size > SEEN_LIMIT) seen.delete(seen.keys().next().value!);
  });
  // Aedes' persistence: typed `any` by Aedes; the retained stream is part of every store's interface (aedes-persistence).
  const store = () => (aedes as unknown as { persistence: RetainedStore }).persistence;
  /** Reads the retained stream of `pattern`, stopping it once `take` says so. */
  async function read(pattern: string, take: (packet: StoredPacket) => boolean): Promise<void> {
    const stream = store().createRetainedStream(pattern);
    try {
      for await (const packet of stream as AsyncIterable<StoredPacket>) if (!take(packet)) break;
    } finally {
      stream.destroy();
    }
  }
  return {
    async retained(limit) {
      const messages: RetainedMessage[] = [];
      let more = false;
      await read('#', (packet) => {
        if (messages.length === limit) {
          more = true;
          return false;
        }
        messages.push({ topic: packet.topic, payload: bytes(packet.payload), qos: packet.qos, at: seen.get(packet.topic) });
        return true;
      });
      return { messages, more };
    },
    async retainedOf(topic) {
      let found: RetainedMessage | undefined;
      await read(topic, (packet) => {
        if (packet.topic === topic) found = { topic, payload: bytes(packet.payload), qos: packet.qos, at: seen.get(topic) };
        return found === undefined;
      });
      return found;
    },
    clearRetained(topic) {
      return new Promise((resolve, reject) => {
        aedes.publish({ cmd: 'publish', topic, payload: Buffer.alloc(0), qos: 0, retain: true, dup: false }, (error?: Error) => (error ? reject(error) : resolve()));
      });
    },
    tap(filter, onMessage) {
      // The bus carries the engine's own $SYS and Gatehouse's $gatehouse
      // topics too: a filter not starting with $ never sees them, as for a device.
      const system = filter.startsWith('$');
      const listener = (packet: StoredPacket & { retain?: boolean }, done: () => void) => {
        if (system || !packet.topic.startsWith('$')) {
          onMessage({ topic: packet.topic, payload: bytes(packet.payload), qos: packet.qos, retain: Boolean(packet.retain), at: Date.now() });
        }
        done();
      };
      return new Promise((resolve, reject) => {
        aedes.subscribe(filter, listener as never, (error?: Error) => {
          if (error) return reject(error);
          resolve(() => new Promise<void>((stopped) => aedes.unsubscribe(filter, listener as never, () => stopped())));
        });
      });
    },
  };
}

/**
 * What this file reaches into: `persistence.createRetainedStream(pattern)`,
 * a Readable of stored packets, on Aedes' own store and on the two stores
 * Gatehouse configures (checked in their source: they are made only when used).
 */
export function topicsExpectations(): Expectation[] {
  return [
    {
      packageName: 'aedes',
      what: "its own store (node_modules/aedes-persistence) has no createRetainedStream (pattern) (the Topics page reads retained messages through it)",
      holds: () => aedesOwnStoreSource().includes('createRetainedStream (pattern)'),
    },
    ...(['aedes-persistence-level', 'aedes-persistence-redis'] as const).map((name) => ({
      packageName: name,
      what: 'asyncPersistence.js has no createRetainedStream (pattern) (the Topics page reads retained messages through it)',
      holds: () => packageSource(name, 'asyncPersistence.js').includes('createRetainedStream (pattern)'),
    })),
  ];
}

/** Aedes' own (memory) store: nested under Aedes when the versions differ, else beside it. */
function aedesOwnStoreSource(): string {
  const aedes = packageDirectory('aedes');
  for (const dir of [path.join(aedes, 'node_modules', 'aedes-persistence'), path.join(aedes, '..', 'aedes-persistence')]) {
    try {
      return readFileSync(path.join(dir, 'callBackPersistence.js'), 'utf8');
    } catch {
      // not installed there
    }
  }
  return '';
}
