import { createHash } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema, type OpenDatabase } from '../src/db';
import { createAuthenticator } from '../src/domain/access/authenticate';
import { createApiToken } from '../src/domain/apiTokens';
import { recordChange } from '../src/domain/audit';
import { createClient } from '../src/domain/clients';
import { createApp } from '../src/web/app';
import { createTestDatabase } from './support/db';

type Init = { method?: string; body?: unknown; headers?: Record<string, string> };

describe('what the API answers, and what it keeps', () => {
  let database: OpenDatabase;
  let app: ReturnType<typeof createApp>;
  let editor: { secret: string; name: string };
  let other: string;
  const send = (token: string, path: string, init: Init = {}) =>
    app.request(`/api/v1${path}`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${token}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    // Behind a proxy, so that each request has an address.
    app = createApp({ db: database.db, log: () => {}, trustProxy: true });
    editor = { secret: (await createApiToken(database.db, { name: 'provisioner', preset: 'editor' })).secret, name: 'provisioner' };
    other = (await createApiToken(database.db, { name: 'other-token-name', preset: 'editor' })).secret;
  });
  afterAll(async () => {
    await database?.close();
  });

  it('never keeps a generated password for an Idempotency-Key replay; the replay answers without it', async () => {
    const create = () => send(editor.secret, '/clients', { method: 'POST', body: { name: 'Gen', username: 'gen-1', generatePassword: true }, headers: { 'idempotency-key': 'gen-1-once' } });
    const first = await create();
    expect(first.status).toBe(201);
    const { password } = await first.json();
    expect(password).toMatch(/^.{24}$/);
    const kept = await database.db.select().from(schema.apiIdempotencyKeys);
    expect(kept).toHaveLength(1);
    expect(JSON.stringify(kept)).not.toContain(password);
    const replay = await create();
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    const again = await replay.json();
    expect(again.username).toBe('gen-1');
    expect(again).not.toHaveProperty('password');
    // Another token's key of the same text is its own.
    const theirs = await send(other, '/clients', { method: 'POST', body: { name: 'Gen', username: 'gen-1', generatePassword: true }, headers: { 'idempotency-key': 'gen-1-once' } });
    expect(theirs.status).toBe(409);
    expect(theirs.headers.get('idempotent-replayed')).toBeNull();
  });

  it('keeps a typed password of an Idempotency-Key request only as Argon2id, and still tells a retry with another password apart', async () => {
    const body = { name: 'Typed key', username: 'typed-key', password: 'typed-key-secret' };
    const create = (password: string) => send(editor.secret, '/clients', { method: 'POST', body: { ...body, password }, headers: { 'idempotency-key': 'typed-key-once' } });
    expect((await create(body.password)).status).toBe(201);
    const [row] = await database.db.select().from(schema.apiIdempotencyKeys).where(eq(schema.apiIdempotencyKeys.key, 'typed-key-once'));
    // A SHA-256 of a body that holds the password is a fast guess away from it.
    const fastDigest = createHash('sha256').update(`POST /api/v1/clients\n${JSON.stringify(body)}`).digest('hex');
    expect(row!.requestHash).not.toContain(fastDigest);
    expect(row!.requestHash).toMatch(/^[0-9a-f]{64} \$argon2id\$/);
    const again = await create(body.password);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await create('another-typed-secret')).status).toBe(422);
  });

  it('says how each client’s password is stored, and when it is still an imported hash', async () => {
    const typed = await (await send(editor.secret, '/clients', { method: 'POST', body: { name: 'Typed', username: 'typed-1', password: 'typed-secret-1' } })).json();
    expect(typed).toMatchObject({ passwordFormat: 'argon2id', passwordImported: false });
    const generated = await (await send(editor.secret, '/clients', { method: 'POST', body: { name: 'Gen 2', username: 'gen-2', generatePassword: true } })).json();
    expect(generated).toMatchObject({ passwordFormat: 'generated', passwordImported: false });

    const hash = bcrypt.hashSync('imported-secret', 4);
    const res = await app.request('/api/v1/import?format=ndjson&dryRun=false', {
      method: 'POST',
      headers: { authorization: `Bearer ${editor.secret}`, 'content-type': 'application/x-ndjson' },
      body: JSON.stringify({ name: 'Old', username: 'old-1', passwordHash: hash }),
    });
    expect((await res.json()).counts.create).toBe(1);
    const [row] = await database.db.select({ id: schema.clients.id }).from(schema.clients).where(eq(schema.clients.username, 'old-1'));
    const before = await send(editor.secret, `/clients/${row!.id}`);
    expect(await before.json()).toMatchObject({ passwordFormat: 'bcrypt', passwordImported: true });
    const etag = before.headers.get('etag');

    expect((await createAuthenticator(database.db).authenticate({ username: 'old-1', password: Buffer.from('imported-secret'), clientId: 'old', transport: 'tcp' })).ok).toBe(true);
    const after = await send(editor.secret, `/clients/${row!.id}`);
    expect(await after.json()).toMatchObject({ passwordFormat: 'argon2id', passwordImported: false });
    // Nothing an operator set changed: a change based on the ETag read before still applies.
    expect(after.headers.get('etag')).toBe(etag);
  });

  it('shows a token the audit trail without administrators’ names or addresses, nor other tokens’ names', async () => {
    await createClient(database.db, { name: 'By admin', username: 'by-admin', password: 'by-admin-secret' }, { username: 'alice-admin', address: '198.51.100.7' });
    await send(other, '/clients', { method: 'POST', body: { name: 'By other', username: 'by-other', password: 'by-other-secret' }, headers: { 'x-forwarded-for': '203.0.113.9' } });
    await send(editor.secret, '/clients', { method: 'POST', body: { name: 'By me', username: 'by-me', password: 'by-me-secret' }, headers: { 'x-forwarded-for': '192.0.2.44' } });
    await recordChange(database.db, { username: 'meter-7', address: '192.0.2.200' }, { kind: 'mqtt.auth_failed', subject: '', details: { reason: 'bad_credentials' } });

    const page = await (await send(editor.secret, '/audit')).json();
    const text = JSON.stringify(page);
    for (const hidden of ['alice-admin', '198.51.100.7', 'other-token-name', '203.0.113.9']) expect(text, hidden).not.toContain(hidden);
    const bySubject = new Map<string, { actor: string | null; address: string | null }>(page.items.map((e: { subject: string }) => [e.subject, e]));
    expect(bySubject.get('by-admin')).toMatchObject({ actor: 'administrator', address: null });
    expect(bySubject.get('by-other')).toMatchObject({ actor: 'API token', address: null });
    expect(bySubject.get('by-me')).toMatchObject({ actor: 'provisioner', address: '192.0.2.44' });
    expect(page.items.find((e: { kind: string }) => e.kind === 'mqtt.auth_failed')).toMatchObject({ actor: 'meter-7', address: '192.0.2.200' });
    // The token's own creation and the other's are not in its view at all.
    expect(page.items.some((e: { kind: string }) => e.kind.startsWith('token.'))).toBe(false);

    // Filters and searches match only what is shown: they cannot probe for a name or an address.
    for (const query of ['actor=alice-admin', 'q=alice', 'q=198.51.100', 'actor=other-token-name', 'q=other-token', 'q=203.0.113']) {
      const probed = await (await send(editor.secret, `/audit?${query}`)).json();
      expect(probed, query).toEqual({ items: [], older: null, newer: null });
    }
    const byAdministrators = await (await send(editor.secret, '/audit?actor=administrator')).json();
    expect(byAdministrators.items.map((e: { subject: string }) => e.subject)).toEqual(['by-admin']);
    const mine = await (await send(editor.secret, '/audit?actor=provisioner')).json();
    expect(mine.items.map((e: { subject: string }) => e.subject)).toContain('by-me');
    expect((await (await send(editor.secret, '/audit?actor=meter-7')).json()).items).toHaveLength(1);

    const csv = await (await send(editor.secret, '/audit.csv')).text();
    for (const hidden of ['alice-admin', '198.51.100.7', 'other-token-name', '203.0.113.9']) expect(csv, hidden).not.toContain(hidden);
    expect(csv).toContain('administrator');
  });
});
