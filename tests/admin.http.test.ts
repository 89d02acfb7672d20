import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type OpenDatabase, schema } from '../src/db';
import { countAdministrators, createAdministrator, createSignInGuard, getAdministratorByUsername } from '../src/domain/administrators';
import { createClient, listClients } from '../src/domain/clients';
import { countSessionsOfAdministrator, createSession, hashSessionToken } from '../src/domain/sessions';
import { createSetupToken } from '../src/domain/setup';
import { createApp } from '../src/web/app';
import { safeNextPath } from '../src/web/session';
import { signIn, TEST_ORIGIN, type SignedInApp } from './support/admin';
import { createTestDatabase, drivers } from './support/db';
import { htmx, postForm } from './support/http';

const origin = { origin: TEST_ORIGIN };

/** The `gatehouse_session=…` pair a response sets, or null. */
function sessionCookie(res: Response): string | null {
  const line = res.headers.getSetCookie().find((c) => c.startsWith('gatehouse_session='));
  if (!line) return null;
  const pair = line.split(';')[0]!;
  return pair === 'gatehouse_session=' ? null : pair;
}

function setCookieLine(res: Response): string {
  return res.headers.getSetCookie().find((c) => c.startsWith('gatehouse_session=')) ?? '';
}

describe.each(drivers)('console sign-in and protection over HTTP on %s', (driver) => {
  let database: OpenDatabase;
  let app: ReturnType<typeof createApp>;

  beforeAll(async () => {
    database = await createTestDatabase(driver);
    app = createApp({ db: database.db, log: () => {} });
    await createAdministrator(database.db, { username: 'alice', password: 'alice-password' });
  });
  afterAll(async () => {
    await database?.close();
  });

  async function login(username: string, password: string, extra: Record<string, string> = {}, headers: Record<string, string> = {}) {
    return postForm(app, '/login', { username, password, ...extra }, { ...origin, ...headers });
  }

  describe('the guard', () => {
    it.each([
      ['/clients', '/login?next=%2Fclients'],
      ['/clients?q=pump&page=2', '/login?next=%2Fclients%3Fq%3Dpump%26page%3D2'],
      ['/clients/1/edit', '/login?next=%2Fclients%2F1%2Fedit'],
      ['/administrators', '/login?next=%2Fadministrators'],
      ['/', '/login'],
      // Unknown paths too: nothing about the console is shown without a session.
      ['/no/such/page', '/login?next=%2Fno%2Fsuch%2Fpage'],
    ])('redirects a page request for %s to %s', async (path, location) => {
      const res = await app.request(path);
      expect(res.status).toBe(302);
      expect(res.headers.get('location')).toBe(location);
      expect(await res.text()).not.toContain('<table');
    });

    it('answers htmx with 401 and HX-Redirect to the login page, coming back to the page the user was on', async () => {
      const res = await app.request('/clients/3/row', { headers: { ...htmx, 'hx-current-url': `${TEST_ORIGIN}/clients?q=x` } });
      expect(res.status).toBe(401);
      expect(res.headers.get('hx-redirect')).toBe('/login?next=%2Fclients%3Fq%3Dx');
      const foreign = await app.request('/clients', { headers: { ...htmx, 'hx-current-url': 'https://evil.example/clients' } });
      expect(foreign.headers.get('hx-redirect')).toBe('/login');
    });

    it('sends a form posted without a session to the login page and changes nothing', async () => {
      const res = await postForm(app, '/clients', { name: 'Sneaky', username: 'sneaky', password: 'sneaky-password' }, {
        ...origin,
        referer: `${TEST_ORIGIN}/clients/new`,
      });
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toBe('/login?next=%2Fclients%2Fnew');
      expect((await listClients(database.db, { query: 'Sneaky' })).total).toBe(0);
      const del = await app.request('/clients/1', { method: 'DELETE', headers: origin });
      expect(del.status).toBe(303);
    });

    it('protects routes added to the app later, without a word from them', async () => {
      const later = createApp({ db: database.db, log: () => {} });
      later.get('/later', (c) => c.text('secret'));
      const res = await later.request('/later');
      expect(res.status).toBe(302);
      expect(await res.text()).not.toContain('secret');
      const signedIn = await signIn(later, database.db);
      expect(await (await signedIn.request('/later')).text()).toBe('secret');
    });

    it('leaves /login, /setup, static files and /mqtt open', async () => {
      expect((await app.request('/login')).status).toBe(200);
      expect((await app.request('/setup')).status).toBe(302); // an administrator exists: to /login
      expect((await app.request('/static/htmx.min.js')).status).toBe(200);
      expect((await app.request('/static/nothing.js')).status).toBe(404);
      // Not a WebSocket upgrade, so nothing here, but not a sign-in redirect either.
      expect((await app.request('/mqtt')).status).toBe(404);
    });

    it('refuses a forged, expired or foreign-hashed cookie', async () => {
      for (const value of ['forged', hashSessionToken('forged'), '']) {
        const res = await app.request('/clients', { headers: { cookie: `gatehouse_session=${value}` } });
        expect(res.status).toBe(302);
      }
    });
  });

  describe('signing in and out', () => {
    it('shows the sign-in form with username, password and the next path', async () => {
      const html = await (await app.request('/login?next=%2Fclients%3Fq%3Dx')).text();
      expect(html).toMatch(/<form method="post" action="\/login"/);
      expect(html).toMatch(/<label for="username">Username<input id="username" name="username"/);
      expect(html).toMatch(/name="password" type="password"/);
      expect(html).toContain('<input type="hidden" name="next" value="/clients?q=x"/>');
      expect(html).not.toContain('Sign out');
    });

    it('signs in with a session cookie that is HttpOnly, SameSite=Lax, Path=/, and lands on next', async () => {
      const res = await login('alice', 'alice-password', { next: '/clients?q=x' });
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toBe('/clients?q=x');
      const line = setCookieLine(res);
      expect(line).toMatch(/HttpOnly/);
      expect(line).toMatch(/SameSite=Lax/);
      expect(line).toMatch(/Path=\//);
      expect(line).toMatch(/Max-Age=4319\d/);
      expect(line).not.toMatch(/Secure/);
      const cookie = sessionCookie(res)!;
      const page = await app.request('/clients', { headers: { cookie } });
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(html).toContain('Signed in as <strong>alice</strong>');
      expect(html).toMatch(/<form method="post" action="\/logout"/);
      // Only the hash is stored.
      const token = cookie.split('=')[1]!;
      const rows = await database.db.select().from(schema.adminSessions);
      expect(rows.some((r) => r.tokenHash === hashSessionToken(token))).toBe(true);
      expect(rows.some((r) => r.tokenHash === token)).toBe(false);
    });

    it('marks the cookie Secure over HTTPS, trusting X-Forwarded-Proto only with TRUST_PROXY', async () => {
      const proxied = { 'x-forwarded-proto': 'https' };
      const untrusted = await login('alice', 'alice-password', {}, proxied);
      expect(setCookieLine(untrusted)).not.toMatch(/Secure/);
      const trustingApp = createApp({ db: database.db, log: () => {}, trustProxy: true });
      const trusted = await postForm(trustingApp, '/login', { username: 'alice', password: 'alice-password' }, { origin: 'https://localhost', ...proxied });
      expect(trusted.status).toBe(303);
      expect(setCookieLine(trusted)).toMatch(/; Secure/);
      const direct = await postForm(app, 'https://localhost/login', { username: 'alice', password: 'alice-password' }, { origin: 'https://localhost' });
      expect(setCookieLine(direct)).toMatch(/; Secure/);
    });

    it('says "wrong username or password" for either half, with the same status', async () => {
      const wrongPassword = await login('alice', 'not-her-password');
      const unknownUser = await login('mallory', 'alice-password');
      expect(wrongPassword.status).toBe(401);
      expect(unknownUser.status).toBe(401);
      const a = await wrongPassword.text();
      const b = await unknownUser.text();
      expect(a).toContain('Wrong username or password.');
      expect(b.replace('mallory', 'alice')).toBe(a);
      expect(sessionCookie(wrongPassword)).toBeNull();
    });

    it('asks for missing fields with 422 and keeps the username', async () => {
      const res = await login('alice', '');
      expect(res.status).toBe(422);
      const html = await res.text();
      expect(html).toContain('Enter your password.');
      expect(html).toMatch(/id="username"[^>]*value="alice"/);
    });

    it.each([
      ['//evil.example/x'],
      ['/\\evil.example'],
      ['https://evil.example/'],
      ['/\t/evil.example'],
      ['javascript:alert(1)'],
      ['/login'],
    ])('ignores the unsafe next %j and goes to the console', async (next) => {
      expect(safeNextPath(next)).toBeNull();
      const res = await login('alice', 'alice-password', { next });
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toBe('/');
      const page = await app.request(`/login?next=${encodeURIComponent(next)}`);
      expect(await page.text()).not.toContain('name="next"');
    });

    it('sends a signed-in visitor of /login on to next', async () => {
      const cookie = sessionCookie(await login('alice', 'alice-password'))!;
      const res = await app.request('/login?next=%2Fadministrators', { headers: { cookie } });
      expect(res.status).toBe(302);
      expect(res.headers.get('location')).toBe('/administrators');
    });

    it('replaces the session this browser had when signing in again', async () => {
      const first = sessionCookie(await login('alice', 'alice-password'))!;
      const second = await login('alice', 'alice-password', {}, { cookie: first });
      expect(sessionCookie(second)).not.toBe(first);
      expect((await app.request('/clients', { headers: { cookie: first } })).status).toBe(302);
    });

    it('signs out with POST /logout: the session ends, the cookie is cleared, pages are no-store', async () => {
      const cookie = sessionCookie(await login('alice', 'alice-password'))!;
      const page = await app.request('/clients', { headers: { cookie } });
      expect(page.headers.get('cache-control')).toBe('no-store');
      const res = await app.request('/logout', { method: 'POST', headers: { cookie, ...origin } });
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toBe('/login?signed-out=1');
      expect(setCookieLine(res)).toMatch(/gatehouse_session=;.*Max-Age=0/);
      expect(res.headers.get('clear-site-data')).toBe('"cache"');
      const after = await app.request('/clients', { headers: { cookie } });
      expect(after.status).toBe(302);
      expect(await (await app.request('/login?signed-out=1')).text()).toContain('You are signed out.');
    });
  });

  describe('cross-site requests', () => {
    let signed: SignedInApp;
    beforeAll(async () => {
      signed = await signIn(app, database.db);
    });

    it.each([
      ['another site', { origin: 'https://evil.example' }],
      ['another port', { origin: 'http://localhost:8080' }],
      ['another scheme', { origin: 'https://localhost' }],
      ['an opaque origin', { origin: 'null' }],
      ['a foreign Referer and no Origin', { referer: 'https://evil.example/form' }],
    ])('refuses a POST from %s with 403 and does nothing', async (_what, headers: Record<string, string>) => {
      const res = await app.request('/clients', {
        method: 'POST',
        body: new URLSearchParams({ name: 'Forged', username: `forged-${Math.random()}`, password: 'forged-password' }),
        headers: { cookie: signed.cookie, 'content-type': 'application/x-www-form-urlencoded', ...headers },
      });
      expect(res.status).toBe(403);
      expect(await res.text()).toContain('Forbidden');
      expect((await listClients(database.db, { query: 'Forged' })).total).toBe(0);
    });

    it('refuses a POST with neither Origin nor Referer, and accepts a same-origin Referer', async () => {
      const bare = await app.request('/clients', {
        method: 'POST',
        body: new URLSearchParams({ name: 'Bare', username: 'bare-user', password: 'bare-password' }),
        headers: { cookie: signed.cookie, 'content-type': 'application/x-www-form-urlencoded' },
      });
      expect(bare.status).toBe(403);
      const referred = await app.request('/clients', {
        method: 'POST',
        body: new URLSearchParams({ name: 'Referred', username: 'referred-user', password: 'referred-password' }),
        headers: { cookie: signed.cookie, referer: `${TEST_ORIGIN}/clients/new`, 'content-type': 'application/x-www-form-urlencoded' },
      });
      expect(referred.status).toBe(303);
    });

    it('refuses cross-site DELETE, PUT and PATCH, and a cross-site sign-in or sign-out', async () => {
      const client = await createClient(database.db, { name: 'Kept', username: 'kept-user', password: 'kept-password' });
      const evil = { origin: 'https://evil.example' };
      expect((await signed.request(`/clients/${client.id}`, { method: 'DELETE', headers: { ...evil, ...htmx } })).status).toBe(403);
      for (const method of ['PUT', 'PATCH']) {
        expect((await postForm(signed, `/clients/${client.id}`, { name: 'Hijacked', username: 'kept-user' }, evil, method)).status).toBe(403);
      }
      expect((await listClients(database.db, { query: 'Kept' })).total).toBe(1);
      expect((await postForm(app, '/login', { username: 'alice', password: 'alice-password' }, evil)).status).toBe(403);
      expect((await signed.request('/logout', { method: 'POST', headers: evil })).status).toBe(403);
      expect((await signed.request('/clients')).status).toBe(200);
    });

    it('matches the origin a trusted proxy reports', async () => {
      const proxied = createApp({ db: database.db, log: () => {}, trustProxy: true });
      const headers = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'gatehouse.example.com' };
      const ok = await postForm(proxied, '/login', { username: 'alice', password: 'alice-password' }, { ...headers, origin: 'https://gatehouse.example.com' });
      expect(ok.status).toBe(303);
      const bad = await postForm(proxied, '/login', { username: 'alice', password: 'alice-password' }, { ...headers, origin: TEST_ORIGIN });
      expect(bad.status).toBe(403);
    });
  });

  describe('throttling', () => {
    it('answers 429 with Retry-After once a username failed too often, even with the right password', async () => {
      const throttledApp = createApp({ db: database.db, log: () => {}, signIn: createSignInGuard(database.db, { failuresBeforeBackoff: 3 }) });
      await createAdministrator(database.db, { username: 'bob', password: 'bob-password-1' });
      for (let i = 0; i < 3; i++) {
        const res = await postForm(throttledApp, '/login', { username: 'bob', password: `guess-${i}` }, origin);
        expect(res.status).toBe(401);
      }
      const locked = await postForm(throttledApp, '/login', { username: 'bob', password: 'bob-password-1' }, origin);
      expect(locked.status).toBe(429);
      expect(Number(locked.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(await locked.text()).toMatch(/Too many failed sign-ins\. Wait \d+ seconds? and try again\./);
      expect(sessionCookie(locked)).toBeNull();
      // Unknown usernames are locked the same way.
      for (let i = 0; i < 3; i++) await postForm(throttledApp, '/login', { username: 'nobody-at-all', password: `guess-${i}` }, origin);
      expect((await postForm(throttledApp, '/login', { username: 'nobody-at-all', password: 'x' }, origin)).status).toBe(429);
    });

    it('resets a username on success', async () => {
      const throttledApp = createApp({ db: database.db, log: () => {}, signIn: createSignInGuard(database.db, { failuresBeforeBackoff: 3 }) });
      await createAdministrator(database.db, { username: 'carol', password: 'carol-password' });
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < 2; i++) expect((await postForm(throttledApp, '/login', { username: 'carol', password: 'nope' }, origin)).status).toBe(401);
        expect((await postForm(throttledApp, '/login', { username: 'carol', password: 'carol-password' }, origin)).status).toBe(303);
      }
    });

    it('throttles an address that tries many usernames (X-Forwarded-For behind a trusted proxy)', async () => {
      const throttledApp = createApp({
        db: database.db,
        log: () => {},
        trustProxy: true,
        signIn: createSignInGuard(database.db, { addressFailuresBeforeBackoff: 3 }),
      });
      const from = (address: string) => ({ ...origin, 'x-forwarded-for': `10.1.1.1, ${address}` });
      for (let i = 0; i < 3; i++) await postForm(throttledApp, '/login', { username: `spray-${i}`, password: 'spray-password' }, from('192.0.2.7'));
      const res = await postForm(throttledApp, '/login', { username: 'alice', password: 'alice-password' }, from('192.0.2.7'));
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
      expect((await postForm(throttledApp, '/login', { username: 'alice', password: 'alice-password' }, from('192.0.2.8'))).status).toBe(303);
    });
  });

  describe('security headers', () => {
    it('are on pages, redirects, 404s, 5xx, static files and 403s', async () => {
      const signed = await signIn(app, database.db);
      const broken = await createTestDatabase('pglite');
      const brokenApp = createApp({ db: broken.db, log: () => {} });
      await broken.close();
      const responses = {
        page: await signed.request('/clients'),
        login: await app.request('/login'),
        redirect: await app.request('/clients'),
        notFound: await signed.request('/no/such/page'),
        staticFile: await app.request('/static/app.css'),
        forbidden: await signed.request('/clients', { method: 'POST', headers: { origin: 'https://evil.example' } }),
        error: await brokenApp.request('/clients', { headers: { cookie: 'gatehouse_session=abc' } }),
      };
      expect(responses.notFound.status).toBe(404);
      // A closed database: the console's "database unavailable" page.
      expect(responses.error.status).toBe(503);
      expect(responses.forbidden.status).toBe(403);
      for (const [name, res] of Object.entries(responses)) {
        const csp = res.headers.get('content-security-policy') ?? '';
        expect(csp, name).toContain("script-src 'self'");
        expect(csp, name).toContain("frame-ancestors 'none'");
        expect(csp, name).not.toMatch(/unsafe-inline|unsafe-eval/);
        expect(res.headers.get('x-content-type-options'), name).toBe('nosniff');
        expect(res.headers.get('referrer-policy'), name).toBe('same-origin');
        expect(res.headers.get('cache-control'), name).toBe(name === 'staticFile' ? 'public, max-age=3600' : 'no-store');
      }
    });

    it('serves no inline script on the sign-in, setup and administrators pages', async () => {
      const signed = await signIn(app, database.db);
      const pages = [await app.request('/login'), await signed.request('/administrators'), await signed.request('/administrators/new')];
      for (const res of pages) expect(await res.text()).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>|\son[a-z]+=|hx-on|js:/);
    });
  });
});

