import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { schema } from '../src/db';
import { addressAllowed, createApiToken, listApiTokens, revokeApiToken } from '../src/domain/apiTokens';
import { listAuditEvents } from '../src/domain/audit';
import { createApp } from '../src/web/app';
import { signIn, TEST_ORIGIN, type SignedInApp } from './support/admin';
import { createTestDatabase, drivers } from './support/db';
import { htmx, postForm } from './support/http';
import { startTestGatehouse } from './support/gatehouse';

const bearer = (secret: string, extra: Record<string, string> = {}) => ({ authorization: `Bearer ${secret}`, ...extra });

describe.each(drivers)('API tokens on %s', (driver) => {
  let database: OpenDatabase;
  let app: ReturnType<typeof createApp>;
  let admin: SignedInApp;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
    app = createApp({ db: database.db, log: () => {} });
    admin = await signIn(app, database.db);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('creates a token on the API tokens page, shows it once, and lists its name, last 4, scope and expiry', async () => {
    const form = await admin.request('/tokens/new');
    expect(form.status).toBe(200);
    expect(await form.text()).toContain('<form method="post" action="/tokens"');
    const res = await postForm(admin, '/tokens', { name: 'provisioning', preset: 'editor', expiresInDays: '30', allowedAddresses: '' });
    expect(res.status).toBe(201);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const html = await res.text();
    const secret = /value="(gat_[A-Za-z0-9_-]{43})"/.exec(html)?.[1];
    expect(secret).toBeDefined();
    const list = await (await admin.request('/tokens')).text();
    expect(list).toContain('provisioning');
    expect(list).toContain(`gat_…${secret!.slice(-4)}`);
    expect(list).toContain('Editor');
    expect(list).not.toContain(secret!);
    // Only the digest is kept, with a lookup prefix: the secret is nowhere in the row.
    const [row] = await database.db.select().from(schema.apiTokens);
    expect(row!.digest).toBe(createHash('sha256').update(secret!).digest('hex'));
    expect(JSON.stringify(row)).not.toContain(secret!.slice(4));
    expect(row!.expiresAt!.getTime()).toBeGreaterThan(Date.now() + 29 * 86_400_000);
  });

  it('keeps what was typed and names each bad field', async () => {
    const res = await postForm(admin, '/tokens', {
      name: '',
      preset: 'custom',
      'scope-audit': 'write',
      expiresInDays: 'soon',
      allowedAddresses: '10.0.0.0/33',
    });
    expect(res.status).toBe(422);
    const html = await res.text();
    expect(html).toContain('Enter a name.');
    expect(html).toContain('The audit trail can only be read.');
    expect(html).toContain('Enter a number of days');
    expect(html).toContain('is not an IP address or a CIDR range');
    expect(html).toContain('10.0.0.0/33');
    expect((await postForm(admin, '/tokens', { name: 'provisioning', preset: 'viewer' })).status).toBe(409);
  });

  it('authorizes with Authorization: Bearer only: never a query string, a cookie or the console session', async () => {
    const { secret } = await createApiToken(database.db, { name: 'only-bearer', preset: 'viewer' });
    expect((await app.request('/api/v1/clients', { headers: bearer(secret) })).status).toBe(200);
    const refused = [
      await app.request(`/api/v1/clients?access_token=${secret}`),
      await app.request('/api/v1/clients', { headers: { cookie: `token=${secret}` } }),
      await app.request('/api/v1/clients', { headers: { authorization: `Token ${secret}` } }),
      await admin.request('/api/v1/clients'),
    ];
    for (const res of refused) {
      expect(res.status).toBe(401);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(res.headers.get('www-authenticate')).toContain('Bearer');
      const problem = await res.json();
      expect(problem).toMatchObject({ status: 401, title: 'Unauthorized' });
    }
  });

  it('never takes a form post, even with a valid token (no CSRF surface)', async () => {
    const { secret } = await createApiToken(database.db, { name: 'forms', preset: 'administrator' });
    for (const type of ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'text/plain']) {
      const res = await app.request('/api/v1/clients', { method: 'POST', headers: bearer(secret, { 'content-type': type, origin: TEST_ORIGIN }), body: 'name=a&username=b' });
      expect(res.status).toBe(415);
    }
    const [found] = (await listApiTokens(database.db)).filter((t) => t.name === 'forms');
    expect(found).toBeDefined();
  });

  it('refuses a write with a read-only token and a read of a resource outside its scope', async () => {
    const viewer = await createApiToken(database.db, { name: 'viewer-only', preset: 'viewer' });
    const create = await app.request('/api/v1/clients', {
      method: 'POST',
      headers: bearer(viewer.secret, { 'content-type': 'application/json' }),
      body: JSON.stringify({ name: 'x', username: 'x-user', password: 'long-enough' }),
    });
    expect(create.status).toBe(403);
    expect((await create.json()).detail).toContain('clients:write');
    const narrow = await createApiToken(database.db, { name: 'connections-only', preset: 'custom', scopes: { connections: 'read' } });
    expect((await app.request('/api/v1/clients', { headers: bearer(narrow.secret) })).status).toBe(403);
    expect((await app.request('/api/v1/connections', { headers: bearer(narrow.secret) })).status).toBe(200);
  });

  it('refuses an expired token and a revoked one', async () => {
    const expired = await createApiToken(database.db, { name: 'expired', preset: 'viewer', expiresInDays: '1' }, undefined, new Date(Date.now() - 2 * 86_400_000));
    const res = await app.request('/api/v1/clients', { headers: bearer(expired.secret) });
    expect(res.status).toBe(401);
    expect((await res.json()).detail).toContain('expired');
    const revoked = await createApiToken(database.db, { name: 'to-revoke', preset: 'viewer' });
    expect((await app.request('/api/v1/clients', { headers: bearer(revoked.secret) })).status).toBe(200);
    await revokeApiToken(database.db, revoked.token.id);
    expect((await app.request('/api/v1/clients', { headers: bearer(revoked.secret) })).status).toBe(401);
    // A token with the right prefix and a wrong rest is not a token.
    const forged = `${revoked.secret.slice(0, 14)}${'A'.repeat(revoked.secret.length - 14)}`;
    expect((await app.request('/api/v1/clients', { headers: bearer(forged) })).status).toBe(401);
  });

  it('revokes from the row menu and from the confirmation page, recording who did', async () => {
    const one = await createApiToken(database.db, { name: 'menu-revoke', preset: 'viewer' });
    const res = await admin.request(`/tokens/${one.token.id}`, { method: 'DELETE', headers: htmx });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('revoked');
    const two = await createApiToken(database.db, { name: 'page-revoke', preset: 'viewer' });
    expect(await (await admin.request(`/tokens/${two.token.id}/revoke`)).text()).toContain('Revoke “page-revoke”?');
    const posted = await postForm(admin, `/tokens/${two.token.id}/revoke`, {});
    expect(posted.status).toBe(303);
    expect(posted.headers.get('location')).toBe('/tokens?notice=revoked');
    for (const secret of [one.secret, two.secret]) expect((await app.request('/api/v1/clients', { headers: bearer(secret) })).status).toBe(401);
    const events = await listAuditEvents(database.db, { kind: 'token.revoked' });
    expect(events.events.map((e) => [e.subject, e.actor])).toEqual(
      expect.arrayContaining([
        ['menu-revoke', admin.administrator.username],
        ['page-revoke', admin.administrator.username],
      ]),
    );
  });

  it('lets a token with allowed addresses in only from them', async () => {
    expect(addressAllowed(['192.0.2.0/24', '2001:db8::1'], '192.0.2.77')).toBe(true);
    expect(addressAllowed(['192.0.2.0/24'], '::ffff:192.0.2.8')).toBe(true);
    expect(addressAllowed(['192.0.2.0/24'], '198.51.100.1')).toBe(false);
    expect(addressAllowed(['2001:db8::1'], '2001:db8::1')).toBe(true);
    expect(addressAllowed([], undefined)).toBe(true);
    expect(addressAllowed(['192.0.2.0/24'], undefined)).toBe(false);
    const { secret } = await createApiToken(database.db, { name: 'from-lan', preset: 'viewer', allowedAddresses: '192.0.2.0/24' });
    // app.request() has no socket: no address, so not an allowed one.
    const res = await app.request('/api/v1/clients', { headers: bearer(secret) });
    expect(res.status).toBe(401);
    expect((await res.json()).detail).toContain('address');
  });

  it('reaches no administrator and no token through the API', async () => {
    const { secret } = await createApiToken(database.db, { name: 'nosy', preset: 'administrator' });
    for (const path of ['/api/v1/administrators', '/api/v1/tokens', '/api/v1/tokens/1']) {
      expect((await app.request(path, { headers: bearer(secret) })).status).toBe(404);
    }
    // The console's pages stay behind sign-in whatever the bearer.
    const page = await app.request('/tokens', { headers: bearer(secret) });
    expect(page.status).toBe(302);
    expect(page.headers.get('location')).toContain('/login');
  });
});

