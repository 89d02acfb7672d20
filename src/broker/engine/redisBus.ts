import type { EventEmitter } from 'node:events';
import type { AedesOptions } from 'aedes';
import type { Redis } from 'ioredis';
import type { Expectation } from './expectation';
import { packageSource } from './packages';

type MessageBus = NonNullable<AedesOptions['mq']>;

/** The fields of mqemitter-redis 7 the bus relies on. */
interface BusInternals {
  /** Turns a filter into the Redis pattern it PSUBSCRIBEs. */
  _subTopic(topic: string): string;
  /** Hands a decoded message to the local listeners (MQEmitter's emit, kept under this name). */
  _emit(...args: unknown[]): unknown;
  /** Connection events: 'error', 'pubConnect', 'subConnect' (untyped in its declarations). */
  state: EventEmitter;
  /** MQEmitter's (mqemitter 7): messages being delivered now, at most `concurrency`. */
  current: number;
  /** MQEmitter's: gives one delivery slot back and starts the next message waiting for one. */
  _released(): void;
}

type BusClass = new (prefix: string, options: object) => MessageBus & BusInternals;

/**
 * `mqemitter-redis` carries messages between nodes on channels of their own:
 * `prefix` (naming the logical database, which pub/sub ignores) before every
 * topic, Redis glob characters in filters escaped, and a message it cannot
 * decode dropped instead of ending the process.
 */
export async function createRedisBus(options: { url: string; conn: Redis; prefix: string; concurrency: number; log: (message: string) => void }): Promise<MessageBus> {
  const { default: mqemitterRedis } = await import('mqemitter-redis');
  const { MQEmitterRedisPrefix } = mqemitterRedis as unknown as { MQEmitterRedisPrefix: BusClass };
  const subConn = options.conn.duplicate();
  // What Aedes gives its own bus: `concurrency`, and [MQTT-4.7.1-3] empty levels.
  const bus = new MQEmitterRedisPrefix(options.prefix, { connectionString: options.url, subConn, concurrency: options.concurrency, matchEmptyLevels: true });
  guardDecoding(bus, subConn, options.log);
  escapeGlobCharacters(bus);
  // The bus reports a lost Redis connection as an 'error' event: unheard, it
  // would end the process. ioredis reconnects by itself; say so once per outage.
  let down = false;
  bus.state.on('error', (error: Error) => {
    if (down) return;
    down = true;
    options.log(`Redis connection lost (${error.message}); reconnecting`);
  });
  bus.state.on('pubConnect', () => {
    if (down) options.log('Redis connection back');
    down = false;
  });
  return bus;
}

/**
 * A filter with `+` or `#` becomes a Redis pattern (PSUBSCRIBE), in which `*`,
 * `?`, `[`, `]` and `\\` are glob syntax; topics may hold them literally.
 * Unescaped, `plant/[a]/+` matched `plant/a/x` and never `plant/[a]/x`: its
 * messages from other nodes were lost. Escaped here before the bus turns the
 * MQTT wildcards into `*` (its own matcher then checks each message).
 */
function escapeGlobCharacters(bus: BusInternals): void {
  const subTopic = bus._subTopic.bind(bus);
  bus._subTopic = (topic) => {
    if (!/[+#]/.test(topic)) return topic;
    const pattern = subTopic(topic.replace(/[*?[\]\\]/g, '\\$&'));
    // The bus keys its Redis subscriptions by this string, literal topics
    // and patterns alike: `a/+` became `a/*`, the very name of a literal
    // topic `a/*`, and whichever came second was never subscribed in Redis
    // (nor the first's kept when the second went away). The first character
    // as a class (`[g]atehouse:…`) matches the same channels and is never the
    // name of a literal one, which starts with the prefix itself.
    return /^[^*?[\]\\]/.test(pattern) ? `[${pattern[0]}]${pattern.slice(1)}` : pattern;
  };
}

/**
 * The bus decodes what its subscriber connection hears (msgpack) inside the
 * ioredis event, and a decoding error thrown there ends the process. Only the
 * decoding is guarded: a message that cannot be read is dropped (said once),
 * before it takes a delivery slot. An error of the delivery that follows (a
 * listener's) is not taken for one: it goes on to ioredis, and from there to
 * the process, as it would. The listener that threw never calls back, so the
 * slot its message took (MQEmitter's `concurrency`) is given back here;
 * otherwise, should anything catch such errors, `concurrency` of them would
 * stop every delivery from this bus without a word.
 */
function guardDecoding(bus: BusInternals, subscriber: Redis, log: (message: string) => void): void {
  subscriber.on('error', () => {}); // the bus listens for errors too, and says so
  const deliver = bus._emit;
  let deliveryError: unknown;
  bus._emit = function (this: BusInternals, ...args: unknown[]) {
    const inFlight = this.current;
    try {
      return deliver.apply(this, args);
    } catch (error) {
      deliveryError = error;
      // Given back a turn later: not from inside the error, where the next
      // waiting message would be delivered before the error goes on.
      if (this.current > inFlight) setImmediate(() => this._released());
      throw error;
    }
  };
  const emit = subscriber.emit.bind(subscriber);
  let said = false;
  subscriber.emit = (event: string | symbol, ...args: unknown[]) => {
    if (event !== 'messageBuffer' && event !== 'pmessageBuffer') return emit(event, ...args);
    deliveryError = undefined;
    try {
      return emit(event, ...args);
    } catch (error) {
      if (error === deliveryError) throw error;
      if (!said) log(`dropped a Redis message the broker could not read (${(error as Error).message}); further ones are dropped silently`);
      said = true;
      return true;
    }
  };
}

/** What mqemitter-redis must still have (checked at start, before any bus is made). */
export function redisBusExpectations(): Expectation[] {
  let prototype: Partial<BusInternals> | undefined;
  const load = async () => {
    const { default: mqemitterRedis } = await import('mqemitter-redis');
    const { MQEmitterRedisPrefix } = mqemitterRedis as unknown as { MQEmitterRedisPrefix?: BusClass };
    prototype = MQEmitterRedisPrefix?.prototype as Partial<BusInternals> | undefined;
  };
  return [
    {
      packageName: 'mqemitter-redis',
      what: '`MQEmitterRedisPrefix` (channels of our own) is no longer exported',
      prepare: load,
      holds: () => prototype !== undefined,
    },
    { packageName: 'mqemitter-redis', what: '`_subTopic` (where filters become Redis patterns) is gone', holds: () => typeof prototype?._subTopic === 'function' },
    { packageName: 'mqemitter-redis', what: '`_emit` (the local delivery of a decoded message) is gone', holds: () => typeof prototype?._emit === 'function' },
    {
      packageName: 'mqemitter-redis',
      what: 'its connection events (`state`) are gone',
      holds: () => packageSource('mqemitter-redis', 'mqemitter-redis.js').includes('this.state = new EE()'),
    },
    {
      packageName: 'mqemitter',
      what: 'its delivery slots (`current`, `_released`) moved',
      holds: () => {
        const source = packageSource('mqemitter', 'mqemitter.js');
        return source.includes('this.current++') && source.includes('that.current--') && source.includes('this._released = released');
      },
    },
  ];
}
