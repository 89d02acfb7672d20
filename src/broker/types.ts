import type { Server as HttpServer } from 'node:http';
import type tls from 'node:tls';
import type { Aedes, AedesOptions } from 'aedes';
import type { AccessSnapshot, AuthFailure, AuthResult, AuthenticateInput, Principal, Transport } from '../domain/access/types';
import type { LiveSession } from '../domain/connections';
import type { SessionExpiryStore } from '../domain/sessionExpiries';
import type { BrokerLimits } from './limits';
import type { EngineTopics } from './engine';

/**
 * What the broker asks of the rest of Gatehouse. Every hook is a translation:
 * an Aedes callback becomes a call here, its answer becomes an MQTT code.
 */
export interface BrokerDeps {
  /**
   * Answers a CONNECT; a success carries the groups and permissions of the
   * connection, which the session keeps until it ends.
   */
  authenticate(input: AuthenticateInput): Promise<AuthResult>;
  limits?: Partial<BrokerLimits>;
  /** Aedes' message bus; another one (Redis) lets several nodes share traffic. */
  mq?: AedesOptions['mq'];
  /** Aedes persistence (retained messages, sessions, wills); in memory by default. */
  persistence?: AedesOptions['persistence'];
  /**
   * How often this node announces itself on the bus (Aedes' heartbeat); the
   * others publish the wills of a node silent for 3 heartbeats.
   */
  heartbeatIntervalMs?: number;
  /**
   * What a client may do now (null: it no longer exists). A will is judged
   * by it when it fires; without it, by the permissions its session had.
   */
  currentAccess?(who: WillOwner): Promise<AccessSnapshot | null>;
  /** Told when a client's sessions on this node open (+1) or end (-1), with the session's MQTT client id. */
  onSessionChange?(clientRowId: number, delta: 1 | -1, mqttClientId: string): void;
  /**
   * Where MQTT 5 session expiries are kept across restarts (sessionExpiry.ts);
   * without it an expiry lives in memory only, as in the engine.
   */
  sessionExpiries?: SessionExpiryStore;
  metrics?: BrokerMetrics;
  /** Told of refused CONNECTs and (sampled) refused publishes and subscriptions; must not block. */
  audit?: BrokerAudit;
  log?: (message: string) => void;
  /**
   * Offered every PUBLISH from a device that its permissions allow (never a
   * will, never the broker's own messages), before the message goes anywhere.
   *
   * - QoS 1 and 2: the PUBACK (PUBREC) waits for the returned promise as well
   *   as for the broker's store (retained copy, offline sessions' queues). If
   *   it rejects, the message is neither published nor acknowledged: an MQTT
   *   3.1.1 client is disconnected, so it sends the message again. An error
   *   may carry `reasonCode` (e.g. 0x97, quota exceeded) for MQTT 5 clients.
   * - QoS 0: called, and nothing waits for it; the message goes on whatever it
   *   returns (a rejection is logged).
   *
   * A QoS 2 PUBLISH sent again before its PUBREL (DUP) is offered again. The
   * message's payload is the broker's own buffer: read it, do not change it.
   */
  onPublishAccepted?: (message: AcceptedMessage, session: PublishingSession) => Promise<void> | void;
}

/** A PUBLISH as `onPublishAccepted` sees it. */
export interface AcceptedMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  /** MQTT 5 properties, when the client sent any. */
  properties?: Readonly<Record<string, unknown>>;
}

/** Who published: the authenticated principal and the groups its permissions came from. */
export interface PublishingSession extends Readonly<Principal> {
  groups: readonly string[];
}

/** An `onPublishAccepted` refusal; MQTT 5 clients get `reasonCode` in their PUBACK. */
export interface PublishRefusal extends Error {
  reasonCode?: number;
}

/**
 * What the broker reports to the audit trail. Called on the hot path: an
 * implementation only buffers (see createAuditRecorder), it never awaits a write.
 */
export interface BrokerAudit {
  /** `reasonCode`: the CONNACK reason code a 5.0 device was answered with. */
  authFailed(event: { username: string; clientId: string; address?: string; transport: Transport; reason: AuthFailure; reasonCode?: number }): void;
  /** Sampled as the log is: once per session and topic, at most 20 per session. */
  refused(event: { action: 'publish' | 'subscribe'; topic: string; username?: string; clientId: string; address?: string; transport: Transport; reasonCode?: number }): void;
}

