import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../src/config';
import { createClient } from '../src/domain/clients';
import { startGatehouse, type Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { signIn } from './support/admin';
import { createPostgresTestDatabase } from './support/db';
import { requireOrSkip } from './support/env';
import { brokerUrl, connect, endClient, nextMessage } from './support/mqtt';
import { useRedisDatabase } from './support/redis';

const redisUrl = process.env.TEST_REDIS_URL;
const databaseUrl = process.env.TEST_DATABASE_URL;
const haveBoth =
  requireOrSkip('Redis (TEST_REDIS_URL)', Boolean(redisUrl), 'set TEST_REDIS_URL=redis://… to run the several-nodes overview suite') &&
  requireOrSkip('PostgreSQL (TEST_DATABASE_URL)', Boolean(databaseUrl), 'set TEST_DATABASE_URL=postgres://… to run the several-nodes overview suite');

/** The number shown in the overview's stat `id`. */
function stat(html: string, id: string): string {
  const match = new RegExp(`id="stat-${id}"[\\s\\S]*?<strong class="stat-value">([\\s\\S]*?)</strong>`).exec(html);
  if (!match) throw new Error(`no stat ${id} in the page`);
  return match[1]!.replace(/<[^>]+>/g, '').replace(/,/g, '').trim();
}

describe.runIf(haveBoth)('the overview of several nodes', { timeout: 120_000 }, () => {
  let database: { url: string; drop(): Promise<void> };
  let dataDir: string;
  let a: Gatehouse;
  let b: Gatehouse;
  // Flushed when claimed.
  const redisDatabase = useRedisDatabase();

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
      }),
      log: () => {},
    });

  beforeAll(async () => {
    database = await createPostgresTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-overview-cluster-'));
    a = await startNode('a');
    b = await startNode('b');
    // Samples only when the test says so, not when a minute turns.
    await a.sampler.stop();
    await b.sampler.stop();
    await createClient(a.database.db, { name: 'Meter', username: 'meter', password: 'meter-password' });
    await grantGroup(a.database.db, {
      name: 'Meters',
      permissions: [
        ['allow', 'publish', 'meters/#'],
        ['allow', 'subscribe', 'meters/#'],
      ],
      usernames: ['meter'],
    });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('sums the latest sample of every node with this node', async () => {
    const onA = await connect(brokerUrl(a, 'tcp'), { username: 'meter', password: 'meter-password', clientId: 'meter-a' });
    const onB = await connect(brokerUrl(b, 'ws'), { username: 'meter', password: 'meter-password', clientId: 'meter-b' });
    const alsoOnB = await connect(brokerUrl(b, 'tcp'), { username: 'meter', password: 'meter-password', clientId: 'meter-b2' });
    try {
      await onB.subscribeAsync('meters/#', { qos: 1 });
      const received = nextMessage(onB, 'meters/reading');
      await onA.publishAsync('meters/reading', '42', { qos: 1 });
      await received;
      await alsoOnB.publishAsync('elsewhere', 'refused', { qos: 1 });

      const operator = await signIn(a.app, a.database.db);
      // B has written no sample yet: A shows only itself.
      const before = await (await operator.request('/')).text();
      expect(stat(before, 'connections')).toBe('1');

      await b.sampler.tick();
      const html = await (await operator.request('/')).text();
      expect(stat(html, 'connections')).toBe('3'); // 1 live on A, 2 in B's sample
      expect(html).toContain('on 2 nodes');
      expect(stat(html, 'refusals')).toBe('1'); // counted by B
      expect(stat(html, 'messages-out')).not.toBe('—'); // B delivered the message
    } finally {
      await endClient(onA);
      await endClient(onB);
      await endClient(alsoOnB);
    }
  });
});
