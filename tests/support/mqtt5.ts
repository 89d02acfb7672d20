import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { WebSocket, createWebSocketStream } from 'ws';
import type { Gatehouse } from '../../src/server';
import type { Issued } from './certs';

/** Every listener a device may use: plain and over TLS, TCP and WebSocket. */
export type AnyTransport = 'tcp' | 'ws' | 'tls' | 'wss';

/**
 * Where a device reaches `gatehouse` over `transport`, and the options it
 * needs there (TLS: trust `ca`, whose server certificate names localhost).
 */
export function listenerOf(gatehouse: Gatehouse, transport: AnyTransport, ca?: Issued): { url: string; options: IClientOptions } {
  switch (transport) {
    case 'tcp':
      return { url: `mqtt://127.0.0.1:${gatehouse.mqttPort}`, options: {} };
    case 'ws':
      return { url: `ws://127.0.0.1:${gatehouse.httpPort}/mqtt`, options: {} };
    case 'tls':
      return { url: `mqtts://127.0.0.1:${gatehouse.tls.status().mqttsPort}`, options: { ca: ca?.cert, servername: 'localhost' } };
    case 'wss':
      return { url: `wss://127.0.0.1:${gatehouse.tls.status().httpsPort}/mqtt`, options: { ca: ca?.cert, servername: 'localhost' } as IClientOptions };
  }
}

/**
 * Connects once and resolves with the client and its CONNACK (rejects on a
 * refusal). `before` gets the client before anything is received (to record
 * what a resumed session is sent right after its CONNACK).
 */
export function connectWithConnack(url: string, options: IClientOptions, before?: (client: MqttClient) => void): Promise<{ client: MqttClient; connack: IConnackPacket }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 10_000, ...options });
    before?.(client);
    client.once('connect', (connack) => {
      client.off('error', fail);
      resolve({ client, connack });
    });
    const fail = (error: Error) => {
      client.end(true);
      reject(error);
    };
    client.once('error', fail);
  });
}

/** The reason code of the server's DISCONNECT to `client`, or undefined if it was closed without one. */
export function serverDisconnect(client: MqttClient): Promise<number | undefined> {
  return new Promise((resolve) => {
    client.once('disconnect', (packet) => resolve(packet.reasonCode ?? 0));
    client.once('close', () => setTimeout(() => resolve(undefined), 50));
  });
}

export interface Heard {
  topic: string;
  payload: string;
  retain: boolean;
  properties: Record<string, unknown>;
}

/** Everything `client` receives, in order, with each message's MQTT 5 properties. */
export function recordMessages(client: MqttClient): Heard[] {
  const heard: Heard[] = [];
  client.on('message', (topic, payload, packet) => {
    heard.push({ topic, payload: payload.toString(), retain: Boolean(packet.retain), properties: (packet.properties ?? {}) as Record<string, unknown> });
  });
  return heard;
}

/** Resolves with the first message in `heard` (now or later) on `topic`, or rejects after `timeoutMs`. */
export async function waitFor(heard: Heard[], topic: string, timeoutMs = 5000): Promise<Heard> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const found = heard.find((message) => message.topic === topic);
    if (found) return found;
    if (Date.now() > until) throw new Error(`no message on ${topic} within ${timeoutMs} ms (heard: ${heard.map((m) => m.topic).join(', ') || 'nothing'})`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A raw MQTT connection (mqtt-packet over any listener), for what mqtt.js will not do: hold its acknowledgements. */
export interface RawClient {
  send(packet: Record<string, unknown>): void;
  /** Sends `packets` in one write, so the broker reads them as one chunk. */
  sendAll(packets: Array<Record<string, unknown>>): void;
  /** The next packet of `cmd` (taken from what arrived), or null once the connection is closed. */
  next(cmd: string, timeoutMs?: number): Promise<Packet | null>;
  /** The PUBLISH packets that arrive before the answer to a PINGREQ sent now. */
  publishesBeforePing(): Promise<Array<Packet & { payload: Buffer; messageId: number; topic: string }>>;
  close(): void;
}

/** Opens `url` (mqtt, mqtts, ws, wss) as a byte stream speaking MQTT `protocolVersion`. */
export async function rawClient(url: string, options: IClientOptions, protocolVersion: 4 | 5 = 5): Promise<RawClient> {
  const { protocol, hostname, port } = new URL(url);
  let stream: Duplex;
  if (protocol === 'mqtt:') stream = net.connect(Number(port), hostname);
  else if (protocol === 'mqtts:') stream = tls.connect({ host: hostname, port: Number(port), ca: options.ca as string, servername: 'localhost' });
  else {
    const socket = new WebSocket(url, 'mqtt', { ca: options.ca as string, servername: 'localhost' } as ConstructorParameters<typeof WebSocket>[2]);
    await new Promise<void>((resolve, reject) => socket.once('open', () => resolve()).once('error', reject));
    stream = createWebSocketStream(socket);
  }
  const parser = mqttPacket.parser({ protocolVersion });
  const packets: Packet[] = [];
  let closed = false;
  parser.on('packet', (packet) => packets.push(packet));
  stream.on('data', (chunk: Buffer) => parser.parse(chunk));
  stream.on('error', () => {});
  stream.on('close', () => (closed = true));
  const client: RawClient = {
    send(packet) {
      stream.write(mqttPacket.generate(packet as unknown as Packet, { protocolVersion }));
    },
    sendAll(many) {
      stream.write(Buffer.concat(many.map((packet) => mqttPacket.generate(packet as unknown as Packet, { protocolVersion }))));
    },
    async next(cmd, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const index = packets.findIndex((packet) => packet.cmd === cmd);
        if (index >= 0) return packets.splice(index, 1)[0]!;
        if (closed) return null;
        if (Date.now() > until) throw new Error(`no ${cmd} within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
    async publishesBeforePing() {
      client.send({ cmd: 'pingreq' });
      const until = Date.now() + 5000;
      while (!packets.some((packet) => packet.cmd === 'pingresp')) {
        if (closed || Date.now() > until) throw new Error('no PINGRESP');
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const upTo = packets.findIndex((packet) => packet.cmd === 'pingresp');
      const before = packets.splice(0, upTo + 1).slice(0, upTo);
      const publishes = before.filter((packet) => packet.cmd === 'publish');
      packets.unshift(...before.filter((packet) => packet.cmd !== 'publish'));
      return publishes as Array<Packet & { payload: Buffer; messageId: number; topic: string }>;
    },
    close() {
      stream.destroy();
    },
  };
  return client;
}
