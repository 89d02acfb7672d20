import type { Server as HttpServer, IncomingMessage } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { Aedes, type AedesOptions, type Client as AedesClient } from 'aedes';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { AuthenticateInput, AuthFailure, AuthResult, Principal, Transport } from '../domain/authenticate';

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
};

/**
 * What the broker asks of the rest of Gatehouse. Every hook is a translation:
 * an Aedes callback becomes a call here, its answer becomes an MQTT code.
 */
export interface BrokerDeps {
  authenticate(input: AuthenticateInput): Promise<AuthResult>;
  limits?: Partial<BrokerLimits>;
  /** Aedes' message bus; another one (Redis) lets several nodes share traffic. */
  mq?: AedesOptions['mq'];
  /** Aedes persistence (retained messages, sessions); in memory by default. */
  persistence?: AedesOptions['persistence'];
  log?: (message: string) => void;
}

export interface Broker {
  aedes: Aedes;
  /** Starts MQTT over TCP; resolves with the port really bound. */
  listenTcp(port: number, host: string): Promise<number>;
  /** Serves MQTT over WebSocket on `server` at `path`. */
  attachWebSocket(server: HttpServer, path?: string): void;
  /** Live connections (TCP and WebSocket). */
  connectionCount(): number;
  /** Authenticated sessions now open, per `clients` row id. */
  sessionsByClient(): ReadonlyMap<number, number>;
  /** Stops accepting, closes every connection and the broker. */
  close(): Promise<void>;
}

/** The principal of an authenticated Aedes client. */
const principals = new WeakMap<AedesClient, Principal>();

export function principalOf(client: AedesClient | null | undefined): Principal | undefined {
  return client ? principals.get(client) : undefined;
}

const connackCodes: Record<AuthFailure, 3 | 4 | 5> = {
  missing_credentials: 4,
  bad_credentials: 4,
  throttled: 3,
  unavailable: 3,
};

const SYS_PREFIX = '$SYS/';

export async function createBroker(deps: BrokerDeps): Promise<Broker> {
  const limits = { ...defaultBrokerLimits, ...deps.limits };
  const log = deps.log ?? (() => {});
  const transports = new WeakMap<AedesClient, { transport: Transport; remoteAddress?: string }>();
  const connections = new Set<Duplex>();
  /** When each subscriber's socket buffer was first seen full. */
  const stalledSince = new WeakMap<AedesClient, number>();

  const aedes = await Aedes.createBroker({
    mq: deps.mq,
    persistence: deps.persistence,
    drainTimeout: limits.drainTimeoutMs,
    concurrency: limits.concurrency,
    connectTimeout: limits.connectTimeoutMs,
    keepaliveLimit: limits.keepaliveLimitS,
    maxClientsIdLength: limits.maxClientIdLength,
    queueLimit: limits.queueLimit,

    authenticate(client, username, password, done) {
      const origin = transports.get(client);
      deps
        .authenticate({
          username,
          password,
          clientId: client.id,
          transport: origin?.transport ?? 'tcp',
          remoteAddress: origin?.remoteAddress,
        })
        .then(
          (result) => {
            if (result.ok) {
              principals.set(client, result.principal);
              done(null, true);
            } else {
              done(authError(connackCodes[result.reason], result.reason), false);
            }
          },
          (error: unknown) => {
            log(`authentication failed unexpectedly: ${(error as Error).message}`);
            done(authError(3, 'unavailable'), false);
          },
        );
    },

    authorizePublish(client, packet, callback) {
      // [MQTT-4.7.2-1] `$` topics belong to the broker.
      if (client && packet.topic.startsWith('$')) {
        callback(new Error('publishing to $ topics is not allowed'));
        return;
      }
      callback(null);
    },

    authorizeSubscribe(client, subscription, callback) {
      if (subscription.topic.startsWith(SYS_PREFIX) || subscription.topic === '$SYS') {
        callback(null, null); // 0x80 for this filter only
        return;
      }
      callback(null, subscription);
    },

    /**
     * Called for every message about to be written to a subscriber. A QoS 0
     * message for a subscriber whose socket is already full is dropped (as
     * Mosquitto does) instead of parking a delivery slot until it drains; a
     * subscriber that stays full past the drain timeout is disconnected.
     */
    authorizeForward(client, packet) {
      const conn = client.conn as Duplex;
      if (conn.writableLength > limits.maxBufferedBytes || conn.writableNeedDrain) {
        const now = Date.now();
        const since = stalledSince.get(client);
        if (since === undefined) stalledSince.set(client, now);
        else if (now - since > limits.drainTimeoutMs) {
          log(`disconnecting ${client.id}: not reading for ${now - since} ms`);
          conn.destroy(new Error('subscriber stalled'));
          return null;
        }
        if (packet.qos === 0) return null;
      } else {
        stalledSince.delete(client);
      }
      return packet;
    },
  });

  function handleConnection(stream: Duplex, transport: Transport, remoteAddress: string | undefined, req?: IncomingMessage) {
    if (connections.size >= limits.maxConnections) {
      log(`refusing ${transport} connection from ${remoteAddress ?? 'unknown'}: ${limits.maxConnections} connections open`);
      stream.destroy();
      return;
    }
    connections.add(stream);
    stream.once('close', () => connections.delete(stream));
    const client = aedes.handle(stream, req);
    transports.set(client, { transport, remoteAddress });
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
  const counted = new WeakSet<AedesClient>();
  aedes.on('client', (client) => {
    const principal = principals.get(client);
    if (!principal) return;
    counted.add(client);
    sessionCounts.set(principal.clientRowId, (sessionCounts.get(principal.clientRowId) ?? 0) + 1);
  });
  aedes.on('clientDisconnect', (client) => {
    const principal = principals.get(client);
    if (!principal || !counted.has(client)) return;
    counted.delete(client);
    const left = (sessionCounts.get(principal.clientRowId) ?? 1) - 1;
    if (left > 0) sessionCounts.set(principal.clientRowId, left);
    else sessionCounts.delete(principal.clientRowId);
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
    attachWebSocket(server, path = '/mqtt') {
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
        const url = new URL(req.url ?? '/', 'http://localhost');
        if (url.pathname !== path) return; // another upgrade handler may own it
        wss.handleUpgrade(req, socket, head, (ws) => {
          const stream = createWebSocketStream(ws);
          stream.on('error', () => stream.destroy());
          handleConnection(stream, 'ws', req.socket.remoteAddress, req);
        });
      });
    },
    connectionCount: () => connections.size,
    sessionsByClient: () => sessionCounts,
    async close() {
      await new Promise<void>((resolve) => tcpServer.close(() => resolve()));
      for (const stream of connections) stream.destroy();
      for (const wss of wsServers) wss.close();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}

function authError(returnCode: 3 | 4 | 5, reason: string) {
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
  const parseLength = parser._parseLength;
  parser._parseLength = function (this: ParserInternals) {
    const parsed = parseLength.call(this);
    if (parsed && this.packet.length > maxBytes) {
      this._emitError(new Error(`packet of ${this.packet.length} bytes exceeds the limit of ${maxBytes}`));
      return false;
    }
    return parsed;
  };
}

interface ParserInternals {
  packet: { length: number };
  _parseLength(this: ParserInternals): boolean;
  _emitError(error: Error): void;
}
