import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Gatehouse } from '../../src/server';

export type Transport = 'tcp' | 'ws';

export function brokerUrl(gatehouse: Gatehouse, transport: Transport): string {
  return transport === 'tcp' ? `mqtt://127.0.0.1:${gatehouse.mqttPort}` : `ws://127.0.0.1:${gatehouse.httpPort}/mqtt`;
}

export type ConnectOutcome = { ok: true; client: MqttClient } | { ok: false; code: number | undefined; message: string };

/** Connects once (no reconnect) and reports the CONNACK outcome. */
export function tryConnect(url: string, options: IClientOptions = {}): Promise<ConnectOutcome> {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 10_000, ...options });
    const fail = (error: Error & { code?: number | string }) => {
      client.end(true);
      resolve({ ok: false, code: typeof error.code === 'number' ? error.code : undefined, message: error.message });
    };
    client.once('connect', () => {
      client.off('error', fail);
      resolve({ ok: true, client });
    });
    client.once('error', fail);
    client.once('close', () => fail(Object.assign(new Error('connection closed before CONNACK'), { code: undefined })));
  });
}

/** Connects and fails the test if the broker refuses. */
export async function connect(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  const outcome = await tryConnect(url, options);
  if (!outcome.ok) throw new Error(`connection refused: ${outcome.message} (code ${outcome.code})`);
  return outcome.client;
}

/** The next message on `topic`, or a rejection after `timeoutMs`. */
export function nextMessage(client: MqttClient, topic: string, timeoutMs = 5000): Promise<{ topic: string; payload: string; retain: boolean }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      reject(new Error(`no message on ${topic} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (t: string, payload: Buffer, packet: { retain?: boolean }) => {
      if (t !== topic) return;
      clearTimeout(timer);
      client.off('message', onMessage);
      resolve({ topic: t, payload: payload.toString(), retain: Boolean(packet.retain) });
    };
    client.on('message', onMessage);
  });
}

export function endClient(client: MqttClient | undefined): Promise<void> {
  if (!client) return Promise.resolve();
  return new Promise((resolve) => client.end(true, {}, () => resolve()));
}

/**
 * Subscribes and returns the SUBACK return code of each filter, in order
 * (0–2 granted QoS, 128 refused). mqtt.js reports any 128 as an error; the
 * SUBACK is read from it.
 */
export function subscribeCodes(client: MqttClient, filters: Record<string, { qos: 0 | 1 | 2 }>): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const topics = Object.keys(filters);
    client.subscribe(filters, (error, _granted, packet) => {
      const granted = (packet as { granted?: number[] } | undefined)?.granted;
      if (!granted) {
        reject(error ?? new Error('no SUBACK'));
        return;
      }
      resolve(Object.fromEntries(topics.map((topic, i) => [topic, granted[i]!])));
    });
  });
}
