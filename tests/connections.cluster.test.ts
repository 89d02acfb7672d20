import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../src/config';
import { createClient, getClient, type Client } from '../src/domain/clients';
import { getGroup, listGroups } from '../src/domain/groups';
import { startGatehouse, type Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { signIn, type SignedInApp } from './support/admin';
import { createPostgresTestDatabase } from './support/db';
import { requireOrSkip } from './support/env';
import { htmx, postForm } from './support/http';
import { brokerUrl, connect, endClient } from './support/mqtt';
import { useRedisDatabase } from './support/redis';
import { tableRows } from './support/html';

const redisUrl = process.env.TEST_REDIS_URL;
const databaseUrl = process.env.TEST_DATABASE_URL;
const haveBoth =
  requireOrSkip('Redis (TEST_REDIS_URL)', Boolean(redisUrl), 'set TEST_REDIS_URL=redis://… to run the several-nodes Connections suite') &&
  requireOrSkip('PostgreSQL (TEST_DATABASE_URL)', Boolean(databaseUrl), 'set TEST_DATABASE_URL=postgres://… to run the several-nodes Connections suite');

const redisDatabase = useRedisDatabase();

/** A logical database of the test Redis for this file alone (tests/support/redis.ts). */
function ownRedisUrl(): string {
  return redisDatabase.url;
}

function closedByBroker(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (!client.connected) resolve();
    client.once('close', () => resolve());
  });
}

