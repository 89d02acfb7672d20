import bcrypt from 'bcryptjs';
import { eq } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, schema, type OpenDatabase } from '../src/db';
import { createAuthenticator } from '../src/domain/access/authenticate';
import { createClient } from '../src/domain/clients';
import { hashPassword, passwordFormatOf, verifyPasswordHash } from '../src/domain/password';
import { createPostgresTestDatabase, createTestDatabase, drivers } from './support/db';

const fingerprint = 'AB:'.repeat(31) + 'AB';
const now = Date.now();
const certificate = { fingerprint256: fingerprint, validFrom: new Date(now - 86_400_000), validTo: new Date(now + 86_400_000) };

async function storedHash(db: OpenDatabase['db'], username: string): Promise<string> {
  const [row] = await db.select({ passwordHash: schema.clients.passwordHash }).from(schema.clients).where(eq(schema.clients.username, username));
  return row!.passwordHash;
}

describe.each(drivers)('an imported hash replaced at the first CONNECT on %s', (driver) => {
  let database: OpenDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('is replaced after a Certificate + Password CONNECT too', async () => {
    const client = await createClient(database.db, { name: 'Gate', username: 'gate', authType: 'certificate_password', fingerprint, password: 'placeholder-1' });
    await database.db.update(schema.clients).set({ passwordHash: bcrypt.hashSync('gate-secret', 4) }).where(eq(schema.clients.id, client.id));
    const auth = createAuthenticator(database.db);
    const result = await auth.authenticate({ username: 'gate', password: Buffer.from('gate-secret'), clientId: 'gate-1', transport: 'tcp', clientCertificate: certificate });
    expect(result.ok).toBe(true);
    const hash = await storedHash(database.db, 'gate');
    expect(passwordFormatOf(hash)).toBe('argon2id');
    expect(await verifyPasswordHash(hash, 'gate-secret')).toBe(true);
  });
});

describe.runIf(drivers.includes('postgres'))('the replacement racing an operator’s change', () => {
  let created: Awaited<ReturnType<typeof createPostgresTestDatabase>>;
  let database: OpenDatabase;
  let operator: postgres.Sql;
  beforeAll(async () => {
    created = await createPostgresTestDatabase();
    database = await openDatabase({ kind: 'postgres', url: created.url, maxConnections: 5 });
    operator = postgres(created.url, { max: 1, onnotice: () => {} });
  });
  afterAll(async () => {
    await operator?.end();
    await database?.close();
    await created?.drop();
  });

  it('never overwrites a password changed between the verify and the replacement', async () => {
    const client = await createClient(database.db, { name: 'Racer', username: 'racer', password: 'placeholder-1' });
    await database.db.update(schema.clients).set({ passwordHash: bcrypt.hashSync('old-secret', 4) }).where(eq(schema.clients.id, client.id));
    const newHash = await hashPassword('new-secret');
    let connecting: Promise<{ ok: boolean }> | undefined;
    // The operator's change holds the row: the device's verify (against the old
    // hash) passes, and its replacement waits behind the change until it commits.
    await operator.begin(async (tx) => {
      await tx`update clients set password_hash = ${newHash}, version = version + 1 where id = ${client.id}`;
      connecting = createAuthenticator(database.db).authenticate({ username: 'racer', password: Buffer.from('old-secret'), clientId: 'racer-1', transport: 'tcp' });
      for (let waited = 0; ; waited += 20) {
        // pg_stat_activity is a snapshot per transaction unless cleared.
        await tx`select pg_stat_clear_snapshot()`;
        const [blocked] = await tx`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query ilike 'update "clients"%'`;
        if (blocked!.n > 0) break;
        if (waited > 30_000) throw new Error('the replacement never reached the row');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    });
    // The device had proved the password the row held when it asked.
    expect((await connecting!).ok).toBe(true);
    const hash = await storedHash(database.db, 'racer');
    expect(hash).toBe(newHash);
    expect(await verifyPasswordHash(hash, 'old-secret')).toBe(false);
  });
});
