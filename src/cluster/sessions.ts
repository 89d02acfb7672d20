import type { Redis } from 'ioredis';

/**
 * Live sessions per client, counted on every node. Each node keeps its own
 * counts in a Redis hash (`{prefix}sessions:{nodeId}`) and says it is alive in
 * a sorted set (`{prefix}nodes`, scored by its last heartbeat). A reader sums
 * the hashes of live nodes; a node silent for three heartbeats (it died) no
 * longer counts, and the first reader to notice deletes what it left. Every
 * time is Redis' own clock (TIME), never a node's: nodes whose clocks differ
 * cannot take one another for dead.
 *
 * A change is sent as it happens, without waiting for Redis (the CONNECT does
 * not wait); every heartbeat rewrites the node's whole hash from its own
 * counts, which repairs anything lost to a Redis restart.
 */
export interface ClusterSessions {
  /** Counts one session of `clientRowId` opening (+1) or ending (-1) on this node. */
  change(clientRowId: number, delta: 1 | -1): void;
  /** Sessions per `clients` row id, summed over every live node. */
  sessionsByClient(): Promise<ReadonlyMap<number, number>>;
  /** Removes this node's counts (a clean stop). */
  close(): Promise<void>;
}

export interface ClusterSessionsOptions {
  redis: Redis;
  nodeId: string;
  /** This node's own counts, the truth its hash is rewritten from. */
  local: () => ReadonlyMap<number, number>;
  heartbeatMs: number;
  prefix?: string;
  log?: (message: string) => void;
}

/** Scores member ARGV[1] of sorted set KEYS[1] with Redis' time now, in milliseconds. */
const STAMP_WITH_REDIS_TIME = `
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), ARGV[1])
`;

/** Starts announcing this node and returns the counts of all nodes. */
export async function startClusterSessions(options: ClusterSessionsOptions): Promise<ClusterSessions> {
  const { redis, nodeId, heartbeatMs } = options;
  const prefix = options.prefix ?? 'gatehouse:';
  const nodesKey = `${prefix}nodes`;
  const hashOf = (id: string) => `${prefix}sessions:${id}`;
  const ownHash = hashOf(nodeId);
  const log = options.log ?? (() => {});
  let warned = false;
  const warnOnce = (error: unknown) => {
    if (warned) return;
    warned = true;
    log(`live session counts could not be shared through Redis: ${(error as Error).message}`);
  };

  async function heartbeat() {
    const counts = options.local();
    const write = redis.multi().del(ownHash);
    if (counts.size > 0) write.hset(ownHash, Object.fromEntries(counts));
    write.eval(STAMP_WITH_REDIS_TIME, 1, nodesKey, nodeId);
    await write.exec();
    warned = false;
  }

  await heartbeat();
  const timer = setInterval(() => heartbeat().catch(warnOnce), heartbeatMs);
  timer.unref();

  return {
    change(clientRowId, delta) {
      // A count back at 0 stays until the next heartbeat rewrites the hash:
      // deleting it here could race with the next +1.
      redis.hincrby(ownHash, String(clientRowId), delta).catch(warnOnce);
    },

    async sessionsByClient() {
      const [seconds, micros] = await redis.time();
      const deadBefore = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - 3 * heartbeatMs;
      const [live, dead] = await Promise.all([
        redis.zrangebyscore(nodesKey, deadBefore, '+inf'),
        redis.zrangebyscore(nodesKey, '-inf', `(${deadBefore}`),
      ]);
      if (dead.length > 0) {
        await redis
          .multi()
          .zrem(nodesKey, ...dead)
          .del(...dead.map(hashOf))
          .exec();
      }
      const totals = new Map<number, number>();
      if (live.length === 0) return totals;
      const read = redis.pipeline();
      for (const id of live) read.hgetall(hashOf(id));
      for (const [error, hash] of (await read.exec()) ?? []) {
        if (error) throw error;
        for (const [clientRowId, count] of Object.entries(hash as Record<string, string>)) {
          const id = Number(clientRowId);
          const n = Number(count);
          if (Number.isInteger(id) && n > 0) totals.set(id, (totals.get(id) ?? 0) + n);
        }
      }
      return totals;
    },

    async close() {
      clearInterval(timer);
      await redis.multi().zrem(nodesKey, nodeId).del(ownHash).exec();
    },
  };
}
