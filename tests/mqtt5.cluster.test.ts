import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { and, eq, isNotNull } from 'drizzle-orm';
import { Redis } from 'ioredis';
import postgres from 'postgres';
import type { IClientOptions } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../src/config';
import { schema } from '../src/db';
import { createClient } from '../src/domain/clients';
import { startGatehouse, type Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { createPostgresTestDatabase } from './support/db';
import { requireOrSkip } from './support/env';
import { brokerUrl, connect, endClient, nextMessage, subscribeCodes } from './support/mqtt';
import { certificateFactory, type Issued } from './support/certs';
import { connectWithConnack, listenerOf, recordMessages, serverDisconnect, waitFor } from './support/mqtt5';
import { useRedisDatabase } from './support/redis';

/**
 * MQTT 5 on two Gatehouse nodes sharing Redis and PostgreSQL: a message keeps
 * its properties between nodes, a topic alias does not travel, a session that
 * moves keeps what the old node had armed for it from firing.
 */
const redisUrl = process.env.TEST_REDIS_URL;
const databaseUrl = process.env.TEST_DATABASE_URL;
const haveBoth =
  requireOrSkip('Redis (TEST_REDIS_URL)', Boolean(redisUrl), 'set TEST_REDIS_URL=redis://… to run MQTT 5 on several nodes') &&
  requireOrSkip('PostgreSQL (TEST_DATABASE_URL)', Boolean(databaseUrl), 'set TEST_DATABASE_URL=postgres://… to run MQTT 5 on several nodes');

const redisDatabase = useRedisDatabase();
const device = { username: 'five-roamer', password: 'five-roamer-password' };
const v5 = (clientId: string, options: IClientOptions = {}): IClientOptions => ({ protocolVersion: 5, clientId, ...device, ...options });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.runIf(haveBoth)('MQTT 5 on two nodes (Redis and PostgreSQL)', { timeout: 120_000 }, () => {
  let database: { url: string; drop(): Promise<void> };
  let dataDir: string;
  let a: Gatehouse;
  let b: Gatehouse;
  const certs = certificateFactory();
  let ca: Issued;
  let server: Issued;
  /** A 5.0 device's options on `node` over TLS or WSS (trusting this run's CA). */
  const secure = (node: Gatehouse, transport: 'tls' | 'wss', clientId: string, options: IClientOptions = {}) => {
    const listener = listenerOf(node, transport, ca);
    return { url: listener.url, options: { ...listener.options, ...v5(clientId, options) } };
  };

  const startNode = (name: string) =>
    startGatehouse({
      config: configSchema.parse({
        PORT: '0',
        MQTT_PORT: '0',
        HOST: '127.0.0.1',
        DATABASE_URL: database.url,
        REDIS_URL: redisDatabase.url,
        DATA_DIR: path.join(dataDir, name),
        NODE_HEARTBEAT_MS: '300',
        // TLS and WSS listeners too, with a certificate made for this run.
        MQTTS_PORT: '0',
        HTTPS_PORT: '0',
        TLS_CERT_FILE: server.certFile,
        TLS_KEY_FILE: server.keyFile,
      }),
      log: () => {},
    });

  beforeAll(async () => {
    ca = certs.ca('MQTT 5 cluster CA');
    server = certs.server(ca, 'mqtt5-cluster');
    const redis = new Redis(redisDatabase.url);
    await redis.flushdb();
    redis.disconnect();
    database = await createPostgresTestDatabase({ migrated: true });
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-mqtt5-cluster-'));
    a = await startNode('a');
    b = await startNode('b');
    await createClient(a.database.db, { name: 'Five roamer', ...device });
    await grantGroup(a.database.db, {
      name: 'Five fleet',
      permissions: [
        ['allow', 'publish', 'fleet/#'],
        ['allow', 'subscribe', 'fleet/#'],
        ['deny', 'subscribe', 'fleet/secret/#'],
      ],
      usernames: [device.username],
    });
    await a.accessModel.settled();
    await b.accessModel.settled();
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    certs.remove();
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('carries a message published on A with a topic alias to 5.0 and 3.1.1 subscribers on B, its properties kept and the alias not', async () => {
    const five = await connect(brokerUrl(b, 'ws'), v5('five-reader-b'));
    const old = await connect(brokerUrl(b, 'tcp'), { ...device, clientId: 'old-reader-b' });
    const heard = recordMessages(five);
    const oldHeard = recordMessages(old);
    await five.subscribeAsync('fleet/props', { qos: 1 });
    await old.subscribeAsync('fleet/props', { qos: 1 });
    const publisher = await connect(brokerUrl(a, 'tcp'), v5('five-writer-a'));
    const properties = { userProperties: { site: 'north' }, contentType: 'application/json', correlationData: Buffer.from('7'), messageExpiryInterval: 300 };
    // The first names the topic and alias 1; the second the alias alone.
    await publisher.publishAsync('fleet/props', '{"n":1}', { qos: 1, properties: { ...properties, topicAlias: 1 } });
    await publisher.publishAsync('', '{"n":2}', { qos: 1, properties: { ...properties, topicAlias: 1 } });
    await expect.poll(() => heard.length).toBe(2);
    expect(heard.map((m) => m.payload)).toEqual(['{"n":1}', '{"n":2}']);
    for (const message of heard) {
      expect(message.topic).toBe('fleet/props');
      expect(message.properties).toMatchObject({ userProperties: { site: 'north' }, contentType: 'application/json' });
      expect(Buffer.from(message.properties.correlationData as Buffer).toString()).toBe('7');
      expect(message.properties.messageExpiryInterval).toBeGreaterThan(290);
      expect(message.properties).not.toHaveProperty('topicAlias');
    }
    await expect.poll(() => oldHeard.map((m) => m.payload)).toEqual(['{"n":1}', '{"n":2}']);
    // Neither connection was destroyed by what crossed the bus.
    expect(five.connected && old.connected).toBe(true);
    await Promise.all([endClient(five), endClient(old), endClient(publisher)]);
  });

  it("filters for a 5.0 subscriber on B by its session's permissions what was published on A", async () => {
    const reader = await connect(brokerUrl(b, 'tcp'), v5('five-curious-b'));
    const heard = recordMessages(reader);
    expect(await subscribeCodes(reader, { 'fleet/#': { qos: 1 }, 'fleet/secret/#': { qos: 1 } })).toEqual({ 'fleet/#': 1, 'fleet/secret/#': 0x87 });
    const publisher = await connect(brokerUrl(a, 'tcp'), v5('five-whisperer-a'));
    await publisher.publishAsync('fleet/secret/plans', 'hidden', { qos: 1 });
    await publisher.publishAsync('fleet/open', 'visible', { qos: 1 });
    expect((await waitFor(heard, 'fleet/open')).payload).toBe('visible');
    expect(heard.map((m) => m.topic)).toEqual(['fleet/open']);
    await Promise.all([endClient(reader), endClient(publisher)]);
  });

  it('keeps a session that moved from A to B when the expiry A armed for it comes, with what was queued for it', async () => {
    const first = await connect(brokerUrl(a, 'tcp'), v5('five-mover', { clean: false, properties: { sessionExpiryInterval: 1 } }));
    await first.subscribeAsync('fleet/mover', { qos: 1 });
    await endClient(first);
    // A now counts 1 s down for the session; the device is back on B first.
    const moved = await connectWithConnack(brokerUrl(b, 'tcp'), v5('five-mover', { clean: false, properties: { sessionExpiryInterval: 60 } }));
    expect(moved.connack.sessionPresent).toBe(true);
    await endClient(moved.client);
    await sleep(2000);
    const publisher = await connect(brokerUrl(a, 'tcp'), v5('five-mover-pub'));
    await publisher.publishAsync('fleet/mover', 'kept', { qos: 1 });
    await endClient(publisher);
    let heard: ReturnType<typeof recordMessages> = [];
    const back = await connectWithConnack(brokerUrl(b, 'ws'), v5('five-mover', { clean: false, properties: { sessionExpiryInterval: 60 } }), (client) => {
      heard = recordMessages(client);
    });
    expect(back.connack.sessionPresent).toBe(true);
    expect((await waitFor(heard, 'fleet/mover')).payload).toBe('kept');
    await endClient(back.client);
  });

  it("leaves no expiry on a session live on B when the end of its old connection on A reaches the database after B's reconnect", async () => {
    const durable = (clientId: string) => v5(clientId, { clean: false, properties: { sessionExpiryInterval: 60 } });
    const expiringRows = (clientId: string) =>
      a.database.db
        .select()
        .from(schema.sessionExpiries)
        .where(and(eq(schema.sessionExpiries.mqttClientId, clientId), isNotNull(schema.sessionExpiries.expiresAt)));
    // A session whose row the test holds locked below: A's writes wait behind the one about it.
    await endClient(await connect(brokerUrl(a, 'tcp'), durable('five-blocker')));
    const racer = await connect(brokerUrl(a, 'tcp'), durable('five-racer'));
    await racer.subscribeAsync('fleet/racer', { qos: 1 });
    await a.broker.sessionExpiriesWritten();
    expect(await expiringRows('five-blocker')).toHaveLength(1);

    const sql = postgres(database.url, { max: 2, onnotice: () => {} });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = sql.begin(async (tx) => {
      await tx`select 1 from session_expiries where mqtt_client_id = 'five-blocker' for update`;
      locked();
      await released;
    });
    let blocker: Awaited<ReturnType<typeof connect>> | undefined;
    try {
      await isLocked;
      blocker = await connect(brokerUrl(a, 'tcp'), durable('five-blocker'));
      await expect.poll(async () => (await sql`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)[0]!.n).toBeGreaterThan(0);
      // The racer's connection to A ends: A's write of its expiry waits in line.
      await endClient(racer);
      await expect.poll(() => [...a.broker.liveSessions()].some((s) => s.mqttClientId === 'five-racer')).toBe(false);
      // Back on B, whose write goes through first.
      const moved = await connectWithConnack(brokerUrl(b, 'tcp'), durable('five-racer'));
      expect(moved.connack.sessionPresent).toBe(true);
      await b.broker.sessionExpiriesWritten();
      await endClient(blocker);
      blocker = undefined;
      release();
      await holder;
      // Now A's held writes: the blocker's, then the racer's end, older than B's connection.
      await a.broker.sessionExpiriesWritten();
      expect(await expiringRows('five-racer')).toEqual([]);
      await endClient(moved.client);
      await expect.poll(() => [...b.broker.liveSessions()].some((s) => s.mqttClientId === 'five-racer')).toBe(false);
      // Its end on B is newer: written.
      await b.broker.sessionExpiriesWritten();
      expect(await expiringRows('five-racer')).toHaveLength(1);
    } finally {
      release();
      await holder;
      if (blocker) await endClient(blocker);
      await sql.end();
    }
  });

  it('moves a session between nodes over TLS and WSS: the connection on A told 0x8E, the queue kept for the device back on A', async () => {
    const durable = { clean: false, properties: { sessionExpiryInterval: 60 } };
    const onA = secure(a, 'tls', 'five-secure', durable);
    const first = await connect(onA.url, onA.options);
    await first.subscribeAsync('fleet/secure', { qos: 1 });
    const told = serverDisconnect(first);
    const onB = secure(b, 'wss', 'five-secure', durable);
    const moved = await connectWithConnack(onB.url, onB.options);
    expect(await told).toBe(0x8e);
    expect(moved.connack.sessionPresent).toBe(true);
    await endClient(moved.client);
    await expect.poll(() => [...b.broker.liveSessions()].some((s) => s.mqttClientId === 'five-secure')).toBe(false);
    // Published on B while the device is away; it comes back over TLS on A.
    const publisher = await connect(brokerUrl(b, 'tcp'), v5('five-secure-pub'));
    await publisher.publishAsync('fleet/secure', 'kept over TLS', { qos: 1 });
    await endClient(publisher);
    let heard: ReturnType<typeof recordMessages> = [];
    const back = await connectWithConnack(onA.url, onA.options, (client) => {
      heard = recordMessages(client);
    });
    expect(back.connack.sessionPresent).toBe(true);
    expect((await waitFor(heard, 'fleet/secure')).payload).toBe('kept over TLS');
    await endClient(back.client);
  });

  it('tells a connection on A taken over by the same client id on B so with DISCONNECT 0x8E', async () => {
    const onA = await connect(brokerUrl(a, 'tcp'), v5('five-twin'));
    const told = serverDisconnect(onA);
    const onB = await connect(brokerUrl(b, 'tcp'), v5('five-twin'));
    expect(await told).toBe(0x8e);
    expect(onB.connected).toBe(true);
    await endClient(onB);
  });

  it('does not publish the delayed will of a device whose connection to A dropped and that came back on B within the delay', async () => {
    const watcher = await connect(brokerUrl(b, 'tcp'), v5('five-will-watcher'));
    const heard = recordMessages(watcher);
    await watcher.subscribeAsync('fleet/will', { qos: 1 });
    const withWill = (clientId: string) =>
      v5(clientId, { clean: false, properties: { sessionExpiryInterval: 60 }, will: { topic: 'fleet/will', payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: 2 } } });
    const willing = await connect(brokerUrl(a, 'tcp'), withWill('five-willing'));
    // Dropped without a DISCONNECT: A arms the will for 2 s from now.
    willing.stream.destroy();
    await expect.poll(() => [...a.broker.liveSessions()].some((s) => s.mqttClientId === 'five-willing')).toBe(false);
    const back = await connect(brokerUrl(b, 'tcp'), withWill('five-willing'));
    await sleep(3000);
    expect(heard.filter((m) => m.topic === 'fleet/will')).toEqual([]);
    // The will is still the device's: dropped from B too, it fires after its delay.
    back.stream.destroy();
    expect((await waitFor(heard, 'fleet/will', 10_000)).payload).toBe('gone');
    await endClient(watcher);
  });
});
