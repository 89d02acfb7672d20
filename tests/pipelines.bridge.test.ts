import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { listDeadLetters } from '../src/domain/pipelines/outbox';
import { createPipeline } from '../src/domain/pipelines/pipelines';
import { createPipelineService, type PipelineService } from '../src/pipelines/service';
import { createTestDatabase } from './support/db';
import { mosquittoAvailable, startMosquitto, type Mosquitto } from './support/mosquitto';

const SECRET_KEY = 'a-secret-key-for-the-tests';
const who = { clientRowId: 1, username: 'u', mqttClientId: 'device-7', groups: [] };

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

  function subscribe(filter: string): Promise<{ client: MqttClient; received: Array<{ topic: string; payload: string; qos: number }> }> {
    const received: Array<{ topic: string; payload: string; qos: number }> = [];
    // A persistent session: what the bridge sends while it reconnects is queued for it.
    const client = mqtt.connect(mosquitto.url, { clientId: `sub-${Date.now()}`, clean: false, reconnectPeriod: 200 });
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
});
