import type { AedesOptions, Client as AedesClient, PublishPacket } from 'aedes';
import { claimQueuedDelivery, isRepeatedDelivery } from './delivery';
import type { Expectation } from './expectation';
import { incomingLookup, incomingWrite } from './incoming';
import { packageSource } from './packages';

type Persistence = NonNullable<AedesOptions['persistence']>;
type Subscription = { topic: string; qos: number; rap?: boolean };
type QueuedPacket = { retain?: boolean } & Record<string, unknown>;
type OutgoingPacket = { cmd?: string; brokerId?: string | null; brokerCounter?: number; writeCallback?: unknown };
type SessionClient = AedesClient;

interface SessionStoreMethods {
  addSubscriptions(client: unknown, subs: Subscription[]): Promise<unknown>;
  outgoingEnqueueCombi(subs: Subscription[], packet: QueuedPacket): Promise<unknown>;
  outgoingUpdate(client: SessionClient, packet: OutgoingPacket): Promise<unknown>;
  outgoingClearMessageId(client: SessionClient, packet: OutgoingPacket): Promise<unknown>;
  incomingGetPacket(client: SessionClient, packet: PublishPacket): Promise<unknown>;
  incomingStorePacket(client: SessionClient, packet: PublishPacket): Promise<unknown>;
  /** Absent from the in-memory store; Aedes checks for it. */
  cleanIncoming?(client: SessionClient): Promise<unknown>;
}

/** Client ids remembered with an empty incoming store (about 100 bytes each); beyond, the memory starts over. */
const MAX_KNOWN_EMPTY = 100_000;

/**
 * Aedes' persistence (LevelDB, Redis or in memory) with what Aedes 1.2 asks of
 * it put right, whichever store is below:
 *
 * - **One write per SUBSCRIBE.** Aedes stores a persistent session's
 *   subscriptions once per filter of a SUBSCRIBE, each time with all of its
 *   filters (lib/handlers/subscribe.js, storeSubscriptions). On LevelDB that
 *   is n² writes; on Redis the calls wait for their broadcast under one key
 *   (the client and its first filter), so all but the last never resolve and
 *   a SUBSCRIBE of two filters or more gets no SUBACK. The calls for one
 *   SUBSCRIBE share its array of filters: the first one is made, the others
 *   get its result.
 * - **Queued messages are not retained messages.** A message queued for a
 *   session that is away is stored as it was published, RETAIN flag
 *   included, and sent so when the session comes back. [MQTT-3.3.1-9]: a
 *   message sent because of a subscription that already existed has RETAIN=0
 *   (MQTT 5's retain-as-published subscriptions keep it, when every session
 *   the message is queued for has one: the store keeps one copy for all).
 * - **Each queued message once when a session comes back** (delivery.ts):
 *   the queued copy of a message the session was already sent live is
 *   neither given a packet id here nor taken off the queue for its refusal.
 * - **PUBREC always gets its PUBREL** ([MQTT-4.3.3-8]): for a packet id the
 *   store no longer knows, PUBREL is still sent rather than an error
 *   disconnecting the session.
 * - **A QoS 2 message sent again is accepted once** (incoming.ts): the
 *   incoming store's lookup and write of a first copy tell when Aedes has
 *   stored it.
 * - **An incoming store known empty is not cleared again** (`onlyNode`: the
 *   store is this process's alone). Aedes clears a session's incoming QoS 2
 *   messages at every clean connect and at every disconnect (patch 003,
 *   `cleanIncoming`), nearly always an empty range. LevelDB has no range
 *   delete: each clear walks the range with an iterator over every table,
 *   mostly on the event loop's thread, about 30 % of a reconnect storm's CPU
 *   (bench/README.md, "Where a CONNECT's CPU goes"). A client id whose
 *   incoming store was cleared here, with nothing stored since, is known
 *   empty and its next clear is skipped; the first clear of each client id
 *   after a start still goes to the store (it may hold messages from before).
 *   With several nodes the store is shared and every clear goes to it.
 */
