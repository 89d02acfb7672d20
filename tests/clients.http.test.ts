import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { createClient, getClient, listClients, updateClient } from '../src/domain/clients';
import { createApp } from '../src/web/app';
import { signIn, type SignedInApp } from './support/admin';
import { createTestDatabase, drivers } from './support/db';
import { htmx, noticeOf, postForm } from './support/http';

describe.each(drivers)('clients console over HTTP on %s', (driver) => {
  let database: OpenDatabase;
  // Signed in: every console route needs an administrator (tests/admin.http.test.ts).
  let app: SignedInApp;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
    app = await signIn(createApp({ db: database.db, log: () => {} }), database.db);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('shows an empty state with a New client button when there are no clients', async () => {
    const res = await app.request('/clients');
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain('No clients yet');
    expect(html).toMatch(/<a href="\/clients\/new" role="button">New client<\/a>/);
  });

  it('shows the New client form with Client Name, username and password fields', async () => {
    const html = await (await app.request('/clients/new')).text();
    expect(html).toMatch(/<label for="name">Client Name<input id="name" name="name"/);
    expect(html).toContain('name="username"');
    expect(html).toMatch(/name="password" type="password"/);
    expect(html).toContain('data-generate-password="password"');
    expect(html).toMatch(/<form id="client-form" method="post" action="\/clients"/);
  });

  it('creates a client with a 303 to its page, says so there once, then lists it as Username/Password', async () => {
    const res = await postForm(app, '/clients', { name: 'Front door', username: 'front-door', password: 'door-secret' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toMatch(/^\/clients\/\d+$/);
    const notice = res.headers.getSetCookie().find((c) => c.startsWith('gatehouse_notice='))!.split(';')[0];
    const page = await (await app.request(res.headers.get('location')!, { headers: { cookie: `${app.cookie}; ${notice}` } })).text();
    expect(page).toContain('<div id="notices" class="notices" role="status"><p class="notice">Client “Front door” created.</p></div>');
    const html = await (await app.request('/clients')).text();
    expect(html).not.toContain('created.');
    expect(html).toMatch(/<th scope="row"><a href="\/clients\/\d+" class="truncate" title="Front door">Front door<\/a><\/th>/);
    expect(html).toContain('<td class="nowrap">Username/Password</td>');
    expect(html).toContain('aria-label="Actions for Front door"');
    expect(html).not.toContain('door-secret');
  });

  it('answers an htmx create with HX-Redirect instead of a 303', async () => {
    const res = await postForm(app, '/clients', { name: 'Htmx made', username: 'htmx-made', password: 'htmx-secret' }, htmx);
    expect(res.status).toBe(200);
    expect(res.headers.get('hx-redirect')).toMatch(/^\/clients\/\d+$/);
    expect(noticeOf(res)).toBe('Client “Htmx made” created.');
  });

  it('re-renders the form with 422, a message at each wrong field, and the input kept (never the password)', async () => {
    const before = (await listClients(database.db)).total;
    const res = await postForm(app, '/clients', { name: '  ', username: 'has space', password: 'short' });
    expect(res.status).toBe(422);
    const html = await res.text();
    expect(html).toMatch(/id="name"[^>]*aria-invalid="true"/);
    expect(html).toContain('id="name-error"');
    expect(html).toMatch(/id="username"[^>]*value="has space"[^>]*aria-invalid="true"/);
    expect(html).toContain('Spaces and control characters are not allowed.');
    expect(html).toContain('Use at least 8 characters.');
    expect(html).not.toContain('value="short"');
    expect((await listClients(database.db)).total).toBe(before);
  });

  it('returns just the form, with errors, to an htmx create', async () => {
    const res = await postForm(app, '/clients', { name: 'x', username: '', password: '12345678' }, htmx);
    expect(res.status).toBe(422);
    const html = await res.text();
    expect(html.startsWith('<form id="client-form"')).toBe(true);
    expect(html).toContain('Enter a username.');
  });

  it('refuses a duplicate username with 409 and the message on the username field', async () => {
    await createClient(database.db, { name: 'First', username: 'same-name', password: '12345678' });
    const res = await postForm(app, '/clients', { name: 'Second', username: 'same-name', password: '12345678' });
    expect(res.status).toBe(409);
    const html = await res.text();
    expect(html).toMatch(/id="username-error"[^>]*>This username is already used/);
    expect(html).toContain('value="Second"');
    expect((await listClients(database.db, { query: 'Second' })).total).toBe(0);
  });

  it('serves the edit page, and an in-row edit form to htmx', async () => {
    const client = await createClient(database.db, { name: 'Editable', username: 'editable', password: '12345678' });
    const page = await (await app.request(`/clients/${client.id}/edit`)).text();
    expect(page).toContain('<h1>Edit Editable</h1>');
    expect(page).toContain('value="editable"');
    const fragment = await (await app.request(`/clients/${client.id}/edit`, { headers: htmx })).text();
    expect(fragment.startsWith(`<tr id="client-${client.id}"`)).toBe(true);
    expect(fragment).toContain('name="_view" value="row"');
  });

  it('updates with POST (303) and keeps the password when the field is empty', async () => {
    const client = await createClient(database.db, { name: 'Before', username: 'before', password: '12345678' });
    const res = await postForm(app, `/clients/${client.id}`, { name: 'After', username: 'after', password: '' });
    expect(res.status).toBe(303);
    expect(noticeOf(res)).toBe('Client “After” saved.');
    expect(await getClient(database.db, client.id)).toMatchObject({ name: 'After', username: 'after', version: 2 });
  });

  it('refuses an edit made on a stale form with 409, keeps the input, and lets a second save overwrite', async () => {
    const client = await createClient(database.db, { name: 'Shared', username: 'shared', password: '12345678' });
    const form = await (await app.request(`/clients/${client.id}/edit`)).text();
    expect(form).toContain('name="version" value="1"');
    // Another operator saves first.
    await updateClient(database.db, client.id, { name: 'Theirs', username: 'shared' });
    const mine = await postForm(app, `/clients/${client.id}`, { version: '1', name: 'Mine', username: 'shared', password: '' });
    expect(mine.status).toBe(409);
    const html = await mine.text();
    expect(html).toContain('Another operator changed this client while you were editing it (it is now “Theirs”');
    expect(html).toContain('value="Mine"');
    expect(html).toContain('name="version" value="2"');
    expect(await getClient(database.db, client.id)).toMatchObject({ name: 'Theirs' });
    const again = await postForm(app, `/clients/${client.id}`, { version: '2', name: 'Mine', username: 'shared', password: '' });
    expect(again.status).toBe(303);
    expect(await getClient(database.db, client.id)).toMatchObject({ name: 'Mine', version: 3 });
  });

  it('updates in the row for htmx (PUT too) and answers with the new row', async () => {
    const client = await createClient(database.db, { name: 'Row', username: 'row-user', password: '12345678' });
    const res = await postForm(app, `/clients/${client.id}`, { _view: 'row', name: 'Row renamed', username: 'row-user' }, htmx, 'PUT');
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain(`<th scope="row"><a href="/clients/${client.id}" class="truncate" title="Row renamed" autofocus="">Row renamed</a></th>`);
    expect(html).toContain('<hx-partial hx-target="#notices" hx-swap="innerHTML"><p class="notice">Client “Row renamed” saved.</p></hx-partial>');
  });

  it('keeps the in-row form with errors on a bad htmx update', async () => {
    const client = await createClient(database.db, { name: 'Row2', username: 'row2-user', password: '12345678' });
    const res = await postForm(app, `/clients/${client.id}`, { _view: 'row', name: 'Row2', username: 'row 2' }, htmx);
    expect(res.status).toBe(422);
    const html = await res.text();
    expect(html).toContain('class="editing"');
    expect(html).toContain('value="row 2"');
  });

  it('deletes with htmx DELETE (the row goes, a notice says so) and with the no-JS confirmation page', async () => {
    const a = await createClient(database.db, { name: 'Delete A', username: 'delete-a', password: '12345678' });
    const b = await createClient(database.db, { name: 'Delete B', username: 'delete-b', password: '12345678' });
    const res = await app.request(`/clients/${a.id}`, { method: 'DELETE', headers: htmx });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('<hx-partial hx-target="#notices" hx-swap="innerHTML"><p class="notice">Client “Delete A” deleted.</p></hx-partial>');
    expect(await getClient(database.db, a.id)).toBeNull();

    const confirm = await (await app.request(`/clients/${b.id}/delete`)).text();
    expect(confirm).toContain(`action="/clients/${b.id}/delete"`);
    // One confirmation style: the way back first, the action last.
    expect(confirm).toMatch(/<a href="\/clients" role="button" class="secondary outline">Keep it<\/a><button type="submit" class="danger">Delete client<\/button>/);
    // Not connected: nothing to offer to disconnect.
    expect(confirm).not.toContain('name="disconnect"');
    expect(await getClient(database.db, b.id)).not.toBeNull();
    const done = await postForm(app, `/clients/${b.id}/delete`, {});
    expect(done.status).toBe(303);
    expect(noticeOf(done)).toBe('Client “Delete B” deleted.');
    expect(await getClient(database.db, b.id)).toBeNull();
  });

  it('keeps a generated password (with its token) when the form comes back with an error, never a typed one', async () => {
    await createClient(database.db, { name: 'Taken', username: 'taken-name', password: '12345678' });
    const generated = await (await app.request('/clients/generated-password')).json() as { password: string; token: string };
    const conflict = await postForm(app, '/clients', { name: 'New one', username: 'taken-name', password: generated.password, password_generated: generated.token });
    expect(conflict.status).toBe(409);
    const html = await conflict.text();
    expect(html).toContain(`type="text" value="${generated.password.replace(/&/g, '&amp;').replace(/"/g, '&quot;')}"`);
    expect(html).toContain(`name="password_generated" id="password-generated" value="${generated.token}"`);
    // Sent again as it comes back, it is stored as a generated password.
    const saved = await postForm(app, '/clients', { name: 'New one', username: 'new-one', password: generated.password, password_generated: generated.token });
    expect(saved.status).toBe(303);
    // A typed password, or a generated one with a token that does not match it, is not echoed.
    const attempts: Array<Record<string, string>> = [
      { password: 'typed-password-1' },
      { password: 'typed-password-2', password_generated: generated.token },
    ];
    for (const fields of attempts) {
      const again = await postForm(app, '/clients', { name: 'Another', username: 'taken-name', ...fields });
      expect(again.status).toBe(409);
      const text = await again.text();
      expect(text).not.toContain(fields.password!);
      expect(text).toContain('name="password_generated" id="password-generated" value=""');
    }
  });

  it.each([
    ['GET', '/clients/999999/edit'],
    ['GET', '/clients/abc/edit'],
    ['GET', '/clients/999999/delete'],
    ['POST', '/clients/999999'],
    ['POST', '/clients/999999/delete'],
    ['DELETE', '/clients/999999'],
    ['GET', '/no/such/page'],
  ])('answers %s %s with a 404 page', async (method, path) => {
    const res = method === 'POST' ? await postForm(app, path, { name: 'x', username: 'y', password: '12345678' }) : await app.request(path, { method });
    expect(res.status).toBe(404);
    expect(await res.text()).toContain('Not found');
  });

  it('tells htmx to put an error page in place of <main>, not into the row that asked', async () => {
    const res = await app.request('/clients/999999', { method: 'DELETE', headers: htmx });
    expect(res.status).toBe(404);
    expect(res.headers.get('hx-retarget')).toBe('main');
    expect(res.headers.get('hx-reswap')).toBe('outerHTML');
    expect(res.headers.get('hx-reselect')).toBe('main');
    // Form errors stay with their form.
    const invalid = await postForm(app, '/clients', { name: '', username: 'x', password: '12345678' }, htmx);
    expect(invalid.status).toBe(422);
    expect(invalid.headers.get('hx-retarget')).toBeNull();
  });

  it('searches with ?q= and shows the count', async () => {
    await createClient(database.db, { name: 'Searchable Pump', username: 'pump-7', password: '12345678' });
    const html = await (await app.request('/clients?q=PUMP')).text();
    expect(html).toContain('Searchable Pump');
    expect(html).toContain('1 client matches “PUMP”.');
    expect(html).not.toContain('Front door');
    const none = await (await app.request('/clients?q=zzz-nothing')).text();
    expect(none).toContain('No client matches your search.');
  });

  it('escapes hostile names everywhere they are shown', async () => {
    const hostile = '<script>alert(1)</script>';
    const client = await createClient(database.db, { name: hostile, username: 'hostile', password: '12345678' });
    for (const path of ['/clients', `/clients/${client.id}/edit`, `/clients/${client.id}/delete`]) {
      const html = await (await app.request(path)).text();
      expect(html).not.toContain(hostile);
      expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    }
  });

  it('sends security headers with a CSP that forbids inline script', async () => {
    const res = await app.request('/clients');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    expect(csp).toContain("frame-ancestors 'none'");
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
  });

  it('serves htmx, Pico and its own assets', async () => {
    for (const file of ['htmx.min.js', 'pico.min.css', 'app.js', 'app.css', 'mqtt.min.js']) {
      const res = await app.request(`/static/${file}`);
      expect(res.status, file).toBe(200);
    }
    expect((await app.request('/static/../package.json')).status).toBe(404);
  });
});
