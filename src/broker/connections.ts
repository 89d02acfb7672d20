import type tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Client as AedesClient } from 'aedes';
import { NO_ACCESS, SessionDecisions } from '../domain/access/acl';
import type { Principal, Transport } from '../domain/access/types';
import type { LiveSession } from '../domain/connections';
import type { PublishingSession } from './types';

/** What the broker keeps about one connection, from accept to close. */
export interface Connection {
  transport: Transport;
  remoteAddress?: string;
  /** Set once CONNECT is authenticated. */
  principal?: Principal;
  /** The permissions the session connected with (nothing until then), and its decisions per topic. */
  decisions: SessionDecisions;
  /** Subscription filters granted, to cap them (UNSUBSCRIBE gives room back). */
  granted?: Set<string>;
  /** Bytes of the filters in `granted`. */
  grantedBytes?: number;
  /** Refusals already logged, so a looping device logs each topic once. */
  refusals?: Set<string>;
  /** When its socket buffer was first seen full. */
  stalledSince?: number;
  /** Counted in the live sessions of its client. */
  counted: boolean;
  /** Over TLS (MQTTS or WSS): the socket, for the client certificate. */
  tlsSocket?: tls.TLSSocket;
  /** Over TLS with mTLS on when it connected. */
  certificateRequired?: boolean;
  /** CONNECT carried an empty client id (Aedes then makes one up). */
  emptyClientId?: boolean;
  /** The keepalive CONNECT asked for, in seconds. */
  keepaliveS?: number;
  /** The groups its permissions came from. */
  groups?: string[];
  /** Set once the session is open (CONNACK sent): what the Connections page shows. */
  session?: LiveSession;
  /** What `onPublishAccepted` is told of the session (made at its first PUBLISH). */
  publishing?: PublishingSession;
  /** MQTT 5: a message it could not be sent (its own limits) was logged. */
  dropLogged?: boolean;
  /** With a publish rate limit: when its next PUBLISH may go on, and whether that was logged. */
  nextPublishAt?: number;
  throttleLogged?: boolean;
}

/** What a client may do; nothing before its CONNECT is authenticated. */
const nothingAllowed = new SessionDecisions(NO_ACCESS);

/**
 * The open MQTT streams (counted per transport, capped) and what the broker
 * keeps about each client. Every part of the broker reads connections here.
 */
export class ConnectionRegistry {
  private readonly byClient = new WeakMap<AedesClient, Connection>();
  readonly streams = new Set<Duplex>();
  readonly openByTransport: Record<Transport, number> = { tcp: 0, ws: 0, tls: 0, wss: 0 };
  // One close listener per transport, not a closure per connection.
  private readonly onClose: Record<Transport, (this: Duplex) => void>;

  /** Connections not yet past CONNECT, per address; and the address of each such stream. */
  private readonly pendingByAddress = new Map<string, number>();
  private readonly pendingAddressOf = new WeakMap<Duplex, string>();

  constructor(
    private readonly maxConnections: number,
    private readonly maxPendingPerAddress = Infinity,
  ) {
    const streams = this.streams;
    const open = this.openByTransport;
    const settle = (stream: Duplex) => this.settle(stream);
    this.onClose = Object.fromEntries(
      (Object.keys(open) as Transport[]).map((transport) => [
        transport,
        function (this: Duplex) {
          streams.delete(this);
          open[transport]--;
          settle(this);
        },
      ]),
    ) as Record<Transport, (this: Duplex) => void>;
  }

  /** True while another connection may open. */
  hasRoom(): boolean {
    return this.streams.size < this.maxConnections;
  }

  /** True while `address` may open another connection that has not completed CONNECT. */
  hasRoomFor(address: string | undefined): boolean {
    return address === undefined || (this.pendingByAddress.get(address) ?? 0) < this.maxPendingPerAddress;
  }

  /** Counts `stream` until it closes, and as pending for its address until `settle`. */
  admit(stream: Duplex, transport: Transport, address?: string): void {
    this.streams.add(stream);
    this.openByTransport[transport]++;
    if (address !== undefined) {
      this.pendingByAddress.set(address, (this.pendingByAddress.get(address) ?? 0) + 1);
      this.pendingAddressOf.set(stream, address);
    }
    stream.once('close', this.onClose[transport]);
  }

  /** `stream` is past CONNECT (or closed): no longer pending for its address. */
  settle(stream: Duplex): void {
    const address = this.pendingAddressOf.get(stream);
    if (address === undefined) return;
    this.pendingAddressOf.delete(stream);
    const left = (this.pendingByAddress.get(address) ?? 1) - 1;
    if (left > 0) this.pendingByAddress.set(address, left);
    else this.pendingByAddress.delete(address);
  }

  /** Connections not yet past CONNECT from `address` (tests). */
  pendingFrom(address: string): number {
    return this.pendingByAddress.get(address) ?? 0;
  }

  track(client: AedesClient, connection: Omit<Connection, 'decisions' | 'counted'>): Connection {
    const tracked: Connection = { ...connection, decisions: nothingAllowed, counted: false };
    this.byClient.set(client, tracked);
    return tracked;
  }

  get(client: AedesClient): Connection | undefined {
    return this.byClient.get(client);
  }

  /** The session's decisions; nothing allowed before its CONNECT is authenticated. */
  decisionsOf(client: AedesClient): SessionDecisions {
    return this.byClient.get(client)?.decisions ?? nothingAllowed;
  }

  count(): number {
    return this.streams.size;
  }
}
