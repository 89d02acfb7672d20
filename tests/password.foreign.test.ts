import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { hash as argon2Hash } from '@node-rs/argon2';
import bcrypt from 'bcryptjs';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema, type OpenDatabase } from '../src/db';
import { createAuthenticator } from '../src/domain/access/authenticate';
import { createApiToken } from '../src/domain/apiTokens';
import { createClient } from '../src/domain/clients';
import { FOREIGN_HASH_LIMITS, passwordFormatOf, verifyPasswordHash } from '../src/domain/password';
import { createApp } from '../src/web/app';
import { createTestDatabase } from './support/db';

const tcp = (username: string, password: string, remoteAddress = '192.0.2.1') => ({
  username,
  password: Buffer.from(password),
  clientId: `${username}-device`,
  transport: 'tcp' as const,
  remoteAddress,
});

/** A bcrypt string of `cost` that no password matches: made without paying its cost. */
const forgedBcrypt = (cost: number) => `$2b$${String(cost).padStart(2, '0')}$${'a'.repeat(22)}${'b'.repeat(31)}`;
const phcSalt = randomBytes(16).toString('base64').replace(/=+$/, '');
const phcHash = randomBytes(32).toString('base64').replace(/=+$/, '');

describe('imported password hashes are bounded', () => {
  let database: OpenDatabase;
  let app: ReturnType<typeof createApp>;
  let token: string;
  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    app = createApp({ db: database.db, log: () => {} });
    token = (await createApiToken(database.db, { name: 'importer', preset: 'editor' })).secret;
  });
  afterAll(async () => {
    await database?.close();
  });

  async function dryRun(rows: Array<{ username: string; passwordHash: string }>) {
    const ndjson = rows.map((row) => JSON.stringify(row)).join('\n');
    const res = await app.request('/api/v1/import?format=ndjson', { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' }, body: ndjson });
    expect(res.status).toBe(200);
    const report = await res.json();
    return new Map<string, { action: string; message?: string }>(report.rows.map((row: { key: string; action: string; message?: string }) => [row.key, row]));
  }

  it('refuses, row by row, hashes that would cost a CONNECT more than a few Argon2id verifies, and malformed ones', async () => {
    const salt = randomBytes(12).toString('base64');
    const digest = randomBytes(64).toString('base64');
    const rows = await dryRun([
      { username: 'bcrypt-31', passwordHash: forgedBcrypt(31) },
      { username: 'bcrypt-13', passwordHash: forgedBcrypt(FOREIGN_HASH_LIMITS.bcryptCost + 1) },
      { username: 'argon2-4gib', passwordHash: `$argon2id$v=19$m=4194304,t=1,p=1$${phcSalt}$${phcHash}` },
      { username: 'argon2-t1m', passwordHash: `$argon2i$v=19$m=4096,t=1000000,p=1$${phcSalt}$${phcHash}` },
      { username: 'argon2-work', passwordHash: `$argon2id$v=19$m=65536,t=5,p=1$${phcSalt}$${phcHash}` },
      { username: 'argon2-p255', passwordHash: `$argon2id$v=19$m=65536,t=1,p=255$${phcSalt}$${phcHash}` },
      { username: 'argon2-garbage', passwordHash: '$argon2i$garbage' },
      { username: 'pbkdf2-9m', passwordHash: `$7$9999999$${salt}$${digest}` },
      { username: 'emqx-pbkdf2-1m', passwordHash: `$emqx-pbkdf2$sha256$1000000$c2FsdA$${'ab'.repeat(32)}` },
      { username: 'bcrypt-12', passwordHash: forgedBcrypt(FOREIGN_HASH_LIMITS.bcryptCost) },
      { username: 'argon2-php', passwordHash: `$argon2id$v=19$m=65536,t=4,p=1$${phcSalt}$${phcHash}` },
      { username: 'pbkdf2-600k', passwordHash: `$7$600000$${salt}$${digest}` },
    ]);
    for (const refused of ['bcrypt-31', 'bcrypt-13', 'argon2-4gib', 'argon2-t1m', 'argon2-work', 'argon2-p255', 'argon2-garbage', 'pbkdf2-9m', 'emqx-pbkdf2-1m']) {
      expect(rows.get(refused), refused).toMatchObject({ action: 'error' });
    }
    expect(rows.get('bcrypt-31')!.message).toContain('cost 31');
    expect(rows.get('argon2-4gib')!.message).toContain('m=4194304');
    for (const accepted of ['bcrypt-12', 'argon2-php', 'pbkdf2-600k']) expect(rows.get(accepted), accepted).toMatchObject({ action: 'create' });
  });

  it('refuses an EMQX export whose iterations are beyond the bound', async () => {
    const csv = `user_id,password_hash,salt\nslow,${'ab'.repeat(32)},salt\n`;
    const res = await app.request(`/api/v1/import?format=emqx&emqxAlgorithm=pbkdf2&emqxIterations=${FOREIGN_HASH_LIMITS.pbkdf2Iterations + 1}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'text/csv' },
      body: csv,
    });
    const report = await res.json();
    expect(report.counts.error).toBe(1);
    expect(report.rows[0].message).toContain('iterations');
  });

  it('never verifies a stored hash beyond the bounds, even the right password (a row written some other way)', async () => {
    // Cheap to make, but asking for 16 lanes: beyond the bound, so refused whatever the password.
    const wide = await argon2Hash('wide-secret', { algorithm: 2, memoryCost: 256, timeCost: 1, parallelism: 16 });
    expect(passwordFormatOf(wide)).toBe('argon2id-foreign');
    expect(await verifyPasswordHash(wide, 'wide-secret')).toBe(false);
    const client = await createClient(database.db, { name: 'Wide', username: 'wide', password: 'placeholder-1' });
    await database.db.update(schema.clients).set({ passwordHash: wide }).where(eq(schema.clients.id, client.id));
    const auth = createAuthenticator(database.db);
    expect(await auth.authenticate(tcp('wide', 'wide-secret'))).toEqual({ ok: false, reason: 'bad_credentials' });
    // bcrypt 31 would take hours in one verify: answered at once instead.
    expect(await verifyPasswordHash(forgedBcrypt(31), 'anything')).toBe(false);
    // Nor does an Argon2id string with other parameters reach the library as if it were ours.
    const own = await argon2Hash('own-secret', { algorithm: 2, memoryCost: 19456, timeCost: 2, parallelism: 1 });
    expect(await verifyPasswordHash(own, 'own-secret')).toBe(true);
    expect(await verifyPasswordHash(own.replace('$argon2id$', '$argon2d$'), 'own-secret')).toBe(false);
  });

  it('verifies imported hashes within the bounds, then replaces them', async () => {
    const rows = [
      ['bcrypt-ok', bcrypt.hashSync('bcrypt-secret', 10), 'bcrypt-secret'],
      ['argon2-ok', await argon2Hash('argon2-secret', { algorithm: 2, memoryCost: 65536, timeCost: 3, parallelism: 4 }), 'argon2-secret'],
      ['pbkdf2-ok', (() => {
        const salt = randomBytes(12);
        return `$7$1000$${salt.toString('base64')}$${pbkdf2Sync('pbkdf2-secret', salt, 1000, 64, 'sha512').toString('base64')}`;
      })(), 'pbkdf2-secret'],
    ] as const;
    const auth = createAuthenticator(database.db);
    for (const [username, passwordHash, password] of rows) {
      const client = await createClient(database.db, { name: username, username, password: 'placeholder-1' });
      await database.db.update(schema.clients).set({ passwordHash }).where(eq(schema.clients.id, client.id));
      expect((await auth.authenticate(tcp(username, password))).ok, username).toBe(true);
      const [row] = await database.db.select().from(schema.clients).where(eq(schema.clients.id, client.id));
      expect(passwordFormatOf(row!.passwordHash), username).toBe('argon2id');
    }
  });

  it('puts a wrong password for an imported client through the same bounded verify slots as Argon2id', async () => {
    const client = await createClient(database.db, { name: 'Flooded', username: 'flooded', password: 'placeholder-1' });
    await database.db.update(schema.clients).set({ passwordHash: bcrypt.hashSync('flooded-secret', 10) }).where(eq(schema.clients.id, client.id));
    const auth = createAuthenticator(database.db, { maxConcurrentVerifies: 1, maxQueuedVerifies: 2, failuresBeforeBackoff: 1000, addressFailuresBeforeBackoff: 1000 });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => auth.authenticate(tcp('flooded', `wrong-${i}`, `192.0.2.${i + 10}`))));
    // One verifying, two waiting: the other seven are turned away at once instead of queueing bcrypt work.
    expect(results.filter((r) => !r.ok && r.reason === 'unavailable')).toHaveLength(7);
    expect(results.filter((r) => !r.ok && r.reason === 'bad_credentials')).toHaveLength(3);
  });

  it('verifies bcrypt off the event loop, as Argon2id is', async () => {
    const hash = bcrypt.hashSync('bcrypt-secret', 10);
    const before = performance.eventLoopUtilization();
    const results = await Promise.all([1, 2, 3, 4].map((i) => verifyPasswordHash(hash, `wrong-${i}`)));
    const busy = performance.eventLoopUtilization(before);
    expect(results).toEqual([false, false, false, false]);
    // The main thread waited while the thread pool worked (computed on it, it is busy all along).
    expect(busy.utilization).toBeLessThan(0.5);
  });
});
