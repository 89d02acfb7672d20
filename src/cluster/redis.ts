import type { Redis } from 'ioredis';

/**
 * Opens a Redis connection and waits until it answers, so a wrong REDIS_URL
 * stops the start with a clear message instead of retrying in the background.
 */
export async function connectRedis(url: string): Promise<Redis> {
  // Loaded only with REDIS_URL: one node never pays for it.
  const { Redis } = await import('ioredis');
  const redis = new Redis(url, { lazyConnect: true });
  redis.on('error', () => {}); // reconnects by itself; failed commands report their own errors
  try {
    await redis.connect();
  } catch (error) {
    redis.disconnect();
    throw new Error(`Cannot reach Redis at ${describeRedisUrl(url)}: ${(error as Error).message}`);
  }
  return redis;
}

/** `redis://user:secret@host:6379/0` → `redis://host:6379/0`. */
export function describeRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return 'redis';
  }
}
