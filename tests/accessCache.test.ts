import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type OpenDatabase } from '../src/db';
import { listenForAccessChanges, type AccessChanges } from '../src/db/changes';
import { createAuthenticator } from '../src/domain/access/authenticate';
import { MAX_USERNAME_LENGTH, type AuthResult } from '../src/domain/access/types';
import type { Database } from '../src/db';
import { createClient, deleteClient, updateClient } from '../src/domain/clients';
import { hashPassword } from '../src/domain/password';
import { getGroup, updateGroup } from '../src/domain/groups';
import { grantGroup } from './support/acl';
import { countQueries, createPostgresTestDatabase, createTestDatabase, drivers } from './support/db';
import { startRelay } from './support/relay';
import { generatedPasswordToken, generatePassword } from '../src/domain/password';

const connectAs = (username: string, password: string, clientId = 'cache-client') => ({
  username,
  password: Buffer.from(password),
  clientId,
  transport: 'tcp' as const,
});

const groupNames = (result: AuthResult) => (result.ok ? result.access.groups.map((group) => group.name) : null);

/**
 * `db`, whose first query holds its result (already read) until `release()`:
 * a change can then be made and heard between a read and its use.
 */
function holdFirstRead(db: Database) {
  let held = false;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let reachedResolve!: () => void;
  const reached = new Promise<void>((resolve) => (reachedResolve = resolve));
  const wrap = <T extends object>(target: T): T =>
    new Proxy(target, {
      get(object, property) {
        const value = Reflect.get(object, property, object);
        if (typeof value !== 'function') return value;
        if (property === 'then') {
          if (held) return value.bind(object);
          held = true;
          return (onFulfilled: (v: unknown) => unknown, onRejected: (e: unknown) => unknown) =>
            value
              .call(object, async (result: unknown) => {
                reachedResolve();
                await gate;
                return result;
              })
              .then(onFulfilled, onRejected);
        }
        return (...args: unknown[]) => {
          const out = value.apply(object, args);
          return out && typeof out === 'object' ? wrap(out) : out;
        };
      },
    });
  return { db: wrap(db), reached, release };
}

