import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { Transport } from '../domain/access/types';
import type { ConnectionRegistry } from './connections';
import type { BrokerLimits } from './limits';
import type { BrokerListeners } from './types';

export interface ListenersDeps {
  registry: ConnectionRegistry;
  limits: Pick<BrokerLimits, 'maxConnections' | 'maxPacketBytes' | 'maxPendingPerAddress'>;
  /** Counts a connection refused on arrival. */
  refused(reason: 'max_connections' | 'pending_per_address'): void;
  /** Starts MQTT on an accepted stream (the engine's handle, with the connection tracked). */
  start(stream: Duplex, transport: Transport, remoteAddress: string | undefined, req?: IncomingMessage, secure?: { socket: tls.TLSSocket; certificateRequired: boolean }): void;
  log: (message: string) => void;
}

/** TCP, TLS and WebSocket listeners: each accepted stream is capped, counted and handed to `start`. */
export function createListeners(deps: ListenersDeps): BrokerListeners & { close(): Promise<void> } {
  const { registry, limits, log } = deps;
  const tlsServers: tls.Server[] = [];
  const wsServers: WebSocketServer[] = [];

  /** When each address was last logged for a refusal: once a minute per address, however many. */
  const refusalLogged = new Map<string, number>();
  function logRefusal(address: string | undefined, line: string) {
    const key = address ?? 'unknown';
    const now = Date.now();
    const last = refusalLogged.get(key);
    if (last !== undefined && now - last < 60_000) return;
    if (refusalLogged.size >= 10_000) refusalLogged.clear(); // bounded, whoever floods
    refusalLogged.set(key, now);
    log(line);
  }

  function accept(stream: Duplex, transport: Transport, remoteAddress: string | undefined, req?: IncomingMessage, secure?: { socket: tls.TLSSocket; certificateRequired: boolean }) {
    if (!registry.hasRoom()) {
      deps.refused('max_connections');
      logRefusal(remoteAddress, `refusing ${transport} connection from ${remoteAddress ?? 'unknown'}: ${limits.maxConnections} connections open (logged once a minute per address)`);
      stream.destroy();
      return;
    }
    if (!registry.hasRoomFor(remoteAddress)) {
      deps.refused('pending_per_address');
      logRefusal(
        remoteAddress,
        `refusing ${transport} connection from ${remoteAddress}: ${limits.maxPendingPerAddress} of its connections have not completed CONNECT (MQTT_MAX_PENDING_PER_ADDRESS; logged once a minute per address)`,
      );
      stream.destroy();
      return;
    }
    registry.admit(stream, transport, remoteAddress);
    deps.start(stream, transport, remoteAddress, req, secure);
  }

  const tcpServer = net.createServer((socket) => {
    socket.setNoDelay(true);
    // Finds peers that vanished without a FIN, even with MQTT keepalive 0.
    socket.setKeepAlive(true, 60_000);
    accept(socket, 'tcp', socket.remoteAddress);
  });
  tcpServer.on('error', (error) => log(`MQTT listener error: ${error.message}`));

  return {
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
        accept(socket, 'tls', socket.remoteAddress, undefined, { socket, certificateRequired: options.requireClientCert?.() ?? false });
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
        if (!registry.hasRoom() || !registry.hasRoomFor(req.socket.remoteAddress)) {
          deps.refused(registry.hasRoom() ? 'pending_per_address' : 'max_connections');
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
          accept(
            stream,
            secure ? 'wss' : 'ws',
            req.socket.remoteAddress,
            req,
            tlsSocket ? { socket: tlsSocket, certificateRequired: options.requireClientCert?.() ?? false } : undefined,
          );
        });
      });
    },
    connectionCount: () => registry.count(),
    connectionsByTransport: () => ({ ...registry.openByTransport }),
    listening: () => tcpServer.listening || tlsServers.some((server) => server.listening),
    async close() {
      // server.close() only calls back once every connection has ended: stop
      // accepting first, then end the connections, then wait.
      const tcpClosed = new Promise<void>((resolve) => tcpServer.close(() => resolve()));
      for (const stream of registry.streams) stream.destroy();
      await tcpClosed;
      for (const wss of wsServers) wss.close();
    },
  };
}

/** Answers an upgrade request with `status` and closes its socket. */
function refuseUpgrade(socket: Duplex, status: string) {
  socket.on('error', () => socket.destroy());
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
