import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../src/config';
import { type OpenDatabase, schema } from '../src/db';
import {
  countAdministrators,
  createAdministrator,
  createFirstAdministrator,
  createSignInGuard,
  deleteAdministrator,
  getAdministrator,
  LastAdministratorError,
  listAdministrators,
  setAdministratorPassword,
} from '../src/domain/administrators';
import { ConflictError, ValidationError } from '../src/domain/errors';
import {
  countSessionsOfAdministrator,
  createSession,
  hashSessionToken,
  deleteSession,
  SESSION_ABSOLUTE_MS,
  SESSION_IDLE_MS,
  SESSION_RECHECK_MS,
  validateSession,
} from '../src/domain/sessions';
import { createSetupToken, prepareFirstAdministrator } from '../src/domain/setup';
import { createTestDatabase, drivers } from './support/db';

const HOUR = 60 * 60_000;

describe.each(drivers)('administrators and sessions on %s', (driver) => {
  let database: OpenDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
  });
  afterAll(async () => {
    await database?.close();
  });

  async function clearAdministrators() {
    await database.db.delete(schema.administrators);
  }

  describe('first run', () => {
    it('creates the administrator from ADMIN_USERNAME and ADMIN_PASSWORD when none exists, once', async () => {
      await clearAdministrators();
      const first = await prepareFirstAdministrator(database.db, { ADMIN_USERNAME: 'root-admin', ADMIN_PASSWORD: 'root-admin-password' });
      expect(first).toMatchObject({ kind: 'created-from-environment', administrator: { username: 'root-admin' } });
      const again = await prepareFirstAdministrator(database.db, { ADMIN_USERNAME: 'other-admin', ADMIN_PASSWORD: 'other-admin-password' });
      expect(again).toEqual({ kind: 'ready' });
      expect((await listAdministrators(database.db)).map((a) => a.username)).toEqual(['root-admin']);
    });

    it('stops start with a message naming the variable when a value is bad', async () => {
      await clearAdministrators();
      await expect(prepareFirstAdministrator(database.db, { ADMIN_USERNAME: 'root', ADMIN_PASSWORD: 'short' })).rejects.toThrow(
        /ADMIN_PASSWORD: Use at least 12 characters/,
      );
      await expect(prepareFirstAdministrator(database.db, { ADMIN_USERNAME: 'has space', ADMIN_PASSWORD: 'long-enough-password' })).rejects.toThrow(
        /ADMIN_USERNAME: Spaces/,
      );
      await expect(prepareFirstAdministrator(database.db, { ADMIN_USERNAME: 'root' })).rejects.toBeInstanceOf(ConfigError);
      await expect(prepareFirstAdministrator(database.db, { ADMIN_PASSWORD: 'long-enough-password' })).rejects.toThrow(/ADMIN_USERNAME/);
      expect(await countAdministrators(database.db)).toBe(0);
    });

    it('makes a random one-time setup token when nothing is configured', async () => {
      await clearAdministrators();
      const a = await prepareFirstAdministrator(database.db, {});
      const b = await prepareFirstAdministrator(database.db, {});
      if (a.kind !== 'setup-link' || b.kind !== 'setup-link') throw new Error('expected setup links');
      expect(a.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(a.token).not.toBe(b.token);
      expect(a.setup.matches(a.token)).toBe(true);
      expect(a.setup.matches(b.token)).toBe(false);
      a.setup.consume();
      expect(a.setup.matches(a.token)).toBe(false);
    });

    it('refuses empty, missing and overlong candidates for a setup token', () => {
      const setup = createSetupToken('the-token');
      for (const candidate of [undefined, null, '', 'x'.repeat(500), 42]) expect(setup.matches(candidate)).toBe(false);
    });

    it('lets only one of two concurrent setups create the first administrator', async () => {
      await clearAdministrators();
      const results = await Promise.all([
        createFirstAdministrator(database.db, { username: 'racer-a', password: 'racer-a-password' }),
        createFirstAdministrator(database.db, { username: 'racer-b', password: 'racer-b-password' }),
      ]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await countAdministrators(database.db)).toBe(1);
    });
  });

  describe('administrators', () => {
    it('validates input with a message per field, and refuses a taken username', async () => {
      await clearAdministrators();
      const error = await createAdministrator(database.db, { username: 'a b', password: 'short', confirm_password: 'other' }).catch((e) => e);
      expect(error).toBeInstanceOf(ValidationError);
      expect(Object.keys((error as ValidationError).fieldErrors).sort()).toEqual(['confirm_password', 'password', 'username']);
      await createAdministrator(database.db, { username: 'taken', password: 'taken-password' });
      await expect(createAdministrator(database.db, { username: 'taken', password: 'taken-password' })).rejects.toBeInstanceOf(ConflictError);
    });

    it('never removes the last administrator', async () => {
      await clearAdministrators();
      const only = await createAdministrator(database.db, { username: 'only-one', password: 'only-one-password' });
      await expect(deleteAdministrator(database.db, only.id)).rejects.toBeInstanceOf(LastAdministratorError);
      expect(await getAdministrator(database.db, only.id)).not.toBeNull();
      expect(await deleteAdministrator(database.db, 999_999)).toBeNull();
    });

    it('keeps one administrator when two remove each other at the same time', async () => {
      await clearAdministrators();
      const a = await createAdministrator(database.db, { username: 'mutual-a', password: 'mutual-a-password' });
      const b = await createAdministrator(database.db, { username: 'mutual-b', password: 'mutual-b-password' });
      const outcomes = await Promise.allSettled([deleteAdministrator(database.db, a.id), deleteAdministrator(database.db, b.id)]);
      expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
      expect(outcomes.filter((o) => o.status === 'rejected' && o.reason instanceof LastAdministratorError)).toHaveLength(1);
      expect(await countAdministrators(database.db)).toBe(1);
    });

    it('ends every session of an administrator when they are removed or their password changes', async () => {
      await clearAdministrators();
      const keeper = await createAdministrator(database.db, { username: 'keeper', password: 'keeper-password' });
      const leaver = await createAdministrator(database.db, { username: 'leaver', password: 'leaver-password' });
      const k1 = await createSession(database.db, keeper.id);
      await createSession(database.db, keeper.id);
      const l1 = await createSession(database.db, leaver.id);
      expect(await countSessionsOfAdministrator(database.db, keeper.id)).toBe(2);

      await setAdministratorPassword(database.db, keeper.id, 'keeper-new-password');
      expect(await countSessionsOfAdministrator(database.db, keeper.id)).toBe(0);
      expect(await validateSession(database.db, k1.token)).toBeNull();

      expect(await validateSession(database.db, l1.token)).not.toBeNull();
      await deleteAdministrator(database.db, leaver.id);
      expect(await validateSession(database.db, l1.token)).toBeNull();
    });
  });

  describe('sessions', () => {
    it('stores only the SHA-256 of a 256-bit token', async () => {
      await clearAdministrators();
      const admin = await createAdministrator(database.db, { username: 'hashes', password: 'hashes-password' });
      const session = await createSession(database.db, admin.id);
      expect(Buffer.from(session.token, 'base64url')).toHaveLength(32);
      const rows = await database.db.select().from(schema.adminSessions);
      expect(rows.map((r) => r.tokenHash)).toEqual([hashSessionToken(session.token)]);
      expect(JSON.stringify(rows)).not.toContain(session.token);
      expect(await validateSession(database.db, 'not-a-token')).toBeNull();
      expect(await validateSession(database.db, hashSessionToken(session.token))).toBeNull();
    });

    it('slides: renewed once more than half of the idle window is used, ended after a full idle window', async () => {
      await clearAdministrators();
      const admin = await createAdministrator(database.db, { username: 'slider', password: 'slider-password' });
      const t0 = Date.now();
      const session = await createSession(database.db, admin.id, t0);
      expect(session.expiresAt.getTime()).toBe(t0 + SESSION_IDLE_MS);

      const early = await validateSession(database.db, session.token, t0 + HOUR);
      expect(early).toMatchObject({ renewed: false, administrator: { username: 'slider' } });
      expect(early!.expiresAt.getTime()).toBe(t0 + SESSION_IDLE_MS);

      const late = await validateSession(database.db, session.token, t0 + 7 * HOUR);
      expect(late).toMatchObject({ renewed: true });
      expect(late!.expiresAt.getTime()).toBe(t0 + 7 * HOUR + SESSION_IDLE_MS);

      // Idle past the renewed expiry: gone, and removed from the table.
      expect(await validateSession(database.db, session.token, t0 + 7 * HOUR + SESSION_IDLE_MS + 1)).toBeNull();
      expect(await countSessionsOfAdministrator(database.db, admin.id)).toBe(0);
    });

    it('ends a busy session at the absolute limit all the same', async () => {
      await clearAdministrators();
      const admin = await createAdministrator(database.db, { username: 'busy', password: 'busy-password' });
      const t0 = Date.now();
      const session = await createSession(database.db, admin.id, t0);
      let at = t0;
      while (at < t0 + SESSION_ABSOLUTE_MS - 8 * HOUR) {
        at += 7 * HOUR;
        expect(await validateSession(database.db, session.token, at), `at +${(at - t0) / HOUR} h`).not.toBeNull();
      }
      expect(await validateSession(database.db, session.token, t0 + SESSION_ABSOLUTE_MS + 1)).toBeNull();
    });

    it('trusts a session it has read for SESSION_RECHECK_MS: an end on another node applies within that, one on this node at once', async () => {
      await clearAdministrators();
      const admin = await createAdministrator(database.db, { username: 'kept', password: 'kept-password' });
      const t0 = Date.now();
      const session = await createSession(database.db, admin.id, t0);
      expect(await validateSession(database.db, session.token, t0)).toMatchObject({ administrator: { username: 'kept' } });
      // Another node signs it out: its row goes, and nothing here is told.
      await database.db.delete(schema.adminSessions).where(eq(schema.adminSessions.tokenHash, session.tokenHash));
      expect(await validateSession(database.db, session.token, t0 + 10), 'kept without a read').toMatchObject({ administrator: { username: 'kept' } });
      expect(await validateSession(database.db, session.token, t0 + SESSION_RECHECK_MS), 'read again').toBeNull();

      const other = await createSession(database.db, admin.id, t0);
      expect(await validateSession(database.db, other.token, t0)).not.toBeNull();
      await deleteSession(database.db, other.tokenHash);
      expect(await validateSession(database.db, other.token, t0), 'signed out on this node').toBeNull();

      const third = await createSession(database.db, admin.id, t0);
      expect(await validateSession(database.db, third.token, t0)).not.toBeNull();
      await setAdministratorPassword(database.db, admin.id, 'kept-new-password');
      expect(await validateSession(database.db, third.token, t0), 'password changed on this node').toBeNull();
    });
  });

  describe('sign-in', () => {
    it('answers a wrong password and an unknown username alike, with an Argon2id verify for both', async () => {
      await clearAdministrators();
      await createAdministrator(database.db, { username: 'signer', password: 'signer-password' });
      const guard = createSignInGuard(database.db);
      expect(await guard.signIn({ username: 'signer', password: 'wrong-password' })).toEqual({ ok: false, reason: 'bad_credentials', knownUsername: true });
      expect(await guard.signIn({ username: 'nobody', password: 'wrong-password' })).toEqual({ ok: false, reason: 'bad_credentials', knownUsername: false });
      expect(guard.stats().verifies).toBe(2);
      expect(await guard.signIn({ username: 'signer', password: 'signer-password' })).toMatchObject({ ok: true, administrator: { username: 'signer' } });
      await expect(guard.signIn({ username: '', password: '' })).rejects.toBeInstanceOf(ValidationError);
    });

    it('does not let parallel guesses slip past the lock-out', async () => {
      await clearAdministrators();
      await createAdministrator(database.db, { username: 'parallel', password: 'parallel-password' });
      const guard = createSignInGuard(database.db, { failuresBeforeBackoff: 3 });
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) => guard.signIn({ username: 'parallel', password: `guess-${i}-password`, address: `10.1.0.${i}` })),
      );
      expect(results.filter((r) => !r.ok && r.reason === 'throttled').length).toBeGreaterThan(20);
      // At most the threshold plus the attempts already verifying when it was reached.
      expect(guard.stats().verifies).toBeLessThanOrEqual(3 + 2);
    });

    it('locks a username after repeated failures, known or not, then lets it in after the wait; success resets it', async () => {
      await clearAdministrators();
      await createAdministrator(database.db, { username: 'guessed', password: 'guessed-password' });
      let now = Date.now();
      const guard = createSignInGuard(database.db, { failuresBeforeBackoff: 3, now: () => now });
      for (const username of ['guessed', 'ghost']) {
        for (let i = 0; i < 3; i++) expect((await guard.signIn({ username, password: `nope-${i}` })).ok).toBe(false);
        const locked = await guard.signIn({ username, password: 'guessed-password' });
        expect(locked).toMatchObject({ ok: false, reason: 'throttled' });
        expect((locked as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0);
      }
      const verifies = guard.stats().verifies;
      now += 1001;
      expect(await guard.signIn({ username: 'guessed', password: 'guessed-password' })).toMatchObject({ ok: true });
      expect(guard.stats().verifies).toBe(verifies + 1);
      // Reset: two more failures do not lock it again.
      for (let i = 0; i < 2; i++) await guard.signIn({ username: 'guessed', password: `again-${i}` });
      expect(await guard.signIn({ username: 'guessed', password: 'guessed-password' })).toMatchObject({ ok: true });
    });

    it('locks an address that tries many usernames', async () => {
      await clearAdministrators();
      await createAdministrator(database.db, { username: 'target', password: 'target-password' });
      const guard = createSignInGuard(database.db, { addressFailuresBeforeBackoff: 3 });
      for (let i = 0; i < 3; i++) await guard.signIn({ username: `user-${i}`, password: 'guess-guess', address: '203.0.113.9' });
      expect(await guard.signIn({ username: 'target', password: 'target-password', address: '203.0.113.9' })).toMatchObject({ reason: 'throttled' });
      expect(await guard.signIn({ username: 'target', password: 'target-password', address: '198.51.100.1' })).toMatchObject({ ok: true });
    });

    it('changes a password only with the current one, and ends every session', async () => {
      await clearAdministrators();
      const admin = await createAdministrator(database.db, { username: 'changer', password: 'changer-password' });
      const session = await createSession(database.db, admin.id);
      const guard = createSignInGuard(database.db);
      const wrong = await guard
        .changePassword(admin, { current_password: 'not-it', new_password: 'changer-new-password', confirm_password: 'changer-new-password' })
        .catch((e) => e);
      expect(wrong).toBeInstanceOf(ValidationError);
      expect((wrong as ValidationError).fieldErrors).toEqual({ current_password: 'This is not your current password.' });
      const mismatch = await guard
        .changePassword(admin, { current_password: 'changer-password', new_password: 'changer-new-password', confirm_password: 'typo' })
        .catch((e) => e);
      expect((mismatch as ValidationError).fieldErrors).toHaveProperty('confirm_password');
      expect(await validateSession(database.db, session.token)).not.toBeNull();

      expect(
        await guard.changePassword(admin, {
          current_password: 'changer-password',
          new_password: 'changer-new-password',
          confirm_password: 'changer-new-password',
        }),
      ).toEqual({ ok: true });
      expect(await validateSession(database.db, session.token)).toBeNull();
      expect(await guard.signIn({ username: 'changer', password: 'changer-password' })).toMatchObject({ ok: false });
      expect(await guard.signIn({ username: 'changer', password: 'changer-new-password' })).toMatchObject({ ok: true });
    });
  });
});
