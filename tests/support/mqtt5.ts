import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
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