describe.each(drivers)('administrators page over HTTP on %s', (driver) => {
  let database: OpenDatabase;
  let app: ReturnType<typeof createApp>;
  let me: SignedInApp;

  beforeAll(async () => {
    database = await createTestDatabase(driver);
    app = createApp({ db: database.db, log: () => {} });
  });
  beforeEach(async () => {
    await database.db.delete(schema.administrators);
    me = await signIn(app, database.db, 'me');
  });
  afterAll(async () => {
    await database?.close();
  });

  it('lists administrators in a table, marking who you are, with the nav entry current', async () => {
    await createAdministrator(database.db, { username: 'zed', password: 'zed-password-1' });
    const html = await (await me.request('/administrators')).text();
    expect(html).toContain('<th scope="row"><span class="truncate" title="me">me</span><small> (you)</small></th>');
    expect(html).toContain('<th scope="row"><span class="truncate" title="zed">zed</span></th>');
    expect(html).toMatch(/<a href="\/administrators" aria-current="page">Administrators<\/a>/);
    expect(html).toContain('2 administrators.');
    expect(html).toContain('href="/administrators/new"');
  });

  it('adds an administrator (303), who can then sign in', async () => {
    const res = await postForm(me, '/administrators', { username: 'newbie', password: 'newbie-password' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/administrators?notice=added');
    expect(await (await me.request('/administrators?notice=added')).text()).toContain('Administrator added.');
    const login = await postForm(app, '/login', { username: 'newbie', password: 'newbie-password' }, origin);
    expect(login.status).toBe(303);
  });

  it('re-renders the add form with 422, messages per field and the username kept; 409 for a taken username', async () => {
    const res = await postForm(me, '/administrators', { username: 'has space', password: 'short' });
    expect(res.status).toBe(422);
    const html = await res.text();
    expect(html).toMatch(/id="username"[^>]*value="has space"[^>]*aria-invalid="true"/);
    expect(html).toContain('id="password-error"');
    expect(html).toContain('Use at least 12 characters.');
    expect(html).not.toContain('value="short"');

    const htmxRes = await postForm(me, '/administrators', { username: 'me', password: 'long-enough-password' }, htmx);
    expect(htmxRes.status).toBe(409);
    const fragment = await htmxRes.text();
    expect(fragment.startsWith('<form id="administrator-form"')).toBe(true);
    expect(fragment).toContain('This username is already used by another administrator.');
  });

  it('never removes the last administrator: 409, and they stay', async () => {
    const myId = me.administrator.id;
    const page = await me.request(`/administrators/${myId}/remove`);
    expect(page.status).toBe(200);
    const res = await postForm(me, `/administrators/${myId}/remove`, {});
    expect(res.status).toBe(409);
    expect(await res.text()).toContain('The last administrator cannot be removed');
    const viaHtmx = await me.request(`/administrators/${myId}`, { method: 'DELETE', headers: htmx });
    expect(viaHtmx.status).toBe(409);
    expect(await viaHtmx.text()).toMatch(/^<tr id="administrator-\d+">.*The last administrator cannot be removed/s);
    expect(await countAdministrators(database.db)).toBe(1);
    expect((await me.request('/clients')).status).toBe(200);
    // And the page does not offer it.
    expect(await (await me.request('/administrators')).text()).not.toContain('hx-delete');
  });

  it('removes another administrator and ends their sessions at once', async () => {
    const other = await createAdministrator(database.db, { username: 'other', password: 'other-password' });
    const otherSession = await createSession(database.db, other.id);
    const otherCookie = { cookie: `gatehouse_session=${otherSession.token}` };
    expect((await app.request('/clients', { headers: otherCookie })).status).toBe(200);

    const res = await me.request(`/administrators/${other.id}`, { method: 'DELETE', headers: htmx });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');
    // Only one is left: the page reloads to stop offering removal.
    expect(res.headers.get('hx-refresh')).toBe('true');
    expect(await getAdministratorByUsername(database.db, 'other')).toBeNull();
    expect((await app.request('/clients', { headers: otherCookie })).status).toBe(302);
  });

  it('removes with the no-JavaScript confirmation page too', async () => {
    const other = await createAdministrator(database.db, { username: 'other2', password: 'other2-password' });
    const confirm = await (await me.request(`/administrators/${other.id}/remove`)).text();
    expect(confirm).toContain(`action="/administrators/${other.id}/remove"`);
    const res = await postForm(me, `/administrators/${other.id}/remove`, {});
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/administrators?notice=removed');
    expect(await getAdministratorByUsername(database.db, 'other2')).toBeNull();
    expect((await postForm(me, `/administrators/${other.id}/remove`, {})).status).toBe(404);
  });

  it('lets you remove yourself while another administrator remains, and signs you out', async () => {
    await createAdministrator(database.db, { username: 'successor', password: 'successor-password' });
    const res = await postForm(me, `/administrators/${me.administrator.id}/remove`, {});
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/login');
    expect(setCookieLine(res)).toMatch(/Max-Age=0/);
    expect((await me.request('/clients')).status).toBe(302);
    expect(await countAdministrators(database.db)).toBe(1);
  });

  it('changes your password only with the current one; other sessions end, this browser stays signed in', async () => {
    const elsewhere = await createSession(database.db, me.administrator.id);
    const elsewhereCookie = { cookie: `gatehouse_session=${elsewhere.token}` };

    const wrong = await postForm(me, '/administrators/password', {
      current_password: 'not-my-password',
      new_password: 'my-new-password-1',
      confirm_password: 'my-new-password-1',
    });
    expect(wrong.status).toBe(422);
    expect(await wrong.text()).toMatch(/id="current_password-error"[^>]*>This is not your current password\./);

    const mismatch = await postForm(me, '/administrators/password', {
      current_password: 'test-admin-password',
      new_password: 'my-new-password-1',
      confirm_password: 'my-new-password-2',
    }, htmx);
    expect(mismatch.status).toBe(422);
    const fragment = await mismatch.text();
    expect(fragment.startsWith('<form id="password-form"')).toBe(true);
    expect(fragment).toContain('The two new passwords differ.');
    expect((await app.request('/clients', { headers: elsewhereCookie })).status).toBe(200);

    const ok = await postForm(me, '/administrators/password', {
      current_password: 'test-admin-password',
      new_password: 'my-new-password-1',
      confirm_password: 'my-new-password-1',
    });
    expect(ok.status).toBe(303);
    expect(ok.headers.get('location')).toBe('/administrators?notice=password');
    const fresh = sessionCookie(ok)!;
    expect(fresh).not.toBe(me.cookie);
    // Every earlier session has ended, this browser's old cookie included…
    expect((await app.request('/clients', { headers: elsewhereCookie })).status).toBe(302);
    expect((await app.request('/clients', { headers: { cookie: me.cookie } })).status).toBe(302);
    // …and the new cookie works.
    expect((await app.request('/clients', { headers: { cookie: fresh } })).status).toBe(200);
    expect(await countSessionsOfAdministrator(database.db, me.administrator.id)).toBe(1);
    expect((await postForm(app, '/login', { username: 'me', password: 'my-new-password-1' }, origin)).status).toBe(303);
  });

  it('shows hostile usernames and client names as text everywhere', async () => {
    const hostileAdmin = '<script>alert(1)</script>';
    const admin = await createAdministrator(database.db, { username: hostileAdmin, password: 'hostile-password' });
    const hostileClient = '"><img src=x onerror=alert(1)>';
    const client = await createClient(database.db, { name: hostileClient, username: 'hostile-client', password: 'hostile-password' });

    const hostileSelf = await signIn(app, database.db, '<b>me</b>');
    const pages = [
      await hostileSelf.request('/administrators'),
      await hostileSelf.request(`/administrators/${admin.id}/remove`),
      await hostileSelf.request('/clients'),
      await hostileSelf.request(`/clients/${client.id}/edit`),
      await hostileSelf.request(`/clients/${client.id}/edit`, { headers: htmx }),
      await hostileSelf.request(`/clients/${client.id}/delete`),
      await postForm(hostileSelf, '/clients', { name: hostileClient, username: 'hostile-client', password: 'hostile-password' }),
    ];
    for (const res of pages) {
      const html = await res.text();
      expect(html).not.toContain(hostileAdmin);
      expect(html).not.toContain('<img src=x');
      expect(html).not.toContain('<b>me</b>');
      expect(html).not.toMatch(/"\s*onerror=/);
    }
    const list = await (await hostileSelf.request('/administrators')).text();
    expect(list).toContain('<th scope="row"><span class="truncate" title="&lt;script&gt;alert(1)&lt;/script&gt;">&lt;script&gt;alert(1)&lt;/script&gt;</span></th>');
    expect(list).toContain('hx-confirm="Remove the administrator “&lt;script&gt;alert(1)&lt;/script&gt;”?');
    expect(list).toContain('Signed in as <strong>&lt;b&gt;me&lt;/b&gt;</strong>');
    const remove = await (await hostileSelf.request(`/administrators/${admin.id}/remove`)).text();
    expect(remove).toContain('<title>Remove &lt;script&gt;alert(1)&lt;/script&gt; · Gatehouse</title>');
    const clients = await (await hostileSelf.request('/clients')).text();
    expect(clients).toContain('hx-confirm="Delete the client “&quot;&gt;&lt;img src=x onerror=alert(1)&gt;”?');
    expect(clients).toContain('aria-label="Actions for &quot;&gt;&lt;img src=x onerror=alert(1)&gt;"');
    const edit = await (await hostileSelf.request(`/clients/${client.id}/edit`)).text();
    expect(edit).toContain('<title>Edit &quot;&gt;&lt;img src=x onerror=alert(1)&gt; · Gatehouse</title>');
    expect(edit).toContain('value="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"');
  });
});

describe.each(drivers)('first-run setup over HTTP on %s', (driver) => {
  let database: OpenDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('creates the first administrator once with the token, and nobody without it can', async () => {
    const logs: string[] = [];
    const setup = createSetupToken('the-one-time-token');
    const app = createApp({ db: database.db, log: (line) => logs.push(line), setup });
    const form = { username: 'founder', password: 'founder-password', confirm_password: 'founder-password' };

    // The sign-in page says where to go.
    expect(await (await app.request('/login')).text()).toContain('No administrator exists yet.');

    for (const path of ['/setup', '/setup?token=', '/setup?token=wrong']) {
      const res = await app.request(path);
      expect(res.status, path).toBe(403);
      const html = await res.text();
      expect(html).toContain('This setup link is not valid');
      expect(html).not.toContain('<form');
    }
    const refused = await postForm(app, '/setup', { ...form, token: 'wrong' }, origin);
    expect(refused.status).toBe(403);
    expect(await countAdministrators(database.db)).toBe(0);

    const page = await app.request('/setup?token=the-one-time-token');
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<input type="hidden" name="token" value="the-one-time-token"/>');

    const invalid = await postForm(app, '/setup', { token: 'the-one-time-token', username: 'founder', password: 'short', confirm_password: 'other' }, origin);
    expect(invalid.status).toBe(422);
    const invalidHtml = await invalid.text();
    expect(invalidHtml).toContain('Use at least 12 characters.');
    expect(invalidHtml).toContain('The two passwords differ.');
    expect(invalidHtml).toMatch(/id="username"[^>]*value="founder"/);

    const done = await postForm(app, '/setup', { ...form, token: 'the-one-time-token' }, origin);
    expect(done.status).toBe(303);
    expect(done.headers.get('location')).toBe('/');
    const cookie = sessionCookie(done)!;
    expect((await app.request('/clients', { headers: { cookie } })).status).toBe(200);
    expect(logs.join('\n')).toContain('Administrator "founder" created through the setup link');

    // Single use.
    const again = await postForm(app, '/setup', { ...form, username: 'second', token: 'the-one-time-token' }, origin);
    expect(again.status).toBe(403);
    expect((await app.request('/setup?token=the-one-time-token')).status).toBe(302);
    expect(await countAdministrators(database.db)).toBe(1);
  });
});
