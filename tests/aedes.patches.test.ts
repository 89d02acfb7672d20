import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Aedes, type AedesOptions } from 'aedes';
import aedesPersistenceLevel from 'aedes-persistence-level';
import aedesPersistenceRedis from 'aedes-persistence-redis';
import { ClassicLevel } from 'classic-level';
import { Redis } from 'ioredis';
import mqemitterRedis from 'mqemitter-redis';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { requireOrSkip } from './support/env';
import { useRedisDatabase } from './support/redis';

/**
 * What patches/aedes+2.0.0-beta.1+*.patch put right in the engine, each
 * against a bare Aedes on real sockets and the stores Gatehouse ships
 * (LevelDB, Redis). Every test here fails on the unpatched beta; the patches
 * are written to be offered upstream, and so are these cases.
 */

const redisUrl = process.env.TEST_REDIS_URL;
const haveRedis = requireOrSkip('Redis (TEST_REDIS_URL)', Boolean(redisUrl), 'set TEST_REDIS_URL=redis://… to run the engine patches on Redis');

const redisDatabase = useRedisDatabase();

/** A logical database of the test Redis for this file alone (tests/support/redis.ts). */
function patchesRedisUrl(): string {
  return redisDatabase.url;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Running {
  aedes: Aedes;
  url: string;
  close(): Promise<void>;
}

const running: Running[] = [];
const clients: MqttClient[] = [];
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.end(true);
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const broker of running.splice(0).reverse()) await broker.close();
});

/** A bare Aedes on a free TCP port, with LevelDB in a directory of its own unless told otherwise. */
async function startAedes(options: Partial<AedesOptions> = {}, store?: { persistence: AedesOptions['persistence']; close(): Promise<void> }): Promise<Running> {
  let ownStore = store;
  if (!ownStore) {
    const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-aedes-'));
    const db = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    await db.open();
    ownStore = {
      persistence: aedesPersistenceLevel(db) as unknown as AedesOptions['persistence'],
      async close() {
        await db.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  const aedes = await Aedes.createBroker({ ...options, persistence: ownStore.persistence });
  const server = net.createServer((socket) => aedes.handle(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const broker: Running = {
    aedes,
    url: `mqtt://127.0.0.1:${port}`,
    async close() {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await ownStore.close();
    },
  };
  running.push(broker);
  return broker;
}

/** Two brokers sharing Redis, as two Gatehouse nodes do. */
async function startRedisPair(options: Partial<AedesOptions> = {}): Promise<[Running, Running]> {
  const flush = new Redis(patchesRedisUrl());
  await flush.flushdb();
  flush.disconnect();
  const node = async () => {
    const conn = new Redis(patchesRedisUrl());
    const persistence = aedesPersistenceRedis({ conn }) as unknown as AedesOptions['persistence'] & { destroy(): Promise<void> };
    const mq = mqemitterRedis({ connectionString: patchesRedisUrl() }) as unknown as AedesOptions['mq'];
    return startAedes({ ...options, mq }, {
      persistence,
      async close() {
        await persistence.destroy().catch(() => {});
        conn.disconnect();
      },
    });
  };
  return [await node(), await node()];
}

function connectClient(url: string, options: IClientOptions): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 10_000, ...options });
    clients.push(client);
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

const v5 = (clientId: string, options: IClientOptions = {}): IClientOptions => ({ protocolVersion: 5, clientId, ...options });

function nextMessage(client: MqttClient, topic: string, timeoutMs = 5000): Promise<{ payload: string; retain: boolean; properties?: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message on ${topic} within ${timeoutMs} ms`)), timeoutMs);
    client.on('message', (t, payload, packet) => {
      if (t !== topic) return;
      clearTimeout(timer);
      resolve({ payload: payload.toString(), retain: packet.retain, properties: packet.properties as Record<string, unknown> | undefined });
    });
  });
}

/** Resolves with the messages `client` received on `topic` within `ms`. */
async function collect(client: MqttClient, topic: string, ms: number): Promise<string[]> {
  const got: string[] = [];
  client.on('message', (t, payload) => {
    if (t === topic) got.push(payload.toString());
  });
  await sleep(ms);
  return got;
}

/** A socket speaking raw MQTT (mqtt-packet), for what a well-behaved client never does. */
async function rawClient(url: string, protocolVersion: 4 | 5) {
  const { port } = new URL(url);
  const socket = net.connect(Number(port), '127.0.0.1');
  sockets.push(socket);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const parser = mqttPacket.parser({ protocolVersion });
  const packets: Packet[] = [];
  const waiting: Array<() => void> = [];
  let closed = false;
  parser.on('packet', (packet) => {
    packets.push(packet);
    for (const wake of waiting.splice(0)) wake();
  });
  socket.on('data', (chunk) => parser.parse(chunk));
  socket.on('error', () => {});
  socket.on('close', () => {
    closed = true;
    for (const wake of waiting.splice(0)) wake();
  });
  return {
    send(packet: Record<string, unknown>) {
      socket.write(mqttPacket.generate(packet as unknown as Packet, { protocolVersion }));
    },
    /** The next packet of `cmd`, or null once the connection is closed. */
    async next(cmd: string, timeoutMs = 5000): Promise<Packet | null> {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const index = packets.findIndex((packet) => packet.cmd === cmd);
        if (index >= 0) return packets.splice(index, 1)[0]!;
        if (closed) return null;
        if (Date.now() > until) throw new Error(`no ${cmd} within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          waiting.push(resolve);
          setTimeout(resolve, 100);
        });
      }
    },
    get closed() {
      return closed;
    },
  };
}

