import type { Server as HttpServer, IncomingMessage } from 'node:http';
import net from 'node:net';
import type tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { Aedes, type AedesOptions, type Client as AedesClient, type PublishPacket } from 'aedes';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { decidePublish, decideSubscribe, NO_ACCESS, SessionDecisions, type AccessSnapshot } from '../domain/acl';
import type { AuthenticateInput, AuthFailure, AuthResult, Principal, Transport } from '../domain/authenticate';
import type { ClientCertificate } from '../domain/certificateAuth';
import type { LiveSession } from '../domain/connections';
import { checkEngine } from './engine/check';
import { dedupeExactly, releaseHeldDeliveries } from './exactDedupe';
import { isRepeatedDelivery } from './resume';
import { fixSessionStore } from './sessionStore';

/** Broker limits, chosen on purpose (README, "Broker limits"). */
export interface BrokerLimits {
  drainTimeoutMs: number;
  concurrency: number;
  connectTimeoutMs: number;
  keepaliveLimitS: number;
  maxClientIdLength: number;
  queueLimit: number;
  maxPacketBytes: number;
  maxConnections: number;
  maxBufferedBytes: number;
  maxSubscriptions: number;
  /** PUBLISH packets one connection may send per second; 0: no limit. */
  maxPublishRate: number;
}

export const defaultBrokerLimits: BrokerLimits = {
  drainTimeoutMs: 5000,
  concurrency: 1000,
  connectTimeoutMs: 10000,
  keepaliveLimitS: 0,
  maxClientIdLength: 128,
  queueLimit: 100,
  maxPacketBytes: 1024 * 1024,
  maxConnections: 10000,
  maxBufferedBytes: 1024 * 1024,
  maxSubscriptions: 1000,
  maxPublishRate: 0,
};

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
  /** Told when a client's sessions on this node open (+1) or end (-1). */
  onSessionChange?(clientRowId: number, delta: 1 | -1): void;
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
  authFailed(event: { username: string; clientId: string; address?: string; transport: Transport; reason: AuthFailure }): void;
  /** Sampled as the log is: once per session and topic, at most 20 per session. */
  refused(event: { action: 'publish' | 'subscribe'; topic: string; username?: string; clientId: string; address?: string; transport: Transport }): void;
}

/** What the broker counts as it goes (see src/metrics.ts). */
export interface BrokerMetrics {
  connect(result: 'accepted' | AuthFailure): void;
  received(qos: number, payloadBytes: number): void;
  sent(qos: number, payloadBytes: number): void;
  refused(action: 'publish' | 'subscribe'): void;
}

const noMetrics: BrokerMetrics = { connect() {}, received() {}, sent() {}, refused() {} };

export interface Broker {
  aedes: Aedes;
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
  /** Stops accepting, closes every connection and the broker. */
  close(): Promise<void>;
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
}

/** The field of a will packet naming its owner (msgpack keeps it in either persistence). */
const WILL_OWNER = 'gatehouseOwner';

/** What the broker keeps about one connection, from accept to close. */
interface Connection {
  transport: Transport;
  remoteAddress?: string;
  /** Set once CONNECT is authenticated. */
  principal?: Principal;
  /** The permissions the session connected with (nothing until then), and its decisions per topic. */
  decisions: SessionDecisions;
  /** Subscription filters granted, to cap them (UNSUBSCRIBE gives room back). */
  granted?: Set<string>;
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
  /** With a publish rate limit: when its next PUBLISH may go on, and whether that was logged. */
  nextPublishAt?: number;
  throttleLogged?: boolean;
}

/** A connection over its publish rate waits at most this long per packet before it is closed. */
const MAX_PUBLISH_DELAY_MS = 10_000;

/**
 * Where a refused PUBLISH goes. Aedes has no "acknowledge but drop": an error
 * from authorizePublish closes the connection. A packet may be changed in
 * authorizePublish (docs/Aedes.md), so a refused one is emptied, stripped of
 * its retain flag and sent here, where no subscription can be granted
 * (`$` topics are reserved) and authorizeForward drops anything that arrives.
 * Aedes then acknowledges it as usual (PUBACK, or PUBREC/PUBCOMP for QoS 2).
 */
