import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { FORGET_FAILURES_AFTER_MS, type FailureTracker, type FailureTrackerFactory } from '../domain/passwordGate';

/**
 * Counts a failure and sets the lock-out in one step, so failures sent to
 * several nodes at once are all counted and each lock-out matches its count.
 * KEYS: the count, the lock. ARGV: forget after (ms), threshold, longest lock-out (ms).
 */
const FAIL_SCRIPT = `
local count = redis.call('INCR', KEYS[1])
local forgetMs = tonumber(ARGV[1])
redis.call('PEXPIRE', KEYS[1], forgetMs)
local threshold = tonumber(ARGV[2])
if count >= threshold then
  local backoff = math.floor(math.min(1000 * 2 ^ (count - threshold), tonumber(ARGV[3]), forgetMs))
  if backoff >= 1 then
    redis.call('SET', KEYS[2], '1', 'PX', backoff)
  end
end
return count
`;

/**
 * No username of a client is this long: longer keys (anything a CONNECT
 * sends, up to the packet size) are stored as a digest, so guesses with huge
 * usernames cannot fill Redis.
 */
const MAX_PLAIN_KEY_LENGTH = 256;

export interface RedisFailureTrackerOptions {
  /**
   * Longest wait for Redis per check or count; beyond it the gate treats the
   * counts as unreadable (throttles) instead of holding a CONNECT or a
   * sign-in while ioredis retries.
   */
  timeoutMs?: number;
}

/**
 * Failure counts kept in Redis, shared by every node that uses the same Redis
 * and `prefix`, so adding nodes does not add guesses. Per key: a count that
 * expires 15 minutes after its last failure, and a lock-out key whose time to
 * live is the remaining lock-out (Redis's clock, not the nodes'). Every key
 * expires on its own.
 */
export function createRedisFailureTrackers(redis: Redis, prefix: string, options: RedisFailureTrackerOptions = {}): FailureTrackerFactory {
  const timeoutMs = options.timeoutMs ?? 1000;
  return (name, limits): FailureTracker => {
    const namespace = `${prefix}${name}:`;
    const keysOf = (key: string) => {
      // 'fails:' and 'fails#' never meet, so no username can name another's digest.
      const suffix = key.length <= MAX_PLAIN_KEY_LENGTH ? `:${key}` : `#${createHash('sha256').update(key).digest('hex')}`;
      return { fails: `${namespace}fails${suffix}`, lock: `${namespace}lock${suffix}` };
    };
    return {
      async retryAfterMs(key) {
        const ttl = await withTimeout(redis.pttl(keysOf(key).lock), timeoutMs);
        return ttl > 0 ? ttl : 0;
      },
      async fail(key) {
        const { fails, lock } = keysOf(key);
        await withTimeout(redis.eval(FAIL_SCRIPT, 2, fails, lock, FORGET_FAILURES_AFTER_MS, limits.threshold, limits.maxBackoffMs), timeoutMs);
      },
      async succeed(key) {
        const { fails, lock } = keysOf(key);
        await withTimeout(redis.del(fails, lock), timeoutMs);
      },
      async clear() {
        const match = `${escapeGlob(namespace)}*`;
        let cursor = '0';
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
          if (keys.length > 0) await redis.del(...keys);
          cursor = next;
        } while (cursor !== '0');
      },
    };
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A prefix is text, not a pattern: `*`, `?`, `[` and `\` in it match only themselves.
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
