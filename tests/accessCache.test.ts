import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { listenForAccessChanges, type AccessChanges } from '../src/db/changes';
import { createAuthenticator, type AuthResult } from '../src/domain/authenticate';
import { createClient, deleteClient, updateClient } from '../src/domain/clients';
import { getGroup, updateGroup } from '../src/domain/groups';
import { grantGroup } from './support/acl';
import { countQueries, createTestDatabase, drivers } from './support/db';
import { generatedPasswordToken, generatePassword } from '../src/domain/password';

const connectAs = (username: string, password: string, clientId = 'cache-client') => ({
  username,
  password: Buffer.from(password),
  clientId,
  transport: 'tcp' as const,
});

const groupNames = (result: AuthResult) => (result.ok ? result.access.groups.map((group) => group.name) : null);

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
    await database.db.execute(sql`select pg_terminate_backend(pid) from pg_stat_activity where query ilike 'listen%' and pid <> pg_backend_pid()`);
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
});
