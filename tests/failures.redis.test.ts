import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisFailureTrackers } from '../src/cluster/failures';
import type { OpenDatabase } from '../src/db';
import { createAdministrator, createSignInGuard } from '../src/domain/administrators';
import { createAuthenticator } from '../src/domain/access/authenticate';
import { createClient } from '../src/domain/clients';
import { createFailureTracker, type FailureTracker, type FailureTrackerFactory } from '../src/domain/passwordGate';
import { createTestDatabase } from './support/db';
import { requireOrSkip } from './support/env';
import { useRedisDatabase } from './support/redis';

const redisUrl = process.env.TEST_REDIS_URL;
const haveRedis = requireOrSkip('Redis (TEST_REDIS_URL)', Boolean(redisUrl), 'set TEST_REDIS_URL=redis://… to run the Redis suites');

const redisDatabase = useRedisDatabase();

/** A logical database of the test Redis for this file alone (tests/support/redis.ts), and a prefix of its own per test. */
function testRedisUrl(): string {
  return redisDatabase.url;
}

const newPrefix = (label = '') => `gatehouse-test:${label}${randomBytes(6).toString('hex')}:`;

const tcp = (username: string, pw: string, remoteAddress: string) => ({
  username,
  password: Buffer.from(pw),
  clientId: 'test-client',
  transport: 'tcp' as const,
  remoteAddress,
});

let database: OpenDatabase;
beforeAll(async () => {
  database = await createTestDatabase('pglite');
  await createClient(database.db, { name: 'Meter', username: 'meter', password: 'meter-password' });
  await createAdministrator(database.db, { username: 'operator', password: 'operator-password' });
});
afterAll(async () => {
  await database?.close();
});

