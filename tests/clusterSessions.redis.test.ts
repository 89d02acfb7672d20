import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startClusterSessions, type ClusterSessions } from '../src/cluster/sessions';
import { requireOrSkip } from './support/env';
import { useRedisDatabase } from './support/redis';

const redisUrl = process.env.TEST_REDIS_URL;
const haveRedis = requireOrSkip('Redis (TEST_REDIS_URL)', Boolean(redisUrl), 'set TEST_REDIS_URL=redis://… to run the Redis suites');

describe.runIf(haveRedis)('live session counts shared through Redis', () => {
  let redis: Redis;
  const started: ClusterSessions[] = [];
  const redisDatabase = useRedisDatabase();
  beforeAll(() => {
    redis = new Redis(redisDatabase.url);
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await Promise.all(started.splice(0).map((sessions) => sessions.close()));
  });
  afterAll(async () => {
    await redis?.quit();
  });

  it('counts a node whose clock is far behind or far ahead of the reader', async () => {
    const prefix = `gatehouse-test:sessions-${randomBytes(6).toString('hex')}:`;
    const heartbeatMs = 60_000;
    const start = (nodeId: string, counts: Map<number, number>) =>
      startClusterSessions({ redis, nodeId, local: () => counts, heartbeatMs, prefix });

    const realNow = Date.now();
    // This node's clock is 10 minutes behind (10 heartbeats).
    vi.spyOn(Date, 'now').mockReturnValue(realNow - 10 * heartbeatMs);
    started.push(await start('slow', new Map([[1, 2]])));
    // This one's is 10 minutes ahead; it also reads.
    vi.spyOn(Date, 'now').mockReturnValue(realNow + 10 * heartbeatMs);
    const fast = await start('fast', new Map([[1, 1], [2, 1]]));
    started.push(fast);
    expect(await fast.sessionsByClient()).toEqual(new Map([[1, 3], [2, 1]]));
    vi.spyOn(Date, 'now').mockReturnValue(realNow - 10 * heartbeatMs);
    expect(await started[0]!.sessionsByClient()).toEqual(new Map([[1, 3], [2, 1]]));
  });
});
