import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { createClient, deleteClient, getClient, listClients, updateClient, CLIENTS_PAGE_SIZE } from '../src/domain/clients';
import { ConflictError, ValidationError } from '../src/domain/errors';
import { verifyPasswordHash } from '../src/domain/password';
import { schema } from '../src/db';
import { eq } from 'drizzle-orm';
import { createTestDatabase, drivers } from './support/db';

describe.each(drivers)('clients domain on %s', (driver) => {
  let database: OpenDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
  });
  afterAll(async () => {
    await database?.close();
  });

  const storedHash = async (id: number) => {
    const [row] = await database.db.select({ hash: schema.clients.passwordHash }).from(schema.clients).where(eq(schema.clients.id, id));
    return row!.hash;
  };

  it('creates a client and stores only an Argon2id hash of its password', async () => {
    const client = await createClient(database.db, { name: '  Boiler room  ', username: 'boiler-1', password: 'correct horse' });
    expect(client).toMatchObject({ name: 'Boiler room', username: 'boiler-1', authType: 'password', version: 1 });
    expect(client).not.toHaveProperty('passwordHash');
    const hash = await storedHash(client.id);
    expect(hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(hash).not.toContain('correct horse');
    expect(await verifyPasswordHash(hash, 'correct horse')).toBe(true);
  });

  it.each([
    [{ name: '   ', username: 'u1', password: '12345678' }, 'name'],
    [{ name: 'x'.repeat(101), username: 'u1', password: '12345678' }, 'name'],
    [{ name: 'ok', username: '', password: '12345678' }, 'username'],
    [{ name: 'ok', username: 'has space', password: '12345678' }, 'username'],
    [{ name: 'ok', username: 'tab\there', password: '12345678' }, 'username'],
    [{ name: 'ok', username: 'nul\u0000', password: '12345678' }, 'username'],
    [{ name: 'ok', username: 'u'.repeat(129), password: '12345678' }, 'username'],
    [{ name: 'ok', username: 'u1', password: 'short' }, 'password'],
    [{ name: 'ok', username: 'u1', password: 'p'.repeat(257) }, 'password'],
    [{ name: 'ok', username: 'u1' }, 'password'],
  ])('refuses %j with a message on %s', async (input, field) => {
    const error = await createClient(database.db, input).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect(Object.keys((error as ValidationError).fieldErrors)).toEqual([field]);
  });

  it('accepts the boundaries: 100-character name, 128-character username, 8 and 256-character passwords', async () => {
    await expect(createClient(database.db, { name: 'n'.repeat(100), username: 'b'.repeat(128), password: 'p'.repeat(8) })).resolves.toBeTruthy();
    await expect(createClient(database.db, { name: 'n', username: 'boundary-256', password: 'p'.repeat(256) })).resolves.toBeTruthy();
  });

  it('refuses a duplicate username with a conflict on the username field, usernames being case-sensitive', async () => {
    await createClient(database.db, { name: 'A', username: 'dup-user', password: '12345678' });
    const error = await createClient(database.db, { name: 'B', username: 'dup-user', password: '12345678' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as ConflictError).fieldErrors).toHaveProperty('username');
    await expect(createClient(database.db, { name: 'C', username: 'Dup-User', password: '12345678' })).resolves.toBeTruthy();
  });

  it('updates name and username, keeps the password when it is empty, and bumps the version', async () => {
    const client = await createClient(database.db, { name: 'Old', username: 'edit-me', password: 'first-pass' });
    const hashBefore = await storedHash(client.id);
    const updated = await updateClient(database.db, client.id, { name: 'New', username: 'edited', password: '' });
    expect(updated).toMatchObject({ name: 'New', username: 'edited', version: 2 });
    expect(await storedHash(client.id)).toBe(hashBefore);
    const again = await updateClient(database.db, client.id, { name: 'New', username: 'edited', password: 'second-pass' });
    expect(again!.version).toBe(3);
    expect(await verifyPasswordHash(await storedHash(client.id), 'second-pass')).toBe(true);
  });

  it('reports a conflict when an update takes another client\'s username, and changes nothing', async () => {
    const a = await createClient(database.db, { name: 'A', username: 'taken-a', password: '12345678' });
    const b = await createClient(database.db, { name: 'B', username: 'taken-b', password: '12345678' });
    await expect(updateClient(database.db, b.id, { name: 'B2', username: 'taken-a' })).rejects.toBeInstanceOf(ConflictError);
    expect(await getClient(database.db, b.id)).toMatchObject({ name: 'B', username: 'taken-b', version: 1 });
    expect(await getClient(database.db, a.id)).toMatchObject({ username: 'taken-a' });
  });

  it('returns null for unknown ids on get, update and delete', async () => {
    expect(await getClient(database.db, 999999)).toBeNull();
    expect(await updateClient(database.db, 999999, { name: 'x', username: 'nobody' })).toBeNull();
    expect(await deleteClient(database.db, 999999)).toBeNull();
  });

  it('deletes a client', async () => {
    const client = await createClient(database.db, { name: 'Doomed', username: 'doomed', password: '12345678' });
    expect(await deleteClient(database.db, client.id)).toMatchObject({ id: client.id });
    expect(await getClient(database.db, client.id)).toBeNull();
  });

  it('searches name and username case-insensitively, with % and _ taken literally', async () => {
    await createClient(database.db, { name: 'Kitchen Thermostat', username: 'kt-01', password: '12345678' });
    await createClient(database.db, { name: 'Garage door', username: 'GARAGE_kitchen', password: '12345678' });
    await createClient(database.db, { name: '100% humidity', username: 'hum', password: '12345678' });
    const kitchen = await listClients(database.db, { query: 'KITCHEN' });
    expect(kitchen.clients.map((c) => c.username).sort()).toEqual(['GARAGE_kitchen', 'kt-01']);
    const percent = await listClients(database.db, { query: '0%' });
    expect(percent.clients.map((c) => c.username)).toEqual(['hum']);
    const underscore = await listClients(database.db, { query: 'e_k' });
    expect(underscore.clients.map((c) => c.username)).toEqual(['GARAGE_kitchen']);
  });
});

describe('clients paging', () => {
  it('serves pages of 50 ordered by name, clamping out-of-range pages', async () => {
    const database = await createTestDatabase('pglite');
    try {
      const { db } = database;
      const { clients } = schema;
      await db.insert(clients).values(
        Array.from({ length: CLIENTS_PAGE_SIZE + 7 }, (_, i) => ({
          name: `device ${String(i).padStart(3, '0')}`,
          username: `device-${i}`,
          passwordHash: 'not-a-real-hash',
        })),
      );
      const first = await listClients(db, { page: 1 });
      expect(first).toMatchObject({ total: 57, page: 1, pageCount: 2 });
      expect(first.clients).toHaveLength(50);
      expect(first.clients[0]!.name).toBe('device 000');
      const second = await listClients(db, { page: 2 });
      expect(second.clients.map((c) => c.name)).toEqual(Array.from({ length: 7 }, (_, i) => `device ${String(50 + i).padStart(3, '0')}`));
      expect((await listClients(db, { page: 99 })).page).toBe(2);
      expect((await listClients(db, { page: -3 })).page).toBe(1);
    } finally {
      await database.close();
    }
  });
});
