import type { Client as AedesClient } from 'aedes';
import { claimLiveDelivery } from './resume';

/**
 * How many of a client's latest deliveries are remembered. The copies of one
 * message that a client's overlapping filters produce come in one synchronous
 * pass of the message bus over its listeners, with no other message for that
 * client in between, so a few are plenty.
 */
const REMEMBERED = 16;

type Deliver = (packet: { brokerId?: string | null; brokerCounter?: number; qos?: number }, callback: () => void) => void;

interface AedesClientInternals {
  connackSent?: boolean;
  conn: { once(event: 'close', listener: () => void): unknown };
  duplicates: Record<string, number>;
  deliver0: Deliver;
  deliverQoS: Deliver;
}

/**
 * Replaces Aedes' deduplication of deliveries to `client` by an exact one.
 * Call it right after `aedes.handle()`, before the client subscribes.
 *
 * A message that matches two filters of one session reaches that client twice
 * from the bus, and Aedes sends it once (moscajs/aedes#37) by keeping, per
 * client, the highest `brokerCounter` delivered so far and dropping anything
 * at or below it. But counters are taken when a message is published, and a
 * QoS 1/2 message reaches the bus only after it has been written to every
 * offline session's queue, while a QoS 0 message goes at once: a QoS 0 message
 * published a moment later overtakes it, raises the mark, and the QoS 1/2
 * message is then dropped for every connected subscriber of both — lost,
 * PUBACK already sent. moscajs/aedes#955 and #994 (open in Aedes 1.2; PR #972
 * proposes a history of counters).
 *
 * Here a client remembers the exact (broker, counter) pairs of its latest
 * deliveries instead: a repeat of one of those is dropped, anything else is
 * delivered, whatever its counter. Aedes' own mark is neutralised (its
 * `duplicates` never holds a value). tests/delivery.test.ts fails if Aedes
 * changes what this relies on.
 */
export function dedupeExactly(client: AedesClient): void {
  const internals = client as unknown as AedesClientInternals;
  if (typeof internals.deliver0 !== 'function' || typeof internals.deliverQoS !== 'function' || typeof internals.duplicates !== 'object') {
    throw new Error('Aedes client internals changed (deliver0, deliverQoS, duplicates): revisit src/broker/exactDedupe.ts');
  }
  // Aedes reads `duplicates[brokerId] || 0` and writes the new mark: always 0, never kept.
  internals.duplicates = new Proxy(Object.create(null) as Record<string, number>, {
    get: () => undefined,
    set: () => true,
    deleteProperty: () => true,
  });

  const ids: (string | undefined)[] = new Array(REMEMBERED);
  const counters: number[] = new Array(REMEMBERED).fill(0);
  let next = 0;
  /** True if this exact message was delivered to the client lately; remembers it otherwise. */
  const isRepeat = (packet: { brokerId?: string | null; brokerCounter?: number }) => {
    const id = packet.brokerId;
    // Retained messages sent for a SUBSCRIBE carry no broker id: never deduplicated.
    if (!id) return false;
    const counter = packet.brokerCounter ?? 0;
    for (let i = 0; i < REMEMBERED; i++) if (counters[i] === counter && ids[i] === id) return true;
    ids[next] = id;
    counters[next] = counter;
    next = (next + 1) % REMEMBERED;
    return false;
  };

  const deliver0 = internals.deliver0;
  const deliverQoS = internals.deliverQoS;
  internals.deliver0 = (packet, callback) => {
    if (!internals.connackSent) hold(client, () => internals.deliver0(packet, callback), callback);
    else if (isRepeat(packet)) setImmediate(callback);
    else deliver0(packet, callback);
  };
  internals.deliverQoS = (packet, callback) => {
    if (!internals.connackSent) {
      hold(client, () => internals.deliverQoS(packet, callback), callback);
      return;
    }
    // Aedes' deliverQoS hands a QoS 0 message to this.deliver0: checked there, once.
    if (!packet.qos) internals.deliver0(packet, callback);
    else if (isRepeat(packet)) setImmediate(callback);
    else {
      // A session coming back may have had this message from its queue already.
      const own = claimLiveDelivery(client, packet, callback);
      if (own) deliverQoS(packet, own);
      else setImmediate(callback);
    }
  };
}

/** Deliveries waiting for their client's CONNACK: each to run, or to give up (its callback). */
const held = new WeakMap<object, { run: () => void; skip: () => void }[]>();

/**
 * A persistent session's subscriptions are restored before its CONNACK is
 * sent (lib/handlers/connect.js, restoreSubs before doConnack), and Aedes
 * writes whatever reaches them at once: a PUBLISH went out before the
 * CONNACK, against [MQTT-3.2.0-1], and mqtt.js, waiting for its CONNACK,
 * stalled on it and gave up ("connack timeout"). Such deliveries wait here
 * until `releaseHeldDeliveries` (the broker's `connackSent` event), or are
 * dropped when the connection closes first (the session keeps them queued).
 */
function hold(client: AedesClient, run: () => void, skip: () => void): void {
  // Closed already (its 'close' came and went; the bus lets go of its
  // listeners a turn later): nothing would release this delivery.
  const internals = client as unknown as AedesClientInternals & { closed?: boolean; conn: { destroyed?: boolean } };
  if (internals.closed || internals.conn.destroyed) {
    setImmediate(skip);
    return;
  }
  let waiting = held.get(client);
  if (!waiting) {
    held.set(client, (waiting = []));
    (client as unknown as AedesClientInternals).conn.once('close', () => {
      const dropped = held.get(client) ?? [];
      held.delete(client);
      for (const delivery of dropped) setImmediate(delivery.skip);
    });
  }
  waiting.push({ run, skip });
}

/** Sends, in order, what reached `client` before its CONNACK was sent. */
export function releaseHeldDeliveries(client: AedesClient): void {
  if (!held.has(client)) return;
  // Aedes emits `connackSent` just before it sets `client.connackSent`.
  queueMicrotask(() => {
    const waiting = held.get(client);
    held.delete(client);
    for (const delivery of waiting ?? []) delivery.run();
  });
}
