import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';

/**
 * Logical databases of TEST_REDIS_URL's server, one per test file that needs
 * Redis, so files running at the same time (or two runs on one server) never
 * share one: each flushes its database and counts on what it writes there.
 *
 * A claim is a key `gatehouse-test:redis-database:<n>` in the database the
 * URL names (0 when it names none), which is never handed out: SET NX with an
 * expiry, renewed while the file runs, deleted when it gives the database
 * back; a killed run's claims expire on their own. A claimed database is
 * flushed when claimed and again when given back. The message bus' channels
 * carry the database number (pub/sub ignores databases), so they are
 * separate too.
 */
export interface RedisDatabase {
  /** TEST_REDIS_URL with the claimed database: `redis://host:port/<n>`. */
  url: string;
  index: number;
  /** Flushes it and gives it back. */
  release(): Promise<void>;
}

const CLAIM_PREFIX = 'gatehouse-test:redis-database:';
const CLAIM_MS = 120_000;
const RENEW_MS = 20_000;
const WAIT_FOR_FREE_MS = 120_000;

const renewIfMine = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
const deleteIfMine = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

/** Claims a free logical database of `baseUrl`'s server, waiting for one if all are taken. */
export async function claimRedisDatabase(baseUrl = process.env.TEST_REDIS_URL): Promise<RedisDatabase> {
  if (!baseUrl) throw new Error('TEST_REDIS_URL is not set');
  const claims = new Redis(baseUrl, { lazyConnect: true, maxRetriesPerRequest: 3 });
  try {
    await claims.connect();
    const home = Number(new URL(baseUrl).pathname.slice(1) || 0);
    const count = await databaseCount(claims);
    const token = `${process.pid}-${randomBytes(6).toString('hex')}`;
    const deadline = Date.now() + WAIT_FOR_FREE_MS;
    for (;;) {
      for (let index = 0; index < count; index++) {
        if (index === home) continue;
        if ((await claims.set(`${CLAIM_PREFIX}${index}`, token, 'PX', CLAIM_MS, 'NX')) !== 'OK') continue;
        return await holdClaim(claims, baseUrl, index, token);
      }
      if (Date.now() > deadline) {
        throw new Error(
          `every logical database of TEST_REDIS_URL but ${home} (${count - 1}) is claimed by other test files (keys ${CLAIM_PREFIX}* in database ${home})`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } catch (error) {
    claims.disconnect();
    throw error;
  }
}

/** `databases` from the server's configuration; Redis' default where CONFIG is not allowed. */
async function databaseCount(redis: Redis): Promise<number> {
  try {
    const [, value] = (await redis.config('GET', 'databases')) as [string, string];
    return Number(value) || 16;
  } catch {
    return 16;
  }
}

async function holdClaim(claims: Redis, baseUrl: string, index: number, token: string): Promise<RedisDatabase> {
  const key = `${CLAIM_PREFIX}${index}`;
  const url = new URL(baseUrl);
  url.pathname = `/${index}`;
  const flush = async () => {
    const redis = new Redis(url.toString(), { maxRetriesPerRequest: 3 });
    try {
      await redis.flushdb();
    } finally {
      redis.disconnect();
    }
  };
  const renewal = setInterval(() => {
    claims.eval(renewIfMine, 1, key, token, CLAIM_MS).catch(() => {});
  }, RENEW_MS);
  renewal.unref();
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    clearInterval(renewal);
    try {
      await flush();
      await claims.eval(deleteIfMine, 1, key, token);
    } finally {
      claims.disconnect();
    }
  };
  try {
    await flush();
  } catch (error) {
    await claims.eval(deleteIfMine, 1, key, token).catch(() => {});
    clearInterval(renewal);
    throw error;
  }
  return { url: url.toString(), index, release };
}

/**
 * A logical database for the calling test file (or describe block): claimed
 * in a `beforeAll` registered here, given back in an `afterAll`. Call it
 * before the hooks that use `url`. Without TEST_REDIS_URL it claims nothing
 * (the Redis suites skip) and `url` throws.
 */
export function useRedisDatabase(): { readonly url: string } {
  let claimed: RedisDatabase | undefined;
  beforeAll(async () => {
    if (process.env.TEST_REDIS_URL) claimed = await claimRedisDatabase();
  });
  afterAll(async () => {
    await claimed?.release();
  });
  return {
    get url() {
      if (!claimed) throw new Error('no Redis database claimed: call useRedisDatabase() where its hooks run before this');
      return claimed.url;
    },
  };
}
