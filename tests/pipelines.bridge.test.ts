import { once } from 'node:events';
import net from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { listDeadLetters } from '../src/domain/pipelines/outbox';
import { createPipeline } from '../src/domain/pipelines/pipelines';
import { createPipelineService, type PipelineService } from '../src/pipelines/service';
import { certificateFactory, type CertificateFactory, type Issued } from './support/certs';
import { createTestDatabase } from './support/db';
import { mosquittoAvailable, startMosquitto, type Mosquitto } from './support/mosquitto';

const SECRET_KEY = 'a-secret-key-for-the-tests';
const who = { clientRowId: 1, username: 'u', mqttClientId: 'device-7', groups: [] };

/** A WebSocket endpoint at `path` only (another path is refused, as Gatehouse's `/mqtt` is) carrying MQTT to the TCP port `target`. */
async function webSocketFront(path: string, target: number) {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, path });
  await once(server, 'listening');
  server.on('connection', (socket) => {
    const stream = createWebSocketStream(socket);
    const tcp = net.connect(target, '127.0.0.1');
    stream.pipe(tcp).pipe(stream);
    stream.on('error', () => tcp.destroy());
    tcp.on('error', () => stream.destroy());
  });
  return {
    url: `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}${path}`,
    close: () => new Promise<void>((resolve) => {
      for (const client of server.clients) client.terminate();
      server.close(() => resolve());
    }),
  };
}

