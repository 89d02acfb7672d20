import type { Client as AedesClient, PublishPacket } from 'aedes';
import { brokerOf } from './client';
import type { Expectation } from './expectation';
import { packageSource } from './packages';

/**
 * Which copy of an incoming QoS 2 message is the first: the one a hook that
 * acts on accepted messages (the pipelines' outbox) may act on; a copy sent
 * again (DUP, the same packet id, e.g. after a reconnect before PUBREC came)
 * must not act a second time.
 *
 * Aedes tells them apart only after its publish hooks ran: authorizePublish
 * comes first, then lib/handlers/publish.js (enqueuePublish) looks the packet
 * id up in the session's incoming store, answers a copy it finds with PUBREC
 * only, and else stores the message and publishes it. Here the same question
 * is asked before the hook, and one more case is covered: a copy that arrives
 * while the first is still being judged or stored (a device that gave up
 * waiting for a PUBREC held up by a slow hook) is not in the store yet. Each
 * first copy is remembered on this node, by client id and packet id, until
 * Aedes has stored it (a later copy is a repeat) or has not (a later copy is
 * judged afresh); a copy that finds one waits for it.
 *
 * Across nodes (Redis) a copy that arrives at another node while the first is
 * still being judged is not recognised: the store is shared, this memory is not.
 */

type IncomingStore = {
  incomingGetPacket(client: AedesClient, packet: PublishPacket): Promise<unknown>;
  incomingStorePacket(client: AedesClient, packet: PublishPacket): Promise<unknown>;
};

/** The first copy of a QoS 2 message, while the broker judges it. */
export interface FirstCopy {
  /** The hook accepted it: `callback` hands it back to Aedes, which stores and publishes it. */
  accept(callback: (error: null) => void): void;
  /** It was refused (nothing is stored): a later copy is judged afresh. */
  refuse(): void;
}

interface Arrival {
  /** The connection it came on. */
  readonly owner: AedesClient;
  /** True once Aedes stored it, false if it did not. */
  readonly stored: Promise<boolean>;
  settle(stored: boolean): void;
  /** `judged`: the hooks have it; `handed`: back with Aedes, which looks it up; `storing`: Aedes stores it. */
  phase: 'judged' | 'handed' | 'looked-up' | 'storing';
}

const arrivalsOf = new WeakMap<object, Map<string, Arrival>>();

function arrivals(client: AedesClient): Map<string, Arrival> {
  let map = arrivalsOf.get(brokerOf(client));
  if (!map) {
    map = new Map();
    arrivalsOf.set(brokerOf(client), map);
  }
  return map;
}

const keyOf = (client: AedesClient, packet: PublishPacket) => `${packet.messageId} ${client.id}`;

function remember(map: Map<string, Arrival>, key: string, owner: AedesClient): Arrival {
  let settle!: (stored: boolean) => void;
  const stored = new Promise<boolean>((resolve) => (settle = resolve));
  const arrival: Arrival = {
    owner,
    stored,
    phase: 'judged',
    settle(result) {
      if (map.get(key) === arrival) map.delete(key);
      settle(result);
    },
  };
  map.set(key, arrival);
  return arrival;
}

/**
 * For an incoming QoS 2 PUBLISH about to be handed to the hook: the first
 * copy, or null for a copy of a message Aedes has already stored (it answers
 * PUBREC and publishes nothing). Never rejects.
 */
export async function firstCopy(client: AedesClient, packet: PublishPacket): Promise<FirstCopy | null> {
  const map = arrivals(client);
  const key = keyOf(client, packet);
  for (let earlier = map.get(key); earlier; earlier = map.get(key)) {
    // A clean session numbers its packets afresh: a copy still judged for an
    // earlier connection of this client id is another message, not this one
    // sent again. It goes on untracked (the lookups below ask for their owner).
    if (client.clean && earlier.owner !== client) break;
    if (await earlier.stored) return null;
  }
  const arrival = remember(map, key, client);
  const store = brokerOf(client).persistence as unknown as IncomingStore;
  // As Aedes asks it: any rejection means "not stored".
  const found = await store.incomingGetPacket(client, packet).then(
    () => true,
    () => false,
  );
  if (found) {
    arrival.settle(true);
    return null;
  }
  return {
    accept(callback) {
      arrival.phase = 'handed';
      // Aedes looks the packet id up at once (incomingLookup below) ...
      callback(null);
      // ... unless it went another way: nothing will be stored.
      if (arrival.phase === 'handed') arrival.settle(false);
    },
    refuse: () => arrival.settle(false),
  };
}

/** The first copy this connection's call is about, if it is tracked. */
function arrivalOf(client: AedesClient, packet: PublishPacket): Arrival | undefined {
  const arrival = arrivalsOf.get(brokerOf(client))?.get(keyOf(client, packet));
  return arrival?.owner === client ? arrival : undefined;
}

/**
 * The incoming store's calls as Aedes makes them for a first copy handed
 * back (sessionStore.ts wraps the store with these): its lookup, which finds
 * nothing, and then its write.
 */
export function incomingLookup(client: AedesClient, packet: PublishPacket, lookup: Promise<unknown>): Promise<unknown> {
  const arrival = arrivalOf(client, packet);
  if (arrival?.phase !== 'handed') return lookup;
  arrival.phase = 'looked-up';
  lookup.then(
    () => arrival.settle(true),
    // Aedes answers "not found" at once with the write (incomingWrite); without it, nothing was stored.
    () => setImmediate(() => arrival.phase === 'looked-up' && arrival.settle(false)),
  );
  return lookup;
}

export function incomingWrite(client: AedesClient, packet: PublishPacket, write: () => Promise<unknown>): Promise<unknown> {
  const arrival = arrivalOf(client, packet);
  if (arrival?.phase !== 'looked-up') return write();
  arrival.phase = 'storing';
  const written = write();
  written.then(
    () => arrival.settle(true),
    () => arrival.settle(false),
  );
  return written;
}

/** What Aedes must still do for the above: judge a PUBLISH before looking its packet id up, then store a new QoS 2 message. */
export const incomingExpectations: Expectation[] = [
  {
    packageName: 'aedes',
    what: 'lib/handlers/publish.js no longer authorizes a PUBLISH before it looks a QoS 2 packet id up in the incoming store, then stores it (a QoS 2 message sent again would be forwarded twice)',
    holds: () => {
      const source = packageSource('aedes', 'lib/handlers/publish.js');
      const order = ['authorizePublish,\n  enqueuePublish', 'persistence.incomingGetPacket(client, packet)', 'persistence.incomingStorePacket(client, packet)'];
      const at = order.map((text) => source.indexOf(text));
      return at.every((index, i) => index >= 0 && (i === 0 || index > at[i - 1]!));
    },
  },
];
