import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';

// Counts the Argon2id verifies actually run (the library's, not the gate's
// counter), to see which paths pay for one.
const argon2Verifies = vi.hoisted(() => ({ count: 0 }));
vi.mock('@node-rs/argon2', async (importOriginal) => {
  const original = await importOriginal<typeof import('@node-rs/argon2')>();
  return {
    ...original,
    verify: (...args: Parameters<typeof original.verify>) => {
      argon2Verifies.count++;
      return original.verify(...args);
    },
  };
});

import { schema, type OpenDatabase } from '../src/db';
import { createAuthenticator } from '../src/domain/access/authenticate';
import { createPasswordGate } from '../src/domain/passwordGate';
import { createClient, updateClient } from '../src/domain/clients';
import {
  GENERATED_ALPHABET,
  GENERATED_LENGTH,
  generatePassword,
  generatedPasswordToken,
  hashGeneratedPassword,
  hashPassword,
  verifyPasswordHash,
} from '../src/domain/password';
import { createApp } from '../src/web/app';
import type { Gatehouse } from '../src/server';
import { signIn } from './support/admin';
import { createTestDatabase } from './support/db';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, endClient, tryConnect } from './support/mqtt';

const FAST = /^\$gh-hmac-sha256\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/;
const ARGON2ID = /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/;

async function storedHash(database: OpenDatabase, username: string): Promise<string> {
  const [row] = await database.db.select({ hash: schema.clients.passwordHash }).from(schema.clients).where(eq(schema.clients.username, username));
  return row!.hash;
}

const tcp = (username: string, password: string) => ({ username, password: Buffer.from(password), clientId: `c-${username}`, transport: 'tcp' as const });

describe('generated passwords', () => {
  let database: OpenDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('pglite');
  });
  afterAll(async () => {
    await database?.close();
  });
  beforeEach(() => {
    argon2Verifies.count = 0;
  });

  it('are 24 characters of the generator alphabet, each different', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const password = generatePassword();
      expect(password).toHaveLength(GENERATED_LENGTH);
      for (const ch of password) expect(GENERATED_ALPHABET).toContain(ch);
      seen.add(password);
    }
    expect(seen.size).toBe(200);
    // At least 128 bits: the reason a slow hash adds nothing for them.
    expect(GENERATED_LENGTH * Math.log2(GENERATED_ALPHABET.length)).toBeGreaterThanOrEqual(128);
  });

  it('are stored in the fast format when the server generated them, and a typed password with Argon2id even if long', async () => {
    const generated = generatePassword();
    await createClient(database.db, { name: 'Gen', username: 'gen-1', password: generated, password_generated: generatedPasswordToken(generated) });
    expect(await storedHash(database, 'gen-1')).toMatch(FAST);

    // Typed: no token, a token for another password, a made-up token.
    const typed = 'a typed passphrase that is long enough to look strong, 64 characters';
    await createClient(database.db, { name: 'Typed', username: 'typed-1', password: typed });
    await createClient(database.db, { name: 'Typed 2', username: 'typed-2', password: typed, password_generated: generatedPasswordToken(generatePassword()) });
    await createClient(database.db, { name: 'Typed 3', username: 'typed-3', password: generated, password_generated: 'x'.repeat(43) });
    for (const username of ['typed-1', 'typed-2', 'typed-3']) expect(await storedHash(database, username)).toMatch(ARGON2ID);
  });

  it('are fast on update too, and a typed new password goes back to Argon2id', async () => {
    const client = await createClient(database.db, { name: 'Upd', username: 'upd-1', password: 'typed-password-1' });
    expect(await storedHash(database, 'upd-1')).toMatch(ARGON2ID);
    const generated = generatePassword();
    const updated = await updateClient(database.db, client.id, { name: 'Upd', username: 'upd-1', password: generated, password_generated: generatedPasswordToken(generated) });
    expect(await storedHash(database, 'upd-1')).toMatch(FAST);
    await updateClient(database.db, client.id, { name: 'Upd', username: 'upd-1', password: 'typed-password-2', version: String(updated!.version) });
    expect(await storedHash(database, 'upd-1')).toMatch(ARGON2ID);
  });

  it('never verifies a wrong secret against a fast row', async () => {
    const secret = generatePassword();
    const hash = hashGeneratedPassword(secret);
    expect(await verifyPasswordHash(hash, secret)).toBe(true);
    const wrong = [
      '',
      secret.slice(0, -1),
      `${secret}x`,
      secret.toLowerCase() === secret ? secret.toUpperCase() : secret.toLowerCase(),
      generatePassword(),
      hash,
    ];
    for (const guess of wrong) expect(await verifyPasswordHash(hash, guess)).toBe(false);
    // Another row's salt and digest do not carry over.
    expect(await verifyPasswordHash(hashGeneratedPassword(generatePassword()), secret)).toBe(false);
    // A damaged row verifies nothing.
    for (const broken of [hash.slice(0, -2), `${hash}$`, `$gh-hmac-sha256$$${hash.slice('$gh-hmac-sha256$'.length)}`, hash.replace('$gh-hmac-sha256$', () => '$gh-hmac-sha512$')]) {
      expect(await verifyPasswordHash(broken, secret)).toBe(false);
    }
  });

  it('verify at CONNECT without Argon2id; every failure still costs one Argon2id verify, as an unknown username does', async () => {
    const secret = generatePassword();
    await createClient(database.db, { name: 'Fast', username: 'fast-1', password: secret, password_generated: generatedPasswordToken(secret) });
    await createClient(database.db, { name: 'Slow', username: 'slow-1', password: 'slow-password-1' });
    const auth = createAuthenticator(database.db);
    // Warm the decoy (hashing it once is not a verify) so every count below is the path's own.
    await auth.authenticate(tcp('nobody-warm', 'whatever-it-is'));

    argon2Verifies.count = 0;
    expect((await auth.authenticate(tcp('fast-1', secret))).ok).toBe(true);
    expect(argon2Verifies.count).toBe(0);

    const costOf = async (username: string, password: string) => {
      const before = argon2Verifies.count;
      expect(await auth.authenticate(tcp(username, password))).toEqual({ ok: false, reason: 'bad_credentials' });
      return argon2Verifies.count - before;
    };
    expect(await costOf('nobody-1', 'some-guess-1')).toBe(1);
    expect(await costOf('slow-1', 'some-guess-2')).toBe(1);
    expect(await costOf('fast-1', generatePassword())).toBe(1);
    expect(await costOf('fast-1', `${secret}!`)).toBe(1);
  });

  it('is let in while every Argon2id slot is taken; a wrong one still waits for a slot like any failure', async () => {
    const gate = createPasswordGate({ usernameThreshold: 100, addressThreshold: 100, usernameMaxBackoffMs: 1000, addressMaxBackoffMs: 1000, maxConcurrent: 1, maxWaiting: 0 });
    const typedHash = await hashPassword('typed-password-1');
    const secret = generatePassword();
    const fastHash = hashGeneratedPassword(secret);
    const typed = gate.verify('typed', '192.0.2.1', typedHash, 'typed-password-1'); // takes the only slot
    expect(await gate.verify('generated', '192.0.2.2', fastHash, secret)).toEqual({ ok: true });
    expect(await gate.verify('generated', '192.0.2.3', fastHash, `${secret}!`)).toMatchObject({ ok: false, reason: 'throttled' });
    expect(await typed).toEqual({ ok: true });
  });

  it('an Argon2id row made before keeps working', async () => {
    await database.db.insert(schema.clients).values({ name: 'Old', username: 'old-1', passwordHash: await hashPassword('old-password-1') });
    const auth = createAuthenticator(database.db);
    expect((await auth.authenticate(tcp('old-1', 'old-password-1'))).ok).toBe(true);
    expect((await auth.authenticate(tcp('old-1', 'old-password-2'))).ok).toBe(false);
  });
});

