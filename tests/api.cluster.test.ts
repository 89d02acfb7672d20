import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../src/config';
import { createApiToken } from '../src/domain/apiTokens';
import { startGatehouse, type Gatehouse } from '../src/server';
import { signIn } from './support/admin';
import { createPostgresTestDatabase } from './support/db';
import { requireOrSkip } from './support/env';
import { postForm } from './support/http';
import { brokerUrl, tryConnect } from './support/mqtt';
import { useRedisDatabase } from './support/redis';

const databaseUrl = process.env.TEST_DATABASE_URL;
const redisUrl = process.env.TEST_REDIS_URL;
const haveBoth = requireOrSkip(
  'PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL)',
  Boolean(databaseUrl && redisUrl),
  'set TEST_DATABASE_URL and TEST_REDIS_URL to run the two-node API suite',
);

const redisDatabase = useRedisDatabase();

/** A logical database of the test Redis for this file alone (tests/support/redis.ts). */
function clusterRedisUrl(): string {
  return redisDatabase.url;
}

/** Forgets the failed token attempts the nodes counted in Redis (and nothing else of theirs). */
async function forgetTokenFailures(): Promise<void> {
  const redis = new Redis(clusterRedisUrl());
  try {
    const keys = await redis.keys('gatehouse:api-token:*');
    if (keys.length) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
}

describe.runIf(haveBoth)('the API on two nodes sharing PostgreSQL and Redis', { timeout: 120_000 }, () => {
  let database: { url: string; drop(): Promise<void> };
  let dataDir: string;
  let a: Gatehouse;
  let b: Gatehouse;
  const json = (secret: string) => ({ authorization: `Bearer ${secret}`, 'content-type': 'application/json' });

  beforeAll(async () => {
    database = await createPostgresTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-api-cluster-'));
    const redis = new Redis(clusterRedisUrl());
    await redis.flushdb();
    redis.disconnect();
    const start = (name: string) =>
      startGatehouse({
        config: configSchema.parse({
          PORT: '0',
          MQTT_PORT: '0',
          HOST: '127.0.0.1',
          DATABASE_URL: database.url,
          REDIS_URL: clusterRedisUrl(),
          DATA_DIR: path.join(dataDir, name),
        }),
        log: () => {},
      });
    a = await start('a');
    b = await start('b');
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await database?.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('refuses a token revoked on one node on the other at once, and an expired one on both', async () => {
    const admin = await signIn(a.app, a.database.db);
    const { secret, token } = await createApiToken(a.database.db, { name: `revoked-${randomBytes(3).toString('hex')}`, preset: 'viewer' });
    const expired = await createApiToken(a.database.db, { name: 'expired-everywhere', preset: 'viewer', expiresInDays: '1' }, undefined, new Date(Date.now() - 2 * 86_400_000));
    const onB = () => fetch(`http://127.0.0.1:${b.httpPort}/api/v1/clients`, { headers: { authorization: `Bearer ${secret}` } });
    expect((await onB()).status).toBe(200);
    expect((await postForm(admin, `/tokens/${token.id}/revoke`, {})).status).toBe(303);
    expect((await onB()).status).toBe(401);
    for (const node of [a, b]) {
      expect((await fetch(`http://127.0.0.1:${node.httpPort}/api/v1/clients`, { headers: { authorization: `Bearer ${expired.secret}` } })).status).toBe(401);
    }
  });

  it('counts failed token attempts in Redis: failures sent to one node lock the address out on the other', async () => {
    await forgetTokenFailures();
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`http://127.0.0.1:${a.httpPort}/api/v1/overview`, { headers: { authorization: 'Bearer gat_nope' } });
      expect(res.status).toBe(401);
    }
    const { secret } = await createApiToken(a.database.db, { name: 'locked-out', preset: 'viewer' });
    const res = await fetch(`http://127.0.0.1:${b.httpPort}/api/v1/overview`, { headers: { authorization: `Bearer ${secret}` } });
    expect(res.status).toBe(429);
    await forgetTokenFailures();
  });

  it('a client made through one node’s API connects on the other node’s broker at once', async () => {
    const { secret } = await createApiToken(a.database.db, { name: 'provisioner', preset: 'editor' });
    // Node B has read (and remembered) that this username does not exist.
    expect((await tryConnect(brokerUrl(b, 'tcp'), { username: 'made-by-api', password: 'made-by-api-password', clientId: 'dev-1' })).ok).toBe(false);
    const res = await fetch(`http://127.0.0.1:${a.httpPort}/api/v1/clients`, {
      method: 'POST',
      headers: json(secret),
      body: JSON.stringify({ name: 'Made by API', username: 'made-by-api', password: 'made-by-api-password' }),
    });
    expect(res.status).toBe(201);
    // The change reaches node B as a console change does (NOTIFY): a moment, not a restart.
    await new Promise((resolve) => setTimeout(resolve, 500));
    let outcome = await tryConnect(brokerUrl(b, 'tcp'), { username: 'made-by-api', password: 'made-by-api-password', clientId: 'dev-1' });
    for (let i = 0; i < 2 && !outcome.ok; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      outcome = await tryConnect(brokerUrl(b, 'tcp'), { username: 'made-by-api', password: 'made-by-api-password', clientId: 'dev-1' });
    }
    expect(outcome.ok).toBe(true);
    if (outcome.ok) outcome.client.end(true);
  });
});