describe.each(drivers)('what CONNECT needs, kept in memory, on %s', (driver) => {
  let database: OpenDatabase;
  let changes: AccessChanges;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
    changes = await listenForAccessChanges(database);
  });
  afterAll(async () => {
    await changes?.close();
    await database?.close();
  });

  /** Resolves once the change feed has reported something (the NOTIFY of a write arrived). */
  function nextChange(): Promise<void> {
    return new Promise((resolve) => changes.onChange(() => resolve()));
  }

  /**
   * Resolves once every change made so far has been heard: notifications
   * arrive in commit order, so hearing one sent now means the earlier ones
   * arrived before it.
   */
  async function settled(): Promise<void> {
    const token = `barrier-${Math.random()}`;
    const heard = new Promise<void>((resolve) => changes.onChange((payload) => payload === token && resolve()));
    await database.db.execute(sql`select pg_notify('gatehouse_access', ${token})`);
    await heard;
  }

  it('reads no database for a CONNECT it has seen, and sees a password change at the next one', async () => {
    const client = await createClient(database.db, { name: 'Warm', username: 'warm', password: 'warm-password-1' });
    await grantGroup(database.db, { name: 'Warm', permissions: [['allow', 'publish', 'warm/#']], usernames: ['warm'] });
    await settled();
    const auth = createAuthenticator(database.db, { changes });
    expect((await auth.authenticate(connectAs('warm', 'warm-password-1'))).ok).toBe(true);
    const reads = auth.stats().databaseReads;
    expect(reads).toBeGreaterThan(0);
    for (let i = 0; i < 5; i++) expect((await auth.authenticate(connectAs('warm', 'warm-password-1', `warm-${i}`))).ok).toBe(true);
    expect(auth.stats().databaseReads).toBe(reads);

    const heard = nextChange();
    await updateClient(database.db, client.id, { name: 'Warm', username: 'warm', password: 'warm-password-2' });
    await heard;
    expect(await auth.authenticate(connectAs('warm', 'warm-password-1'))).toEqual({ ok: false, reason: 'bad_credentials' });
    expect((await auth.authenticate(connectAs('warm', 'warm-password-2'))).ok).toBe(true);
    expect(auth.stats().databaseReads).toBeGreaterThan(reads);
  });

  it('sees a rule, a group and a permission change, and a deleted client, at the next CONNECT', async () => {
    const client = await createClient(database.db, { name: 'Ruled', username: 'ruled', password: 'ruled-password' });
    const auth = createAuthenticator(database.db, { changes });
    expect(groupNames(await auth.authenticate(connectAs('ruled', 'ruled-password', 'ruled-1')))).toEqual([]);

    let heard = nextChange();
    const group = await grantGroup(database.db, { name: 'Ruled by id', permissions: [['allow', 'subscribe', 'ruled/#']], clientIds: ['ruled-*'] });
    await heard;
    const granted = await auth.authenticate(connectAs('ruled', 'ruled-password', 'ruled-2'));
    expect(groupNames(granted)).toEqual(['Ruled by id']);
    expect(granted.ok && granted.access.permissions.map((p) => p.filter)).toEqual(['ruled/#']);
    // Another client id is not matched by the pattern.
    expect(groupNames(await auth.authenticate(connectAs('ruled', 'ruled-password', 'other')))).toEqual([]);

    heard = nextChange();
    const current = (await getGroup(database.db, group.id))!;
    await updateGroup(database.db, group.id, {
      name: current.name,
      description: current.description,
      version: String(current.version),
      permissions: [{ effect: 'allow', action: 'subscribe', topic: 'changed/#' }],
    });
    await heard;
    const changed = await auth.authenticate(connectAs('ruled', 'ruled-password', 'ruled-3'));
    expect(changed.ok && changed.access.permissions.map((p) => p.filter)).toEqual(['changed/#']);

    heard = nextChange();
    await deleteClient(database.db, client.id);
    await heard;
    expect(await auth.authenticate(connectAs('ruled', 'ruled-password', 'ruled-4'))).toEqual({ ok: false, reason: 'bad_credentials' });
  });

  it('hears a change made by hand in SQL, outside the console', async () => {
    await createClient(database.db, { name: 'By hand', username: 'by-hand', password: 'by-hand-password' });
    const auth = createAuthenticator(database.db, { changes });
    expect((await auth.authenticate(connectAs('by-hand', 'by-hand-password'))).ok).toBe(true);
    const heard = nextChange();
    await database.db.execute(sql`update clients set username = 'renamed-by-hand' where username = 'by-hand'`);
    await heard;
    expect(await auth.authenticate(connectAs('by-hand', 'by-hand-password'))).toEqual({ ok: false, reason: 'bad_credentials' });
  });

  it('refuses the old password once its hash is changed by hand in SQL, without a version bump', async () => {
    await createClient(database.db, { name: 'Rehashed', username: 'rehashed', password: 'rehashed-password-1' });
    await settled();
    const auth = createAuthenticator(database.db, { changes });
    expect((await auth.authenticate(connectAs('rehashed', 'rehashed-password-1'))).ok).toBe(true);
    expect((await auth.authenticate(connectAs('rehashed', 'rehashed-password-1'))).ok).toBe(true);
    expect(auth.stats().cacheHits).toBe(1);

    const hash = await hashPassword('rehashed-password-2');
    const heard = nextChange();
    await database.db.execute(sql`update clients set password_hash = ${hash} where username = 'rehashed'`);
    await heard;
    expect(await auth.authenticate(connectAs('rehashed', 'rehashed-password-1'))).toEqual({ ok: false, reason: 'bad_credentials' });
    expect((await auth.authenticate(connectAs('rehashed', 'rehashed-password-2'))).ok).toBe(true);
  });

  it('does not use a row read before a change that was heard before the read was used', async () => {
    await createClient(database.db, { name: 'Racer', username: 'racer', password: 'racer-password-1' });
    await settled();
    const held = holdFirstRead(database.db);
    const auth = createAuthenticator(held.db, { changes });
    const connecting = auth.authenticate(connectAs('racer', 'racer-password-1'));
    // The row is read (old hash), then the password changes and the change is heard.
    await held.reached;
    const hash = await hashPassword('racer-password-2');
    const heard = nextChange();
    await database.db.execute(sql`update clients set password_hash = ${hash}, version = version + 1 where username = 'racer'`);
    await heard;
    held.release();
    expect(await connecting).toEqual({ ok: false, reason: 'bad_credentials' });
    // Nothing stale was kept either.
    expect(await auth.authenticate(connectAs('racer', 'racer-password-1'))).toEqual({ ok: false, reason: 'bad_credentials' });
    expect((await auth.authenticate(connectAs('racer', 'racer-password-2'))).ok).toBe(true);
  });

  it('refuses a username longer than any client may have without reading or remembering it, after the same decoy verify', async () => {
    await settled();
    const auth = createAuthenticator(database.db, { changes });
    const reads = auth.stats().databaseReads;
    const long = 'x'.repeat(64 * 1024);
    expect(await auth.authenticate(connectAs(long, 'some-password'))).toEqual({ ok: false, reason: 'bad_credentials' });
    expect(await auth.authenticate(connectAs('y'.repeat(MAX_USERNAME_LENGTH + 1), 'some-password'))).toEqual({ ok: false, reason: 'bad_credentials' });
    expect(auth.stats().databaseReads).toBe(reads);
    expect(auth.stats().verifies).toBe(2);
    // The longest allowed username is still looked up.
    expect(await auth.authenticate(connectAs('z'.repeat(MAX_USERNAME_LENGTH), 'some-password'))).toEqual({ ok: false, reason: 'bad_credentials' });
    expect(auth.stats().databaseReads).toBe(reads + 1);
  });

  it('remembers a bounded number of unknown usernames, forgetting the oldest', async () => {
    await settled();
    const auth = createAuthenticator(database.db, { changes, unknownCacheSize: 2, failuresBeforeBackoff: 100, addressFailuresBeforeBackoff: 100 });
    for (const name of ['unknown-a', 'unknown-b', 'unknown-c']) await auth.authenticate(connectAs(name, 'some-password'));
    const reads = auth.stats().databaseReads;
    await auth.authenticate(connectAs('unknown-c', 'some-password'));
    await auth.authenticate(connectAs('unknown-b', 'some-password'));
    expect(auth.stats().databaseReads).toBe(reads);
    await auth.authenticate(connectAs('unknown-a', 'some-password'));
    expect(auth.stats().databaseReads).toBe(reads + 1);
  });

  it('reads the rows of a cold storm of distinct devices in a few queries, not one each', async () => {
    const devices = Array.from({ length: 120 }, (_, i) => ({ username: `cold-${i}`, password: generatePassword() }));
    for (const device of devices) {
      await createClient(database.db, { name: device.username, ...device, password_generated: generatedPasswordToken(device.password) });
    }
    await settled();
    const auth = createAuthenticator(database.db, { changes });
    const counter = countQueries(database.db);
    const results = await Promise.all([
      ...devices.map((device) => auth.authenticate(connectAs(device.username, device.password, device.username))),
      auth.authenticate(connectAs('cold-nobody', 'not-a-device-password')),
    ]);
    const queries = counter.stop();
    expect(results.slice(0, -1).every((result) => result.ok)).toBe(true);
    expect(results.at(-1)).toEqual({ ok: false, reason: 'bad_credentials' });
    // The rows in one or two reads, the rule model in one.
    expect(queries).toBeLessThanOrEqual(4);
  });

  it('remembers an unknown username without reading again, until a client takes it', async () => {
    await settled();
    const auth = createAuthenticator(database.db, { changes });
    expect(await auth.authenticate(connectAs('not-yet', 'not-yet-password'))).toEqual({ ok: false, reason: 'bad_credentials' });
    const reads = auth.stats().databaseReads;
    expect(await auth.authenticate(connectAs('not-yet', 'not-yet-password'))).toEqual({ ok: false, reason: 'bad_credentials' });
    expect(auth.stats().databaseReads).toBe(reads);
    const heard = nextChange();
    await createClient(database.db, { name: 'Now', username: 'not-yet', password: 'not-yet-password' });
    await heard;
    expect((await auth.authenticate(connectAs('not-yet', 'not-yet-password'))).ok).toBe(true);
  });
});

