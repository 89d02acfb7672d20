import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq, sql } from 'drizzle-orm';
import { configSchema } from '../src/config';
import { auditEvents } from '../src/db/schema';
import type { OpenDatabase } from '../src/db';
import { createClient, getClient, type Client } from '../src/domain/clients';
import { getGroup, listGroups } from '../src/domain/groups';
import { createAdministrator } from '../src/domain/administrators';
import { createApiToken } from '../src/domain/apiTokens';
import { startGatehouse, type Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { signIn, type SignedInApp } from './support/admin';
import { countQueries, createTestDatabase } from './support/db';
import { htmx, noticeOf, postForm } from './support/http';
import { tableRows, textOf } from './support/html';
import { brokerUrl, connect, endClient } from './support/mqtt';

/** True once `client` has lost its connection (the broker closed it). */
function closedByBroker(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (!client.connected) resolve();
    client.once('close', () => resolve());
  });
}

describe('Connections page, Disconnect and Last seen (one node)', { timeout: 120_000 }, () => {
  let database: OpenDatabase;
  let dataDir: string;
  let gatehouse: Gatehouse;
  let operator: SignedInApp;
  let sensor: Client;
  let other: Client;
  const logs: string[] = [];
  const open: MqttClient[] = [];

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-connections-'));
    gatehouse = await startGatehouse({
      // Last seen is written only when the test flushes it.
      config: configSchema.parse({ PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LAST_SEEN_FLUSH_MS: '3600000' }),
      database,
      log: (line) => logs.push(line),
    });
    operator = await signIn(gatehouse.app, database.db, 'conn-operator');
    sensor = await createClient(database.db, { name: 'Boiler sensor', username: 'boiler', password: 'boiler-password' });
    other = await createClient(database.db, { name: 'Porch light', username: 'porch', password: 'porch-password' });
    await grantGroup(database.db, { name: 'Heating', permissions: [['allow', 'subscribe', 'heat/#'], ['allow', 'publish', 'heat/#']], usernames: ['boiler'] });
  });
  afterAll(async () => {
    await Promise.all(open.map((client) => endClient(client)));
    await gatehouse?.close();
    await database?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const page = async (path = '/connections') => {
    const res = await operator.request(path);
    expect(res.status).toBe(200);
    return res.text();
  };
  const device = async (transport: 'tcp' | 'ws', options: { username: string; password: string; clientId: string; keepalive?: number }) => {
    const client = await connect(brokerUrl(gatehouse, transport), options);
    open.push(client);
    return client;
  };
  const rowOf = (html: string, clientId: string) => new RegExp(`<tr id="session-[^"]+"><th scope="row"><code[^>]*>${clientId}</code>.*?</tr>`, 's').exec(html)?.[0];

  it('shows an empty state when nobody is connected, and the Connections link in the navigation', async () => {
    const html = await page();
    expect(html).toContain('Nobody is connected right now.');
    expect(html).toContain('0 connections.');
    expect(html).toMatch(/<a href="\/connections" aria-current="page">Connections<\/a>/);
  });

  it('lists a session with its client, IP address, transport, keep-alive, subscriptions and groups, until it ends', async () => {
    const boiler = await device('ws', { username: 'boiler', password: 'boiler-password', clientId: 'boiler-ws-1', keepalive: 42 });
    await boiler.subscribeAsync('heat/set', { qos: 1 });
    const html = await page();
    const row = rowOf(html, 'boiler-ws-1');
    expect(row).toBeDefined();
    expect(row).toContain(`<a href="/clients/${sensor.id}" class="truncate" title="Boiler sensor">Boiler sensor</a>`);
    expect(row).toContain('title="boiler">boiler</code>');
    expect(row).toMatch(/<td class="nowrap">(::ffff:)?127\.0\.0\.1<\/td>/);
    expect(row).toContain('<td>WebSocket<br/><small>MQTT 3.1.1</small></td>');
    expect(row).toContain('<td>42 s</td>');
    // One subscription, and its filter.
    expect(row).toMatch(/<td>1<ul class="compact-list subscription-filters"><li><code class="truncate" title="heat\/set">heat\/set<\/code><\/li><\/ul><\/td>/);
    expect(row).toContain('<ul class="chips"><li><a href="/groups?q=Heating" class="truncate" title="Heating">Heating</a></li></ul>');
    expect(row).toMatch(/<time datetime="\d{4}-\d\d-\d\dT[^"]+Z">\d{4}-\d\d-\d\d \d\d:\d\d UTC<\/time>/);
    expect(html).toContain('1 connection.');
    // The section polls its own address every few seconds.
    expect(html).toMatch(/<section id="connections-results"[^>]*hx-get="\/connections"[^>]*hx-trigger="every 5s"/);

    await endClient(boiler);
    await expect.poll(async () => rowOf(await page(), 'boiler-ws-1'), { timeout: 10_000 }).toBeUndefined();
  });

  it('filters by MQTT client id or username, and keeps the search in the refresh address', async () => {
    await device('tcp', { username: 'boiler', password: 'boiler-password', clientId: 'kitchen-boiler' });
    await device('tcp', { username: 'porch', password: 'porch-password', clientId: 'porch-lamp' });
    const byClientId = await page('/connections?q=KITCHEN');
    expect(rowOf(byClientId, 'kitchen-boiler')).toBeDefined();
    expect(rowOf(byClientId, 'porch-lamp')).toBeUndefined();
    expect(byClientId).toContain('1 connection matches “KITCHEN”.');
    expect(byClientId).toMatch(/hx-get="\/connections\?q=KITCHEN"[^>]*hx-trigger="every 5s"/);

    const byUsername = await page('/connections?q=porch');
    expect(rowOf(byUsername, 'porch-lamp')).toBeDefined();
    expect(rowOf(byUsername, 'kitchen-boiler')).toBeUndefined();
    expect(byUsername).toContain('<td>TCP<br/><small>MQTT 3.1.1</small></td>');

    expect(await page('/connections?q=nobody-such')).toContain('No connection matches your search.');
  });

  it('sorts by Connected At, newest first by default and oldest first on request', async () => {
    const newest = await page('/connections');
    const oldest = await page('/connections?order=oldest');
    const order = (html: string) => [...html.matchAll(/<th scope="row"><code[^>]*>([^<]+)<\/code>/g)].map((m) => m[1]);
    expect(order(newest)).toEqual([...order(oldest)].reverse());
    expect(order(oldest).indexOf('kitchen-boiler')).toBeLessThan(order(oldest).indexOf('porch-lamp'));
    expect(newest).toContain('aria-sort="descending"');
    expect(oldest).toContain('aria-sort="ascending"');
  });

  it('disconnects one session from the row menu (htmx), leaving the same client’s other session connected, and logs who did it', async () => {
    const first = await device('tcp', { username: 'boiler', password: 'boiler-password', clientId: 'boiler-a' });
    const second = await device('ws', { username: 'boiler', password: 'boiler-password', clientId: 'boiler-b' });
    const html = await page('/connections?q=boiler-');
    const sessionId = /hx-delete="\/connections\/([^"]+)"[^>]*hx-confirm="Disconnect the session “boiler-a”/.exec(html)?.[1];
    expect(sessionId).toBeDefined();
    expect(html).toContain(`href="/connections/${sessionId}/disconnect"`);

    const closed = closedByBroker(first);
    const res = await operator.request(`/connections/${sessionId}`, { method: 'DELETE', headers: htmx });
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body).toContain('hx-target="#connections-notice"');
    expect(body).toContain('Disconnected “boiler-a” (username boiler).');
    await closed;
    expect(second.connected).toBe(true);
    const after = await page('/connections?q=boiler-');
    expect(rowOf(after, 'boiler-a')).toBeUndefined();
    expect(rowOf(after, 'boiler-b')).toBeDefined();
    expect(logs.filter((line) => line.includes(sessionId!))).toEqual([
      expect.stringMatching(/^administrator "conn-operator" disconnected session \S+ \(client id "boiler-a", username "boiler", from \S+ over tcp\) on node \S+$/),
    ]);
    // And the audit trail has it: who, which session.
    await gatehouse.audit.flush();
    const audited = await database.db.select().from(auditEvents).where(eq(auditEvents.kind, 'mqtt.disconnected'));
    expect(audited).toEqual([
      expect.objectContaining({ actor: 'conn-operator', subject: 'boiler-a', details: expect.objectContaining({ username: 'boiler', transport: 'tcp' }) }),
    ]);

    // Asked again, it is gone: the answer says so, nothing else is closed.
    const again = await operator.request(`/connections/${sessionId}`, { method: 'DELETE', headers: htmx });
    expect(await again.text()).toContain('That session had already ended.');
    expect(second.connected).toBe(true);
  });

  it('disconnects without JavaScript through a confirmation page', async () => {
    const lamp = await device('tcp', { username: 'porch', password: 'porch-password', clientId: 'porch-nojs' });
    const html = await page('/connections?q=porch-nojs');
    const sessionId = /href="\/connections\/([^"]+)\/disconnect"/.exec(html)?.[1];
    const confirm = await operator.request(`/connections/${sessionId}/disconnect`);
    expect(confirm.status).toBe(200);
    const confirmHtml = await confirm.text();
    expect(confirmHtml).toContain('Disconnect porch-nojs?');
    expect(confirmHtml).toContain(`<form method="post" action="/connections/${sessionId}/disconnect"`);
    expect(lamp.connected).toBe(true); // asking is not doing

    const closed = closedByBroker(lamp);
    const res = await postForm(operator, `/connections/${sessionId}/disconnect`, {});
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/connections?disconnected=1');
    await closed;
    expect((await operator.request(`/connections/${sessionId}/disconnect`)).status).toBe(404);
  });

  it('refuses a disconnect that does not come from the console (CSRF)', async () => {
    const lamp = await device('tcp', { username: 'porch', password: 'porch-password', clientId: 'porch-csrf' });
    const html = await page('/connections?q=porch-csrf');
    const sessionId = /href="\/connections\/([^"]+)\/disconnect"/.exec(html)?.[1];
    const res = await postForm(operator, `/connections/${sessionId}/disconnect`, {}, { origin: 'http://evil.example' });
    expect(res.status).toBe(403);
    expect(lamp.connected).toBe(true);
  });

  it('disconnects all sessions of a client from its row in the clients table, and no other client’s', async () => {
    const a = await device('tcp', { username: 'boiler', password: 'boiler-password', clientId: 'boiler-all-1' });
    const b = await device('ws', { username: 'boiler', password: 'boiler-password', clientId: 'boiler-all-2' });
    const bystander = await device('tcp', { username: 'porch', password: 'porch-password', clientId: 'porch-bystander' });
    const list = await page('/clients');
    expect(list).toContain(`hx-delete="/clients/${sensor.id}/sessions?view=row"`);
    expect(list).toContain(`href="/clients/${sensor.id}/disconnect?from=list"`);

    const closed = Promise.all([closedByBroker(a), closedByBroker(b)]);
    const res = await operator.request(`/clients/${sensor.id}/sessions?view=row`, { method: 'DELETE', headers: htmx });
    expect(res.status).toBe(200);
    const row = await res.text();
    await closed;
    expect(bystander.connected).toBe(true);
    expect(row).toMatch(new RegExp(`^<tr id="client-${sensor.id}">`));
    expect(row).toMatch(/Disconnected \d+ sessions of “Boiler sensor”\./);
    // Every session of the client went, the ones opened by earlier tests too.
    const remaining = await page('/connections?q=boiler');
    expect(remaining).toContain('0 connections match “boiler”.');
    expect(rowOf(await page('/connections?q=porch-bystander'), 'porch-bystander')).toBeDefined();
  });

  it('applies a saved client or group now when asked (its sessions end), and at the next connection by default', async () => {
    const boiler = await device('tcp', { username: 'boiler', password: 'boiler-password', clientId: 'boiler-apply' });
    const bystander = await device('tcp', { username: 'porch', password: 'porch-password', clientId: 'porch-apply' });
    const edit = async (apply: 'next' | 'now') => {
      const current = (await getClient(database.db, sensor.id))!;
      return postForm(operator, `/clients/${sensor.id}`, { name: 'Boiler sensor', username: 'boiler', version: String(current.version), apply });
    };
    // The form offers the choice, at next connection by default.
    const form = await page(`/clients/${sensor.id}/edit`);
    expect(form).toContain('<input type="radio" name="apply" value="next" checked=""/>');
    expect(form).toContain('<input type="radio" name="apply" value="now"/>');

    expect((await edit('next')).status).toBe(303);
    expect(boiler.connected).toBe(true);
    const closed = closedByBroker(boiler);
    const saved = await edit('now');
    expect(saved.status).toBe(303);
    expect(saved.headers.get('location')).toBe('/clients');
    expect(noticeOf(saved)).toBe('Client “Boiler sensor” saved. Disconnected 1 session.');
    await closed;
    expect(bystander.connected).toBe(true);

    // A group: the sessions that hold its permissions, and no other.
    const heating = (await listGroups(database.db, { query: 'Heating' })).groups[0]!;
    const group = (await getGroup(database.db, heating.id))!;
    const again = await device('ws', { username: 'boiler', password: 'boiler-password', clientId: 'boiler-apply-2' });
    expect(await page(`/groups/${group.id}/edit`)).toContain('name="apply" value="now"');
    const groupClosed = closedByBroker(again);
    const res = await postForm(operator, `/groups/${group.id}`, {
      _action: 'save',
      version: String(group.version),
      name: group.name,
      description: 'Boilers and radiators',
      'permission-effect': 'allow',
      'permission-action': 'subscribe',
      'permission-topic': 'heat/#',
      apply: 'now',
    });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/groups');
    expect(noticeOf(res)).toBe('Group “Heating” saved. Disconnected 1 session.');
    await groupClosed;
    expect(bystander.connected).toBe(true);
    expect(logs.filter((line) => line.includes('"boiler-apply-2"'))).toEqual([expect.stringMatching(/^administrator "conn-operator" disconnected session/)]);
  });

  it('deletes a connected client and, when asked in the dialog or on the page, disconnects its sessions too', async () => {
    const db = database.db;
    const kept = await createClient(db, { name: 'Deleted, still connected', username: 'deleted-kept', password: 'deleted-password' });
    const ended = await createClient(db, { name: 'Deleted and disconnected', username: 'deleted-ended', password: 'deleted-password' });
    const paged = await createClient(db, { name: 'Deleted on the page', username: 'deleted-paged', password: 'deleted-password' });
    const keptDevice = await device('tcp', { username: 'deleted-kept', password: 'deleted-password', clientId: 'deleted-kept-1' });
    const endedDevice = await device('tcp', { username: 'deleted-ended', password: 'deleted-password', clientId: 'deleted-ended-1' });
    const pagedDevice = await device('tcp', { username: 'deleted-paged', password: 'deleted-password', clientId: 'deleted-paged-1' });
    // The row menu offers the choice in its dialog; the confirmation page as a checkbox.
    const list = await page('/clients?q=deleted');
    expect(list).toContain(`data-confirm-option="disconnect" data-confirm-option-label="Also disconnect its live session now"`);
    const confirm = await page(`/clients/${paged.id}/delete`);
    expect(confirm).toContain('<input type="checkbox" name="disconnect" value="1"/> Also disconnect its live session now');

    const plain = await operator.request(`/clients/${kept.id}`, { method: 'DELETE', headers: htmx });
    expect(await plain.text()).toContain('Client “Deleted, still connected” deleted. Its live session stays connected until it ends.');
    const endedClosed = closedByBroker(endedDevice);
    const asked = await operator.request(`/clients/${ended.id}?disconnect=1`, { method: 'DELETE', headers: htmx });
    expect(await asked.text()).toContain('Client “Deleted and disconnected” deleted. Disconnected 1 session.');
    await endedClosed;
    const pagedClosed = closedByBroker(pagedDevice);
    const done = await postForm(operator, `/clients/${paged.id}/delete`, { disconnect: '1' });
    expect(done.status).toBe(303);
    expect(noticeOf(done)).toBe('Client “Deleted on the page” deleted. Disconnected 1 session.');
    await pagedClosed;
    expect(keptDevice.connected).toBe(true);
  });

  it("lists a client's live sessions on its page and disconnects them all there, with and without htmx", async () => {
    const a = await device('ws', { username: 'porch', password: 'porch-password', clientId: 'porch-page-1' });
    const clientPage = await page(`/clients/${other.id}`);
    expect(clientPage).toContain('<h2 id="live-sessions-title">Live sessions</h2>');
    expect(clientPage).toContain('>porch-page-1</code>');
    expect(clientPage).toContain(`hx-delete="/clients/${other.id}/sessions?view=page"`);

    // Without JavaScript: the confirmation page, then a POST.
    const confirm = await page(`/clients/${other.id}/disconnect`);
    expect(confirm).toContain('Disconnect every session of “Porch light”?');
    expect(confirm).toContain('>porch-page-1</code>');
    const closed = closedByBroker(a);
    const res = await postForm(operator, `/clients/${other.id}/disconnect`, {});
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toMatch(new RegExp(`^/clients/${other.id}\\?disconnected=\\d+$`));
    await closed;
    const after = await page(res.headers.get('location')!);
    expect(after).toMatch(/Disconnected \d+ sessions?\./);
    expect(after).toContain('No live session: this client is not connected.');

    // With htmx: the section comes back, emptied.
    const b = await device('tcp', { username: 'porch', password: 'porch-password', clientId: 'porch-page-2' });
    const closedB = closedByBroker(b);
    const section = await (await operator.request(`/clients/${other.id}/sessions?view=page`, { method: 'DELETE', headers: htmx })).text();
    await closedB;
    expect(section).toMatch(/^<section id="live-sessions"/);
    expect(section).toContain('Disconnected 1 session of “Porch light”.');
    expect(section).toContain('No live session: this client is not connected.');
  });

  it('writes Last seen in a batch after a disconnect, and shows "connected" while a session is live', async () => {
    const fresh = await createClient(database.db, { name: 'Seen later', username: 'seen-later', password: 'seen-password' });
    const rowCell = async () => {
      const html = await (await operator.request(`/clients/${fresh.id}/row`, { headers: htmx })).text();
      return /<td>(\d+)<\/td><td[^>]*>(.*?)<\/td><td><time/.exec(html)?.slice(1);
    };
    expect(await rowCell()).toEqual(['0', 'never']);
    const seen = await device('tcp', { username: 'seen-later', password: 'seen-password', clientId: 'seen-1' });
    expect(await rowCell()).toEqual(['1', 'connected']);

    const before = Date.now();
    await gatehouse.lastSeen.flush(); // nothing of this client waits yet
    await endClient(seen);
    // Noted in memory at once, not written: the database still says never.
    await expect.poll(() => gatehouse.lastSeen.pending(), { timeout: 10_000 }).toBeGreaterThan(0);
    expect((await getClient(database.db, fresh.id))?.lastSeenAt).toBeNull();

    await gatehouse.lastSeen.flush();
    expect(gatehouse.lastSeen.pending()).toBe(0);
    const lastSeenAt = (await getClient(database.db, fresh.id))?.lastSeenAt;
    expect(lastSeenAt).toBeInstanceOf(Date);
    expect(lastSeenAt!.getTime()).toBeGreaterThanOrEqual(before - 1000);
    const [sessions, cell] = (await rowCell())!;
    expect(sessions).toBe('0');
    expect(cell).toContain(`<time datetime="${lastSeenAt!.toISOString()}">`);
    // The client id of that session is kept with it: the client's page starts from it.
    expect((await getClient(database.db, fresh.id))?.lastClientId).toBe('seen-1');
    expect(await page(`/clients/${fresh.id}`)).toContain('<input id="check-clientId" name="clientId" type="text" value="seen-1"');
    // A later session under another id replaces it; an older end noted late does not.
    const later = await device('tcp', { username: 'seen-later', password: 'seen-password', clientId: 'seen-2' });
    expect(await page(`/clients/${fresh.id}`)).toContain('<input id="check-clientId" name="clientId" type="text" value="seen-2"');
    await endClient(later);
    await expect.poll(() => gatehouse.lastSeen.pending(), { timeout: 10_000 }).toBeGreaterThan(0);
    gatehouse.lastSeen.note(fresh.id, new Date(0), 'ancient');
    await gatehouse.lastSeen.flush();
    expect((await getClient(database.db, fresh.id))?.lastClientId).toBe('seen-2');
  });

  it("judges a connected client's Access in the clients list and on its page by its live session's client id, not the id it was last seen with", async () => {
    const rover = await createClient(database.db, { name: 'Rover', username: 'rover', password: 'rover-password' });
    await grantGroup(database.db, { name: 'Rovers', permissions: [['allow', 'publish', 'rover/%c']], clientIds: ['rover-live-*'] });
    // Last seen under an id no rule matches: judged by it while not connected.
    gatehouse.lastSeen.note(rover.id, new Date(), 'rover-old');
    await gatehouse.lastSeen.flush();
    const listed = async () => tableRows(await page('/clients?q=rover')).find((row) => row.Name === 'Rover')!.Access;
    expect(await listed()).toBe('No access can connect, cannot publish or subscribe');

    const live = await device('tcp', { username: 'rover', password: 'rover-password', clientId: 'rover-live-7' });
    expect(await listed()).toBe('Rovers by live client ID rover-live-7');
    const row = await (await operator.request(`/clients/${rover.id}/row`, { headers: htmx })).text();
    expect(textOf(row)).toContain('Rovers by live client ID rover-live-7');
    const own = textOf(await page(`/clients/${rover.id}`));
    expect(own).toContain('Judged with the client ID of its live session, rover-live-7');
    expect(own).not.toContain('No access');

    // Ended and written: judged again by the id it was last seen with, now that one.
    await endClient(live);
    await expect.poll(() => gatehouse.lastSeen.pending(), { timeout: 10_000 }).toBeGreaterThan(0);
    await gatehouse.lastSeen.flush();
    expect(await listed()).toBe('Rovers by client ID rover-live-7');
  });

  it('marks every destructive action of a row menu as dangerous, and confirms each on a page whose footer is the way back, then the danger button', async () => {
    const marked = await createClient(database.db, { name: 'Marked', username: 'marked', password: 'marked-password' });
    await device('tcp', { username: 'marked', password: 'marked-password', clientId: 'marked-1' });
    const other = await createAdministrator(database.db, { username: 'other-admin', password: 'other-admin-password' });
    const token = await createApiToken(database.db, { name: 'Danger test', preset: 'viewer' });
    const [group] = (await listGroups(database.db, { query: 'Heating' })).groups;
    const connections = await page('/connections?q=marked-1');
    const sessionId = /hx-delete="\/connections\/([^"]+)"/.exec(connections)?.[1];
    expect(sessionId).toBeDefined();

    /** The items of every row menu on `html` whose text is one of `labels`, with whether they are marked. */
    const destructive = (html: string, labels: string[]) =>
      [...html.matchAll(/<details class="dropdown">[\s\S]*?<\/details>/g)].flatMap((menu) =>
        [...menu[0].matchAll(/<li( class="[^"]*")?>\s*<a ([^>]*)>\s*([^<]+?)\s*<\/a>/g)]
          .filter((item) => labels.includes(item[3]!))
          .map((item) => ({ label: item[3], marked: item[1] === ' class="danger-item"' && /class="danger"/.test(item[2]!) })),
      );
    const menus = [
      { path: '/clients?q=marked', labels: ['Delete', 'Disconnect all sessions'], count: 2 },
      { path: '/connections?q=marked-1', labels: ['Disconnect'], count: 1 },
      { path: '/groups?q=Heating', labels: ['Delete'], count: 1 },
      { path: '/administrators', labels: ['Remove'], count: 2 }, // another, and oneself
      { path: '/tokens', labels: ['Revoke'], count: 1 },
    ];
    for (const { path, labels, count } of menus) {
      const items = destructive(await page(path), labels);
      expect(items, path).toHaveLength(count);
      expect(items.filter((item) => !item.marked), path).toEqual([]);
    }

    const confirmations = [
      `/clients/${marked.id}/delete`,
      `/clients/${marked.id}/disconnect`,
      `/connections/${sessionId}/disconnect`,
      `/groups/${group!.id}/delete`,
      `/administrators/${other.id}/remove`,
      `/tokens/${token.token.id}/revoke`,
    ];
    for (const path of confirmations) {
      const footer = /<div class="form-actions confirm-actions">([\s\S]*?)<\/div>/.exec(await page(path))?.[1];
      expect(footer, path).toMatch(/^<a href="[^"]+" role="button" class="secondary outline">[^<]+<\/a><button type="submit" class="danger">[^<]+<\/button>$/);
    }
  });

  it('writes the sessions of a storm in statements of 200 clients, the event loop let in between', async () => {
    const rows = (await database.db.execute(sql`
      insert into clients (name, username, password_hash)
      select 'Storm ' || i, 'storm-seen-' || i, 'not a hash' from generate_series(1, 450) as i
      returning id`)) as unknown as { rows?: Array<{ id: number }> } & Array<{ id: number }>;
    const ids = (rows.rows ?? rows).map((row) => Number(row.id));
    expect(ids).toHaveLength(450);
    await gatehouse.lastSeen.flush();
    const at = new Date();
    for (const id of ids) gatehouse.lastSeen.note(id, at, `storm-${id}`);
    const updates = countQueries(database.db, (query) => /^\s*update\b/i.test(query));
    // What the event loop saw between the statements: how many had been sent at each of its turns.
    const seenAtTurns: number[] = [];
    let turning = true;
    const turn = () => {
      seenAtTurns.push(updates.count());
      if (turning) setImmediate(turn);
    };
    setImmediate(turn);
    try {
      await gatehouse.lastSeen.flush();
    } finally {
      turning = false;
      updates.stop();
    }
    expect(updates.count()).toBe(3);
    expect(seenAtTurns).toEqual(expect.arrayContaining([1, 2]));
    const written = (await database.db.execute(sql`
      select count(*)::int as n from clients where username like 'storm-seen-%' and last_seen_at = ${at.toISOString()}::timestamptz and last_client_id = 'storm-' || id`)) as unknown as
      { rows?: Array<{ n: number }> } & Array<{ n: number }>;
    expect(Number((written.rows ?? written)[0]!.n)).toBe(450);
  });
});
