import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { createAuthenticator } from '../src/domain/access/authenticate';
import { createFailureTracker, createPasswordGate } from '../src/domain/passwordGate';
import { createClient, deleteClient, updateClient } from '../src/domain/clients';
import { loadAccess } from '../src/domain/access/query';
import * as password from '../src/domain/password';

import { grantGroup } from './support/acl';
import { countQueries, createTestDatabase, drivers } from './support/db';

const tcp = (username: string | undefined, pw: string | undefined, extra: { remoteAddress?: string } = {}) => ({
  username,
  password: pw === undefined ? undefined : Buffer.from(pw),
  clientId: 'test-client',
  transport: 'tcp' as const,
  ...extra,
});

describe.each(drivers)('authenticate() on %s', (driver) => {
  let database: OpenDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
    await createClient(database.db, { name: 'Meter', username: 'meter', password: 'meter-password' });
  });
  afterAll(async () => {
    await database?.close();
  });

  it('accepts the right password and names the client', async () => {
    const auth = createAuthenticator(database.db);
    const result = await auth.authenticate({ ...tcp('meter', 'meter-password'), clientId: 'm-1', transport: 'ws' });
    expect(result).toMatchObject({ ok: true, principal: { username: 'meter', mqttClientId: 'm-1', transport: 'ws', authType: 'password' } });
  });

  it('answers a wrong password and an unknown username alike', async () => {
    const auth = createAuthenticator(database.db);
    expect(await auth.authenticate(tcp('meter', 'not-the-password'))).toEqual({ ok: false, reason: 'bad_credentials' });
    expect(await auth.authenticate(tcp('nobody-here', 'meter-password'))).toEqual({ ok: false, reason: 'bad_credentials' });
  });

  it('spends an Argon2id verify on unknown usernames too, so both failures cost the same', async () => {
    const auth = createAuthenticator(database.db);
    await auth.authenticate(tcp('nobody-1', 'wrong-password'));
    await auth.authenticate(tcp('meter', 'wrong-password'));
    expect(auth.stats().verifies).toBe(2);
  });

  it('refuses a missing username or password', async () => {
    const auth = createAuthenticator(database.db);
    expect(await auth.authenticate(tcp(undefined, 'meter-password'))).toEqual({ ok: false, reason: 'missing_credentials' });
    expect(await auth.authenticate(tcp('meter', undefined))).toEqual({ ok: false, reason: 'missing_credentials' });
    expect(await auth.authenticate(tcp('meter', ''))).toEqual({ ok: false, reason: 'missing_credentials' });
  });

  it('serves a repeated connect from its cache, and sees an edit or a delete at once', async () => {
    const client = await createClient(database.db, { name: 'Cached', username: 'cached', password: 'first-password' });
    const auth = createAuthenticator(database.db);
    expect((await auth.authenticate(tcp('cached', 'first-password'))).ok).toBe(true);
    // A hit skips Argon2id.
    const before = auth.stats();
    for (let i = 0; i < 5; i++) expect((await auth.authenticate(tcp('cached', 'first-password'))).ok).toBe(true);
    expect(auth.stats()).toMatchObject({ verifies: before.verifies, cacheHits: before.cacheHits + 5 });
    // A wrong password is never a hit.
    expect((await auth.authenticate(tcp('cached', 'wrong-password'))).ok).toBe(false);
    expect(auth.stats().verifies).toBe(before.verifies + 1);

    await updateClient(database.db, client.id, { name: 'Cached', username: 'cached', password: 'second-password' });
    expect((await auth.authenticate(tcp('cached', 'first-password'))).ok).toBe(false);
    expect((await auth.authenticate(tcp('cached', 'second-password'))).ok).toBe(true);
    await deleteClient(database.db, client.id);
    expect((await auth.authenticate(tcp('cached', 'second-password'))).ok).toBe(false);
  });

  it('backs off after repeated failures from one address, without locking out a device whose password it already verified', async () => {
    const auth = createAuthenticator(database.db, { failuresBeforeBackoff: 3, addressFailuresBeforeBackoff: 3 });
    expect((await auth.authenticate(tcp('meter', 'meter-password', { remoteAddress: '10.0.0.1' }))).ok).toBe(true);
    for (let i = 0; i < 3; i++) {
      expect(await auth.authenticate(tcp('meter', `guess-${i}-xx`, { remoteAddress: '10.0.0.66' }))).toEqual({ ok: false, reason: 'bad_credentials' });
    }
    expect(await auth.authenticate(tcp('meter', 'guess-more', { remoteAddress: '10.0.0.66' }))).toEqual({ ok: false, reason: 'throttled' });
    expect(await auth.authenticate(tcp('other', 'guess-more', { remoteAddress: '10.0.0.66' }))).toEqual({ ok: false, reason: 'throttled' });
    // The username is locked for new guesses from elsewhere…
    expect(await auth.authenticate(tcp('meter', 'guess-again', { remoteAddress: '10.0.0.77' }))).toEqual({ ok: false, reason: 'throttled' });
    // …but the real device, whose password is cached, still gets in, even from the throttled (shared NAT) address.
    expect((await auth.authenticate(tcp('meter', 'meter-password', { remoteAddress: '10.0.0.1' }))).ok).toBe(true);
    expect((await auth.authenticate(tcp('meter', 'meter-password', { remoteAddress: '10.0.0.66' }))).ok).toBe(true);
  });

  it('does not let parallel guesses slip past the back-off, and sheds load when too many verifies wait', async () => {
    const auth = createAuthenticator(database.db, { failuresBeforeBackoff: 3, maxConcurrentVerifies: 2 });
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => auth.authenticate(tcp('meter', `guess-${i}-xx`, { remoteAddress: `10.2.0.${i}` }))));
    expect(results.filter((r) => !r.ok && r.reason === 'throttled').length).toBeGreaterThan(20);
    expect(auth.stats().verifies).toBeLessThanOrEqual(3 + 2);

    const busy = createAuthenticator(database.db, { maxConcurrentVerifies: 1, maxQueuedVerifies: 2 });
    const burst = await Promise.all(Array.from({ length: 8 }, (_, i) => busy.authenticate(tcp(`unknown-${i}`, 'some-password'))));
    // Answered at once, without a verify: the server is busy, not the device throttled (MQTT 5: 0x88).
    const shed = burst.filter((r) => !r.ok && r.reason === 'unavailable').length;
    expect(shed).toBeGreaterThan(0);
    expect(busy.stats().verifies + shed).toBe(8);
  });

  it('reads the database once per refused CONNECT, and the rules only once a CONNECT is accepted', async () => {
    await createClient(database.db, { name: 'Counted', username: 'counted', password: 'counted-password' });
    await grantGroup(database.db, { name: 'Counted by client', permissions: [['allow', 'publish', 'counted/%u/#']], usernames: ['counted'] });
    await grantGroup(database.db, { name: 'Counted by id', permissions: [['allow', 'subscribe', 'ids/%c']], clientIds: ['counted-*'] });
    const auth = createAuthenticator(database.db);
    const once = async (username: string, pw: string, clientId: string) => {
      const counter = countQueries(database.db);
      try {
        return { result: await auth.authenticate({ ...tcp(username, pw), clientId }), queries: counter.count() };
      } finally {
        counter.stop();
      }
    };

    expect(await once('counted', 'wrong-password', 'counted-1')).toEqual({ result: { ok: false, reason: 'bad_credentials' }, queries: 1 });
    expect(await once('nobody-counted', 'counted-password', 'counted-1')).toEqual({ result: { ok: false, reason: 'bad_credentials' }, queries: 1 });

    const verified = await once('counted', 'counted-password', 'counted-1');
    expect(verified.queries).toBe(2);
    expect(verified.result.ok && verified.result.access).toMatchObject({
      username: 'counted',
      mqttClientId: 'counted-1',
      groups: [{ name: 'Counted by client' }, { name: 'Counted by id' }],
      permissions: [{ filter: 'counted/counted/#' }, { filter: 'ids/counted-1' }],
    });
    // The password from the cache: still the client and the rules read, and a client id the pattern does not match gets only the rule by client.
    const cached = await once('counted', 'counted-password', 'other-1');
    expect(cached.queries).toBe(2);
    expect(auth.stats().cacheHits).toBe(1);
    expect(cached.result.ok && cached.result.access.groups.map((g) => g.name)).toEqual(['Counted by client']);

    // The snapshot is what loadAccess computes for the same connection.
    const principal = verified.result.ok ? verified.result.principal : undefined;
    expect(verified.result.ok && verified.result.access).toEqual(
      await loadAccess(database.db, { clientRowId: principal!.clientRowId, username: 'counted', mqttClientId: 'counted-1' }),
    );
  });

  it('reports the database being unreachable as unavailable', async () => {
    const broken = await createTestDatabase(driver);
    await broken.close();
    const auth = createAuthenticator(broken.db);
    expect(await auth.authenticate(tcp('meter', 'meter-password'))).toEqual({ ok: false, reason: 'unavailable' });
  });
});

