import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { createClient } from '../src/domain/clients';
import { listGroupRules } from '../src/domain/groupRules';
import { createGroup, getGroup, listGroups, updateGroup } from '../src/domain/groups';
import { createApp } from '../src/web/app';
import { signIn, type SignedInApp } from './support/admin';
import { appendRules } from './support/acl';
import { createTestDatabase, drivers } from './support/db';
import { htmx, postForm, send, noticeOf } from './support/http';
import { tableRows } from './support/html';

/** The form fields of a group with `rows` of [effect, action, topic]. */
function groupForm(name: string, rows: Array<[string, string, string]>, action = 'save', description = ''): Array<[string, string]> {
  return [
    ['name', name],
    ['description', description],
    ...rows.flatMap(([effect, action, topic]): Array<[string, string]> => [
      ['permission-effect', effect],
      ['permission-action', action],
      ['permission-topic', topic],
    ]),
    ['_action', action],
  ];
}

const rowCount = (html: string) => (html.match(/name="permission-topic"/g) ?? []).length;

describe.each(drivers)('groups console over HTTP on %s', (driver) => {
  let database: OpenDatabase;
  let app: SignedInApp;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
    app = await signIn(createApp({ db: database.db, log: () => {} }), database.db);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('links Groups and Group rules from the main navigation', async () => {
    const html = await (await send(app, '/groups')).text();
    expect(html).toContain('<a href="/groups" aria-current="page">Groups</a>');
    expect(html).toContain('<a href="/group-rules">Group rules</a>');
  });

  it('shows an empty state and a New group button', async () => {
    const html = await (await send(app, '/groups')).text();
    expect(html).toContain('No groups yet.');
    expect(html).toMatch(/<a href="\/groups\/new" role="button">New group<\/a>/);
  });

  it('offers a new group form with one blank permission row, and Save first so Enter never removes a row', async () => {
    const html = await (await send(app, '/groups/new')).text();
    expect(html).toMatch(/<label for="name">Name<input id="name" name="name"/);
    expect(rowCount(html)).toBe(1);
    expect(html).toContain('aria-label="Topic filter, row 1"');
    expect(html.indexOf('value="save"')).toBeLessThan(html.indexOf('value="remove:0"'));
  });

  it('adds and removes rows without JavaScript, keeping what was typed and saving nothing', async () => {
    const added = await postForm(app, '/groups', groupForm('Draft', [['deny', 'subscribe', 'kept/#']], 'add'));
    expect(added.status).toBe(200);
    const page = await added.text();
    expect(page).toContain('<h1>New group</h1>');
    expect(rowCount(page)).toBe(2);
    expect(page).toContain('value="kept/#"');
    expect(page).toMatch(/<option value="deny" selected="">Deny<\/option>/);
    expect(page).toMatch(/id="permission-1-topic"[^>]*autofocus/);

    const removed = await postForm(app, '/groups', groupForm('Draft', [['allow', 'publish', 'first'], ['allow', 'publish', 'second']], 'remove:0'));
    const html = await removed.text();
    expect(rowCount(html)).toBe(1);
    expect(html).not.toContain('value="first"');
    expect(html).toContain('value="second"');
    expect((await listGroups(database.db, { query: 'Draft' })).total).toBe(0);
  });

  it('answers htmx with the form alone when adding a row', async () => {
    const res = await postForm(app, '/groups', groupForm('Draft', [], 'add'), htmx);
    const html = await res.text();
    expect(html.startsWith('<form id="group-form"')).toBe(true);
    expect(rowCount(html)).toBe(1);
  });

  it('creates a group with a 303 and lists it with its description and number of rows', async () => {
    const res = await postForm(
      app,
      '/groups',
      groupForm('Sensors', [['allow', 'publish', 'sensors/%c/#'], ['deny', 'subscribe', 'sensors/+/secret']], 'save', 'Field devices'),
    );
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/groups');
    expect(noticeOf(res)).toBe('Group “Sensors” created.');
    const html = await (await send(app, '/groups')).text();
    expect(tableRows(html).find((row) => row.Name === 'Sensors')).toMatchObject({
      Description: 'Field devices',
      Topics: 'pub sensors/%c/# deny sub sensors/+/secret',
      'Held by': 'nobody: no group rule gives it',
    });
    expect(html).toContain('aria-label="Actions for Sensors"');
  });

  it('flags each invalid filter on its own row with 422, keeps the input, and saves nothing', async () => {
    const long = 'x'.repeat(65536);
    const res = await postForm(
      app,
      '/groups',
      groupForm('Invalid', [
        ['allow', 'publish', 'good/#'],
        ['allow', 'publish', 'a/#/b'],
        ['allow', 'subscribe', 'a+'],
        ['deny', 'subscribe', ''],
        ['allow', 'subscribe', long],
      ]),
    );
    expect(res.status).toBe(422);
    const html = await res.text();
    expect(html).toContain('role="alert"');
    expect(html).not.toMatch(/id="permission-0-topic"[^>]*aria-invalid/);
    expect(html).toMatch(/id="permission-1-topic" value="a\/#\/b"[^>]*aria-invalid="true" aria-describedby="permission-1-topic-error permission-help"/);
    expect(html).toContain('<small id="permission-1-topic-error" class="field-error"># must be the last level and stand alone, as in a/#.</small>');
    expect(html).toContain('<small id="permission-2-topic-error" class="field-error">+ must fill a whole level, as in a/+/b.</small>');
    expect(html).toContain('<small id="permission-3-topic-error" class="field-error">Enter a topic filter.</small>');
    expect(html).toContain('<small id="permission-4-topic-error" class="field-error">Use at most 65535 bytes.</small>');
    expect(html).toContain('<tr id="permission-1" class="invalid">');
    expect(html).toContain('value="Invalid"');
    expect((await listGroups(database.db, { query: 'Invalid' })).total).toBe(0);
  });

  it('answers a bad htmx save with the form and its errors', async () => {
    const res = await postForm(app, '/groups', groupForm('', [['allow', 'publish', 'a+']]), htmx);
    expect(res.status).toBe(422);
    const html = await res.text();
    expect(html.startsWith('<form id="group-form"')).toBe(true);
    expect(html).toContain('Enter a name.');
    expect(html).toContain('+ must fill a whole level');
  });

  it('refuses forged effect and action values', async () => {
    const res = await postForm(app, '/groups', groupForm('Forged', [['maybe', 'teleport', 'a']]));
    expect(res.status).toBe(422);
    const html = await res.text();
    expect(html).toContain('Choose Allow or Deny.');
    expect(html).toContain('Choose Publish or Subscribe.');
  });

  it('refuses a duplicate name with 409 on the name field', async () => {
    await createGroup(database.db, { name: 'Taken', permissions: [] });
    const res = await postForm(app, '/groups', groupForm('Taken', []));
    expect(res.status).toBe(409);
    expect(await res.text()).toMatch(/id="name-error"[^>]*>A group with this name already exists/);
  });

  it('refuses a save made on a stale form with 409, keeps the rows, and lets a second save overwrite', async () => {
    const group = await createGroup(database.db, { name: 'Contested', permissions: [{ effect: 'allow', action: 'publish', topic: 'a/#' }] });
    const page = await (await send(app, `/groups/${group.id}/edit`)).text();
    expect(page).toContain('name="version" value="1"');
    await updateGroup(database.db, group.id, { name: 'Contested', permissions: [{ effect: 'deny', action: 'publish', topic: 'b/#' }] });
    const mine = await postForm(app, `/groups/${group.id}`, [['version', '1'], ...groupForm('Contested', [['allow', 'subscribe', 'mine/#']])]);
    expect(mine.status).toBe(409);
    const html = await mine.text();
    expect(html).toContain('Another operator changed this group while you were editing it');
    expect(html).toContain('value="mine/#"');
    expect(html).toContain('name="version" value="2"');
    expect((await getGroup(database.db, group.id))?.permissions).toEqual([{ effect: 'deny', action: 'publish', topic: 'b/#' }]);
    const again = await postForm(app, `/groups/${group.id}`, [['version', '2'], ...groupForm('Contested', [['allow', 'subscribe', 'mine/#']])]);
    expect(again.status).toBe(303);
    expect((await getGroup(database.db, group.id))?.permissions).toEqual([{ effect: 'allow', action: 'subscribe', topic: 'mine/#' }]);
  });

  it('edits a group on its own page and replaces its rows', async () => {
    const group = await createGroup(database.db, {
      name: 'Editable',
      permissions: [{ effect: 'allow', action: 'publish', topic: 'old/#' }],
    });
    const page = await (await send(app, `/groups/${group.id}/edit`)).text();
    expect(page).toContain('<h1>Edit Editable</h1>');
    expect(page).toContain('value="old/#"');
    expect(page).toContain(`action="/groups/${group.id}"`);
    const res = await postForm(app, `/groups/${group.id}`, groupForm('Edited', [['deny', 'publish', 'new/+'], ['allow', 'subscribe', 'new/#']]));
    expect(res.status).toBe(303);
    expect(noticeOf(res)).toBe('Group “Edited” saved.');
    expect(await getGroup(database.db, group.id)).toMatchObject({
      name: 'Edited',
      permissions: [
        { effect: 'deny', action: 'publish', topic: 'new/+' },
        { effect: 'allow', action: 'subscribe', topic: 'new/#' },
      ],
    });
  });

  it('deletes without JavaScript: the confirmation tells what happens to the rules, and the list says what changed', async () => {
    await createClient(database.db, { name: 'Pump', username: 'pump', password: '12345678' });
    const doomed = await createGroup(database.db, { name: 'Doomed', permissions: [] });
    const other = await createGroup(database.db, { name: 'Other', permissions: [] });
    await appendRules(database.db, [
      { matchBy: 'client', value: 'pump', groups: [String(doomed.id), String(other.id)] },
      { matchBy: 'client_id', value: 'doomed-*', groups: [String(doomed.id)] },
    ]);
    const confirm = await (await send(app, `/groups/${doomed.id}/delete`)).text();
    expect(confirm).toContain('Delete group “Doomed”?');
    expect(confirm).toContain('The rule for client “Pump” (pump) loses it and keeps “Other”.');
    expect(confirm).toContain('The rule for MQTT client ID pattern “doomed-*” is removed: this is its only group.');

    const res = await postForm(app, `/groups/${doomed.id}/delete`, {});
    expect(res.status).toBe(303);
    const location = res.headers.get('location')!;
    expect(location).toMatch(/^\/groups\?change=\d+$/);
    expect(noticeOf(res)).toMatch(/^Group “.+” deleted\.$/);
    const list = await (await send(app, location)).text();
    expect(list).toContain('Group “Doomed” was deleted.');
    expect(list).toContain('The rule for client “Pump” (pump) no longer gives “Doomed”; it still gives “Other”.');
    expect(await getGroup(database.db, doomed.id)).toBeNull();
    expect((await listGroupRules(database.db)).map((r) => r.groups.map((g) => g.name))).toEqual([['Other']]);
  });

  it('deletes with htmx: the row is swapped for nothing and the notice region hears what changed', async () => {
    const group = await createGroup(database.db, { name: 'Quick', permissions: [] });
    const listed = await (await send(app, '/groups?q=Quick')).text();
    expect(listed).toContain('hx-swap="outerHTML swapEmpty:true"');
    expect(listed).toContain('<div id="groups-notice"></div>');
    const res = await send(app, `/groups/${group.id}`, { method: 'DELETE', headers: htmx });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(
      '<hx-partial hx-target="#notices" hx-swap="innerHTML"><p class="notice">Group “Quick” deleted.</p></hx-partial>',
    );
    expect(await getGroup(database.db, group.id)).toBeNull();
  });

  it.each([
    ['GET', '/groups/999999/edit'],
    ['GET', '/groups/abc/edit'],
    ['GET', '/groups/999999/delete'],
    ['POST', '/groups/999999'],
    ['POST', '/groups/999999/delete'],
    ['DELETE', '/groups/999999'],
  ])('answers %s %s with a 404 page', async (method, path) => {
    const res = method === 'POST' ? await postForm(app, path, groupForm('x', [])) : await send(app, path, { method });
    expect(res.status).toBe(404);
    expect(await res.text()).toContain('Not found');
  });

  it('searches by name', async () => {
    await createGroup(database.db, { name: 'Findable Dashboards', permissions: [] });
    const html = await (await send(app, '/groups?q=DASHBOARD')).text();
    expect(html).toContain('Findable Dashboards');
    expect(html).toContain('1 group matches “DASHBOARD”.');
    expect(html).not.toContain('>Sensors<');
  });

  it('escapes hostile names and topics', async () => {
    const hostile = '<script>alert(1)</script>';
    const group = await createGroup(database.db, {
      name: hostile,
      description: hostile,
      permissions: [{ effect: 'allow', action: 'publish', topic: `"><img src=x onerror=alert(1)>` }],
    });
    for (const path of ['/groups', `/groups/${group.id}/edit`, `/groups/${group.id}/delete`]) {
      const html = await (await send(app, path)).text();
      expect(html).not.toContain(hostile);
      expect(html).not.toContain('<img src=x');
    }
  });

  it('lists each group\'s first topics and who holds it, with how many more', async () => {
    const big = await createGroup(database.db, {
      name: 'Big',
      permissions: Array.from({ length: 5 }, (_, i) => ({ effect: i === 1 ? 'deny' : 'allow', action: i % 2 ? 'subscribe' : 'publish', topic: `big/${i}` })) as never,
    });
    const holders = await Promise.all(['holder-a', 'holder-b'].map((u) => createClient(database.db, { name: `Holder ${u.slice(-1).toUpperCase()}`, username: u, password: 'holder-password' })));
    await appendRules(database.db, [
      { matchBy: 'client', value: 'holder-a', groups: [String(big.id)] },
      { matchBy: 'client_id', value: 'big-*', groups: [String(big.id)] },
      { matchBy: 'client', value: 'holder-b', groups: [String(big.id)] },
      { matchBy: 'certificate', value: 'AB'.repeat(32), groups: [String(big.id)] },
    ]);
    const html = await (await send(app, '/groups?q=Big')).text();
    expect(tableRows(html)).toEqual([
      expect.objectContaining({ Name: 'Big', Topics: 'pub big/0 deny sub big/1 pub big/2 2 more rows', 'Held by': 'Holder A client ID big-* Holder B 1 more rule' }),
    ]);
    expect(html).toContain(`<a href="/clients/${holders[0]!.id}" class="truncate" title="Holder A">Holder A</a>`);
    expect(html).toContain(`<a href="/groups/${big.id}/edit" class="truncate" title="Big">Big</a>`);
    expect(html).toContain('<li class="deny">deny sub <code class="truncate" title="big/1">big/1</code></li>');
  });
});
