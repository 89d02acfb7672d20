import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../src/config';
import { createClient, updateClient, type Client } from '../src/domain/clients';
import { startGatehouse, type Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { signIn } from './support/admin';
import { createPostgresTestDatabase } from './support/db';
import { requireOrSkip } from './support/env';
import { brokerUrl, connect, endClient, nextMessage, subscribeCodes, tryConnect } from './support/mqtt';
import { startProcess, stopProcess, waitForPorts, type Running } from './support/process';
import { useRedisDatabase } from './support/redis';
import { tableRows } from './support/html';

const redisUrl = process.env.TEST_REDIS_URL;
const databaseUrl = process.env.TEST_DATABASE_URL;
const haveBoth =
  requireOrSkip('Redis (TEST_REDIS_URL)', Boolean(redisUrl), 'set TEST_REDIS_URL=redis://… to run the several-nodes suite') &&
  requireOrSkip('PostgreSQL (TEST_DATABASE_URL)', Boolean(databaseUrl), 'set TEST_DATABASE_URL=postgres://… to run the several-nodes suite');

const redisDatabase = useRedisDatabase();

/** A logical database of the test Redis for this file alone (tests/support/redis.ts). */
function clusterRedisUrl(): string {
  return redisDatabase.url;
}

const HEARTBEAT_MS = '300';
const device = { username: 'roamer', password: 'roamer-password' };

/**
 * Three Gatehouse nodes on one PostgreSQL and one Redis: A and B in this
 * process, C a process of its own so it can be killed.
 */
describe.runIf(haveBoth)('several nodes on Redis and PostgreSQL', { timeout: 120_000 }, () => {
  let database: { url: string; drop(): Promise<void> };
  let dataDir: string;
  let a: Gatehouse;
  let b: Gatehouse;
  let c: Running;
  let cPorts: { http: number; mqtt: number };
  let roamer: Client;

  const startNode = (name: string) =>
    startGatehouse({
      config: configSchema.parse({
        PORT: '0',
        MQTT_PORT: '0',
        HOST: '127.0.0.1',
        DATABASE_URL: database.url,
        REDIS_URL: clusterRedisUrl(),
        DATA_DIR: path.join(dataDir, name),
        NODE_HEARTBEAT_MS: HEARTBEAT_MS,
      }),
      log: () => {},
    });

  beforeAll(async () => {
    const redis = new Redis(clusterRedisUrl());
    await redis.flushdb();
    redis.disconnect();
    database = await createPostgresTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-cluster-'));
    a = await startNode('a');
    b = await startNode('b');
    c = startProcess({ DATABASE_URL: database.url, REDIS_URL: clusterRedisUrl(), DATA_DIR: path.join(dataDir, 'c'), NODE_HEARTBEAT_MS: HEARTBEAT_MS });
    cPorts = await waitForPorts(c);
    roamer = await createClient(a.database.db, { name: 'Roamer', ...device });
    await grantGroup(a.database.db, {
      name: 'Fleet',
      permissions: [
        ['allow', 'publish', 'fleet/#'],
        ['allow', 'subscribe', 'fleet/#'],
        ['deny', 'subscribe', 'fleet/secret/#'],
      ],
      usernames: ['roamer'],
    });
  });
  afterAll(async () => {
    if (c) await stopProcess(c, 'SIGKILL');
    await a?.close();
    await b?.close();
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const cUrl = () => `mqtt://127.0.0.1:${cPorts.mqtt}`;

  it('carries a message published on A to subscribers on B (WebSocket) and C (TCP)', async () => {
    const onB = await connect(brokerUrl(b, 'ws'), { ...device, clientId: 'listener-b' });
    const onC = await connect(cUrl(), { ...device, clientId: 'listener-c' });
    const publisher = await connect(brokerUrl(a, 'tcp'), { ...device, clientId: 'talker-a' });
    try {
      await onB.subscribeAsync('fleet/news', { qos: 1 });
      await onC.subscribeAsync('fleet/news', { qos: 0 });
      const toB = nextMessage(onB, 'fleet/news');
      const toC = nextMessage(onC, 'fleet/news');
      await publisher.publishAsync('fleet/news', 'from A', { qos: 1 });
      expect((await toB).payload).toBe('from A');
      expect((await toC).payload).toBe('from A');
    } finally {
      await Promise.all([endClient(onB), endClient(onC), endClient(publisher)]);
    }
  });

  it('serves on B a retained message set on A', async () => {
    const publisher = await connect(brokerUrl(a, 'ws'), { ...device, clientId: 'retainer-a' });
    await publisher.publishAsync('fleet/beacon', 'retained on A', { qos: 1, retain: true });
    await endClient(publisher);
    const reader = await connect(brokerUrl(b, 'tcp'), { ...device, clientId: 'reader-b' });
    try {
      const retained = nextMessage(reader, 'fleet/beacon');
      await reader.subscribeAsync('fleet/beacon', { qos: 1 });
      expect(await retained).toMatchObject({ payload: 'retained on A', retain: true });
    } finally {
      await endClient(reader);
    }
  });

  it('resumes on B a persistent session made on A, with what was queued meanwhile on C', async () => {
    const first = await connect(brokerUrl(a, 'tcp'), { ...device, clientId: 'wanderer', clean: false });
    await first.subscribeAsync('fleet/mail', { qos: 1 });
    await endClient(first);
    const publisher = await connect(cUrl(), { ...device, clientId: 'mailer-c' });
    await publisher.publishAsync('fleet/mail', 'queued on C', { qos: 1 });
    await endClient(publisher);

    const resumed = await new Promise<{ client: MqttClient; sessionPresent: boolean; payloads: string[] }>((resolve, reject) => {
      const payloads: string[] = [];
      const client = mqtt.connect(brokerUrl(b, 'ws'), { ...device, clientId: 'wanderer', clean: false, reconnectPeriod: 0 });
      client.on('message', (_topic, payload) => payloads.push(payload.toString()));
      client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent, payloads }));
      client.once('error', reject);
    });
    try {
      expect(resumed.sessionPresent).toBe(true);
      // QoS 1 is at least once: the queued message may come twice, never not at all.
      await expect.poll(() => resumed.payloads.length, { timeout: 5000 }).toBeGreaterThan(0);
      expect(new Set(resumed.payloads)).toEqual(new Set(['queued on C']));
    } finally {
      await endClient(resumed.client);
    }
  });

  it("filters a message crossing nodes by the receiving session's permissions, retained messages included", async () => {
    const publisher = await connect(brokerUrl(a, 'tcp'), { ...device, clientId: 'whisperer-a' });
    await publisher.publishAsync('fleet/secret/retained', 'hidden', { qos: 1, retain: true });
    const reader = await connect(brokerUrl(b, 'tcp'), { ...device, clientId: 'curious-b' });
    try {
      const seen: string[] = [];
      reader.on('message', (topic) => seen.push(topic));
      // Granted: fleet/# is allowed; the deny inside it still holds for delivery.
      expect(await subscribeCodes(reader, { 'fleet/#': { qos: 1 } })).toEqual({ 'fleet/#': 1 });
      await publisher.publishAsync('fleet/secret/live', 'hidden', { qos: 1 });
      const open = nextMessage(reader, 'fleet/open');
      await publisher.publishAsync('fleet/open', 'visible', { qos: 1 });
      expect((await open).payload).toBe('visible');
      expect(seen.filter((topic) => topic.startsWith('fleet/secret/'))).toEqual([]);
    } finally {
      await Promise.all([endClient(publisher), endClient(reader)]);
    }
  });

  it('refuses on B at once a password changed on A, though B had it in memory', async () => {
    const changing = await createClient(a.database.db, { name: 'Changing', username: 'changing', password: 'first-password' });
    const connectOnB = async (password: string) => {
      const outcome = await tryConnect(brokerUrl(b, 'tcp'), { username: 'changing', password });
      if (outcome.ok) await endClient(outcome.client);
      return outcome.ok;
    };
    // Until B serves this client from memory (a CONNECT that reads no database):
    // the notifications of the writes above may still be arriving.
    await expect
      .poll(async () => {
        const reads = b.authenticator.stats().databaseReads;
        expect(await connectOnB('first-password')).toBe(true);
        return b.authenticator.stats().databaseReads - reads;
      }, { timeout: 10_000 })
      .toBe(0);

    await updateClient(a.database.db, changing.id, { name: 'Changing', username: 'changing', password: 'second-password' });
    expect(await tryConnect(brokerUrl(b, 'tcp'), { username: 'changing', password: 'first-password' })).toMatchObject({ ok: false, code: 4 });
    expect(await tryConnect(cUrl(), { username: 'changing', password: 'first-password' })).toMatchObject({ ok: false, code: 4 });
    expect(await connectOnB('second-password')).toBe(true);
  });

  it("counts in A's clients table the live sessions held by B and C", async () => {
    const onB = await connect(brokerUrl(b, 'tcp'), { ...device, clientId: 'counted-b' });
    const onC = await connect(cUrl(), { ...device, clientId: 'counted-c' });
    const operator = await signIn(a.app, a.database.db);
    const headers = await (await operator.request('/clients')).text();
    const liveCell = async () => {
      const html = await (await operator.request(`/clients/${roamer.id}/row`, { headers: { 'hx-request': 'true' } })).text();
      return tableRows(html, headers)[0]?.['Live sessions'];
    };
    try {
      await expect.poll(liveCell, { timeout: 5000 }).toBe('2');
    } finally {
      await endClient(onB);
    }
    await expect.poll(liveCell, { timeout: 5000 }).toBe('1');
    await endClient(onC);
    await expect.poll(liveCell, { timeout: 5000 }).toBe('0');
  });

  it('locks a username out on B after failures made on A and C', async () => {
    const target = await createClient(a.database.db, { name: 'Target', username: 'target', password: 'target-password' });
    expect(target.id).toBeGreaterThan(0);
    // Five failures start the back-off (README): spread over two nodes.
    for (let i = 0; i < 3; i++) expect(await tryConnect(brokerUrl(a, 'tcp'), { username: 'target', password: `guess-a-${i}` })).toMatchObject({ ok: false, code: 4 });
    for (let i = 0; i < 2; i++) expect(await tryConnect(cUrl(), { username: 'target', password: `guess-c-${i}` })).toMatchObject({ ok: false, code: 4 });
    // B has seen no failure itself, yet the username is locked there: CONNACK 3, even for the right password.
    expect(await tryConnect(brokerUrl(b, 'tcp'), { username: 'target', password: 'target-password' })).toMatchObject({ ok: false, code: 3 });
  });

  it("keeps A and B serving when C is killed, and publishes C's wills", async () => {
    const watcher = await connect(brokerUrl(a, 'tcp'), { ...device, clientId: 'will-watcher-a' });
    await watcher.subscribeAsync('fleet/wills/#', { qos: 1 });
    const doomed = await connect(cUrl(), {
      ...device,
      clientId: 'doomed-c',
      will: { topic: 'fleet/wills/doomed', payload: Buffer.from('C died'), qos: 1, retain: false },
    });
    try {
      const will = nextMessage(watcher, 'fleet/wills/doomed', 15_000);
      expect(await stopProcess(c, 'SIGKILL')).toBe(null);
      expect((await will).payload).toBe('C died');

      const onB = await connect(brokerUrl(b, 'ws'), { ...device, clientId: 'survivor-b' });
      const next = nextMessage(watcher, 'fleet/wills/after');
      await onB.publishAsync('fleet/wills/after', 'still here', { qos: 1 });
      expect((await next).payload).toBe('still here');
      await endClient(onB);
    } finally {
      await Promise.all([endClient(watcher), endClient(doomed)]);
    }
  });
});

