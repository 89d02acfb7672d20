import type { Client as AedesClient } from 'aedes';
import { connackSent, isClosed, replaceDeliveries, streamOf, type DeliveredPacket } from './client';

/**
 * What one client's deliveries need remembered, in one place: its latest
 * deliveries (exact deduplication), what waits for its CONNACK, and, while a
 * persistent session comes back, which messages it was sent by which way.
 * Kept per client (a WeakMap from the Aedes client), read by the delivery
 * functions installed here and by the session store (sessionStore.ts).
 *
 * **Exact deduplication.** A message that matches two filters of one session
 * reaches that client twice from the bus, and Aedes sends it once
 * (moscajs/aedes#37) by keeping, per client, the highest `brokerCounter`
 * delivered so far and dropping anything at or below it. But counters are
 * taken when a message is published, and a QoS 1/2 message reaches the bus
 * only after it has been written to every offline session's queue, while a
 * QoS 0 message goes at once: a QoS 0 message published a moment later
 * overtakes it, raises the mark, and the QoS 1/2 message is then dropped for
 * every connected subscriber of both — lost, PUBACK already sent.
 * moscajs/aedes#955 and #994 (open in Aedes 1.2; PR #972 proposes a history of
 * counters). Here a client remembers the exact (broker, counter) pairs of its
 * latest deliveries instead: a repeat of one of those is dropped, anything
 * else is delivered, whatever its counter. Aedes' own mark is turned off.
 *
 * **Nothing before CONNACK** ([MQTT-3.2.0-1]). A persistent session's
 * subscriptions are restored before its CONNACK is sent
 * (lib/handlers/connect.js, restoreSubs before doConnack), and Aedes writes
 * whatever reaches them at once; mqtt.js, waiting for its CONNACK, stalled on
 * such a PUBLISH and gave up ("connack timeout"). Such deliveries wait until
 * the broker's `connackSent` event (`releaseHeldDeliveries`), or are given
 * back when the connection closes first (the session keeps them queued).
 *
 * **Each queued message once when a persistent session comes back.** Aedes
 * queues every QoS 1/2 message for every persistent subscription, the session
 * online or not, and a session online takes its copy off the queue when it
 * acknowledges the live delivery. When a session comes back, Aedes restores
 * its subscriptions (live delivery starts), then reads its queue and sends it
 * (lib/handlers/connect.js, emptyQueue). A message published in between is in
 * both: it went out twice, each copy under its own packet id, both pointing
 * at one stored entry; the PUBREC of the first found "no such packet" and the
 * session was disconnected, or (Redis) the message was delivered twice. Here
 * a session remembers, from its CONNECT until a few seconds after it is
 * connected, the messages it was sent either way; the other copy of one of
 * those is not sent. The live copy is refused before Aedes stores anything
 * for it; the queued copy is recognised when the queue asks the store to
 * record its packet id, which is skipped, and then refused by the broker's
 * authorizeForward (`isRepeatedDelivery`).
 */
class DeliveryState {
  private readonly ids: (string | undefined)[] = new Array(REMEMBERED);
  private readonly counters: number[] = new Array(REMEMBERED).fill(0);
  private next = 0;
  /** Deliveries waiting for the CONNACK: each to run, or to give back (its callback). */
  held: { run: () => void; skip: () => void }[] | undefined;
  /** While a persistent session comes back: what it was sent, and when that is forgotten. */
  resume: { sent: Set<string>; until?: number } | undefined;
  /** Callbacks of live deliveries to a resuming session: their store write is theirs. */
  readonly liveCallbacks = new WeakSet<object>();
  /** Queued copies of messages the session was already sent: neither stored nor written. */
  readonly repeats = new WeakSet<object>();

  /** True if this exact message was delivered to the client lately; remembers it otherwise. */
  isRepeat(packet: DeliveredPacket): boolean {
    const id = packet.brokerId;
    // Retained messages sent for a SUBSCRIBE carry no broker id: never deduplicated.
    if (!id) return false;
    const counter = packet.brokerCounter ?? 0;
    for (let i = 0; i < REMEMBERED; i++) if (this.counters[i] === counter && this.ids[i] === id) return true;
    this.ids[this.next] = id;
    this.counters[this.next] = counter;
    this.next = (this.next + 1) % REMEMBERED;
    return false;
  }
}

/**
 * How many of a client's latest deliveries are remembered. The copies of one
 * message that a client's overlapping filters produce come in one synchronous
 * pass of the message bus over its listeners, with no other message for that
 * client in between, so a few are plenty.
 */
const REMEMBERED = 16;

/** How long after the session is connected a late copy is still recognised. */
export const RESUME_GRACE_MS = 5_000;

const states = new WeakMap<object, DeliveryState>();

function stateOf(client: AedesClient): DeliveryState {
  let state = states.get(client);
  if (!state) states.set(client, (state = new DeliveryState()));
  return state;
}

/**
 * Installs exact deduplication, the hold until CONNACK and the resume check
 * on `client`. Call it right after `aedes.handle()`, before it subscribes.
 */