describe('the console generates passwords', () => {
  let database: OpenDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('pglite');
  });
  afterAll(async () => {
    await database?.close();
  });

  it('hands out a password with its token, signed in only, not cached; saving it stores the fast format', async () => {
    const unsigned = createApp({ db: database.db, log: () => {} });
    const anonymous = await unsigned.request('/clients/generated-password');
    expect(anonymous.status).not.toBe(200);

    const app = await signIn(unsigned, database.db);
    const res = await app.request('/clients/generated-password');
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as { password: string; token: string };
    expect(body.password).toHaveLength(GENERATED_LENGTH);

    const form = new URLSearchParams({ name: 'Console made', username: 'console-1', password: body.password, password_generated: body.token });
    const created = await app.request('/clients', { method: 'POST', body: form, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(created.status).toBeLessThan(400);
    expect(await storedHash(database, 'console-1')).toMatch(FAST);

    // The same token with a password typed over the generated one: Argon2id.
    const typed = new URLSearchParams({ name: 'Console typed', username: 'console-2', password: `${body.password}-edited`, password_generated: body.token });
    expect((await app.request('/clients', { method: 'POST', body: typed, headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status).toBeLessThan(400);
    expect(await storedHash(database, 'console-2')).toMatch(ARGON2ID);
  });
});

describe('a device with a generated password', () => {
  let gatehouse: Gatehouse;
  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
  });
  afterAll(async () => {
    await gatehouse?.close();
  });

  it('connects over MQTT with it, and not with another', async () => {
    const secret = generatePassword();
    await createClient(gatehouse.database.db, { name: 'Dev', username: 'dev-1', password: secret, password_generated: generatedPasswordToken(secret) });
    const url = brokerUrl(gatehouse, 'tcp');
    const right = await tryConnect(url, { username: 'dev-1', password: secret, clientId: 'dev-1', reconnectPeriod: 0 });
    expect(right.ok).toBe(true);
    if (right.ok) await endClient(right.client);
    const wrong = await tryConnect(url, { username: 'dev-1', password: generatePassword(), clientId: 'dev-1b', reconnectPeriod: 0 });
    expect(wrong).toMatchObject({ ok: false, code: 4 });
  });
});