async function rawConnect(url: string, protocolVersion: 4 | 5, clientId: string, extra: Record<string, unknown> = {}) {
  const raw = await rawClient(url, protocolVersion);
  raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion, clientId, clean: true, keepalive: 0, ...extra });
  const connack = (await raw.next('connack')) as (Packet & { returnCode?: number; reasonCode?: number }) | null;
  expect(connack?.returnCode ?? connack?.reasonCode).toBe(0);
  return raw;
}

/** What the broker's store holds queued for `clientId` now. */
async function queuedFor(broker: Running, clientId: string): Promise<string[]> {
  const store = (broker.aedes as unknown as { persistence: { outgoingStream(client: { id: string }): AsyncIterable<{ payload: Buffer }> } }).persistence;
  const queued: string[] = [];
  for await (const packet of store.outgoingStream({ id: clientId })) queued.push(Buffer.from(packet.payload).toString());
  return queued;
}

/** The queue of `clientId` once it is `wanted` (empty or not), polled up to 5 s; what it holds then. */
async function queueOnce(broker: Running, clientId: string, wanted: 'empty' | 'not empty'): Promise<string[]> {
  let queued = await queuedFor(broker, clientId);
  for (let i = 0; i < 250 && (queued.length === 0) !== (wanted === 'empty'); i++) {
    await sleep(20);
    queued = await queuedFor(broker, clientId);
  }
  return queued;
}

/** An expired v5 session, with a message queued for it before it expired. */
async function expireWithQueue(broker: Running, clientId: string): Promise<void> {
  const expired = new Promise<void>((resolve) => broker.aedes.on('sessionExpired', (client) => client.id === clientId && resolve()));
  const device = await connectClient(broker.url, v5(clientId, { clean: false, properties: { sessionExpiryInterval: 2 } }));
  await device.subscribeAsync('expiring', { qos: 1 });
  await device.endAsync();
  const publisher = await connectClient(broker.url, v5(`${clientId}-pub`));
  await publisher.publishAsync('expiring', 'for the old session', { qos: 1 });
  expect(await queueOnce(broker, clientId, 'not empty')).toEqual(['for the old session']);
  await expired;
}