export function manageDeliveries(client: AedesClient): void {
  const state = stateOf(client);
  replaceDeliveries(client, (original) => {
    const deliver0 = (packet: DeliveredPacket, callback: () => void) => {
      if (!connackSent(client)) hold(client, state, () => deliver0(packet, callback), callback);
      else if (state.isRepeat(packet)) setImmediate(callback);
      else original.deliver0(packet, callback);
    };
    const deliverQoS = (packet: DeliveredPacket, callback: () => void) => {
      if (!connackSent(client)) {
        hold(client, state, () => deliverQoS(packet, callback), callback);
        return;
      }
      // Aedes' deliverQoS hands a QoS 0 message to deliver0: checked there, once.
      if (!packet.qos) deliver0(packet, callback);
      else if (state.isRepeat(packet)) setImmediate(callback);
      else {
        // A session coming back may have had this message from its queue already.
        const own = claimLiveDelivery(client, packet, callback);
        if (own) original.deliverQoS(packet, own);
        else setImmediate(callback);
      }
    };
    return { deliver0, deliverQoS };
  });
}

function hold(client: AedesClient, state: DeliveryState, run: () => void, skip: () => void): void {
  // Closed already (its 'close' came and went; the bus lets go of its
  // listeners a turn later): nothing would release this delivery.
  if (isClosed(client)) {
    setImmediate(skip);
    return;
  }
  if (!state.held) {
    state.held = [];
    streamOf(client).once('close', () => {
      const dropped = state.held ?? [];
      state.held = undefined;
      for (const delivery of dropped) setImmediate(delivery.skip);
    });
  }
  state.held.push({ run, skip });
}

/** Sends, in order, what reached `client` before its CONNACK was sent (the broker's `connackSent` event). */
export function releaseHeldDeliveries(client: AedesClient): void {
  const state = states.get(client);
  if (!state?.held) return;
  // Aedes emits `connackSent` just before it sets `client.connackSent`.
  queueMicrotask(() => {
    const waiting = state.held;
    state.held = undefined;
    for (const delivery of waiting ?? []) delivery.run();
  });
}

const keyOf = (message: DeliveredPacket) => `${message.brokerId}:${message.brokerCounter}`;

/** The resume record of a persistent session coming back, or undefined once it is over. */
function resumeOf(client: AedesClient): DeliveryState['resume'] {
  if (client.clean) return undefined;
  const state = stateOf(client);
  if (client.connected) {
    const resume = state.resume;
    if (!resume) return undefined;
    forgetLater(state, resume);
    if (Date.now() > resume.until!) {
      state.resume = undefined;
      return undefined;
    }
    return resume;
  }
  state.resume ??= { sent: new Set() };
  return state.resume;
}

/** Starts the grace of a resume record: it is forgotten RESUME_GRACE_MS from now, delivery or not. */
function forgetLater(state: DeliveryState, resume: NonNullable<DeliveryState['resume']>): void {
  if (resume.until !== undefined) return;
  resume.until = Date.now() + RESUME_GRACE_MS;
  setTimeout(() => {
    if (state.resume === resume) state.resume = undefined;
  }, RESUME_GRACE_MS + 1).unref();
}

/**
 * The session of `client` is connected (the broker's `clientReady`: its
 * queue has been sent): what it was sent while it came back is forgotten
 * after the grace, even if nothing more is ever delivered to it. (Waiting
 * for its next delivery kept a queue's worth of keys for as long as the
 * session stayed quiet.)
 */
export function sessionConnected(client: AedesClient): void {
  const state = states.get(client);
  if (state?.resume) forgetLater(state, state.resume);
}

/** True while `client` holds the record of a session coming back (tests). */
export function isResuming(client: AedesClient): boolean {
  return states.get(client)?.resume !== undefined;
}

/**
 * For a live QoS 1/2 delivery: the callback to hand on to Aedes' delivery,
 * or undefined when the session was already sent this message from its
 * queue and this copy must be dropped.
 */
function claimLiveDelivery<T extends object>(client: AedesClient, message: DeliveredPacket, callback: T): T | undefined {
  if (!message.brokerId) return callback;
  const resume = resumeOf(client);
  if (!resume) return callback;
  const key = keyOf(message);
  if (resume.sent.has(key)) return undefined;
  resume.sent.add(key);
  const own = ((...args: unknown[]) => (callback as (...a: unknown[]) => unknown)(...args)) as unknown as T;
  stateOf(client).liveCallbacks.add(own);
  return own;
}

/**
 * For the store's `outgoingUpdate` of a publish: false when this is the
 * queued copy of a message the session was already sent live (then it is
 * neither stored nor written).
 */
export function claimQueuedDelivery(client: AedesClient, packet: DeliveredPacket & { writeCallback?: unknown }): boolean {
  if (!packet.brokerId) return true;
  const state = stateOf(client);
  if (typeof packet.writeCallback === 'function' && state.liveCallbacks.has(packet.writeCallback)) return true;
  const resume = resumeOf(client);
  if (!resume) return true;
  const key = keyOf(packet);
  if (resume.sent.has(key)) {
    state.repeats.add(packet);
    return false;
  }
  resume.sent.add(key);
  return true;
}

/** True for a queued copy `claimQueuedDelivery` refused. */
export function isRepeatedDelivery(client: AedesClient, packet: object): boolean {
  return states.get(client)?.repeats.has(packet) ?? false;
}
