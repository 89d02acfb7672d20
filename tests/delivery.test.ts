import { Redis } from 'ioredis';
import mqtt, { Store, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client as AedesClient } from 'aedes';
import { isResuming, RESUME_GRACE_MS } from '../src/broker/engine/delivery';
import { createClient } from '../src/domain/clients';
import type { Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { requireOrSkip } from './support/env';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient } from './support/mqtt';
import { useRedisDatabase } from './support/redis';

/**
 * No QoS 1/2 message may be lost to a subscriber, whatever else travels
 * beside it, and a session's queue is delivered as [MQTT-3.3.1-9] says.
 * Run on both stores of broker state: LevelDB (one node) and Redis.
 */
const redisUrl = process.env.TEST_REDIS_URL;
const databaseUrl = process.env.TEST_DATABASE_URL;

const redisDatabase = useRedisDatabase();

/** A logical database of the test Redis for this file alone (tests/support/redis.ts). */
function deliveryRedisUrl(): string {
  return redisDatabase.url;
}

const stores = [
  { name: 'LevelDB', start: () => startTestGatehouse('pglite') },
  ...(requireOrSkip('Redis and PostgreSQL (TEST_REDIS_URL, TEST_DATABASE_URL)', Boolean(redisUrl && databaseUrl), 'set both to run the delivery suite on Redis')
    ? [
        {
          name: 'Redis',
          start: async () => {
            const redis = new Redis(deliveryRedisUrl());
            await redis.flushdb();
            redis.disconnect();
            // DATABASE_URL only passes the config's check: the test database is handed in.
            return startTestGatehouse('postgres', { REDIS_URL: deliveryRedisUrl(), DATABASE_URL: databaseUrl });
          },
        },
      ]
    : []),
];