export const REFUSED_PUBLISH_TOPIC = '$gatehouse/refused';

const connackCodes: Record<AuthFailure, 2 | 3 | 4 | 5> = {
  bad_client_id: 2,
  certificate_refused: 5,
  missing_credentials: 4,
  bad_credentials: 4,
  throttled: 3,
  unavailable: 3,
};

export async function createBroker(deps: BrokerDeps): Promise<Broker> {
  // Before anything opens: an engine that does not fit stops here, named.
  checkEngine();
  const limits = { ...defaultBrokerLimits, ...deps.limits };
  const log = deps.log ?? (() => {});
  const metrics = deps.metrics ?? noMetrics;
  const audit = deps.audit;
  const openByTransport: Record<Transport, number> = { tcp: 0, ws: 0, tls: 0, wss: 0 };
  const tlsServers: tls.Server[] = [];
  const connections = new Set<Duplex>();
  const connectionOf = new WeakMap<AedesClient, Connection>();
  /** What a client may do; nothing before its CONNECT is authenticated. */
  const nothingAllowed = new SessionDecisions(NO_ACCESS);
  const decisionsOf = (client: AedesClient) => connectionOf.get(client)?.decisions ?? nothingAllowed;

  const aedes = await Aedes.createBroker({
    mq: deps.mq,
    persistence: deps.persistence && fixSessionStore(deps.persistence),
    drainTimeout: limits.drainTimeoutMs,
    concurrency: limits.concurrency,
    connectTimeout: limits.connectTimeoutMs,
    keepaliveLimit: limits.keepaliveLimitS,
    maxClientsIdLength: limits.maxClientIdLength,
    queueLimit: limits.queueLimit,
    heartbeatInterval: deps.heartbeatIntervalMs,

    preConnect(client, packet, callback) {
      const origin = connectionOf.get(client);
      if (origin) {
        origin.emptyClientId = packet.clientId === '';
        origin.keepaliveS = packet.keepalive ?? 0;
      }
      callback(null, true);
    },

    authenticate(client, username, password, done) {
      const origin = connectionOf.get(client);
      function auditAuthFailure(reason: AuthFailure) {
        audit?.authFailed({ username: username ?? '', clientId: client.id, address: origin?.remoteAddress, transport: origin?.transport ?? 'tcp', reason });
      }
      // [MQTT-3.1.3-8] A session that outlives the connection needs the
      // client's own id: an empty one with clean session 0 is refused.
      if (origin?.emptyClientId && !client.clean) {
        metrics.connect('bad_client_id');
        auditAuthFailure('bad_client_id');
        done(authError(2, 'bad_client_id'), false);
        return;
      }
      deps
        .authenticate({
          username,
          password,
          clientId: client.id,
          transport: origin?.transport ?? 'tcp',
          remoteAddress: origin?.remoteAddress,
          clientCertificate: origin?.tlsSocket ? peerCertificateOf(origin.tlsSocket) : undefined,
          certificateRequired: origin?.certificateRequired,
        })
        .then(
          (result) => {
            metrics.connect(result.ok ? 'accepted' : result.reason);
            if (!result.ok) {
              auditAuthFailure(result.reason);
              done(authError(connackCodes[result.reason], result.reason), false);
              return;
            }
            if (origin) {
              origin.principal = result.principal;
              origin.decisions = new SessionDecisions(result.access);
              origin.groups = result.access.groups.map((group) => group.name);
            }
            vetWill(client, result.access, result.principal);
            done(null, true);
          },
          (error: unknown) => {
            log(`authentication failed unexpectedly: ${(error as Error).message}`);
            metrics.connect('unavailable');
            auditAuthFailure('unavailable');
            done(authError(3, 'unavailable'), false);
          },
        );
    },

    /**
     * Also called for a client's will when it fires: on this node as its
     * connection ends (`client` is the session), or by any node for a
     * session whose node died (`client` is null, or a session of the same
     * client id now connected here). See judgeWill.
     */
    authorizePublish(client, packet, callback) {
      if (client === null || packet === (client as unknown as { will?: unknown }).will || WILL_OWNER in packet) {
        judgeWill(client, packet, callback);
        return;
      }
      const delay = publishDelay(client);
      if (delay > MAX_PUBLISH_DELAY_MS) {
        callback(new Error(`publishing faster than ${limits.maxPublishRate} messages a second for too long`));
        return;
      }
      if (delay > 0) {
        setTimeout(() => authorizeNow(client, packet, callback), delay);
        return;
      }
      authorizeNow(client, packet, callback);
    },

    authorizeSubscribe(client, subscription, callback) {
      // Checked first, and in O(1): one SUBSCRIBE may carry ~90,000 filters.
      const state = connectionOf.get(client);
      const granted = state ? (state.granted ??= new Set<string>()) : new Set<string>();
      if (granted.size >= limits.maxSubscriptions && !granted.has(subscription.topic)) {
        metrics.refused('subscribe');
        noteRefusal(client, 'subscribe', `${subscription.topic} (over ${limits.maxSubscriptions} subscriptions)`);
        callback(null, null);
        return;
      }
      if (!decideSubscribe(decisionsOf(client).access, subscription.topic).allowed) {
        metrics.refused('subscribe');
        noteRefusal(client, 'subscribe', subscription.topic);
        callback(null, null); // 0x80 for this filter only
        return;
      }
      granted.add(subscription.topic);
      callback(null, subscription);
    },

    /**
     * Called for every message about to be written to a subscriber. A QoS 0
     * message for a subscriber whose socket is already full is dropped (as
     * Mosquitto does) instead of parking a delivery slot until it drains; a
     * subscriber that stays full past the drain timeout is disconnected.
     * Before that: a message (retained or live) whose topic the session's
     * permissions do not let it receive is never written.
     */
    authorizeForward(client, packet) {
      if (!decisionsOf(client).mayDeliver(packet.topic)) return null;
      // The queued copy of a message already sent live (src/broker/resume.ts).
      if (isRepeatedDelivery(packet)) return null;
      const conn = client.conn as Duplex;
      const state = connectionOf.get(client);
      if (conn.writableLength > limits.maxBufferedBytes) {
        const now = Date.now();
        const since = state?.stalledSince;
        if (since === undefined) {
          if (state) state.stalledSince = now;
        } else if (now - since > limits.drainTimeoutMs) {
          log(`disconnecting ${client.id}: not reading for ${now - since} ms`);
          conn.destroy(new Error('subscriber stalled'));
          return null;
        }
        if (packet.qos === 0) return null;
      } else if (state) {
        state.stalledSince = undefined;
      }
      metrics.sent(packet.qos, packet.payload.length);
      return packet;
    },
  });

  aedes.on('unsubscribe', (filters, client) => {
    const granted = client && connectionOf.get(client)?.granted;
    if (granted) for (const filter of filters) granted.delete(filter);
  });

  /** Judges a PUBLISH by the session's permissions; a refused one is acknowledged and dropped. */
  function authorizeNow(client: AedesClient, packet: PublishPacket, callback: (error: Error | null) => void) {
    metrics.received(packet.qos, packet.payload.length);
    if (!decisionsOf(client).mayPublish(packet.topic)) {
      metrics.refused('publish');
      noteRefusal(client, 'publish', packet.topic);
      // [MQTT-3.3.5-2] Acknowledged as usual, delivered to no one, never retained.
      packet.topic = REFUSED_PUBLISH_TOPIC;
      packet.retain = false;
      packet.payload = Buffer.alloc(0);
      callback(null);
      return;
    }
    offerAccepted(client, packet, callback);
  }

  /** Hands an allowed PUBLISH to `onPublishAccepted`; QoS 1/2 wait for its answer. */
  function offerAccepted(client: AedesClient, packet: PublishPacket, callback: (error: Error | null) => void) {
    const hook = deps.onPublishAccepted;
    const state = connectionOf.get(client);
    if (!hook || !state?.principal) {
      callback(null);
      return;
    }
    const message: AcceptedMessage = { topic: packet.topic, payload: packet.payload as Buffer, qos: packet.qos, retain: packet.retain };
    const properties = (packet as { properties?: Record<string, unknown> }).properties;
    if (properties) message.properties = properties;
    state.publishing ??= { ...state.principal, groups: state.groups ?? [] };
    let answer: Promise<void> | void;
    try {
      answer = hook(message, state.publishing);
    } catch (error) {
      answer = Promise.reject(error);
    }
    const refused = (error: unknown) => {
      const reason = error instanceof Error ? error : new Error(String(error));
      log(`publish to ${JSON.stringify(packet.topic)} by client id ${JSON.stringify(client.id)} not accepted: ${JSON.stringify(reason.message)}`);
      return reason;
    };
    if (packet.qos === 0) {
      if (answer) answer.catch(refused);
      callback(null);
      return;
    }
    if (!answer) {
      callback(null);
      return;
    }
    // An error closes an MQTT 3.1.1 connection without PUBACK: the client sends it again.
    answer.then(
      () => callback(null),
      (error: unknown) => callback(refused(error)),
    );
  }

  /**
   * With MQTT_MAX_PUBLISH_RATE: how long this PUBLISH must wait for its turn.
   * Waiting holds Aedes' reading of the connection (it reads the next chunk
   * once this one's packets are handled), so a fast publisher slows itself
   * down instead of queueing work the others wait behind.
   */
  function publishDelay(client: AedesClient): number {
    if (limits.maxPublishRate <= 0) return 0;
    const state = connectionOf.get(client);
    if (!state) return 0;
    const now = Date.now();
    const at = Math.max(now, state.nextPublishAt ?? now);
    state.nextPublishAt = at + 1000 / limits.maxPublishRate;
    const delay = at - now;
    if (delay > 0 && !state.throttleLogged) {
      state.throttleLogged = true;
      log(`slowing ${client.id} (${state.principal?.username ?? '?'}) down to ${limits.maxPublishRate} messages a second (MQTT_MAX_PUBLISH_RATE)`);
    }
    return delay;
  }

  /**
   * A will is judged at CONNECT, by the permissions the session will keep: one
   * it may not publish is never stored. One it may is stored naming its owner,
   * so that when it fires, on this node or another, it can be judged again
   * (judgeWill). Aedes keeps the CONNECT's will in `_will` until it stores it
   * after authentication.
   */
  function vetWill(client: AedesClient, access: AccessSnapshot, principal: Principal) {
    const pending = client as unknown as { _will?: ({ topic: string } & Record<string, unknown>) | null };
    if (!pending._will) return;
    if (decidePublish(access, pending._will.topic).allowed) {
      const owner: WillOwner = { clientRowId: principal.clientRowId, username: principal.username, mqttClientId: principal.mqttClientId };
      pending._will[WILL_OWNER] = owner;
      return;
    }
    noteRefusal(client, 'publish', `${pending._will.topic} (will)`);
    pending._will = null;
  }

  /**
   * A will fires after its session ended, maybe long after (its node died):
   * it is published only if its client still exists and may publish the
   * will's topic now (a client deleted, or whose group was taken away, in
   * the meantime leaves no will). A will naming no owner (stored by an older
   * version) has no permissions to judge it, and is dropped too. A dropped
   * will is acknowledged to Aedes and sent where nothing is delivered (see
   * REFUSED_PUBLISH_TOPIC): an error would leave it stored, to be tried again.
   */
  function judgeWill(client: AedesClient | null, packet: PublishPacket, callback: (error: Error | null) => void) {
    const owner = (packet as unknown as Record<string, unknown>)[WILL_OWNER] as WillOwner | undefined;
    const drop = (why: string) => {
      log(`dropped the will of ${owner?.username ?? 'a client'} (client id ${JSON.stringify(owner?.mqttClientId ?? '?')}) to ${JSON.stringify(packet.topic)}: ${why}`);
      packet.topic = REFUSED_PUBLISH_TOPIC;
      packet.retain = false;
      packet.payload = Buffer.alloc(0);
      callback(null);
    };
    if (!owner || typeof owner.username !== 'string' || typeof owner.clientRowId !== 'number') {
      drop('it names no client to judge it by');
      return;
    }
    if (!deps.currentAccess) {
      if (client && !decisionsOf(client).mayPublish(packet.topic)) drop('its session may not publish it');
      else callback(null);
      return;
    }
    deps.currentAccess(owner).then(
      (access) => {
        if (!access) drop('the client no longer exists');
        else if (!decidePublish(access, packet.topic).allowed) drop('the client may no longer publish it');
        else {
          metrics.received(packet.qos, packet.payload.length);
          callback(null);
        }
      },
      () => drop('its permissions could not be read'),
    );
  }

  function noteRefusal(client: AedesClient, action: 'publish' | 'subscribe', topic: string) {
    const state = connectionOf.get(client);
    const key = `${action} ${topic}`;
    if (!state) return;
    state.refusals ??= new Set();
    if (state.refusals.has(key) || state.refusals.size >= 20) return;
    state.refusals.add(key);
    log(`refused ${action} to ${JSON.stringify(topic)} for ${state.principal?.username ?? '?'} (client id ${JSON.stringify(client.id)})`);
    audit?.refused({ action, topic, username: state.principal?.username, clientId: client.id, address: state.remoteAddress, transport: state.transport });
  }

  // One listener for every connection of a transport (not a closure each).
  const onClose = Object.fromEntries(
    (Object.keys(openByTransport) as Transport[]).map((transport) => [
      transport,
      function (this: Duplex) {
        connections.delete(this);
        openByTransport[transport]--;
      },
    ]),
  ) as Record<Transport, (this: Duplex) => void>;

  function handleConnection(
    stream: Duplex,
    transport: Transport,
    remoteAddress: string | undefined,
    req?: IncomingMessage,
    secure?: { socket: tls.TLSSocket; certificateRequired: boolean },
  ) {
    if (connections.size >= limits.maxConnections) {
      log(`refusing ${transport} connection from ${remoteAddress ?? 'unknown'}: ${limits.maxConnections} connections open`);
      stream.destroy();
      return;
    }
    connections.add(stream);
    openByTransport[transport]++;
    stream.once('close', onClose[transport]);
    const client = aedes.handle(stream, req);
    dedupeExactly(client);
    connectionOf.set(client, {
      transport,
      remoteAddress,
      decisions: nothingAllowed,
      counted: false,
      tlsSocket: secure?.socket,
      certificateRequired: secure?.certificateRequired,
    });
    limitPacketSize(client, limits.maxPacketBytes);
  }

  const tcpServer = net.createServer((socket) => {
    socket.setNoDelay(true);
    // Finds peers that vanished without a FIN, even with MQTT keepalive 0.
    socket.setKeepAlive(true, 60_000);
    handleConnection(socket, 'tcp', socket.remoteAddress);
  });
  tcpServer.on('error', (error) => log(`MQTT listener error: ${error.message}`));

  const wsServers: WebSocketServer[] = [];

  const sessionCounts = new Map<number, number>();
  /** Open sessions by id, in the order they opened; and who waits for one to end. */
  const sessions = new Map<string, { client: AedesClient; session: LiveSession }>();
  const endWaiters = new Map<string, Array<() => void>>();
  let sessionSequence = 0;
  aedes.on('connackSent', (_connack, client) => releaseHeldDeliveries(client));
  aedes.on('client', (client) => {
    const state = connectionOf.get(client);
    if (!state?.principal) return;
    state.counted = true;
    const { clientRowId } = state.principal;
    const session: LiveSession = {
      id: `${aedes.id}.${++sessionSequence}`,
      node: aedes.id,
      mqttClientId: client.id,
      clientRowId,
      username: state.principal.username,
      remoteAddress: state.remoteAddress ?? null,
      transport: state.transport,
      keepaliveS: state.keepaliveS ?? 0,
      connectedAt: Date.now(),
      subscriptions: 0,
      groups: state.groups ?? [],
      tlsVersion: state.tlsSocket?.getProtocol() ?? null,
      certFingerprint: state.tlsSocket ? (peerCertificateOf(state.tlsSocket)?.fingerprint256 ?? null) : null,
    };
    state.session = session;
    sessions.set(session.id, { client, session });
    sessionCounts.set(clientRowId, (sessionCounts.get(clientRowId) ?? 0) + 1);
    deps.onSessionChange?.(clientRowId, 1);
  });
  aedes.on('clientDisconnect', (client) => {
    const state = connectionOf.get(client);
    if (!state?.principal || !state.counted) return;
    state.counted = false;
    const principal = state.principal;
    if (state.session) {
      const id = state.session.id;
      sessions.delete(id);
      for (const resolve of endWaiters.get(id) ?? []) resolve();
      endWaiters.delete(id);
    }
    const left = (sessionCounts.get(principal.clientRowId) ?? 1) - 1;
    if (left > 0) sessionCounts.set(principal.clientRowId, left);
    else sessionCounts.delete(principal.clientRowId);
    deps.onSessionChange?.(principal.clientRowId, -1);
  });

  aedes.on('clientError', (client, error) => {
    if (!/stalled|drain timeout/.test(error.message)) return;
    log(`client ${client.id} disconnected: ${error.message}`);
  });

  return {
    aedes,
    listenTcp(port, host) {
      return new Promise((resolve, reject) => {
        tcpServer.once('error', reject);
        tcpServer.listen(port, host, () => {
          tcpServer.off('error', reject);
          resolve((tcpServer.address() as net.AddressInfo).port);
        });
      });
    },
    attachTls(server, options = {}) {
      tlsServers.push(server);
      server.on('secureConnection', (socket) => {
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 60_000);
        socket.on('error', () => socket.destroy());
        handleConnection(socket, 'tls', socket.remoteAddress, undefined, { socket, certificateRequired: options.requireClientCert?.() ?? false });
      });
    },
    attachWebSocket(server, path = '/mqtt', options = {}) {
      const wss = new WebSocketServer({
        noServer: true,
        // One MQTT packet per frame is what clients send; a frame a little
        // larger than the packet limit leaves room for framing.
        maxPayload: limits.maxPacketBytes + 16,
        // mqtt.js and browsers offer "mqtt"; answer with it.
        handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
      });
      wsServers.push(wss);
      server.on('upgrade', (req, socket, head) => {
        // No URL parsing: an absolute-form target like `http://[` would throw
        // here, outside any handler, and take the process down.
        const pathname = (req.url ?? '/').split('?', 1)[0];
        if (pathname !== path) {
          // Nothing else upgrades: answer and close, or the socket (outside
          // every HTTP timeout and connection count) stays open for ever.
          refuseUpgrade(socket, '404 Not Found');
          return;
        }
        if (connections.size >= limits.maxConnections) {
          refuseUpgrade(socket, '503 Service Unavailable');
          return;
        }
        const secure = (req.socket as tls.TLSSocket).encrypted === true;
        if (secure && options.requireClientCert?.() && !(req.socket as tls.TLSSocket).authorized) {
          refuseUpgrade(socket, '403 Forbidden');
          return;
        }
        socket.on('error', () => socket.destroy());
        wss.handleUpgrade(req, socket, head, (ws) => {
          const stream = createWebSocketStream(ws);
          stream.on('error', () => stream.destroy());
          const tlsSocket = secure ? (req.socket as tls.TLSSocket) : undefined;
          handleConnection(
            stream,
            secure ? 'wss' : 'ws',
            req.socket.remoteAddress,
            req,
            tlsSocket ? { socket: tlsSocket, certificateRequired: options.requireClientCert?.() ?? false } : undefined,
          );
        });
      });
    },
    connectionCount: () => connections.size,
    connectionsByTransport: () => ({ ...openByTransport }),
    listening: () => tcpServer.listening || tlsServers.some((server) => server.listening),
    sessionsByClient: () => sessionCounts,
    *liveSessions() {
      for (const { client, session } of sessions.values()) {
        session.subscriptions = subscriptionCount(client);
        yield session;
      }
    },
    liveSession(sessionId) {
      const open = sessions.get(sessionId);
      if (!open) return undefined;
      open.session.subscriptions = subscriptionCount(open.client);
      return open.session;
    },
    async endSessions(sessionIds) {
      const ending: Array<Promise<LiveSession>> = [];
      for (const id of sessionIds) {
        const open = sessions.get(id);
        if (!open) continue;
        const ended = new Promise<LiveSession>((resolve) => {
          const waiters = endWaiters.get(id) ?? [];
          waiters.push(() => resolve(open.session));
          endWaiters.set(id, waiters);
        });
        ending.push(ended);
        (open.client.conn as Duplex).destroy();
      }
      return Promise.all(ending);
    },
    async close() {
      // server.close() only calls back once every connection has ended: stop
      // accepting first, then end the connections, then wait.
      const tcpClosed = new Promise<void>((resolve) => tcpServer.close(() => resolve()));
      for (const stream of connections) stream.destroy();
      await tcpClosed;
      for (const wss of wsServers) wss.close();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}

/** The client certificate a TLS socket's peer presented, or undefined. */
function peerCertificateOf(socket: tls.TLSSocket): ClientCertificate | undefined {
  const peer = socket.getPeerCertificate();
  if (!peer || !peer.fingerprint256) return undefined;
  return { fingerprint256: peer.fingerprint256, validFrom: new Date(peer.valid_from), validTo: new Date(peer.valid_to) };
}

/** Answers an upgrade request with `status` and closes its socket. */
function refuseUpgrade(socket: Duplex, status: string) {
  socket.on('error', () => socket.destroy());
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

/** Subscriptions the session holds now, restored ones (clean session 0) included. */
function subscriptionCount(client: AedesClient): number {
  const held = (client as unknown as { subscriptions?: Record<string, unknown> }).subscriptions;
  return held ? Object.keys(held).length : 0;
}

function authError(returnCode: 2 | 3 | 4 | 5, reason: string) {
  return Object.assign(new Error(reason), { returnCode });
}

/**
 * Aedes has no packet size limit: the MQTT parser would buffer a packet of any
 * announced length (up to 256 MB). Fail the connection as soon as the fixed
 * header announces more than `maxBytes`.
 */
function limitPacketSize(client: AedesClient, maxBytes: number) {
  const parser = (client as unknown as { _parser?: ParserInternals })._parser;
  if (!parser || typeof parser._parseLength !== 'function') return;
  // The parser's class is patched once (not a closure per connection); each
  // parser carries its own limit.
  const prototype = Object.getPrototypeOf(parser) as ParserInternals;
  if (!limitedPrototypes.has(prototype)) {
    limitedPrototypes.add(prototype);
    const parseLength = prototype._parseLength;
    prototype._parseLength = function (this: ParserInternals) {
      const parsed = parseLength.call(this);
      const limit = this[MAX_PACKET_BYTES];
      if (parsed && limit !== undefined && this.packet.length > limit) {
        this._emitError(new Error(`packet of ${this.packet.length} bytes exceeds the limit of ${limit}`));
        return false;
      }
      return parsed;
    };
  }
  parser[MAX_PACKET_BYTES] = maxBytes;
}

const MAX_PACKET_BYTES = Symbol('gatehouse.maxPacketBytes');
const limitedPrototypes = new WeakSet<object>();

interface ParserInternals {
  packet: { length: number };
  [MAX_PACKET_BYTES]?: number;
  _parseLength(this: ParserInternals): boolean;
  _emitError(error: Error): void;
}