/** Two Gatehouse nodes on one PostgreSQL and one Redis: sessions of B seen and ended from A. */
describe.runIf(haveBoth)('Connections across two nodes', { timeout: 120_000 }, () => {
  let database: { url: string; drop(): Promise<void> };
  let dataDir: string;
  let a: Gatehouse;
  let b: Gatehouse;
  let operator: SignedInApp;
  let roamer: Client;
  const logsOfA: string[] = [];
  const open: MqttClient[] = [];

  const startNode = (name: string, log: (line: string) => void) =>
    startGatehouse({
      config: configSchema.parse({
        PORT: '0',
        MQTT_PORT: '0',
        HOST: '127.0.0.1',
        DATABASE_URL: database.url,
        REDIS_URL: ownRedisUrl(),
        DATA_DIR: path.join(dataDir, name),
        NODE_HEARTBEAT_MS: '300',
        LAST_SEEN_FLUSH_MS: '3600000',
      }),
      log,
    });

  beforeAll(async () => {
    const redis = new Redis(ownRedisUrl());
    await redis.flushdb();
    redis.disconnect();
    database = await createPostgresTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-connections-cluster-'));
    a = await startNode('a', (line) => logsOfA.push(line));
    b = await startNode('b', () => {});
    operator = await signIn(a.app, a.database.db, 'cluster-operator');
    roamer = await createClient(a.database.db, { name: 'Roamer', username: 'roamer', password: 'roamer-password' });
    await grantGroup(a.database.db, { name: 'Watch all', permissions: [['allow', 'subscribe', '#'], ['allow', 'publish', 'watched/#']], usernames: ['roamer'] });
  });
  afterAll(async () => {
    await Promise.all(open.map((client) => endClient(client)));
    await a?.close();
    await b?.close();
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const device = async (node: Gatehouse, clientId: string, transport: 'tcp' | 'ws' = 'tcp') => {
    const client = await connect(brokerUrl(node, transport), { username: 'roamer', password: 'roamer-password', clientId, keepalive: 30 });
    open.push(client);
    return client;
  };
  const pageOnA = async (path: string) => (await operator.request(path)).text();
  const sessionIdOf = (html: string, clientId: string) => new RegExp(`hx-delete="/connections/([^"]+)"[^>]*hx-confirm="Disconnect the session “${clientId}”`).exec(html)?.[1];

  it("lists on A's page a session held by B, with B's node in its id", async () => {
    await device(b, 'held-by-b', 'ws');
    await device(a, 'held-by-a');
    const html = await pageOnA('/connections?q=held-by');
    const onB = sessionIdOf(html, 'held-by-b');
    const onA = sessionIdOf(html, 'held-by-a');
    expect(onB?.startsWith(`${b.broker.aedes.id}.`)).toBe(true);
    expect(onA?.startsWith(`${a.broker.aedes.id}.`)).toBe(true);
    expect(html).toContain('2 connections match “held-by”.');
    const heldByB = tableRows(html).find((row) => row['MQTT Client ID'] === 'held-by-b');
    expect(heldByB?.Transport).toMatch(/^WebSocket\b/);
    expect(heldByB?.['Keep-Alive']).toBe('30 s');
    expect(html).not.toContain('did not answer');
  });

  it("judges on A's clients list the Access of a client connected to B by B's live session's client id", async () => {
    const wanderer = await createClient(a.database.db, { name: 'Wanderer', username: 'wanderer', password: 'wanderer-password' });
    await grantGroup(a.database.db, { name: 'Wanderers', permissions: [['allow', 'publish', 'wander/#']], clientIds: ['wander-*'] });
    const access = async () => tableRows(await pageOnA('/clients?q=wanderer')).find((row) => row.Name === 'Wanderer')?.Access;
    // The rule was written to the database directly: A's access model hears it from the change feed.
    await expect.poll(access, { timeout: 10_000 }).toBe('No access never seen: rules by client ID match once it connects');
    const onB = await connect(brokerUrl(b, 'tcp'), { username: 'wanderer', password: 'wanderer-password', clientId: 'wander-b-1' });
    open.push(onB);
    // A knows of it through B's count in Redis, then asks B for its client id.
    await expect.poll(access, { timeout: 10_000 }).toBe('Wanderers by live client ID wander-b-1');
    expect(a.broker.sessionsByClient().get(wanderer.id) ?? 0).toBe(0);
  });

  it('disconnects from A a session held by B, and only that one', async () => {
    const target = await device(b, 'kick-me-b');
    const stays = await device(b, 'keep-me-b');
    const sessionId = sessionIdOf(await pageOnA('/connections?q=-me-b'), 'kick-me-b');
    expect(sessionId).toBeDefined();
    const closed = closedByBroker(target);
    const res = await postForm(operator, `/connections/${sessionId}/disconnect`, {});
    expect(res.status).toBe(303);
    await closed;
    expect(stays.connected).toBe(true);
    const after = await pageOnA('/connections?q=-me-b');
    expect(sessionIdOf(after, 'kick-me-b')).toBeUndefined();
    expect(sessionIdOf(after, 'keep-me-b')).toBeDefined();
    // Logged on the node the operator used, naming the node that held the session.
    expect(logsOfA.filter((line) => line.includes(sessionId!))).toEqual([
      expect.stringMatching(new RegExp(`^administrator "cluster-operator" disconnected session \\S+ \\(client id "kick-me-b".* on node ${b.broker.aedes.id}$`)),
    ]);
  });

  it("disconnects all of a client's sessions on both nodes from A, and its row says so", async () => {
    const onA = await device(a, 'all-a');
    const onB = await device(b, 'all-b', 'ws');
    const closed = Promise.all([closedByBroker(onA), closedByBroker(onB)]);
    const res = await operator.request(`/clients/${roamer.id}/sessions?view=row`, { method: 'DELETE', headers: htmx });
    const row = await res.text();
    await closed;
    expect(row).toMatch(/Disconnected \d+ sessions of “Roamer”\./);
    // The live count, summed over both nodes, is 0 in the row that came back.
    expect(tableRows(row, await pageOnA('/clients?q=roamer'))[0]?.['Live sessions']).toBe('0');
    expect(await pageOnA('/connections?q=roamer')).toContain('0 connections match “roamer”.');

    // Both nodes noted when the client was last seen; each writes its own batch.
    await a.lastSeen.flush();
    await b.lastSeen.flush();
    expect((await getClient(a.database.db, roamer.id))?.lastSeenAt).toBeInstanceOf(Date);
  });

  it('keeps a node with a `#` subscriber up while the nodes talk about sessions, and carries messages after', async () => {
    const watcher = await device(b, 'watch-all-b');
    expect((await watcher.subscribeAsync('#', { qos: 0 })).map((granted) => granted.qos)).toEqual([0]);
    const seen: string[] = [];
    watcher.on('message', (topic) => seen.push(topic));
    // A question to every node, and something foreign on the broker's own channels.
    expect(await pageOnA('/connections?q=watch-all')).toContain('1 connection matches “watch-all”.');
    const redis = new Redis(ownRedisUrl());
    await redis.publish('gatehouse:db5:mqtt/watched/foreign', 'not a message of the broker');
    await redis.publish('elsewhere', 'another application');
    redis.disconnect();

    // A filter with Redis glob characters in it still matches across nodes
    // (on A, where no `#` subscriber has the bus listen to everything).
    const globber = await device(a, 'glob-a');
    expect((await globber.subscribeAsync('watched/[x]*?/+', { qos: 1 })).map((granted) => granted.qos)).toEqual([1]);
    const globbed: string[] = [];
    globber.on('message', (topic) => globbed.push(topic));
    const publisher = await device(b, 'watch-all-publisher');
    await publisher.publishAsync('watched/[x]*?/y', 'literal', { qos: 1 });
    await publisher.publishAsync('watched/after', 'still here', { qos: 1 });
    const until = Date.now() + 10_000;
    while (!(seen.includes('watched/after') && globbed.length > 0) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(seen).toContain('watched/after');
    expect(seen).toContain('watched/[x]*?/y');
    expect(globbed).toEqual(['watched/[x]*?/y']);
    expect(seen).not.toContain('watched/foreign');
    expect(watcher.connected).toBe(true);
  });

  it("applies a group's change now on every node: A's save ends the group's sessions on B", async () => {
    const onB = await device(b, 'group-apply-b');
    const group = (await listGroups(a.database.db, { query: 'Watch all' })).groups[0]!;
    const full = (await getGroup(a.database.db, group.id))!;
    const closed = closedByBroker(onB);
    const res = await postForm(operator, `/groups/${group.id}`, {
      _action: 'save',
      version: String(full.version),
      name: full.name,
      description: 'changed on A',
      'permission-effect': 'allow',
      'permission-action': 'subscribe',
      'permission-topic': '#',
      apply: 'now',
    });
    expect(res.status).toBe(303);
    await closed;
    // The notice for the next page says how many sessions ended, on every node.
    const notice = decodeURIComponent(/gatehouse_notice=([^;]*)/.exec(res.headers.get('set-cookie') ?? '')?.[1] ?? '');
    expect(notice).toMatch(/Disconnected [1-9]\d* sessions?\./);
  });
});