const user = { username: 'relay', password: 'relay-password' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `done()` holds, or `ms` passed; the caller asserts what it got. */
async function settle(done: () => boolean, ms = 10_000) {
  const until = Date.now() + ms;
  while (!done() && Date.now() < until) await sleep(50);
}

describe.each(stores)('delivery on $name', { timeout: 120_000 }, ({ name, start }) => {
  let gatehouse: Gatehouse;
  let url: string;
  beforeAll(async () => {
    gatehouse = await start();
    url = brokerUrl(gatehouse, 'tcp');
    await createClient(gatehouse.database.db, { name: 'Relay', ...user });
    await grantGroup(gatehouse.database.db, {
      name: 'Everything',
      permissions: [
        ['allow', 'publish', '#'],
        ['allow', 'subscribe', '#'],
      ],
      usernames: [user.username],
    });
  });
  afterAll(async () => {
    await gatehouse?.close();
  });

  const open: MqttClient[] = [];
  const client = async (options: mqtt.IClientOptions) => {
    const c = await connect(url, { ...user, ...options });
    open.push(c);
    return c;
  };
  afterAll(async () => {
    await Promise.all(open.map((c) => endClient(c)));
  });

  it('delivers every QoS 1 message to connected subscribers when QoS 0 messages published right after them overtake them', async () => {
    // A session that is away makes every QoS 1 message wait for its queue
    // write before delivery; a QoS 0 message does not wait.
    const away = await client({ clientId: 'mixed-away', clean: false });
    await away.subscribeAsync('mixed/#', { qos: 1 });
    await endClient(away);

    const clean = await client({ clientId: 'mixed-clean', clean: true });
    const persistent = await client({ clientId: 'mixed-persistent', clean: false });
    const got = { clean: new Set<string>(), persistent: new Set<string>() };
    for (const [name, c] of [['clean', clean], ['persistent', persistent]] as const) {
      await c.subscribeAsync({ 'mixed/q0': { qos: 0 }, 'mixed/q1': { qos: 1 } });
      c.on('message', (topic, payload) => {
        if (topic === 'mixed/q1') got[name].add(payload.toString());
      });
    }

    // Two publishers, so a QoS 0 message can be published while an earlier
    // QoS 1 message waits for its queue write (one connection's packets are
    // published in order: Aedes reads its next chunk once they are done).
    const reliable = await client({ clientId: 'mixed-publisher-1' });
    const chatty = await client({ clientId: 'mixed-publisher-0' });
    const count = 400;
    const acks: Promise<unknown>[] = [];
    for (let i = 0; i < count; i++) {
      acks.push(reliable.publishAsync('mixed/q1', `m${i}`, { qos: 1 }));
      chatty.publish('mixed/q0', `z${i}`, { qos: 0 });
      if (i % 4 === 3) await sleep(2);
    }
    await Promise.all(acks);
    await settle(() => got.clean.size === count && got.persistent.size === count);
    expect(got.clean.size).toBe(count);
    expect(got.persistent.size).toBe(count);
  });

  it('still delivers a message matching two of one session’s filters once', async () => {
    const overlap = await client({ clientId: 'overlap', clean: true });
    await overlap.subscribeAsync({ 'overlap/#': { qos: 1 }, 'overlap/+': { qos: 1 }, 'overlap/a': { qos: 0 } });
    const seen: string[] = [];
    overlap.on('message', (_topic, payload) => seen.push(payload.toString()));
    const publisher = await client({ clientId: 'overlap-publisher' });
    for (let i = 0; i < 20; i++) await publisher.publishAsync('overlap/a', `o${i}`, { qos: 1 });
    await publisher.publishAsync('overlap/end', 'end', { qos: 1 });
    await settle(() => seen.includes('end'));
    expect(seen).toEqual([...Array.from({ length: 20 }, (_, i) => `o${i}`), 'end']);
  });

  it('answers a persistent session’s SUBSCRIBE of several filters', async () => {
    const session = await client({ clientId: 'several-filters', clean: false });
    const granted = await session.subscribeAsync({ 'several/a': { qos: 1 }, 'several/b': { qos: 2 }, 'several/c': { qos: 0 } });
    expect(granted.map((g) => g.qos)).toEqual([1, 2, 0]);
  });

  it('sends a message queued from a retained publish with RETAIN=0, and a new subscription’s retained message with RETAIN=1', async () => {
    const session = await client({ clientId: 'queued-retain', clean: false });
    await session.subscribeAsync('queued/#', { qos: 1 });
    await endClient(session);
    const publisher = await client({ clientId: 'queued-publisher' });
    await publisher.publishAsync('queued/state', 'while away', { qos: 1, retain: true });

    const back = mqtt.connect(url, { ...user, clientId: 'queued-retain', clean: false, reconnectPeriod: 0 });
    open.push(back);
    const queued = await new Promise<{ payload: string; retain: boolean }>((resolve, reject) => {
      back.once('message', (_topic, payload, packet) => resolve({ payload: payload.toString(), retain: packet.retain }));
      back.once('error', reject);
    });
    expect(queued).toEqual({ payload: 'while away', retain: false });

    const fresh = await client({ clientId: 'queued-fresh', clean: true });
    const retained = new Promise<{ payload: string; retain: boolean }>((resolve) => fresh.once('message', (_topic, payload, packet) => resolve({ payload: payload.toString(), retain: packet.retain })));
    await fresh.subscribeAsync('queued/#', { qos: 1 });
    expect(await retained).toEqual({ payload: 'while away', retain: true });
  });

  it('forgets what a persistent session coming back was sent once it is connected, though nothing more is delivered to it', async () => {
    const session = await client({ clientId: 'resume-quiet', clean: false });
    await session.subscribeAsync('quiet/#', { qos: 1 });
    await endClient(session);
    const publisher = await client({ clientId: 'quiet-publisher' });
    await publisher.publishAsync('quiet/a', 'queued', { qos: 1 });

    // The moment the session is connected (its queue sent), it holds the record of what it was sent.
    const aedes = gatehouse.broker.aedes;
    const ready = new Promise<{ engineClient: AedesClient; resuming: boolean }>((resolve) => {
      const onReady = (engineClient: AedesClient) => {
        if (engineClient.id !== 'resume-quiet') return;
        aedes.off('clientReady', onReady);
        resolve({ engineClient, resuming: isResuming(engineClient) });
      };
      aedes.on('clientReady', onReady);
    });
    const back = mqtt.connect(url, { ...user, clientId: 'resume-quiet', clean: false, reconnectPeriod: 0 });
    open.push(back);
    const queued = new Promise<string>((resolve) => back.once('message', (_topic, payload) => resolve(payload.toString())));
    const { engineClient, resuming } = await ready;
    expect(resuming).toBe(true);
    expect(await queued).toBe('queued');
    // Nothing more comes for it: the record goes all the same, once the grace is over.
    await expect.poll(() => isResuming(engineClient), { timeout: RESUME_GRACE_MS + 10_000, interval: 250 }).toBe(false);
    expect(back.connected).toBe(true);
  });

  it('keeps a persistent QoS 2 subscriber connected through a reconnection while messages flow (queued and live at once), each message once', async () => {
    // The client's QoS 2 state outlives its connections, as a device's does.
    const stores = { incomingStore: new Store({ clean: false }), outgoingStore: new Store({ clean: false }) };
    const options = { ...user, clientId: 'exactly-once', clean: false, reconnectPeriod: 0, ...stores };
    const counts = new Map<string, number>();
    const onMessage = (_topic: string, payload: Buffer) => counts.set(payload.toString(), (counts.get(payload.toString()) ?? 0) + 1);
    const first = await client(options);
    first.on('message', onMessage);
    await first.subscribeAsync('exactly/q2', { qos: 2 });

    const publisher = await client({ clientId: 'exactly-publisher' });
    const total = 300;
    let sent = 0;
    const publishing = (async () => {
      while (sent < total) {
        await Promise.all(Array.from({ length: 5 }, () => publisher.publishAsync('exactly/q2', `e${sent++}`, { qos: 2 })));
        await sleep(5);
      }
    })();
    await settle(() => sent >= 60);
    await endClient(first);
    await settle(() => sent >= 150);
    const second = mqtt.connect(url, options);
    open.push(second);
    const problems: string[] = [];
    second.on('message', onMessage);
    second.on('error', (error) => problems.push(error.message));
    second.on('close', () => problems.push('connection closed'));
    await new Promise((resolve) => second.once('connect', resolve));
    await publishing;
    await settle(() => counts.size === total, 30_000);
    expect(problems).toEqual([]);
    expect(counts.size).toBe(total);
    expect([...counts.values()].filter((n) => n > 1)).toEqual([]);
  });

  // The embedded store's side is tests/acknowledged.process.test.ts (kill -9).
  it.runIf(name === 'Redis')('sends PUBACK only once Redis has acknowledged the retained copy and the copy queued for an away session', async () => {
    const away = await client({ clientId: 'acked-away', clean: false });
    await away.subscribeAsync('acked/#', { qos: 1 });
    await endClient(away);
    const publisher = await client({ clientId: 'acked-publisher' });
    // Read beside the broker, with aedes-persistence-redis 12's own keys.
    const reader = new Redis(deliveryRedisUrl());
    const stored = async () => ({
      retained: await reader.hexists('retained', 'acked/door'),
      queued: await reader.llen('outgoing:acked-away'),
    });
    try {
      expect(await stored()).toEqual({ retained: 0, queued: 0 });
      // Every write to Redis waits 3 s (reads go on): a PUBACK sent before the
      // store's commands are answered arrives while nothing is stored yet.
      await reader.call('CLIENT', 'PAUSE', '3000', 'WRITE');
      await publisher.publishAsync('acked/door', 'open', { qos: 1, retain: true });
      expect(await stored()).toEqual({ retained: 1, queued: 1 });
    } finally {
      await reader.call('CLIENT', 'UNPAUSE').catch(() => {});
      reader.disconnect();
    }
  });
});
