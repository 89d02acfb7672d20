import type { Duplex } from 'node:stream';
import type { Client as AedesClient, PublishPacket } from 'aedes';
import type { Expectation } from './expectation';

/**
 * Typed access to what Gatehouse reads and changes inside an Aedes 2.0 (beta)
 * client. Nothing outside src/broker/engine/ touches these fields; each is
 * named in `clientExpectations`, checked once at start (check.ts).
 */
export type EngineClient = AedesClient;

/** A delivery function of the client: Aedes calls it for each message its subscriptions receive. */
export type Deliver = (packet: DeliveredPacket, callback: () => void) => void;

export interface DeliveredPacket {
  brokerId?: string | null;
  brokerCounter?: number;
  qos?: number;
}

/** A will as Aedes keeps it: the CONNECT's will packet, with fields of our own added. */
export type PendingWill = { topic: string } & Record<string, unknown>;

interface ClientInternals {
  /** The CONNECT's will while the client authenticates; stored as `will` after. */
  _will?: PendingWill | null;
  will?: unknown;
  connackSent?: boolean;
  closed?: boolean;
  conn: Duplex;
  subscriptions?: Record<string, unknown>;
  /** Aedes' own deduplication mark per broker id (see delivery.ts). */
  duplicates: Record<string, number>;
  deliver0: Deliver;
  deliverQoS: Deliver;
  _parser: object;
  /** Protocol level of the CONNECT (3, 4 or 5); null before it. */
  version: number | null;
  /** MQTT 5: the Session Expiry Interval granted (after the cap), in seconds. */
  sessionExpiryInterval: number;
  /** Aedes 2: DISCONNECT with a reason code to a 5.0 client, then close; a bare close otherwise. */
  disconnect: (options: { reasonCode: number }, done?: () => void) => void;
  /** The Aedes instance the client is connected to (its `persistence` is the wrapped store). */
  broker: { persistence: unknown };
}

const internals = (client: AedesClient) => client as unknown as ClientInternals;

/** The broker the client is connected to. */
export function brokerOf(client: AedesClient): ClientInternals['broker'] {
  return internals(client).broker;
}

/** The will the client's CONNECT carries, until Aedes stores it after authentication. */
export function pendingWill(client: AedesClient): PendingWill | null {
  return internals(client)._will ?? null;
}

/** Drops the CONNECT's will before Aedes stores it. */
export function dropPendingWill(client: AedesClient): void {
  internals(client)._will = null;
}

/** True when `packet` is the client's own will being published as its connection ends. */
export function isOwnWill(client: AedesClient, packet: PublishPacket): boolean {
  return packet === internals(client).will;
}

/** The protocol level the client connected with: 3 (3.1), 4 (3.1.1) or 5; null before CONNECT. */
export function protocolVersionOf(client: AedesClient): number | null {
  return internals(client).version ?? null;
}

export function isMqtt5(client: AedesClient): boolean {
  return internals(client).version === 5;
}

/** MQTT 5: the session expiry the session was granted (after the cap), in seconds; null for 3.1/3.1.1. */
export function sessionExpiryOf(client: AedesClient): number | null {
  return isMqtt5(client) ? (internals(client).sessionExpiryInterval ?? 0) : null;
}

/**
 * Ends a connection from the server's side: a 5.0 client is sent DISCONNECT
 * with `reasonCode` first (patch 010 lets it reach the client), anything else
 * is closed. `done` runs once closed.
 */
export function disconnectClient(client: AedesClient, reasonCode: number, done?: () => void): void {
  internals(client).disconnect({ reasonCode }, done);
}

/** True once the client's CONNACK is written. */
export function connackSent(client: AedesClient): boolean {
  return internals(client).connackSent === true;
}

/** True once the client (or its stream) is closed. */
export function isClosed(client: AedesClient): boolean {
  const inside = internals(client);
  return inside.closed === true || inside.conn.destroyed;
}

/** The stream the client reads and writes. */
export function streamOf(client: AedesClient): Duplex {
  return internals(client).conn;
}

/** Subscriptions the session holds now, restored ones (clean session 0) included. */
export function subscriptionCount(client: AedesClient): number {
  const held = internals(client).subscriptions;
  return held ? Object.keys(held).length : 0;
}

/** The first `limit` filters the session subscribes to, in the order it made them. */
export function subscriptionFilters(client: AedesClient, limit: number): string[] {
  const held = internals(client).subscriptions;
  const filters: string[] = [];
  if (held) for (const filter in held) if (filters.push(filter) >= limit) break;
  return filters;
}

/** The client's MQTT parser (mqtt-packet), for parser.ts. */
export function parserOf(client: AedesClient): object {
  return internals(client)._parser;
}

/**
 * Puts `wrap`'s delivery functions in place of the client's, and turns off
 * Aedes' own deduplication (its `duplicates` mark never holds a value): see
 * delivery.ts for why. `wrap` receives Aedes' originals.
 */
export function replaceDeliveries(client: AedesClient, wrap: (original: { deliver0: Deliver; deliverQoS: Deliver }) => { deliver0: Deliver; deliverQoS: Deliver }): void {
  const inside = internals(client);
  // Aedes reads `duplicates[brokerId] || 0` and writes the new mark: always 0, never kept.
  inside.duplicates = new Proxy(Object.create(null) as Record<string, number>, {
    get: () => undefined,
    set: () => true,
    deleteProperty: () => true,
  });
  const replaced = wrap({ deliver0: inside.deliver0, deliverQoS: inside.deliverQoS });
  inside.deliver0 = replaced.deliver0;
  inside.deliverQoS = replaced.deliverQoS;
}

/** What a fresh client (before CONNECT) must carry for the accessors above. */
export function clientExpectations(probe: () => AedesClient): Expectation[] {
  const field = (name: keyof ClientInternals, type: string, what = `the client's \`${name}\` is no longer a ${type}`): Expectation => ({
    packageName: 'aedes',
    what,
    holds: () => {
      const value = (probe() as unknown as Record<string, unknown>)[name];
      return type === 'null' ? value === null : type === 'stream' ? typeof (value as Duplex | undefined)?.destroy === 'function' : typeof value === type && value !== null;
    },
  });
  return [
    field('_will', 'null', "the client's `_will` (the CONNECT's will while it authenticates) is gone"),
    field('will', 'null', "the client's `will` is gone"),
    field('connackSent', 'boolean'),
    field('closed', 'boolean'),
    field('conn', 'stream'),
    field('subscriptions', 'object'),
    field('duplicates', 'object'),
    field('broker', 'object'),
    field('deliver0', 'function'),
    field('deliverQoS', 'function'),
    field('_parser', 'object'),
    field('version', 'null', "the client's `version` (its protocol level) is gone"),
    field('sessionExpiryInterval', 'number'),
    field('disconnect', 'function'),
  ];
}
