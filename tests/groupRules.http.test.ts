import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { createClient, deleteClient } from '../src/domain/clients';
import { listGroupRules, listRuleChanges } from '../src/domain/groupRules';
import { createGroup } from '../src/domain/groups';
import { createApp } from '../src/web/app';
import { signIn, type SignedInApp } from './support/admin';
import { appendRules } from './support/acl';
import { createTestDatabase, drivers } from './support/db';
import { htmx, postForm, send } from './support/http';

type Row = { matchBy: string; value: string; groups: string[] };

/** The form fields of the rules page: a `rule` marker per row, then its fields. */
function rulesForm(rows: Row[], action: string, revision: string): Array<[string, string]> {
  return [
    ['revision', revision],
    ...rows.flatMap((row, i): Array<[string, string]> => [
      ['rule', String(i)],
      [`rule-${i}-matchBy`, row.matchBy],
      [`rule-${i}-value`, row.value],
      ...row.groups.map((g): [string, string] => [`rule-${i}-groups`, g]),
    ]),
    ['_action', action],
  ];
}

const revisionOf = (html: string) => html.match(/name="revision" value="([^"]*)"/)![1]!;
const ruleRows = (html: string) => (html.match(/name="rule" value=/g) ?? []).length;

describe.each(drivers)('group rules console over HTTP on %s', (driver) => {
  let database: OpenDatabase;
  let app: SignedInApp;
  let sensors: string;
  let readers: string;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
    app = await signIn(createApp({ db: database.db, log: () => {} }), database.db);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('asks for a group first, and says what having no rules means', async () => {
    const html = await (await send(app, '/group-rules')).text();
    expect(html).toContain('<a href="/group-rules" aria-current="page">Group rules</a>');
    expect(html).toContain('There are no groups yet.');
    expect(html).toContain('No rules: every client can connect, and no client can publish or subscribe.');
    expect(html).toContain('value="add"');
  });

  it('adds and removes rows without saving, with and without JavaScript', async () => {
    await createClient(database.db, { name: 'Front door', username: 'front-door', password: '12345678' });
    sensors = String((await createGroup(database.db, { name: 'Sensors', permissions: [] })).id);
    readers = String((await createGroup(database.db, { name: 'Readers', permissions: [] })).id);
    const page = await (await send(app, '/group-rules')).text();
    const revision = revisionOf(page);

    const added = await postForm(app, '/group-rules', rulesForm([{ matchBy: 'client_id', value: 'kept-*', groups: [readers] }], 'add', revision));
    expect(added.status).toBe(200);
    const html = await added.text();
    expect(html).toContain('<h1>Group rules</h1>');
    expect(ruleRows(html)).toBe(2);
    expect(html).toContain('value="kept-*"');
    expect(html).toMatch(new RegExp(`name="rule-0-groups" value="${readers}" checked=""`));
    expect(html).toMatch(/id="rule-1-matchBy"[^>]*autofocus/);
    expect(html).toContain('<datalist id="client-usernames"><option value="front-door">Front door</option></datalist>');

    const removed = await postForm(
      app,
      '/group-rules',
      rulesForm(
        [
          { matchBy: 'client_id', value: 'first', groups: [] },
          { matchBy: 'client_id', value: 'second', groups: [] },
        ],
        'remove:0',
        revision,
      ),
      htmx,
    );
    const fragment = await removed.text();
    expect(fragment.startsWith('<form id="rules-form"')).toBe(true);
    expect(ruleRows(fragment)).toBe(1);
    expect(fragment).not.toContain('value="first"');
    expect(await listGroupRules(database.db)).toEqual([]);
  });

  it('saves every row with one Save (303), then shows them', async () => {
    const revision = revisionOf(await (await send(app, '/group-rules')).text());
    const res = await postForm(
      app,
      '/group-rules',
      rulesForm(
        [
          { matchBy: 'client', value: 'front-door', groups: [sensors, readers] },
          { matchBy: 'client_id', value: 'sensor-*', groups: [sensors] },
        ],
        'save',
        revision,
      ),
    );
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/group-rules?saved=1');
    const html = await (await send(app, '/group-rules?saved=1')).text();
    expect(html).toContain('Group rules saved.');
    expect(html).toContain('value="front-door"');
    expect(html).toContain('Client “Front door”');
    expect(html).toContain('value="sensor-*"');
    expect(html).toContain('<span class="visually-hidden">Groups for rule 1: </span>Readers, Sensors</summary>');
    expect((await listGroupRules(database.db)).map((r) => [r.matchBy, r.value, r.groups.length])).toEqual([
      ['client', '', 2],
      ['client_id', 'sensor-*', 1],
    ]);
  });

  it('answers an htmx save with HX-Redirect', async () => {
    const revision = revisionOf(await (await send(app, '/group-rules')).text());
    const current = [
      { matchBy: 'client', value: 'front-door', groups: [sensors, readers] },
      { matchBy: 'client_id', value: 'sensor-*', groups: [sensors] },
    ];
    const res = await postForm(app, '/group-rules', rulesForm(current, 'save', revision), htmx);
    expect(res.status).toBe(200);
    expect(res.headers.get('hx-redirect')).toBe('/group-rules?saved=1');
  });

  it('flags bad rows with 422, keeps every row as typed, and saves nothing', async () => {
    const before = await listGroupRules(database.db);
    const revision = revisionOf(await (await send(app, '/group-rules')).text());
    const res = await postForm(
      app,
      '/group-rules',
      rulesForm(
        [
          { matchBy: 'client_id', value: 'fine-*', groups: [sensors] },
          { matchBy: 'client', value: 'ghost', groups: [sensors] },
          { matchBy: 'client_id', value: '', groups: [] },
        ],
        'save',
        revision,
      ),
    );
    expect(res.status).toBe(422);
    const html = await res.text();
    expect(html).toContain('Nothing was saved: some rules need attention');
    expect(html).toMatch(/id="rule-1-value" value="ghost"[^>]*aria-invalid="true"/);
    expect(html).toContain('<small id="rule-1-value-error" class="field-error">No client has this username.</small>');
    expect(html).toContain('<small id="rule-2-value-error" class="field-error">Enter an MQTT client ID, or a pattern with *.</small>');
    expect(html).toContain('<small id="rule-2-groups-error" class="field-error">Choose at least one group.</small>');
    expect(html).toContain('<tr id="rule-1" class="invalid" ');
    expect(html).not.toContain('<tr id="rule-0" class="invalid" ');
    expect(html).toContain('value="fine-*"');
    expect(await listGroupRules(database.db)).toEqual(before);
  });

  it('refuses a save from an outdated page with 409, keeping the operator rows', async () => {
    const stale = revisionOf(await (await send(app, '/group-rules')).text());
    await appendRules(database.db, [{ matchBy: 'client_id', value: 'added-meanwhile', groups: [readers] }]);
    const res = await postForm(app, '/group-rules', rulesForm([{ matchBy: 'client_id', value: 'mine', groups: [readers] }], 'save', stale));
    expect(res.status).toBe(409);
    const html = await res.text();
    expect(html).toContain('Someone else changed the group rules');
    expect(html).toContain('value="mine"');
    expect(revisionOf(html)).not.toBe(stale);
    expect((await listGroupRules(database.db)).map((r) => r.value)).toContain('added-meanwhile');
  });

  it('shows what deleting a client did to the rules until it is dismissed', async () => {
    const client = await createClient(database.db, { name: 'Gone soon', username: 'gone-soon', password: '12345678' });
    await appendRules(database.db, [{ matchBy: 'client', value: 'gone-soon', groups: [readers] }]);
    await deleteClient(database.db, client.id);
    const [change] = await listRuleChanges(database.db);
    const html = await (await send(app, '/group-rules')).text();
    expect(html).toContain('Changed by deletions');
    expect(html).toContain('Client “Gone soon” (gone-soon) was deleted.');
    expect(html).toContain('The rule for client “Gone soon” (gone-soon) was removed; it gave “Readers”.');

    const dismissed = await postForm(app, `/group-rules/changes/${change!.id}/dismiss`, {});
    expect(dismissed.status).toBe(303);
    expect(await (await send(app, '/group-rules')).text()).not.toContain('Gone soon');
    expect((await postForm(app, `/group-rules/changes/${change!.id}/dismiss`, {})).status).toBe(404);
  });

  it('escapes hostile client-id patterns', async () => {
    await appendRules(database.db, [{ matchBy: 'client_id', value: '"><script>alert(1)</script>', groups: [readers] }]);
    const html = await (await send(app, '/group-rules')).text();
    expect(html).not.toContain('<script>alert(1)</script>');
    expect(html).toContain('&lt;script&gt;');
  });

  it('narrows the rows to a search, keeps the others in the form hidden, and counts the rules per group', async () => {
    const rows = await listGroupRules(database.db);
    expect(rows.length).toBeGreaterThan(1);
    const html = await (await send(app, '/group-rules?q=front')).text();
    const shown = [...html.matchAll(/<tr id="rule-(\d+)"( class="[^"]*")?( hidden="")?/g)];
    expect(shown.length).toBe(rows.length);
    const visible = shown.filter((m) => !m[3]).map((m) => rows[Number(m[1])]!);
    expect(visible.length).toBeGreaterThan(0);
    expect(visible.every((rule) => rule.clientName === 'Front door' || rule.value.toLowerCase().includes('front') || rule.groups.some((g) => g.name.toLowerCase().includes('front')))).toBe(true);
    expect(html).toContain(`${visible.length} of ${rows.length} rules match “front”; the others are kept as they are.`);
    // The hidden rows are still fields of the form: a Save keeps them.
    expect(html.match(/name="rule" value=/g)).toHaveLength(rows.length);
    expect(html).toContain('<input type="hidden" name="q" value="front"/>');
    // Rules per group, from the rows.
    const giving = (name: string) => rows.filter((rule) => rule.groups.some((g) => g.name === name)).length;
    expect(html).toMatch(new RegExp(`>Sensors</a> ${giving('Sensors')}`));
    expect(html).toMatch(new RegExp(`>Readers</a> ${giving('Readers')}`));
    // The form is not marked unsaved until it comes back without a Save; then it is, and keeps the search.
    expect(html).not.toContain('data-unsaved');
    const revision = revisionOf(html);
    const current = rows.map((rule) => ({ matchBy: rule.matchBy, value: rule.matchBy === 'client' ? rule.clientUsername! : rule.value, groups: rule.groups.map((g) => String(g.id)) }));
    const added = await (await postForm(app, '/group-rules', [...rulesForm(current, 'add', revision), ['q', 'front']], htmx)).text();
    expect(added).toContain('data-unsaved="true"');
    expect(added).toContain('Not saved yet: Save rules applies these rows.');
    // The new row shows although it does not match the search.
    expect(added).toMatch(new RegExp(`<tr id="rule-${rows.length}"(?! hidden)`));
  });
});
