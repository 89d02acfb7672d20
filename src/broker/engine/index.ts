import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Aedes, type AedesOptions, type Client as AedesClient } from 'aedes';
import { checkEngine } from './check';
import { manageDeliveries, releaseHeldDeliveries, sessionConnected } from './delivery';
import { limitPacketSize } from './parser';
import { fixSessionStore } from './sessionStore';
import { isBeingTakenOver, isConnectedHere, wipeStoredSession } from './storedSessions';
import { engineTopics, type EngineTopics } from './topics';

export { connackSent, dropPendingWill, isOwnWill, pendingWill, streamOf, subscriptionCount, subscriptionFilters, type EngineClient, type PendingWill } from './client';
export { isRepeatedDelivery } from './delivery';
export { firstCopy, type FirstCopy } from './incoming';
export { checkEngine } from './check';
export { EngineMismatchError } from './packages';
export type { EngineTopics, RetainedMessage, TappedMessage } from './topics';

/**
 * The MQTT engine (Aedes 2.0 beta, patched) behind one seam: the rest of the broker gives it
 * hooks and listens to its events, and reaches nothing inside it but through
 * this folder. Everything version-specific (private fields, the patch, the
 * stores' quirks) lives here, checked at start by checkEngine.
 */
export interface EngineOptions {
  /** This node's id. */
  id: string;
  mq?: AedesOptions['mq'];
  persistence?: AedesOptions['persistence'];
  drainTimeoutMs: number;
  concurrency: number;
  connectTimeoutMs: number;
  keepaliveLimitS: number;
  maxClientIdLength: number;
  queueLimit: number;
  heartbeatIntervalMs?: number;
  /** Every connection's parser fails a packet announced larger than this. */
  maxPacketBytes: number;
  /** MQTT 5 (README, "MQTT 5"): advertised in CONNACK and enforced. */
  maxSessionExpiryS: number;
  receiveMaximum: number;
  topicAliasMaximum: number;
  /** MQTT 5: messages waiting, per client, for room in its own Receive Maximum (patch 011). */
  outgoingQueueLimit: number;
  hooks: Pick<AedesOptions, 'preConnect' | 'authenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'authorizeForward'>;
  events: {
    /** A session is open (its CONNACK is on its way). */
    opened(client: AedesClient): void;
    /** A session that opened has ended. */
    ended(client: AedesClient): void;
    unsubscribed(filters: string[], client: AedesClient): void;
    /** MQTT 5: the engine's own timer removed the session of `clientId` (its expiry came while this node ran). */
    sessionExpired(clientId: string): void;
    clientError(client: AedesClient, error: Error): void;
  };
}

export interface Engine {
  /** The Aedes instance itself: for tests that listen to its events; Gatehouse's own code does not use it. */
  aedes: Aedes;
  /** This node's id (Aedes' broker id, used by the bus and in session ids). */
  id: string;
  /** Starts MQTT on a connected stream. */
  handle(stream: Duplex, req?: IncomingMessage): AedesClient;
  /** Retained messages and the live tail (the Topics page). */
  topics: EngineTopics;
  /** Closes every client and the bus. */
  close(): Promise<void>;
  /** Removes the stored session of a client id no connection serves (storedSessions.ts). */
  wipeStoredSession(clientId: string): Promise<void>;
  /** True while a new connection of `clientId` takes its session over. */
  isBeingTakenOver(clientId: string): boolean;
  /** True when a connection of `clientId` is open on this node. */
  isConnectedHere(clientId: string): boolean;
  /** No bus (`mq`): this node is the only one, and its store is its alone. */
  onlyNode: boolean;
}

export async function startEngine(options: EngineOptions): Promise<Engine> {
  await checkEngine();
  const onlyNode = !options.mq;
  const aedes = await Aedes.createBroker({
    id: options.id,
    mq: options.mq,
    persistence: options.persistence && fixSessionStore(options.persistence, { onlyNode }),
    drainTimeout: options.drainTimeoutMs,
    concurrency: options.concurrency,
    connectTimeout: options.connectTimeoutMs,
    keepaliveLimit: options.keepaliveLimitS,
    maxClientsIdLength: options.maxClientIdLength,
    queueLimit: options.queueLimit,
    heartbeatInterval: options.heartbeatIntervalMs,
    sessionExpiryIntervalLimit: options.maxSessionExpiryS,
    maximumPacketSize: options.maxPacketBytes,
    receiveMaximum: options.receiveMaximum,
    topicAliasMaximum: options.topicAliasMaximum,
    // Patch 002's option (Aedes 1.2's) and patch 011's, absent from the beta's types.
    ...({ maxInflightInbound: options.receiveMaximum, outgoingQueueLimit: options.outgoingQueueLimit } as Partial<AedesOptions>),
    ...options.hooks,
  });
  aedes.on('connackSent', (_connack, client) => releaseHeldDeliveries(client));
  aedes.on('clientReady', (client) => sessionConnected(client));
  aedes.on('client', (client) => options.events.opened(client));
  aedes.on('clientDisconnect', (client) => options.events.ended(client));
  aedes.on('unsubscribe', (filters, client) => {
    if (client) options.events.unsubscribed(filters, client);
  });
  aedes.on('clientError', (client, error) => options.events.clientError(client, error));
  aedes.on('sessionExpired', (client) => options.events.sessionExpired(client.id));
  return {
    aedes,
    id: aedes.id,
    topics: engineTopics(aedes),
    handle(stream, req) {
      const client = aedes.handle(stream, req);
      manageDeliveries(client);
      limitPacketSize(client, options.maxPacketBytes);
      return client;
    },
    close: () => new Promise<void>((resolve) => aedes.close(() => resolve())),
    wipeStoredSession: (clientId) => wipeStoredSession(aedes, clientId),
    isBeingTakenOver: (clientId) => isBeingTakenOver(aedes, clientId),
    isConnectedHere: (clientId) => isConnectedHere(aedes, clientId),
    onlyNode,
  };
}
