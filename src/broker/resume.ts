/**
 * Each queued message once when a persistent session comes back.
 *
 * Aedes queues every QoS 1/2 message for every persistent subscription, the
 * session online or not, and a session online takes its copy off the queue
 * when it acknowledges the live delivery. When a session comes back, Aedes
 * restores its subscriptions (live delivery starts), then reads its queue and
 * sends it (lib/handlers/connect.js, emptyQueue). A message published in
 * between is in both: it went out twice, each copy under its own packet id,
 * both pointing at one stored entry. The store then knows only the second
 * packet id, so the PUBREC of the first found "no such packet" and the
 * session was disconnected, or (Redis) the message was delivered twice.
 *
 * Here a session remembers, from its CONNECT until a few seconds after its
 * queue is sent, the messages (broker id and counter) it was sent either
 * way; the other copy of one of those is not sent. The live copy is refused
 * before Aedes stores anything for it (src/broker/exactDedupe.ts); the queued
 * copy is recognised when the queue asks the store to record its packet id,
 * which is skipped, and then refused by the broker's authorizeForward.
 */

type ResumingClient = { connected?: boolean; clean?: boolean };
type Message = { brokerId?: string | null; brokerCounter?: number };

/** How long after the queue is sent a late live copy is still recognised. */
const GRACE_MS = 5_000;

interface Resume {
  sent: Set<string>;
  /** When it is forgotten; set once the session is connected. */
  until?: number;
}

const resumes = new WeakMap<object, Resume>();
/** Callbacks of live deliveries to a resuming session: their store write is theirs. */
const liveCallbacks = new WeakSet<object>();
/** Queued copies of messages the session was already sent: neither stored nor written. */
const repeats = new WeakSet<object>();

const keyOf = (message: Message) => `${message.brokerId}:${message.brokerCounter}`;

function resumeOf(client: ResumingClient): Resume | undefined {
  if (client.clean) return undefined;
  let resume = resumes.get(client);
  if (client.connected) {
    if (!resume) return undefined;
    const now = Date.now();
    resume.until ??= now + GRACE_MS;
    if (now > resume.until) {
      resumes.delete(client);
      return undefined;
    }
    return resume;
  }
  if (!resume) resumes.set(client, (resume = { sent: new Set() }));
  return resume;
}

/**
 * For a live QoS 1/2 delivery: the callback to hand on to Aedes' delivery,
 * or undefined when the session was already sent this message from its
 * queue and this copy must be dropped.
 */
export function claimLiveDelivery<T extends object>(client: ResumingClient, message: Message, callback: T): T | undefined {
  if (!message.brokerId) return callback;
  const resume = resumeOf(client);
  if (!resume) return callback;
  const key = keyOf(message);
  if (resume.sent.has(key)) return undefined;
  resume.sent.add(key);
  const own = ((...args: unknown[]) => (callback as (...a: unknown[]) => unknown)(...args)) as unknown as T;
  liveCallbacks.add(own);
  return own;
}

/**
 * For the store's `outgoingUpdate` of a publish: false when this is the
 * queued copy of a message the session was already sent live (then it is
 * neither stored nor written).
 */
export function claimQueuedDelivery(client: ResumingClient, packet: Message & { writeCallback?: unknown }): boolean {
  if (!packet.brokerId) return true;
  if (typeof packet.writeCallback === 'function' && liveCallbacks.has(packet.writeCallback)) return true;
  const resume = resumeOf(client);
  if (!resume) return true;
  const key = keyOf(packet);
  if (resume.sent.has(key)) {
    repeats.add(packet);
    return false;
  }
  resume.sent.add(key);
  return true;
}

/** True for a queued copy `claimQueuedDelivery` refused. */
export function isRepeatedDelivery(packet: object): boolean {
  return repeats.has(packet);
}