describe('the password gate', () => {
  it('lets a known username past a flood of unknown ones: they wait in a lane of their own, behind it', async () => {
    const gate = createPasswordGate({ usernameThreshold: 100, addressThreshold: 1000, usernameMaxBackoffMs: 1000, addressMaxBackoffMs: 1000, maxConcurrent: 1, maxWaiting: 100 });
    const hash = await password.hashPassword('known-password');
    const order: string[] = [];
    const unknowns = Array.from({ length: 8 }, (_, i) => gate.verify(`nobody-${i}`, `10.9.0.${i}`, undefined, 'guess').then(() => order.push('unknown')));
    const known = gate.verify('known', '10.9.1.1', hash, 'known-password').then((result) => {
      order.push('known');
      return result;
    });
    expect(await known).toEqual({ ok: true });
    await Promise.all(unknowns);
    // Only the verify already running when it came went before it.
    expect(order.indexOf('known')).toBeLessThanOrEqual(1);
    expect(gate.verifies()).toBe(9);
  });
});

describe('failure tracker', () => {
  it('doubles the lock-out after the threshold, caps it, and forgets after a success', async () => {
    let now = 0;
    const tracker = createFailureTracker({ threshold: 2, maxBackoffMs: 4000, now: () => now });
    await tracker.fail('k');
    expect(await tracker.retryAfterMs('k')).toBe(0);
    await tracker.fail('k');
    expect(await tracker.retryAfterMs('k')).toBe(1000);
    await tracker.fail('k');
    expect(await tracker.retryAfterMs('k')).toBe(2000);
    await tracker.fail('k');
    await tracker.fail('k');
    expect(await tracker.retryAfterMs('k')).toBe(4000);
    now += 4001;
    expect(await tracker.retryAfterMs('k')).toBe(0);
    await tracker.succeed('k');
    await tracker.fail('k');
    expect(await tracker.retryAfterMs('k')).toBe(0);
  });
});

it('verifyPasswordHash treats a malformed hash as a mismatch', async () => {
  expect(await password.verifyPasswordHash('not-a-hash', 'whatever')).toBe(false);
});