describe.skipIf(!haveRedis)('failure counts shared through Redis', () => {
  // Two connections: what two nodes of a cluster would hold.
  let redisA: Redis;
  let redisB: Redis;
  const prefixes: string[] = [];

  beforeAll(() => {
    redisA = new Redis(testRedisUrl());
    redisB = new Redis(testRedisUrl());
  });
  afterAll(async () => {
    for (const prefix of prefixes) {
      const trackers = createRedisFailureTrackers(redisA, prefix);
      await trackers('username', { threshold: 1, maxBackoffMs: 1000 }).clear();
      await trackers('address', { threshold: 1, maxBackoffMs: 1000 }).clear();
    }
    await redisA?.quit();
    await redisB?.quit();
  });

  /** The failure trackers of two nodes sharing one Redis and one prefix. */
  function twoNodes(prefix = newPrefix()) {
    prefixes.push(prefix);
    return { prefix, a: createRedisFailureTrackers(redisA, prefix), b: createRedisFailureTrackers(redisB, prefix) };
  }

  const keysUnder = (prefix: string) => redisA.keys(`${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`);

  describe('device CONNECTs', () => {
    it('refuses a username on every node, without a verify, once failures made through one node reach the threshold', async () => {
      const { a, b } = twoNodes();
      const nodeA = createAuthenticator(database.db, { failuresBeforeBackoff: 3, addressFailuresBeforeBackoff: 100, failureTrackers: a });
      const nodeB = createAuthenticator(database.db, { failuresBeforeBackoff: 3, addressFailuresBeforeBackoff: 100, failureTrackers: b });
      for (let i = 0; i < 3; i++) {
        expect(await nodeA.authenticate(tcp('meter', `guess-${i}-xx`, `10.0.0.${i}`))).toEqual({ ok: false, reason: 'bad_credentials' });
      }
      // Node B counted nothing itself: even the right password waits, and costs it no Argon2id work.
      expect(await nodeB.authenticate(tcp('meter', 'meter-password', '10.9.0.1'))).toEqual({ ok: false, reason: 'throttled' });
      expect(nodeB.stats().verifies).toBe(0);
    });

    it('does not let parallel guesses sent to both nodes slip past the shared back-off', async () => {
      const { a, b } = twoNodes();
      const options = { failuresBeforeBackoff: 3, addressFailuresBeforeBackoff: 100, maxConcurrentVerifies: 2 };
      const nodes = [createAuthenticator(database.db, { ...options, failureTrackers: a }), createAuthenticator(database.db, { ...options, failureTrackers: b })];
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => nodes[i % 2]!.authenticate(tcp('meter', `guess-${i}-xx`, `10.6.0.${i}`))),
      );
      expect(results.filter((r) => !r.ok && r.reason === 'throttled').length).toBeGreaterThan(30);
      // At most the threshold plus the verifies already running on both nodes when it was reached.
      expect(nodes[0]!.stats().verifies + nodes[1]!.stats().verifies).toBeLessThanOrEqual(3 + 2 * 2);
    });

    it('resets a username on every node when it succeeds on any one', async () => {
      const { a, b } = twoNodes();
      const nodeA = createAuthenticator(database.db, { failuresBeforeBackoff: 3, addressFailuresBeforeBackoff: 100, failureTrackers: a });
      const nodeB = createAuthenticator(database.db, { failuresBeforeBackoff: 3, addressFailuresBeforeBackoff: 100, failureTrackers: b });
      for (let i = 0; i < 2; i++) await nodeA.authenticate(tcp('meter', `guess-${i}-xx`, '10.1.0.1'));
      expect((await nodeB.authenticate(tcp('meter', 'meter-password', '10.1.0.2'))).ok).toBe(true);
      // Four failures in all, but only two since the success: not locked.
      for (let i = 2; i < 4; i++) {
        expect(await nodeA.authenticate(tcp('meter', `guess-${i}-xx`, '10.1.0.1'))).toEqual({ ok: false, reason: 'bad_credentials' });
      }
      expect((await nodeA.authenticate(tcp('meter', 'meter-password', '10.1.0.1'))).ok).toBe(true);
    });

    it('shares the count of an address across nodes, and a success from it does not reset it', async () => {
      const { a, b } = twoNodes();
      const nodeA = createAuthenticator(database.db, { failuresBeforeBackoff: 100, addressFailuresBeforeBackoff: 3, failureTrackers: a });
      const nodeB = createAuthenticator(database.db, { failuresBeforeBackoff: 100, addressFailuresBeforeBackoff: 3, failureTrackers: b });
      for (let i = 0; i < 2; i++) await nodeA.authenticate(tcp(`ghost-${i}`, 'guess-guess', '203.0.113.5'));
      expect((await nodeB.authenticate(tcp('meter', 'meter-password', '203.0.113.5'))).ok).toBe(true);
      expect(await nodeA.authenticate(tcp('ghost-2', 'guess-guess', '203.0.113.5'))).toEqual({ ok: false, reason: 'bad_credentials' });

      const verifies = nodeB.stats().verifies;
      expect(await nodeB.authenticate(tcp('ghost-3', 'guess-guess', '203.0.113.5'))).toEqual({ ok: false, reason: 'throttled' });
      expect(nodeB.stats().verifies).toBe(verifies);
      // Only that address: the same guess from elsewhere is verified.
      expect(await nodeB.authenticate(tcp('ghost-3', 'guess-guess', '203.0.113.6'))).toEqual({ ok: false, reason: 'bad_credentials' });
      expect(nodeB.stats().verifies).toBe(verifies + 1);
    });

    it('resets the username in Redis when a cached password connects, and lets a cached device in while its username is locked', async () => {
      const { prefix, a, b } = twoNodes();
      const nodeA = createAuthenticator(database.db, { failuresBeforeBackoff: 3, addressFailuresBeforeBackoff: 100, failureTrackers: a });
      const nodeB = createAuthenticator(database.db, { failuresBeforeBackoff: 3, addressFailuresBeforeBackoff: 100, failureTrackers: b });
      expect((await nodeB.authenticate(tcp('meter', 'meter-password', '10.2.0.1'))).ok).toBe(true);
      for (let i = 0; i < 3; i++) await nodeA.authenticate(tcp('meter', `guess-${i}-xx`, '10.2.0.66'));
      expect(await nodeA.authenticate(tcp('meter', 'meter-password', '10.2.0.1'))).toEqual({ ok: false, reason: 'throttled' });

      expect((await nodeB.authenticate(tcp('meter', 'meter-password', '10.2.0.1'))).ok).toBe(true);
      expect(nodeB.stats().cacheHits).toBe(1);
      // The reset is not awaited by the CONNECT: wait for it to land.
      await expect.poll(() => keysUnder(`${prefix}username:`)).toEqual([]);
      expect((await nodeA.authenticate(tcp('meter', 'meter-password', '10.2.0.1'))).ok).toBe(true);
    });
  });

  describe('console sign-in', () => {
    it('refuses a username on every node, without a verify, once failures made through one node reach the threshold; a success resets it', async () => {
      const { a, b } = twoNodes();
      const guardA = createSignInGuard(database.db, { failuresBeforeBackoff: 3, failureTrackers: a });
      const guardB = createSignInGuard(database.db, { failuresBeforeBackoff: 3, failureTrackers: b });
      for (let i = 0; i < 2; i++) await guardA.signIn({ username: 'operator', password: `wrong-${i}-password`, address: `10.3.0.${i}` });
      expect(await guardB.signIn({ username: 'operator', password: 'operator-password', address: '10.3.0.9' })).toMatchObject({ ok: true });
      for (let i = 2; i < 4; i++) {
        expect(await guardA.signIn({ username: 'operator', password: `wrong-${i}-password`, address: `10.3.0.${i}` })).toEqual({
          ok: false,
          reason: 'bad_credentials',
          knownUsername: true,
        });
      }
      expect(await guardA.signIn({ username: 'operator', password: `wrong-4-password`, address: '10.3.0.4' })).toEqual({
        ok: false,
        reason: 'bad_credentials',
        knownUsername: true,
      });

      const verifies = guardB.stats().verifies;
      const locked = await guardB.signIn({ username: 'operator', password: 'operator-password', address: '10.3.0.9' });
      expect(locked).toMatchObject({ ok: false, reason: 'throttled' });
      expect((locked as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0);
      expect(guardB.stats().verifies).toBe(verifies);
    });

    it('refuses an address on every node once it has guessed too often through one node', async () => {
      const { a, b } = twoNodes();
      const guardA = createSignInGuard(database.db, { addressFailuresBeforeBackoff: 3, failureTrackers: a });
      const guardB = createSignInGuard(database.db, { addressFailuresBeforeBackoff: 3, failureTrackers: b });
      for (let i = 0; i < 3; i++) await guardA.signIn({ username: `user-${i}`, password: 'guess-guess', address: '198.51.100.7' });
      expect(await guardB.signIn({ username: 'operator', password: 'operator-password', address: '198.51.100.7' })).toMatchObject({
        ok: false,
        reason: 'throttled',
      });
      expect(guardB.stats().verifies).toBe(0);
      expect(await guardB.signIn({ username: 'operator', password: 'operator-password', address: '198.51.100.8' })).toMatchObject({ ok: true });
    });
  });

  describe('the Redis tracker', () => {
    it('doubles the lock-out after the threshold by Redis time, caps it, and gives every key an expiry', async () => {
      const { prefix, a, b } = twoNodes();
      const onA = a('username', { threshold: 2, maxBackoffMs: 4000 });
      const onB = b('username', { threshold: 2, maxBackoffMs: 4000 });
      await onA.fail('k');
      expect(await onB.retryAfterMs('k')).toBe(0);
      await onB.fail('k');
      expect(await onA.retryAfterMs('k')).toBeGreaterThan(900);
      expect(await onA.retryAfterMs('k')).toBeLessThanOrEqual(1000);
      await onA.fail('k');
      expect(await onB.retryAfterMs('k')).toBeGreaterThan(1900);
      expect(await onB.retryAfterMs('k')).toBeLessThanOrEqual(2000);
      await onA.fail('k');
      await onA.fail('k');
      expect(await onB.retryAfterMs('k')).toBeGreaterThan(3900);
      expect(await onB.retryAfterMs('k')).toBeLessThanOrEqual(4000);

      const keys = await keysUnder(prefix);
      expect(keys).toHaveLength(2);
      for (const key of keys) {
        const ttl = await redisA.pttl(key);
        expect(ttl, key).toBeGreaterThan(0);
        expect(ttl, key).toBeLessThanOrEqual(15 * 60_000);
      }
      await onB.succeed('k');
      expect(await onA.retryAfterMs('k')).toBe(0);
      expect(await keysUnder(prefix)).toEqual([]);
    });

    it('keeps keys of any character apart, and stores a huge one as a short digest', async () => {
      const { prefix, a } = twoNodes();
      const tracker = a('username', { threshold: 1, maxBackoffMs: 60_000 });
      for (const key of ['a*', 'x:lock:y', 'new\nline{}']) await tracker.fail(key);
      for (const key of ['a*', 'x:lock:y', 'new\nline{}']) expect(await tracker.retryAfterMs(key), key).toBeGreaterThan(0);
      for (const key of ['a', 'ab', 'x', 'lock:y', 'new']) expect(await tracker.retryAfterMs(key), key).toBe(0);

      const huge = 'h'.repeat(100_000);
      await tracker.fail(huge);
      expect(await tracker.retryAfterMs(huge)).toBeGreaterThan(0);
      expect(await tracker.retryAfterMs(huge.slice(1))).toBe(0);
      for (const key of await keysUnder(prefix)) expect(key.length).toBeLessThan(300);
    });

    it('clears only its own counts, even under a prefix with pattern characters', async () => {
      const base = newPrefix();
      const starred = twoNodes(`${base}*:`).a('username', { threshold: 1, maxBackoffMs: 60_000 });
      const other = twoNodes(`${base}other:`).a('username', { threshold: 1, maxBackoffMs: 60_000 });
      const addresses = twoNodes(`${base}*:`).a('address', { threshold: 1, maxBackoffMs: 60_000 });
      await starred.fail('meter');
      await other.fail('meter');
      await addresses.fail('10.4.0.1');
      await starred.clear();
      expect(await starred.retryAfterMs('meter')).toBe(0);
      expect(await other.retryAfterMs('meter')).toBeGreaterThan(0);
      expect(await addresses.retryAfterMs('10.4.0.1')).toBeGreaterThan(0);
    });
  });
});

