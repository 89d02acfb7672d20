import net from 'node:net';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../src/domain/clients';
import type { Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient, nextMessage, subscribeCodes, tryConnect } from './support/mqtt';

const credentials = { username: 'flood', password: 'flood-password' };

/** A raw TCP MQTT client that subscribes and then never reads its socket again. */
async function connectStalledSubscriber(port: number, topic: string): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const parser = mqttPacket.parser();
  const acks = new Promise<void>((resolve, reject) => {
    parser.on('packet', (packet) => {
      if (packet.cmd === 'connack' && packet.returnCode !== 0) reject(new Error(`CONNACK ${packet.returnCode}`));
      if (packet.cmd === 'suback') resolve();
    });
  });
  socket.on('data', (chunk) => parser.parse(chunk));
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'stalled', keepalive: 60, ...credentials, password: Buffer.from(credentials.password) }));
  socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 0 }] }));
  await acks;
  socket.removeAllListeners('data');
  socket.pause(); // from here on the kernel buffers fill and the broker's writes back up
  return socket;
}

describe('broker limits', () => {
  let gatehouse: Gatehouse;
  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite', { MQTT_DRAIN_TIMEOUT_MS: '3000', MQTT_MAX_PACKET_BYTES: '65536' });
    await createClient(gatehouse.database.db, { name: 'Flood', ...credentials });
    await grantGroup(gatehouse.database.db, { name: 'Everything', permissions: [['allow', 'publish', '#'], ['allow', 'subscribe', '#']], usernames: ['flood'] });
  });
  afterAll(async () => {
    await gatehouse?.close();
  });

  it('cuts off a subscriber that stopped reading during a QoS 0 flood while the others keep receiving', async () => {
    const stalled = await connectStalledSubscriber(gatehouse.mqttPort, 'flood/data');
    const cutOff = new Promise<void>((resolve) => {
      gatehouse.broker.aedes.on('clientDisconnect', (client) => client.id === 'stalled' && resolve());
      gatehouse.broker.aedes.on('clientError', (client) => client.id === 'stalled' && resolve());
    });
    let stalledGone = false;
    void cutOff.then(() => (stalledGone = true));

    const healthy = await connect(brokerUrl(gatehouse, 'tcp'), { ...credentials, clientId: 'healthy' });
    const bystander = await connect(brokerUrl(gatehouse, 'ws'), { ...credentials, clientId: 'bystander' });
    const publisher = await connect(brokerUrl(gatehouse, 'tcp'), { ...credentials, clientId: 'publisher' });
    await healthy.subscribeAsync('flood/data', { qos: 0 });
    await bystander.subscribeAsync('unrelated/topic', { qos: 1 });
    let healthyReceived = 0;
    let caughtUp: { count: number; resolve(): void } | undefined;
    healthy.on('message', () => {
      healthyReceived++;
      if (caughtUp && healthyReceived >= caughtUp.count) caughtUp.resolve();
    });
    const healthyHas = (count: number) =>
      new Promise<void>((resolve, reject) => {
        if (healthyReceived >= count) return resolve();
        const timer = setTimeout(() => reject(new Error(`the healthy subscriber got ${healthyReceived} of ${count} messages within 10 s`)), 10_000);
        caughtUp = { count, resolve: () => (clearTimeout(timer), resolve()) };
      });

    const payload = Buffer.alloc(4096, 'x');
    let published = 0;
    const deadline = Date.now() + 30_000;
    try {
      // Flood until the stalled subscriber is gone (bounded by the deadline),
      // as fast as a subscriber that reads can take it: each batch goes out
      // once the healthy one has the one before. So only the stalled one
      // falls behind, whatever else the machine is doing (an open-loop flood
      // on a busy machine left every reader, and the publisher's own queue,
      // seconds behind).
      while (!stalledGone && Date.now() < deadline) {
        for (let i = 0; i < 50; i++) publisher.publish('flood/data', payload, { qos: 0 });
        published += 50;
        await healthyHas(published);
        if (published % 5000 === 0) {
          // Mid-flood, an unrelated subscriber still gets its message and a new device gets in.
          const arrived = nextMessage(bystander, 'unrelated/topic', 5000);
          await publisher.publishAsync('unrelated/topic', `at ${published}`, { qos: 1 });
          await arrived;
          const newcomer = await tryConnect(brokerUrl(gatehouse, 'tcp'), credentials);
          expect(newcomer.ok).toBe(true);
          if (newcomer.ok) await endClient(newcomer.client);
        }
      }
      expect(stalledGone).toBe(true);
      // The healthy subscriber kept receiving throughout: every message (QoS 0 loss only for the stalled one).
      expect(healthyReceived).toBe(published);
      // After the flood everything still flows.
      const after = nextMessage(healthy, 'flood/data');
      await publisher.publishAsync('flood/data', 'after', { qos: 0 });
      expect((await after).payload).toBe('after');
    } finally {
      stalled.destroy();
      await Promise.all([endClient(healthy), endClient(bystander), endClient(publisher)]);
    }
  });

  it('closes a connection that announces a packet over the size limit, and stays up', async () => {
    const client = await connect(brokerUrl(gatehouse, 'tcp'), { ...credentials, clientId: 'big-sender' });
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.publish('big/packet', Buffer.alloc(70_000, 'y'), { qos: 0 });
    await closed;
    await endClient(client);
    const other = await tryConnect(brokerUrl(gatehouse, 'ws'), credentials);
    expect(other.ok).toBe(true);
    if (other.ok) await endClient(other.client);
  });

  it('delivers a packet just under the size limit', async () => {
    const client = await connect(brokerUrl(gatehouse, 'tcp'), { ...credentials, clientId: 'fits' });
    try {
      await client.subscribeAsync('fits/packet');
      const arrived = nextMessage(client, 'fits/packet');
      client.publish('fits/packet', Buffer.alloc(60_000, 'z'), { qos: 0 });
      expect((await arrived).payload).toHaveLength(60_000);
    } finally {
      await endClient(client);
    }
  });

  it('refuses connections beyond the maximum', async () => {
    const small = await startTestGatehouse('pglite', { MQTT_MAX_CONNECTIONS: '2' });
    try {
      await createClient(small.database.db, { name: 'Flood', ...credentials });
      const a = await connect(brokerUrl(small, 'tcp'), credentials);
      const b = await connect(brokerUrl(small, 'ws'), credentials);
      const third = await tryConnect(brokerUrl(small, 'tcp'), credentials);
      expect(third.ok).toBe(false);
      await endClient(a);
      await expect.poll(() => small.broker.connectionCount()).toBe(1);
      const fourth = await tryConnect(brokerUrl(small, 'ws'), credentials);
      expect(fourth.ok).toBe(true);
      if (fourth.ok) await endClient(fourth.client);
      await endClient(b);
    } finally {
      await small.close();
    }
  });

  /** Sends a raw HTTP request and resolves with what came back when the server closed. */
  function rawHttp(port: number, request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.write(request));
      let answer = '';
      socket.on('data', (chunk) => (answer += chunk));
      socket.on('close', () => resolve(answer));
      socket.on('error', reject);
      socket.setTimeout(5000, () => reject(new Error(`socket left open; got so far: ${JSON.stringify(answer)}`)));
    });
  }
  const upgrade = (target: string) =>
    `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

  it('survives an upgrade request with an unparsable target, and closes upgrades to other paths', async () => {
    await rawHttp(gatehouse.httpPort, upgrade('http://['));
    expect(await rawHttp(gatehouse.httpPort, upgrade('/not-mqtt'))).toMatch(/^HTTP\/1\.1 404/);
    const still = await tryConnect(brokerUrl(gatehouse, 'ws'), credentials);
    expect(still.ok).toBe(true);
    if (still.ok) await endClient(still.client);
  });

  it('caps the subscriptions of one session, and UNSUBSCRIBE gives room back', async () => {
    const capped = await startTestGatehouse('pglite', { MQTT_MAX_SUBSCRIPTIONS: '3' });
    try {
      await createClient(capped.database.db, { name: 'Flood', ...credentials });
      await grantGroup(capped.database.db, { name: 'Everything', permissions: [['allow', 'subscribe', '#']], usernames: ['flood'] });
      const client = await connect(brokerUrl(capped, 'tcp'), credentials);
      try {
        const codes = await subscribeCodes(client, { a: { qos: 0 }, b: { qos: 0 }, c: { qos: 0 }, d: { qos: 0 } });
        expect(Object.values(codes).filter((code) => code === 128)).toHaveLength(1);
        expect(await subscribeCodes(client, { a: { qos: 1 } })).toEqual({ a: 1 }); // re-subscribing is not a new one
        const refused = Object.keys(codes).find((topic) => codes[topic] === 128)!;
        const kept = Object.keys(codes).find((topic) => codes[topic] !== 128)!;
        await client.unsubscribeAsync(kept);
        expect(await subscribeCodes(client, { [refused]: { qos: 0 } })).toEqual({ [refused]: 0 });
      } finally {
        await endClient(client);
      }
    } finally {
      await capped.close();
    }
  });

  it('slows a connection over MQTT_MAX_PUBLISH_RATE down, delivering every message, without slowing the others', async () => {
    const limited = await startTestGatehouse('pglite', { MQTT_MAX_PUBLISH_RATE: '20' });
    try {
      await createClient(limited.database.db, { name: 'Flood', ...credentials });
      await grantGroup(limited.database.db, { name: 'Rates', permissions: [['allow', 'publish', 'rate/#'], ['allow', 'subscribe', 'rate/#']], usernames: ['flood'] });
      const subscriber = await connect(brokerUrl(limited, 'tcp'), { ...credentials, clientId: 'rate-sub' });
      const fast = await connect(brokerUrl(limited, 'tcp'), { ...credentials, clientId: 'rate-fast' });
      const calm = await connect(brokerUrl(limited, 'ws'), { ...credentials, clientId: 'rate-calm' });
      try {
        await subscriber.subscribeAsync('rate/#', { qos: 1 });
        let received = 0;
        subscriber.on('message', (topic) => topic === 'rate/fast' && received++);
        const started = Date.now();
        // 40 at once, at 20 a second: the last one waits its turn for about 2 s.
        const burst = Promise.all(Array.from({ length: 40 }, (_, i) => fast.publishAsync('rate/fast', String(i), { qos: 1 })));
        await new Promise((resolve) => setTimeout(resolve, 200));
        // Another connection meanwhile is not held up by that queue.
        const calmHeard = nextMessage(subscriber, 'rate/calm');
        await calm.publishAsync('rate/calm', 'hello', { qos: 1 });
        await calmHeard;
        const calmAfter = Date.now() - started;
        await burst;
        const burstTook = Date.now() - started;
        expect(burstTook).toBeGreaterThanOrEqual(1500);
        expect(calmAfter).toBeLessThan(burstTook);
        await expect.poll(() => received).toBe(40);
      } finally {
        await Promise.all([endClient(subscriber), endClient(fast), endClient(calm)]);
      }
    } finally {
      await limited.close();
    }
  });
});