/** What the broker counts as it goes (see src/metrics.ts). */
export interface BrokerMetrics {
  connect(result: 'accepted' | AuthFailure): void;
  received(qos: number, payloadBytes: number): void;
  sent(qos: number, payloadBytes: number): void;
  refused(action: 'publish' | 'subscribe'): void;
  /** A connection closed on arrival: too many open, or too many from its address not yet past CONNECT. */
  connectionRefused?(reason: 'max_connections' | 'pending_per_address'): void;
}

export const noMetrics: BrokerMetrics = { connect() {}, received() {}, sent() {}, refused() {} };

/**
 * What the broker offers the rest of Gatehouse: one interface per part
 * (src/broker/listeners.ts, sessions.ts), each part's methods spread into
 * the whole by createBroker. A new capability is a part of its own with its
 * interface added to `Broker`.
 */
export interface Broker extends BrokerListeners, BrokerSessions {
  /** Retained messages and the live tail (engine/topics.ts). */
  topics: EngineTopics;
  /** The engine itself, for tests that listen to its events; Gatehouse's own code uses `nodeId`. */
  aedes: Aedes;
  /** Writes the MQTT 5 session-expiry changes gathered so far; resolves once every one asked for until now is done. */
  sessionExpiriesWritten(): Promise<void>;
  /** This node's id (in session ids, and on the bus). */
  nodeId: string;
  /** No bus: this node is the only one (what the store, session expiry and the console's kept pages rely on). */
  onlyNode: boolean;
  /** Stops accepting, closes every connection and the broker. */
  close(): Promise<void>;
}

/** Where devices connect (listeners.ts). */
export interface BrokerListeners {
  /** Starts MQTT over TCP; resolves with the port really bound. */
  listenTcp(port: number, host: string): Promise<number>;
  /** Serves MQTT over WebSocket on `server` at `path` (over TLS when `server` is an HTTPS server). */
  attachWebSocket(server: HttpServer, path?: string, options?: WebSocketOptions): void;
  /** Serves MQTT over TLS on the connections `server` accepts (it listens on its own). */
  attachTls(server: tls.Server, options?: WebSocketOptions): void;
  /** Live connections (TCP and WebSocket). */
  connectionCount(): number;
  /** Live connections by transport. */
  connectionsByTransport(): Record<Transport, number>;
  /** True while an MQTT listener (TCP or TLS) accepts connections. */
  listening(): boolean;
}

/** The sessions open on this node (sessions.ts). */
export interface BrokerSessions {
  /** Authenticated sessions now open, per `clients` row id. */
  sessionsByClient(): ReadonlyMap<number, number>;
  /** This node's authenticated sessions, oldest first (descriptors kept from CONNECT on). */
  liveSessions(): Iterable<LiveSession>;
  /** One of this node's sessions, or undefined. */
  liveSession(sessionId: string): LiveSession | undefined;
  /**
   * Closes these sessions of this node at once; resolves with those it
   * closed once each has ended (its count and its will handled).
   */
  endSessions(sessionIds: Iterable<string>): Promise<LiveSession[]>;
}

export interface WebSocketOptions {
  /**
   * Asked for each upgrade over TLS: when true, a connection without a
   * client certificate the CA signed is refused (403) before MQTT starts.
   */
  requireClientCert?(): boolean;
}

/** Whose will a stored will is: written into it at CONNECT, kept with it by the persistence. */
export interface WillOwner {
  clientRowId: number;
  username: string;
  mqttClientId: string;
  /** Certificate clients: the fingerprint of the certificate the session connected with. */
  certFingerprint?: string;
}

/**
 * Where a refused PUBLISH goes. Aedes has no "acknowledge but drop": an error
 * from authorizePublish closes the connection. A packet may be changed in
 * authorizePublish (docs/Aedes.md), so a refused one is emptied, stripped of
 * its retain flag and sent here, where no subscription can be granted
 * (`$` topics are reserved) and authorizeForward drops anything that arrives.
 * Aedes then acknowledges it as usual (PUBACK, or PUBREC/PUBCOMP for QoS 2).
 */
export const REFUSED_PUBLISH_TOPIC = '$gatehouse/refused';