export function fixSessionStore(persistence: Persistence, options: { onlyNode?: boolean } = {}): Persistence {
  const store = persistence as unknown as SessionStoreMethods;
  const subscribing = new WeakMap<Subscription[], Promise<unknown>>();
  let knownEmpty = new Set<string>();
  /** Incoming messages stored so far: a clear during which one was stored proves nothing. */
  let incomingStores = 0;

  const overrides: SessionStoreMethods = {
    addSubscriptions(client, subs) {
      let stored = subscribing.get(subs);
      if (!stored) {
        stored = store.addSubscriptions(client, subs);
        subscribing.set(subs, stored);
      }
      return stored;
    },
    outgoingEnqueueCombi(subs, packet) {
      // One call for all: Redis stores the message once, counted for its sessions.
      const keepRetain = !packet.retain || (subs ?? []).every((sub) => sub.rap);
      // A copy: the packet itself goes on to the subscribers online.
      return store.outgoingEnqueueCombi(subs, keepRetain ? packet : { ...packet, retain: false });
    },
    async outgoingUpdate(client, packet) {
      if (packet.cmd === 'publish' && !claimQueuedDelivery(client, packet)) return packet;
      try {
        return await store.outgoingUpdate(client, packet);
      } catch (error) {
        // LevelDB says 'no such packet', Redis 'unknown key' for a packet id it no longer knows.
        if (packet.cmd === 'pubrel' && error instanceof Error && UNKNOWN_PACKET_ID.test(error.message)) return packet;
        throw error;
      }
    },
    async outgoingClearMessageId(client, packet) {
      // Its packet id was never stored; the entry belongs to the copy sent live.
      if (isRepeatedDelivery(client, packet)) return undefined;
      return store.outgoingClearMessageId(client, packet);
    },
    incomingGetPacket(client, packet) {
      return incomingLookup(client, packet, store.incomingGetPacket(client, packet));
    },
    incomingStorePacket(client, packet) {
      // Counted when issued and again when it lands: a write issued before a
      // clear began may land after it (LevelDB runs them as separate jobs), so
      // that clear must not mark the client id empty.
      const stored = () => {
        incomingStores++;
        knownEmpty.delete(client.id);
      };
      stored();
      const written = incomingWrite(client, packet, () => store.incomingStorePacket(client, packet));
      written.then(stored, stored);
      return written;
    },
  };
  const cleanIncoming = store.cleanIncoming?.bind(store);
  if (cleanIncoming && options.onlyNode) {
    overrides.cleanIncoming = async (client) => {
      const id = client.id;
      if (knownEmpty.has(id)) return undefined;
      const storesBefore = incomingStores;
      const cleared = await cleanIncoming(client);
      if (incomingStores === storesBefore) {
        if (knownEmpty.size >= MAX_KNOWN_EMPTY) knownEmpty = new Set();
        knownEmpty.add(id);
      }
      return cleared;
    };
  }

  return new Proxy(persistence, {
    get(target, key, receiver) {
      if (key in overrides) return overrides[key as keyof SessionStoreMethods];
      const value = Reflect.get(target, key, receiver);
      // Bound to the store itself: its methods use private fields. A bound
      // async function stays one (Aedes checks that setup() is async).
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** The stores' errors for a packet id they no longer know (checked at start). */
const UNKNOWN_PACKET_ID = /^(no such packet|unknown key)$/;

/** What the stores must still say and have for the fixes above. */
export const sessionStoreExpectations: Expectation[] = [
  {
    packageName: 'aedes-persistence-level',
    what: 'it no longer clears incoming messages with cleanIncoming, or stores them otherwise than with incomingStorePacket (an incoming store known empty would not be)',
    holds: () => {
      const source = packageSource('aedes-persistence-level', 'asyncPersistence.js');
      return source.includes('async cleanIncoming (client)') && (source.match(/incomingKey\(/g) ?? []).length === 3 && source.includes('async incomingStorePacket (client, packet)');
    },
  },
  {
    packageName: 'aedes-persistence-level',
    what: "its error for an unknown packet id is no longer 'no such packet' (PUBREC would lose its PUBREL)",
    holds: () => packageSource('aedes-persistence-level', 'asyncPersistence.js').includes("'no such packet'"),
  },
  {
    packageName: 'aedes-persistence-redis',
    what: "its error for an unknown packet id is no longer 'unknown key' (PUBREC would lose its PUBREL)",
    holds: () => packageSource('aedes-persistence-redis', 'asyncPersistence.js').includes("'unknown key'"),
  },
];
