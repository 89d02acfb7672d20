import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { createClient, getClient } from '../src/domain/clients';
import { listGroupRules } from '../src/domain/groupRules';
import { listGroups } from '../src/domain/groups';
import { createApp } from '../src/web/app';
import { signIn, type SignedInApp } from './support/admin';
import { appendRules, grantGroup } from './support/acl';
import { createTestDatabase, drivers } from './support/db';
import { htmx, postForm, send } from './support/http';
import { tableRows } from './support/html';

describe.each(drivers)("a client's permissions over HTTP on %s", (driver) => {
  let database: OpenDatabase;
  let app: SignedInApp;
  let sensorId: number;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
    app = await signIn(createApp({ db: database.db, log: () => {} }), database.db);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('marks a client that no rule gives a group in the clients table', async () => {
    const lonely = await createClient(database.db, { name: 'Lonely', username: 'lonely', password: '12345678' });
    const html = await (await send(app, '/clients')).text();
    expect(html).toContain('<th scope="col">Access</th>');
    expect(tableRows(html).find((row) => row.Name === 'Lonely')!.Access).toBe('No access can connect, cannot publish or subscribe');
    expect(html).toContain(`<a href="/clients/${lonely.id}" class="badge no-access">No access</a>`);
  });

  it('lists the groups rules by client give, and hedges once rules by client id exist', async () => {
    const sensor = await createClient(database.db, { name: 'Sensor', username: 'sensor', password: '12345678' });
    sensorId = sensor.id;
    await grantGroup(database.db, { name: 'Base', permissions: [['allow', 'publish', 'base/%u']], usernames: ['sensor'] });
    await grantGroup(database.db, {
      name: 'Sensors',
      permissions: [
        ['allow', 'publish', 'sensors/%c/#'],
        ['allow', 'subscribe', 'sensors/#'],
        ['deny', 'subscribe', 'sensors/+/secret'],
      ],
      clientIds: ['sensor-*'],
    });
    const html = await (await send(app, '/clients')).text();
    const access = new Map(tableRows(html).map((row) => [row.Name, row.Access]));
    expect(access.get('Sensor')).toBe('Base');
    // A client never seen: rules by client id are judged once it connects, and it is not said to have access through them.
    expect(access.get('Lonely')).toBe('No access never seen: rules by client ID match once it connects');
    expect(html).toContain(`<a href="/clients/${sensor.id}">Permissions</a>`);
    // Names are links: the client to its page, its group to the group.
    const [base] = (await listGroups(database.db, { query: 'Base' })).groups;
    expect(html).toContain(`<a href="/groups/${base!.id}/edit" class="badge">Base</a>`);
    expect(html).toContain(`<a href="/clients/${sensor.id}" class="truncate" title="Sensor">Sensor</a>`);
  });

  it("shows first on a client's page what it may do and why, the no-access warning above its sessions and Try it", async () => {
    const lonely = (await (await send(app, '/clients?access=none')).text()).match(/<a href="\/clients\/(\d+)" class="badge no-access">/)![1];
    const html = await (await send(app, `/clients/${lonely}`)).text();
    const at = (needle: string) => {
      const index = html.indexOf(needle);
      expect(index, needle).toBeGreaterThan(0);
      return index;
    };
    expect(at('<h2 id="access-title">What it may do</h2>')).toBeLessThan(at('id="no-access"'));
    expect(at('id="no-access"')).toBeLessThan(at('id="live-sessions"'));
    expect(at('id="live-sessions"')).toBeLessThan(at('id="try-it"'));
    expect(html).toMatch(/<p class="warning" id="no-access" role="note"><strong>No access\.<\/strong> Judged with its username as client ID \(it has not connected yet\), <code>lonely<\/code>: no rule gives it a group/);
  });

  it('filters the clients list to those with no access ("No access only"), with and without a search', async () => {
    const list = await (await send(app, '/clients')).text();
    expect(list).toMatch(/<input type="checkbox" name="access" value="none"\/> No access only/);
    const none = await (await send(app, '/clients?access=none')).text();
    expect(tableRows(none).map((row) => row.Name).sort()).toEqual(['Lonely']);
    expect(none).toContain('1 client has no access.');
    expect(none).toMatch(/<input type="checkbox" name="access" value="none" checked=""\/> No access only/);
    const searched = await (await send(app, '/clients?access=none&q=sens')).text();
    expect(tableRows(searched)).toEqual([]);
    expect(searched).toContain('No client matches your search.');
  });

  it("shows a client's groups, the rules that gave them, and the merged rows", async () => {
    const html = await (await send(app, `/clients/${sensorId}`)).text();
    expect(html).toContain('<h1>Sensor</h1>');
    expect(html).toMatch(/<a href="\/groups\/\d+\/edit">Base<\/a><\/th><td>Client “Sensor”<\/td>/);
    // With no session seen yet, the checker starts from the username as the client id, which no client-id rule matches.
    expect(html).toContain('id="check-clientId" name="clientId" type="text" value="sensor"');
    expect(html).not.toMatch(/>Sensors<\/a><\/th>/);
    // Never seen: judged with its username as client ID, which the rule by client id pattern does not match.
    expect(html).toMatch(/Judged with its username as client ID \(it has not connected yet\), <code>sensor<\/code>: group <a href="\/groups\/\d+\/edit">Base<\/a>\./);
    expect(html).toContain('<td><code>base/%u</code></td><td><code>base/sensor</code></td><td>Base, row 1</td>');
    const withoutId = await (await send(app, `/clients/${sensorId}?clientId=`)).text();
    expect(withoutId).toContain('1 rule matches by MQTT client ID (“sensor-*”): enter the client ID the device uses to see what it adds.');

    const withId = await (await send(app, `/clients/${sensorId}?clientId=sensor-7`)).text();
    expect(withId).toMatch(/>Sensors<\/a><\/th><td>MQTT Client ID pattern “sensor-\*”<\/td>/);
    expect(withId).toContain('<td><code>sensors/%c/#</code></td><td><code>sensors/sensor-7/#</code></td><td>Sensors, row 1</td>');
  });

  it.each([
    ['publish', 'sensors/sensor-7/temp', 'Allowed', 'row 1 of group “Sensors” (Allow Publish <code>sensors/%c/#</code> → <code>sensors/sensor-7/#</code>)'],
    ['publish', 'sensors/other/temp', 'Denied', 'No Allow/Publish row matches this topic'],
    ['publish', '$SYS/x', 'Denied', 'Topics starting with $ belong to the broker'],
    ['subscribe', 'sensors/+/secret', 'Denied', 'row 3 of group “Sensors” (Deny Subscribe <code>sensors/+/secret</code>)'],
    ['subscribe', '#', 'Denied', 'No Allow/Subscribe row covers every topic this filter can match'],
  ])('checks %s to %s: %s', async (action, topic, verdict, reason) => {
    const query = new URLSearchParams({ clientId: 'sensor-7', action, topic });
    const res = await send(app, `/clients/${sensorId}?${query}`);
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain(`<strong>${verdict}</strong>`);
    expect(html).toContain(reason);
  });

  it.each([
    ['publish', 'sensors/other/temp', '<code>PUBACK</code>/<code>PUBREC</code> reason code <code>0x87</code>'],
    ['subscribe', '#', '<code>SUBACK</code> reason code <code>0x87</code> (Not authorized) for this filter'],
  ])('says what a refused %s to %s tells an MQTT 5.0 device, and a 3.1.1 one', async (action, topic, answer) => {
    const denied = await (await send(app, `/clients/${sensorId}?${new URLSearchParams({ clientId: 'sensor-7', action, topic })}`)).text();
    expect(denied).toContain('id="check-answer"');
    expect(denied).toContain(answer);
    expect(denied).toContain(action === 'publish' ? 'over MQTT 3.1.1, nothing' : 'over MQTT 3.1.1, <code>SUBACK</code> <code>0x80</code>');
    const allowed = await (await send(app, `/clients/${sensorId}?${new URLSearchParams({ clientId: 'sensor-7', action, topic: 'sensors/sensor-7/temp' })}`)).text();
    expect(allowed).toContain('<strong>Allowed</strong>');
    expect(allowed).not.toContain('id="check-answer"');
  });

  it('says which deny rows withhold part of a granted subscription', async () => {
    const query = new URLSearchParams({ clientId: 'sensor-7', action: 'subscribe', topic: 'sensors/#' });
    const html = await (await send(app, `/clients/${sensorId}?${query}`)).text();
    expect(html).toContain('<strong>Allowed</strong>');
    expect(html).toContain('Messages on topics matching row 3 of group “Sensors” (Deny Subscribe <code>sensors/+/secret</code>) are never delivered');
  });

  it('flags a bad check with 422, and answers htmx with the section alone', async () => {
    const bad = await send(app, `/clients/${sensorId}?${new URLSearchParams({ clientId: '', action: 'publish', topic: 'a/+' })}`);
    expect(bad.status).toBe(422);
    const html = await bad.text();
    expect(html).toContain('<small id="check-clientId-error" class="field-error">Enter the MQTT client ID the device connects with.</small>');
    expect(html).toContain('<small id="check-topic-error" class="field-error">A topic to publish to cannot contain + or #.</small>');
    expect(html).not.toContain('id="check-result"');

    const fragment = await (await send(app, `/clients/${sensorId}?clientId=x&topic=base/sensor`, { headers: htmx })).text();
    expect(fragment.startsWith('<section id="access"')).toBe(true);
    expect(fragment).toContain('<strong>Allowed</strong>');
  });

  it('flags a client id holding NUL instead of failing', async () => {
    const client = await createClient(database.db, { name: 'Nul check', username: 'nul-check', password: '12345678' });
    const res = await send(app, `/clients/${client.id}?clientId=a%00b&action=publish&topic=x`);
    expect(res.status).toBe(422);
    expect(await res.text()).toContain('A client ID cannot contain a NUL character.');
  });

  it('answers an unknown client with 404 and leaves /clients/new alone', async () => {
    expect((await send(app, '/clients/999999')).status).toBe(404);
    expect((await send(app, '/clients/new')).status).toBe(200);
  });

  it('deleting a client reports the rules it removed: the confirmation, the no-JS redirect, and htmx', async () => {
    const a = await createClient(database.db, { name: 'Named A', username: 'named-a', password: '12345678' });
    const b = await createClient(database.db, { name: 'Named B', username: 'named-b', password: '12345678' });
    const groupId = (await listGroupRules(database.db))[0]!.groups[0]!.id;
    await appendRules(database.db, [
      { matchBy: 'client', value: 'named-a', groups: [String(groupId)] },
      { matchBy: 'client', value: 'named-b', groups: [String(groupId)] },
    ]);
    const confirm = await (await send(app, `/clients/${a.id}/delete`)).text();
    expect(confirm).toContain('These group rules name this client and are removed with it:');
    expect(confirm).toContain('The rule for client “Named A” (named-a), which gives “Base”');

    const res = await postForm(app, `/clients/${a.id}/delete`, {});
    expect(res.status).toBe(303);
    const location = res.headers.get('location')!;
    expect(location).toMatch(/^\/clients\?change=\d+$/);
    expect(await (await send(app, location)).text()).toContain('Client “Named A” (named-a) was deleted.');

    const htmxDelete = await send(app, `/clients/${b.id}`, { method: 'DELETE', headers: htmx });
    expect(htmxDelete.status).toBe(200);
    const partial = await htmxDelete.text();
    expect(partial).toContain('<hx-partial hx-target="#notices" hx-swap="innerHTML"><p class="notice">Client “Named B” deleted.</p></hx-partial>');
    expect(partial).toContain('<hx-partial hx-target="#clients-notice" hx-swap="innerHTML">');
    expect(partial).toContain('The rule for client “Named B” (named-b) was removed; it gave “Base”.');
    expect(await getClient(database.db, b.id)).toBeNull();
  });
});