describe('failed token attempts', () => {
  it('lock an address out after 20 failures (429 with Retry-After), even for a valid token meanwhile', async () => {
    const database = await createTestDatabase('pglite');
    try {
      const app = createApp({ db: database.db, log: () => {} });
      const { secret } = await createApiToken(database.db, { name: 'valid', preset: 'viewer' });
      for (let i = 0; i < 19; i++) expect((await app.request('/api/v1/clients', { headers: bearer(`gat_${'x'.repeat(43)}`) })).status).toBe(401);
      expect((await app.request('/api/v1/clients', { headers: bearer(secret) })).status).toBe(200);
      expect((await app.request('/api/v1/clients', { headers: bearer('wrong') })).status).toBe(401);
      const locked = await app.request('/api/v1/clients', { headers: bearer(secret) });
      expect(locked.status).toBe(429);
      expect(Number(locked.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    } finally {
      await database.close();
    }
  });
});

describe('tokens over HTTP', () => {
  it('note the time and address a token was last used from, and honour allowed addresses', async () => {
    const gatehouse = await startTestGatehouse('pglite');
    try {
      const base = `http://127.0.0.1:${gatehouse.httpPort}`;
      const open = await createApiToken(gatehouse.database.db, { name: 'anywhere', preset: 'viewer' });
      const local = await createApiToken(gatehouse.database.db, { name: 'loopback-only', preset: 'viewer', allowedAddresses: '127.0.0.0/8' });
      const elsewhere = await createApiToken(gatehouse.database.db, { name: 'lan-only', preset: 'viewer', allowedAddresses: '192.0.2.0/24' });
      const before = Date.now();
      expect((await fetch(`${base}/api/v1/clients`, { headers: bearer(open.secret) })).status).toBe(200);
      expect((await fetch(`${base}/api/v1/clients`, { headers: bearer(local.secret) })).status).toBe(200);
      expect((await fetch(`${base}/api/v1/clients`, { headers: bearer(elsewhere.secret) })).status).toBe(401);
      const tokens = await listApiTokens(gatehouse.database.db);
      const used = tokens.find((t) => t.name === 'anywhere')!;
      expect(used.lastUsedAt!.getTime()).toBeGreaterThanOrEqual(before - 1000);
      expect(used.lastUsedAddress).toBe('127.0.0.1');
      expect(tokens.find((t) => t.name === 'lan-only')!.lastUsedAt).toBeNull();
    } finally {
      await gatehouse.close();
    }
  });
});