/** A redis-server of this test's own on a free port, so it can be stopped and started again. */
async function startOwnRedis(port?: number): Promise<{ port: number; stop(): Promise<void> }> {
  const chosen = port ?? (await freePort());
  const child = spawn('redis-server', ['--port', String(chosen), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const probe = new Redis(chosen, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null });
    probe.on('error', () => {});
    const up = await probe.connect().then(
      () => true,
      () => false,
    );
    probe.disconnect();
    if (up) break;
    if (Date.now() > deadline) throw new Error('redis-server did not start');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    port: chosen,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

describe.runIf(haveBoth)('a node when Redis goes away', { timeout: 120_000 }, () => {
  it('stays up, keeps its connected devices, and carries messages again once Redis is back', async () => {
    const database = await createPostgresTestDatabase();
    const dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-redis-outage-'));
    let redis = await startOwnRedis();
    const logs: string[] = [];
    const node = await startGatehouse({
      config: configSchema.parse({
        PORT: '0',
        MQTT_PORT: '0',
        HOST: '127.0.0.1',
        DATABASE_URL: database.url,
        REDIS_URL: `redis://127.0.0.1:${redis.port}`,
        DATA_DIR: dataDir,
      }),
      log: (line) => logs.push(line),
    });
    try {
      await createClient(node.database.db, { name: 'Steady', username: 'steady', password: 'steady-password' });
      await grantGroup(node.database.db, { name: 'Steady', permissions: [['allow', 'publish', 'steady/#'], ['allow', 'subscribe', 'steady/#']], usernames: ['steady'] });
      const listener = await connect(brokerUrl(node, 'tcp'), { username: 'steady', password: 'steady-password', clientId: 'steady-listener' });
      await listener.subscribeAsync('steady/#', { qos: 0 });

      await redis.stop();
      await expect.poll(() => logs.join('\n'), { timeout: 10_000 }).toContain('Redis connection lost');
      expect(listener.connected).toBe(true);

      redis = await startOwnRedis(redis.port);
      await expect.poll(() => logs.join('\n'), { timeout: 30_000 }).toContain('Redis connection back');
      // The bus resubscribes on reconnect: a message goes round through Redis again.
      const talker = await connect(brokerUrl(node, 'ws'), { username: 'steady', password: 'steady-password', clientId: 'steady-talker' });
      await expect
        .poll(
          async () => {
            const message = nextMessage(listener, 'steady/ping', 1000).then(
              () => true,
              () => false,
            );
            talker.publish('steady/ping', 'hello', { qos: 0 });
            return message;
          },
          { timeout: 30_000, interval: 200 },
        )
        .toBe(true);
      await Promise.all([endClient(listener), endClient(talker)]);
    } finally {
      await node.close();
      await redis.stop();
      await database.drop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