describe.runIf(mosquittoAvailable)('an MQTT bridge pipeline to Mosquitto', () => {
  let database: OpenDatabase;
  let mosquitto: Mosquitto;
  let service: PipelineService | undefined;
  let subscriber: MqttClient | undefined;

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    mosquitto = await startMosquitto();
  });
  afterAll(async () => {
    await mosquitto?.stop();
    await database?.close();
  });
  afterEach(async () => {
    await service?.close();
    subscriber?.end(true);
  });

  async function startService(own: string[] = [], allowPrivateNetworks: () => boolean = () => true) {
    service = createPipelineService({
      db: database.db,
      secretKey: SECRET_KEY,
      destination: {
        get allowPrivateNetworks() {
          return allowPrivateNetworks();
        },
        nodeId: 'test',
        ownMqttAddresses: () => own,
      },
      options: { pollMs: 30, retryBaseMs: 50, retryMaxMs: 300, janitorMs: 200 },
    });
    await service.reload();
    service.start();
    return service;
  }

  function subscribe(filter: string, url = mosquitto.url): Promise<{ client: MqttClient; received: Array<{ topic: string; payload: string; qos: number }> }> {
    const received: Array<{ topic: string; payload: string; qos: number }> = [];
    // A persistent session: what the bridge sends while it reconnects is queued for it.
    const client = mqtt.connect(url, { clientId: `sub-${Date.now()}`, clean: false, reconnectPeriod: 200 });
    client.on('error', () => {});
    client.on('message', (topic, payload, packet) => received.push({ topic, payload: payload.toString(), qos: packet.qos }));
    return new Promise((resolve) => client.once('connect', () => client.subscribe(filter, { qos: 1 }, () => resolve({ client, received }))));
  }

  it('publishes to the remote topic template with the chosen QoS, and catches up in order after the remote broker was down', async () => {
    await createPipeline(
      database.db,
      { name: 'bridge', kind: 'mqtt', enabled: 'on', mqttUrl: mosquitto.url, remoteTopic: 'site-a/{{client.id}}/{{topic}}', mqttQos: '1', mappings: [{ topicFilter: 'sensors/#' }] },
      SECRET_KEY,
    );
    const pipelines = await startService();
    const sub = await subscribe('site-a/#');
    subscriber = sub.client;
    await pipelines.onPublishAccepted({ topic: 'sensors/t', payload: Buffer.from('first'), qos: 1, retain: false }, who);
    await expect.poll(() => sub.received.length, { timeout: 10_000 }).toBe(1);
    expect(sub.received[0]).toEqual({ topic: 'site-a/device-7/sensors/t', payload: 'first', qos: 1 });

    await mosquitto.stop();
    for (let i = 0; i < 5; i++) await pipelines.onPublishAccepted({ topic: 'sensors/t', payload: Buffer.from(`m${i}`), qos: 1, retain: false }, who);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(pipelines.figures()[0]!.queueRows + pipelines.figures()[0]!.retried).toBeGreaterThan(0);
    await mosquitto.start();
    await expect.poll(() => sub.received.length, { timeout: 20_000 }).toBe(6);
    expect(sub.received.slice(1).map((m) => m.payload)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
  });

  it('looks the remote broker up through the SSRF guard at every reconnect, so a name whose answer turned internal is not connected to again', async () => {
    const { pipeline } = await createPipeline(
      database.db,
      { name: 'rebind', kind: 'mqtt', enabled: 'on', mqttUrl: mosquitto.url.replace('127.0.0.1', 'localhost'), remoteTopic: 'rebind/{{topic}}', mqttQos: '1', mappings: [{ topicFilter: 'rebind/#' }] },
      SECRET_KEY,
    );
    let allowInternal = true;
    const pipelines = await startService([], () => allowInternal);
    const sub = await subscribe('rebind/#');
    subscriber = sub.client;
    await pipelines.onPublishAccepted({ topic: 'rebind/t', payload: Buffer.from('first'), qos: 1, retain: false }, who);
    await expect.poll(() => sub.received.length, { timeout: 10_000 }).toBe(1);

    // From now on the guard refuses what "localhost" resolves to, as it would a
    // DNS answer that changed to an internal address after the first connect.
    allowInternal = false;
    await mosquitto.stop();
    await mosquitto.start();
    await pipelines.onPublishAccepted({ topic: 'rebind/t', payload: Buffer.from('second'), qos: 1, retain: false }, who);
    const figuresOf = () => pipelines.figures().find((f) => f.id === pipeline.id)!;
    await expect.poll(() => figuresOf().lastError ?? '', { timeout: 15_000 }).toMatch(/resolves to an internal address/);
    // The subscriber is back (its persistent session queues for it): the bridge is what did not reconnect.
    await expect.poll(() => sub.client.connected, { timeout: 10_000 }).toBe(true);
    expect(sub.received.map((m) => m.payload)).toEqual(['first']);
    expect(figuresOf().queueRows + figuresOf().retried).toBeGreaterThan(0);
  });

  it('refuses to forward to its own MQTT listener (a loop)', async () => {
    const { pipeline } = await createPipeline(
      database.db,
      { name: 'loop', kind: 'mqtt', enabled: 'on', mqttUrl: 'mqtt://127.0.0.1:1999', mappings: [{ topicFilter: 'loop/#' }] },
      SECRET_KEY,
    );
    const pipelines = await startService(['127.0.0.1:1999']);
    await pipelines.onPublishAccepted({ topic: 'loop/x', payload: Buffer.from('x'), qos: 1, retain: false }, who);
    await expect.poll(async () => (await listDeadLetters(database.db, pipeline.id)).total, { timeout: 10_000 }).toBe(1);
    expect((await listDeadLetters(database.db, pipeline.id)).letters[0]!.lastError).toMatch(/would loop/);
  });

  describe('over TLS and WebSocket', () => {
    let certs: CertificateFactory;
    let remoteCa: Issued;
    let bridgeClient: Issued;
    let secured: Mosquitto;

    beforeAll(async () => {
      certs = certificateFactory();
      remoteCa = certs.ca('remote-ca');
      const clientsCa = certs.ca('bridge-clients-ca');
      bridgeClient = certs.client(clientsCa, 'gatehouse-bridge');
      // Its TLS listeners require a client certificate of `clientsCa`.
      secured = await startMosquitto({ tls: { server: certs.server(remoteCa, 'remote'), clientCa: clientsCa }, websockets: true });
    });
    afterAll(async () => {
      await secured?.stop();
      certs?.remove();
    });

    const bridge = (name: string, mqttUrl: string, extra: Record<string, string> = {}) =>
      createPipeline(database.db, { name, kind: 'mqtt', enabled: 'on', mqttUrl, remoteTopic: `${name}/{{topic}}`, mqttQos: '1', mappings: [{ topicFilter: `${name}/#` }], ...extra }, SECRET_KEY);
    const certificates = (given: { ca: boolean; cert: boolean }) => ({
      ...(given.ca ? { mqttCa: remoteCa.cert } : {}),
      ...(given.cert ? { mqttClientCert: bridgeClient.cert, mqttClientKey: bridgeClient.key } : {}),
    });

    it.each(['mqtts', 'ws', 'wss'] as const)('publishes over %s (TLS: trusting the CA given, presenting its client certificate)', async (scheme) => {
      await bridge(scheme, secured.urls[scheme]!, certificates({ ca: true, cert: true }));
      const pipelines = await startService();
      const sub = await subscribe(`${scheme}/#`, secured.url);
      subscriber = sub.client;
      await pipelines.onPublishAccepted({ topic: `${scheme}/t`, payload: Buffer.from(`over ${scheme}`), qos: 1, retain: false }, who);
      await expect.poll(() => sub.received, { timeout: 15_000 }).toEqual([{ topic: `${scheme}/${scheme}/t`, payload: `over ${scheme}`, qos: 1 }]);
    });

    it.each([
      ['without a client certificate', 'nocert', { ca: true, cert: false }],
      ['without the CA that signed the remote certificate', 'noca', { ca: false, cert: true }],
    ] as const)('keeps the message and retries %s (mqtts and wss)', async (_what, name, given) => {
      const extra = certificates(given);
      const { pipeline: overTls } = await bridge(`${name}-tls`, secured.urls.mqtts!, extra);
      const { pipeline: overWss } = await bridge(`${name}-wss`, secured.urls.wss!, extra);
      const pipelines = await startService();
      const sub = await subscribe(`${name}-+/#`, secured.url);
      subscriber = sub.client;
      for (const prefix of [`${name}-tls`, `${name}-wss`]) {
        await pipelines.onPublishAccepted({ topic: `${prefix}/t`, payload: Buffer.from('held'), qos: 1, retain: false }, who);
      }
      for (const id of [overTls.id, overWss.id]) {
        await expect.poll(() => pipelines.figuresOf(id)?.retried ?? 0, { timeout: 15_000 }).toBeGreaterThan(1);
        expect(pipelines.figuresOf(id)!.queueRows + pipelines.figuresOf(id)!.retried).toBeGreaterThan(0);
        expect(pipelines.figuresOf(id)!.lastError).toMatch(/not connected to the remote broker/);
        expect((await listDeadLetters(database.db, id)).total).toBe(0);
      }
      expect(sub.received).toEqual([]);
    });
  });

  it('fails over to the next address while the first is down, stays there when the first comes back, and goes back to it when the second goes down', async () => {
    const first = await startMosquitto();
    const second = await startMosquitto();
    let firstSubscriber: MqttClient | undefined;
    try {
      await first.stop();
      await createPipeline(
        database.db,
        { name: 'failover', kind: 'mqtt', enabled: 'on', mqttUrl: first.url, mqttFailover: `${second.url}\n`, remoteTopic: 'failover/{{topic}}', mqttQos: '1', mappings: [{ topicFilter: 'fo/#' }] },
        SECRET_KEY,
      );
      const pipelines = await startService();
      const atSecond = await subscribe('failover/#', second.url);
      subscriber = atSecond.client;
      const send = (payload: string) => pipelines.onPublishAccepted({ topic: 'fo/t', payload: Buffer.from(payload), qos: 1, retain: false }, who);

      await send('first down');
      await expect.poll(() => atSecond.received.map((m) => m.payload), { timeout: 15_000 }).toEqual(['first down']);

      await first.start();
      const atFirst = await subscribe('failover/#', first.url);
      firstSubscriber = atFirst.client;
      await send('first back');
      await expect.poll(() => atSecond.received.map((m) => m.payload), { timeout: 15_000 }).toEqual(['first down', 'first back']);

      await second.stop();
      await send('second down');
      await expect.poll(() => atFirst.received.map((m) => m.payload), { timeout: 20_000 }).toEqual(['second down']);
      // Each message went to one broker.
      expect(atSecond.received.map((m) => m.payload)).toEqual(['first down', 'first back']);
    } finally {
      firstSubscriber?.end(true);
      await first.stop();
      await second.stop();
    }
  });

  it('reaches a failover address over WebSocket at its own path', async () => {
    const front = await webSocketFront('/mqtt-here', mosquitto.port);
    try {
      await createPipeline(
        database.db,
        { name: 'ws-failover', kind: 'mqtt', enabled: 'on', mqttUrl: 'mqtt://127.0.0.1:1', mqttFailover: front.url, remoteTopic: 'wsfo/{{topic}}', mqttQos: '1', mappings: [{ topicFilter: 'wsfo/#' }] },
        SECRET_KEY,
      );
      const pipelines = await startService();
      const sub = await subscribe('wsfo/#');
      subscriber = sub.client;
      await pipelines.onPublishAccepted({ topic: 'wsfo/t', payload: Buffer.from('through the path'), qos: 1, retain: false }, who);
      await expect.poll(() => sub.received.map((m) => m.payload), { timeout: 15_000 }).toEqual(['through the path']);
    } finally {
      await front.close();
    }
  });
});
