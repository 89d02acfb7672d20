import type { Aedes, Client as AedesClient } from 'aedes';
import type { Expectation } from './expectation';

/**
 * A stored session no connection serves: what Gatehouse does to it when its
 * MQTT 5 expiry falls while no node had it in a timer (across a restart,
 * session-expiry.ts). Aedes arms expiry in memory only; the wipe below is
 * what its own timer does (aedes.js `_wipeSession`), by client id.
 */
interface StoredSessionInternals {
  /** Client ids whose session a new connection is taking over right now. */
  _takingOver: Set<string>;
  clients: Record<string, AedesClient | undefined>;
  persistence: {
    cleanSubscriptions(client: { id: string }): Promise<unknown>;
    delWill(client: { id: string; brokerId: string }): Promise<unknown>;
    cleanIncoming?(client: { id: string }): Promise<unknown>;
    outgoingStream(client: { id: string }): AsyncIterable<StoredPacket>;
    outgoingUpdate(client: { id: string }, packet: StoredPacket): Promise<unknown>;
    outgoingClearMessageId(client: { id: string }, packet: StoredPacket): Promise<unknown>;
  };
}

type StoredPacket = { messageId?: number | null } & Record<string, unknown>;

const internals = (aedes: Aedes) => aedes as unknown as StoredSessionInternals;

/** True while a new connection of `clientId` takes its session over: the old connection's end leaves the session to it. */
export function isBeingTakenOver(aedes: Aedes, clientId: string): boolean {
  return internals(aedes)._takingOver.has(clientId);
}

/** True when a connection of `clientId` is open on this node. */
export function isConnectedHere(aedes: Aedes, clientId: string): boolean {
  return internals(aedes).clients[clientId] !== undefined;
}

/**
 * Removes the stored session of `clientId`: its subscriptions, will, inbound
 * QoS 2 ids and queued messages. The stores clear a queued message by its
 * packet id, which one never sent does not have: each gets a free one first
 * (as patch 013 does for a client's own queue).
 */
export async function wipeStoredSession(aedes: Aedes, clientId: string): Promise<void> {
  const store = internals(aedes).persistence;
  const client = { id: clientId };
  await store.cleanSubscriptions(client);
  await store.delWill({ id: clientId, brokerId: aedes.id });
  await store.cleanIncoming?.(client);
  const queued: StoredPacket[] = [];
  for await (const packet of store.outgoingStream(client)) queued.push(packet);
  const used = new Set(queued.map((packet) => packet.messageId).filter((id): id is number => typeof id === 'number' && id > 0));
  let next = 1;
  for (const packet of queued) {
    if (typeof packet.messageId !== 'number' || packet.messageId <= 0) {
      while (used.has(next)) next++;
      packet.messageId = next++;
      await store.outgoingUpdate(client, packet);
    }
    await store.outgoingClearMessageId(client, packet);
  }
}

/** What the functions above read on a broker. */
export function storedSessionExpectations(probe: () => AedesClient): Expectation[] {
  const broker = () => (probe() as unknown as { broker: StoredSessionInternals }).broker;
  return [
    { packageName: 'aedes', what: "the broker's `_takingOver` (client ids being taken over) is no longer a Set", holds: () => broker()._takingOver instanceof Set },
    { packageName: 'aedes', what: "the broker's `clients` (connections by client id) is gone", holds: () => typeof broker().clients === 'object' && broker().clients !== null },
  ];
}