describe.runIf(drivers.includes('postgres'))('what CONNECT needs, when the change feed breaks', () => {
  let database: OpenDatabase;
  let changes: AccessChanges | undefined;
  beforeAll(async () => {
    database = await createTestDatabase('postgres');
  });
  afterEach(async () => {
    await changes?.close();
  });
  afterAll(async () => {
    await database?.close();
  });

  it('reads the database for every CONNECT while it cannot hear changes, and keeps nothing stale once it hears again', async () => {
    const client = await createClient(database.db, { name: 'Careful', username: 'careful', password: 'careful-password-1' });
    const logs: string[] = [];
    changes = await listenForAccessChanges(database, (line) => logs.push(line));
    const auth = createAuthenticator(database.db, { changes });
    expect((await auth.authenticate(connectAs('careful', 'careful-password-1'))).ok).toBe(true);

    // Cut the listening connection from the server side, as a network break would.
    await database.db.execute(sql`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and query ilike 'listen%' and pid <> pg_backend_pid()`);
    await expect.poll(() => changes!.live(), { timeout: 5000 }).toBe(false);
    // Changed while nothing is heard: the cache must not answer.
    await updateClient(database.db, client.id, { name: 'Careful', username: 'careful', password: 'careful-password-2' });
    const reads = auth.stats().databaseReads;
    expect(await auth.authenticate(connectAs('careful', 'careful-password-1'))).toEqual({ ok: false, reason: 'bad_credentials' });
    expect(auth.stats().databaseReads).toBeGreaterThan(reads);

    await expect.poll(() => changes!.live(), { timeout: 10_000 }).toBe(true);
    expect(logs.join('\n')).toContain('Hearing console changes again');
    expect(await auth.authenticate(connectAs('careful', 'careful-password-1'))).toEqual({ ok: false, reason: 'bad_credentials' });
    expect((await auth.authenticate(connectAs('careful', 'careful-password-2'))).ok).toBe(true);
  });

  it('stops trusting what it keeps when its listening connection goes silent without closing, and listens anew', async () => {
    const created = await createPostgresTestDatabase();
    const relay = await startRelay(new URL(created.url));
    const direct = await openDatabase({ kind: 'postgres', url: created.url, maxConnections: 2 });
    const relayed = await openDatabase({ kind: 'postgres', url: relay.url, maxConnections: 2 });
    let silent: AccessChanges | undefined;
    try {
      const client = await createClient(direct.db, { name: 'Silenced', username: 'silenced', password: 'silenced-password-1' });
      const logs: string[] = [];
      silent = await listenForAccessChanges(relayed, (line) => logs.push(line), { selfCheckMs: 200 });
      // On a busy machine the first check may miss its 200 ms and be retried.
      await expect.poll(() => silent!.live(), { timeout: 10_000 }).toBe(true);
      const auth = createAuthenticator(direct.db, { changes: silent });
      expect((await auth.authenticate(connectAs('silenced', 'silenced-password-1'))).ok).toBe(true);

      // The LISTEN connection stays open but carries nothing: no close is ever seen.
      expect(relay.silenceListeners()).toBe(1);
      await expect.poll(() => silent!.live(), { timeout: 10_000, interval: 20 }).toBe(false);
      expect(logs.join('\n')).toContain('did not hear a check');
      // Changed while the old connection hears nothing.
      await updateClient(direct.db, client.id, { name: 'Silenced', username: 'silenced', password: 'silenced-password-2' });
      await expect.poll(() => silent!.live(), { timeout: 10_000 }).toBe(true);
      expect(logs.join('\n')).toContain('Hearing console changes again');
      expect(await auth.authenticate(connectAs('silenced', 'silenced-password-1'))).toEqual({ ok: false, reason: 'bad_credentials' });
      expect((await auth.authenticate(connectAs('silenced', 'silenced-password-2'))).ok).toBe(true);
    } finally {
      await silent?.close();
      await relayed.close();
      await direct.close();
      await relay.close();
      await created.drop();
    }
  });
});