describe('when Redis does not answer', () => {
  let silent: Server;
  const sockets = new Set<Socket>();
  let unanswered: Redis;
  beforeAll(async () => {
    // Accepts connections and never replies: a Redis that hangs.
    silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    unanswered = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: null });
    unanswered.on('error', () => {});
  });
  afterAll(async () => {
    unanswered?.disconnect();
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  });

  /** Counts in memory until `down()`, then in the unanswering Redis. */
  function failingLater(timeoutMs: number) {
    let isDown = false;
    const inRedis = createRedisFailureTrackers(unanswered, newPrefix(), { timeoutMs });
    const factory: FailureTrackerFactory = (name, limits) => {
      const healthy = createFailureTracker({ ...limits, now: Date.now });
      const broken = inRedis(name, limits);
      const current = () => (isDown ? broken : healthy);
      const tracker: FailureTracker = {
        retryAfterMs: (key) => current().retryAfterMs(key),
        fail: (key) => current().fail(key),
        succeed: (key) => current().succeed(key),
        clear: () => current().clear(),
      };
      return tracker;
    };
    return { factory, down: () => (isDown = true) };
  }

  it('lets a device whose password is cached in at once, and throttles verifies after the timeout instead of guessing unchecked', async () => {
    const redis = failingLater(400);
    const auth = createAuthenticator(database.db, { failureTrackers: redis.factory });
    expect((await auth.authenticate(tcp('meter', 'meter-password', '10.5.0.1'))).ok).toBe(true);
    redis.down();

    let started = Date.now();
    expect((await auth.authenticate(tcp('meter', 'meter-password', '10.5.0.1'))).ok).toBe(true);
    expect(Date.now() - started).toBeLessThan(300);
    expect(auth.stats()).toMatchObject({ verifies: 1, cacheHits: 1 });

    started = Date.now();
    expect(await auth.authenticate(tcp('meter', 'a-guess-guess', '10.5.0.2'))).toEqual({ ok: false, reason: 'throttled' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    expect(auth.stats().verifies).toBe(1);
  });

  it('throttles console sign-in, without a verify, rather than counting nothing', async () => {
    const redis = failingLater(200);
    const guard = createSignInGuard(database.db, { failureTrackers: redis.factory });
    redis.down();
    const result = await guard.signIn({ username: 'operator', password: 'operator-password', address: '10.5.0.3' });
    expect(result).toMatchObject({ ok: false, reason: 'throttled' });
    expect((result as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0);
    expect(guard.stats().verifies).toBe(0);
  });
});