describe('the engine: Aedes 2.0.0-beta.1 as patched', { timeout: 60_000 }, () => {
  // 001: GHSA-52qw-whmv-87c5, fixed in Aedes 1.1.2, not in the beta.
  it.each(['constructor', '__proto__', 'toString'])('serves a client id and a topic named like an Object property (%s) as any other', async (name) => {
    const broker = await startAedes();
    const device = await connectClient(broker.url, { clientId: name });
    expect(Object.getPrototypeOf((broker.aedes as unknown as { clients: object }).clients)).toBeNull();
    await device.subscribeAsync(name, { qos: 1 });
    const heard = nextMessage(device, name);
    await device.publishAsync(name, 'hello', { qos: 1 });
    expect((await heard).payload).toBe('hello');
  });

  // 002: maxInflightInbound (Aedes 1.2.0), and the Receive Maximum a v5 client is told.
  it('closes a 3.1.1 connection that keeps QoS 2 messages open past maxInflightInbound', async () => {
    const broker = await startAedes({ maxInflightInbound: 5 } as Partial<AedesOptions>);
    const raw = await rawConnect(broker.url, 4, 'half-open');
    for (let id = 1; id <= 5; id++) raw.send({ cmd: 'publish', topic: 'q2', payload: 'x', qos: 2, messageId: id });
    for (let id = 1; id <= 5; id++) expect(await raw.next('pubrec')).not.toBeNull();
    raw.send({ cmd: 'publish', topic: 'q2', payload: 'x', qos: 2, messageId: 6 });
    expect(await raw.next('pubrec')).toBeNull();
    expect(raw.closed).toBe(true);
  });

  it('tells a v5 client over its Receive Maximum so with DISCONNECT 0x93, QoS 1 included', async () => {
    // Each QoS 1 message is held in authorizePublish: none is acknowledged,
    // so the sixth is over the advertised window of 5.
    const held: Array<() => void> = [];
    const broker = await startAedes({
      receiveMaximum: 5,
      authorizePublish: (_client, _packet, callback) => held.push(() => callback(null)),
    } as Partial<AedesOptions>);
    const raw = await rawConnect(broker.url, 5, 'eager');
    for (let id = 1; id <= 6; id++) raw.send({ cmd: 'publish', topic: 'q1', payload: 'x', qos: 1, messageId: id });
    const disconnect = (await raw.next('disconnect')) as (Packet & { reasonCode?: number }) | null;
    expect(disconnect?.reasonCode).toBe(0x93);
    for (const release of held) release();
  });

  it('lets a v5 client use its whole Receive Maximum, again and again', async () => {
    const broker = await startAedes({ receiveMaximum: 5 } as Partial<AedesOptions>);
    const raw = await rawConnect(broker.url, 5, 'steady');
    for (let round = 0; round < 3; round++) {
      for (let id = 1; id <= 5; id++) raw.send({ cmd: 'publish', topic: 'q2', payload: 'x', qos: 2, messageId: id });
      for (let id = 1; id <= 5; id++) expect(await raw.next('pubrec')).not.toBeNull();
      for (let id = 1; id <= 5; id++) raw.send({ cmd: 'pubrel', messageId: id });
      for (let id = 1; id <= 5; id++) expect(await raw.next('pubcomp')).not.toBeNull();
    }
    expect(raw.closed).toBe(false);
  });

  // 003: GHSA-p8r9-qf8w-p73r, fixed in Aedes 1.2.0, not in the beta.
  it.each([4, 5] as const)('forgets a clean session’s unfinished QoS 2 message ids when it reconnects (protocol %i)', async (protocolVersion) => {
    const broker = await startAedes();
    const listener = await connectClient(broker.url, { clientId: 'listener' });
    await listener.subscribeAsync('q2', { qos: 2 });
    const heard: string[] = [];
    listener.on('message', (_topic, payload) => heard.push(payload.toString()));

    const first = await rawConnect(broker.url, protocolVersion, 'forgetful');
    first.send({ cmd: 'publish', topic: 'q2', payload: 'first', qos: 2, messageId: 7 });
    expect(await first.next('pubrec')).not.toBeNull();
    sockets.pop()!.destroy(); // no PUBREL, ever
    await sleep(200);

    const again = await rawConnect(broker.url, protocolVersion, 'forgetful');
    again.send({ cmd: 'publish', topic: 'q2', payload: 'second', qos: 2, messageId: 7 });
    expect(await again.next('pubrec')).not.toBeNull();
    again.send({ cmd: 'pubrel', messageId: 7 });
    expect(await again.next('pubcomp')).not.toBeNull();
    for (let i = 0; i < 50 && !heard.includes('second'); i++) await sleep(50);
    expect(heard).toEqual(['first', 'second']);
  });

  // 004: [MQTT-3.1.2-5] Clean Start 0 resumes the session even when it ends with this connection.
  it('delivers what was queued to a v5 session resumed without Session Expiry', async () => {
    const broker = await startAedes();
    const device = await connectClient(broker.url, v5('resumer', { clean: false, properties: { sessionExpiryInterval: 300 } }));
    await device.subscribeAsync('queued', { qos: 1 });
    await device.endAsync();

    const publisher = await connectClient(broker.url, { clientId: 'pub' });
    await publisher.publishAsync('queued', 'while away', { qos: 1 });

    const back = mqtt.connect(broker.url, { reconnectPeriod: 0, ...v5('resumer', { clean: false }) });
    clients.push(back);
    const heard = nextMessage(back, 'queued');
    const connack = await new Promise<{ sessionPresent: boolean }>((resolve) => back.once('connect', resolve));
    expect(connack.sessionPresent).toBe(true);
    expect((await heard).payload).toBe('while away');
  });

  // 006: a stripped Topic Alias must not become null in a store or on the bus.
  it('serves a retained message published with a topic alias from LevelDB', async () => {
    const broker = await startAedes({ topicAliasMaximum: 10 } as Partial<AedesOptions>);
    const publisher = await connectClient(broker.url, v5('aliaser'));
    await publisher.publishAsync('alias/retained', 'kept', { qos: 1, retain: true, properties: { topicAlias: 1 } });
    const reader = await connectClient(broker.url, v5('reader'));
    const heard = nextMessage(reader, 'alias/retained');
    await reader.subscribeAsync('alias/#', { qos: 1 });
    const message = await heard;
    expect(message).toMatchObject({ payload: 'kept', retain: true });
    expect(message.properties?.topicAlias).toBeUndefined();
    expect(reader.connected).toBe(true);
  });

  // 011: the client's own limits on what it is sent ([MQTT-4.9.0-2], [MQTT-3.1.2-25]).
  it("sends a v5 client no more unacknowledged QoS 1/2 messages than its Receive Maximum, and the rest in order as it acknowledges", async () => {
    const broker = await startAedes();
    const raw = await rawConnect(broker.url, 5, 'narrow', { properties: { receiveMaximum: 2 } });
    raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'window', qos: 2 }] });
    expect(await raw.next('suback')).not.toBeNull();
    const publisher = await connectClient(broker.url, v5('window-pub'));
    for (let i = 1; i <= 5; i++) await publisher.publishAsync('window', `m${i}`, { qos: i % 2 === 0 ? 2 : 1 });
    // Every message has reached the client's delivery by now (each PUBACK
    // waited for it): whatever was to be written is before the PINGRESP.
    const sentBeforePing = async () => {
      raw.send({ cmd: 'pingreq' });
      const received: Array<Packet & { payload: Buffer; messageId: number; qos: number }> = [];
      for (;;) {
        const packet = (await raw.next('publish', 500).catch(() => null)) as (Packet & { payload: Buffer; messageId: number; qos: number }) | null;
        if (!packet) break;
        received.push(packet);
      }
      expect(await raw.next('pingresp')).not.toBeNull();
      return received;
    };
    const first = await sentBeforePing();
    expect(first.map((p) => p.payload.toString())).toEqual(['m1', 'm2']);
    // QoS 1: its PUBACK frees a slot. QoS 2: PUBREC does not, PUBCOMP does.
    raw.send({ cmd: 'puback', messageId: first[0]!.messageId });
    expect((await sentBeforePing()).map((p) => p.payload.toString())).toEqual(['m3']);
    raw.send({ cmd: 'pubrec', messageId: first[1]!.messageId });
    expect(await raw.next('pubrel')).not.toBeNull();
    expect(await sentBeforePing()).toEqual([]);
    raw.send({ cmd: 'pubcomp', messageId: first[1]!.messageId });
    expect((await sentBeforePing()).map((p) => p.payload.toString())).toEqual(['m4']);
  });

  it('does not send a v5 client a message larger than its Maximum Packet Size, and does not keep it queued for it', async () => {
    const broker = await startAedes();
    const errors: string[] = [];
    broker.aedes.on('clientError', (_client, error) => errors.push(error.message));
    const session = { clean: false, properties: { sessionExpiryInterval: 300, maximumPacketSize: 200 } };
    const small = await connectClient(broker.url, v5('small', session));
    await small.subscribeAsync('sized', { qos: 1 });
    const heard: string[] = [];
    small.on('message', (_topic, payload) => heard.push(payload.toString()));
    const publisher = await connectClient(broker.url, v5('sized-pub'));
    await publisher.publishAsync('sized', 'x'.repeat(300), { qos: 1 });
    await publisher.publishAsync('sized', 'fits', { qos: 1 });
    for (let i = 0; i < 50 && heard.length === 0; i++) await sleep(20);
    expect(heard).toEqual(['fits']);
    expect(errors.some((message) => /PUBLISH of \d+ bytes not sent: the client accepts at most 200/.test(message))).toBe(true);
    expect(small.connected).toBe(true);

    // Away: the large one is dropped from its queue when it would be sent, not kept for ever.
    await small.endAsync();
    await publisher.publishAsync('sized', 'y'.repeat(300), { qos: 1 });
    await publisher.publishAsync('sized', 'queued', { qos: 1 });
    const back = mqtt.connect(broker.url, { reconnectPeriod: 0, ...v5('small', session) });
    clients.push(back);
    const got: string[] = [];
    back.on('message', (_topic, payload) => got.push(payload.toString()));
    // Sent in the order queued: the large one would have come first.
    for (let i = 0; i < 100 && got.length === 0; i++) await sleep(20);
    expect(got).toEqual(['queued']);
    await back.endAsync();
    // Its PUBACK clears 'queued' from the store a moment later; the large one would stay.
    const store = (broker.aedes as unknown as { persistence: { outgoingStream(client: { id: string }): AsyncIterable<{ payload: Buffer }> } }).persistence;
    let left: string[] = [];
    for (let i = 0; i < 50; i++) {
      left = [];
      for await (const packet of store.outgoingStream({ id: 'small' })) left.push(packet.payload.toString().slice(0, 8));
      if (left.length === 0) break;
      await sleep(20);
    }
    expect(left).toEqual([]);
  });

  // 012: [MQTT-3.3.4-4] one copy of a message, with every matching subscription's identifier.
  it('gives a message matching several subscriptions of a v5 client the identifiers of all of them', async () => {
    const broker = await startAedes();
    const device = await connectClient(broker.url, v5('identified'));
    await device.subscribeAsync('ids/#', { qos: 1, properties: { subscriptionIdentifier: 1 } });
    await device.subscribeAsync('ids/+/temp', { qos: 1, properties: { subscriptionIdentifier: 2 } });
    await device.subscribeAsync('ids/plain/+', { qos: 1 });
    const heard: Array<{ topic: string; ids: unknown }> = [];
    device.on('message', (topic, _payload, packet) => heard.push({ topic, ids: packet.properties?.subscriptionIdentifier }));
    await device.publishAsync('ids/a/temp', 'both', { qos: 1 });
    await device.publishAsync('ids/a/other', 'one', { qos: 1 });
    await device.publishAsync('ids/plain/temp', 'with a plain one', { qos: 1 });
    for (let i = 0; i < 50 && heard.length < 3; i++) await sleep(20);
    expect(heard.map((m) => ({ ...m, ids: Array.isArray(m.ids) ? [...m.ids].sort() : m.ids }))).toEqual([
      { topic: 'ids/a/temp', ids: [1, 2] },
      { topic: 'ids/a/other', ids: 1 },
      { topic: 'ids/plain/temp', ids: [1, 2] },
    ]);
  });

  // 013: an expired session's queue goes with it ([MQTT-3.1.2-23]). Not a Redis case: that
  // store deletes a client's queue with its last subscription, patched or not.
  it('removes the queued messages of an expired session from LevelDB: the next session of that client id does not get them', async () => {
    const broker = await startAedes();
    await expireWithQueue(broker, 'expirer');
    expect(await queueOnce(broker, 'expirer', 'empty')).toEqual([]);
    const back = await connectClient(broker.url, v5('expirer', { clean: false, properties: { sessionExpiryInterval: 60 } }));
    expect(await collect(back, 'expiring', 500)).toEqual([]);
  });

  describe.runIf(haveRedis)('two brokers sharing Redis', () => {
    it('delivers a message published with a topic alias on the other broker', async () => {
      const [a, b] = await startRedisPair({ topicAliasMaximum: 10 } as Partial<AedesOptions>);
      const reader = await connectClient(b.url, v5('far-reader'));
      await reader.subscribeAsync('alias/live', { qos: 1 });
      await sleep(200); // the bus' SUBSCRIBE reaches Redis
      const heard = nextMessage(reader, 'alias/live');
      const publisher = await connectClient(a.url, v5('far-aliaser'));
      await publisher.publishAsync('alias/live', 'travelled', { qos: 1, properties: { topicAlias: 1, userProperties: { site: 'north' } } });
      const message = await heard;
      expect(message.payload).toBe('travelled');
      expect(message.properties?.userProperties).toEqual({ site: 'north' });
      expect(reader.connected).toBe(true);
    });

    // 005: the session moved; the old broker's timers are not the session's any more.
    it('keeps a session that moved to the other broker when its expiry on the first one comes', async () => {
      const [a, b] = await startRedisPair();
      const first = await connectClient(a.url, v5('mover', { clean: false, properties: { sessionExpiryInterval: 1 } }));
      await first.subscribeAsync('moved', { qos: 1 });
      await first.endAsync(); // a arms a 1 s expiry
      const onB = await connectClient(b.url, v5('mover', { clean: false, properties: { sessionExpiryInterval: 300 } }));
      await sleep(1500); // past a's expiry
      await onB.endAsync();
      const publisher = await connectClient(b.url, { clientId: 'mover-pub' });
      await publisher.publishAsync('moved', 'kept for you', { qos: 1 });
      const back = await connectClient(b.url, v5('mover', { clean: false, properties: { sessionExpiryInterval: 300 } }));
      expect((await nextMessage(back, 'moved')).payload).toBe('kept for you');
    });

    it('does not publish the delayed will of a client that came back on the other broker', async () => {
      const [a, b] = await startRedisPair();
      const watcher = await connectClient(b.url, { clientId: 'watcher' });
      await watcher.subscribeAsync('wills/#', { qos: 1 });
      const wills = collect(watcher, 'wills/traveller', 2500);
      const first = await connectClient(
        a.url,
        v5('traveller', {
          clean: false,
          properties: { sessionExpiryInterval: 300 },
          will: { topic: 'wills/traveller', payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: 1 } },
        }),
      );
      (first.stream as net.Socket).destroy(); // no DISCONNECT: a arms the delayed will
      await sleep(200);
      await connectClient(b.url, v5('traveller', { clean: false, properties: { sessionExpiryInterval: 300 } }));
      expect(await wills).toEqual([]);
    });

    // 007: [MQTT-3.1.4-2] taken over on the other broker.
    it('tells a v5 client taken over on the other broker so with 0x8E, and leaves the session to it', async () => {
      const [a, b] = await startRedisPair();
      const first = await connectClient(a.url, v5('twin', { clean: false, properties: { sessionExpiryInterval: 1 } }));
      await first.subscribeAsync('twin/inbox', { qos: 1 });
      const told = new Promise<number | undefined>((resolve) => first.once('disconnect', (packet) => resolve(packet.reasonCode)));
      const second = await connectClient(b.url, v5('twin', { clean: false, properties: { sessionExpiryInterval: 300 } }));
      expect(await told).toBe(0x8e);
      await sleep(1500); // past the first connection's expiry
      await second.endAsync();
      const publisher = await connectClient(b.url, { clientId: 'twin-pub' });
      await publisher.publishAsync('twin/inbox', 'still yours', { qos: 1 });
      const back = await connectClient(b.url, v5('twin', { clean: false, properties: { sessionExpiryInterval: 300 } }));
      expect((await nextMessage(back, 'twin/inbox')).payload).toBe('still yours');
    });
  });
});

afterAll(() => {
  for (const client of clients) client.end(true);
});
