import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { listenForAccessChanges, type AccessChanges } from '../src/db/changes';
import { loadAccessModel, type AccessModel } from '../src/domain/access/model';
import { listAuditEvents, parseAuditFilters } from '../src/domain/audit';
import { createClient, deleteClient } from '../src/domain/clients';
import { listGroupRules, listRuleChanges, ruleRevision, type GroupRule } from '../src/domain/groupRules';
import { createGroup } from '../src/domain/groups';
import { createApp } from '../src/web/app';
import { signIn, type SignedInApp } from './support/admin';
import { appendRules } from './support/acl';
import { createTestDatabase, drivers } from './support/db';
import { htmx, noticeOf, postForm, send } from './support/http';

/** The fields of the add form or of an edit row. */
function ruleForm(rule: { matchBy: string; value: string; groups: string[] }, extra: Array<[string, string]> = []): Array<[string, string]> {
  return [['matchBy', rule.matchBy], ['value', rule.value], ...rule.groups.map((g): [string, string] => ['groups', g]), ...extra];
}

const rowIds = (html: string) => [...html.matchAll(/<tr id="rule-(\d+)"/g)].map((m) => Number(m[1]));

describe.each(drivers)('group rules table over HTTP on %s', (driver) => {
  let database: OpenDatabase;
  let app: SignedInApp;
  let changes: AccessChanges;
  let model: AccessModel;
  let sensors: string;
  let readers: string;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
    app = await signIn(createApp({ db: database.db, log: () => {} }), database.db);
    changes = await listenForAccessChanges(database);
    model = await loadAccessModel(database.db, changes);
  });
  afterAll(async () => {
    model?.close();
    await changes?.close();
    await database?.close();
  });

  const byValue = async (value: string) => (await listGroupRules(database.db)).find((rule) => rule.value === value || rule.clientUsername === value);
  const eventsOf = async (kind: string) => (await listAuditEvents(database.db, parseAuditFilters({ kind }))).events;
  /** The groups the in-memory access model (as every node keeps it) gives rules by client id `value`. */
  const modelGroups = async (value: string) => {
    await model.settled();
    const rules = model.rules();
    const rows = [...(rules.byClientId.get(value) ?? []), ...rules.byPattern.filter((row) => row.rule.value === value)];
    return [...new Set(rows.map((row) => row.groupName))].sort();
  };

  it('asks for a group first, and says what having no rules means', async () => {
    const html = await (await send(app, '/group-rules')).text();
    expect(html).toContain('<a href="/group-rules" aria-current="page">Group rules</a>');
    expect(html).toContain('There are no groups yet.');
    expect(html).toContain('No rules: every client can connect, and no client can publish or subscribe.');
    expect(html).toContain('<form id="add-rule-form" method="post" action="/group-rules"');
  });

  it('adds a rule without JavaScript (303 and a notice), audited, and the access model hears it', async () => {
    await createClient(database.db, { name: 'Front door', username: 'front-door', password: '12345678' });
    sensors = String((await createGroup(database.db, { name: 'Sensors', permissions: [] })).id);
    readers = String((await createGroup(database.db, { name: 'Readers', permissions: [] })).id);
    const res = await postForm(app, '/group-rules', ruleForm({ matchBy: 'client_id', value: 'sensor-*', groups: [sensors, readers] }));
    expect(res.status).toBe(303);
    const rule = (await byValue('sensor-*'))!;
    expect(res.headers.get('location')).toBe(`/group-rules#rule-${rule.id}`);
    expect(noticeOf(res)).toBe('Rule for “sensor-*” added. It applies to devices as they next connect.');
    expect(rule.groups.map((g) => g.name)).toEqual(['Readers', 'Sensors']);
    expect(await modelGroups('sensor-*')).toEqual(['Readers', 'Sensors']);
    const [created] = await eventsOf('group_rule.created');
    expect(created).toMatchObject({ actor: app.administrator.username, subject: 'MQTT Client ID sensor-*' });
    expect(created!.details).toEqual({ after: { matchBy: 'MQTT Client ID', value: 'sensor-*', groups: ['Readers', 'Sensors'] } });

    const html = await (await send(app, '/group-rules')).text();
    expect(html).toContain(`<tr id="rule-${rule.id}">`);
    expect(html).toContain('<p id="rule-summary">1 rule.</p>');
    expect(html).toMatch(/Rules per group: <a href="\/groups\/\d+\/edit">Readers<\/a> 1 · <a href="\/groups\/\d+\/edit">Sensors<\/a> 1/);
  });

  it('adds a rule with htmx: a blank form back, the row appended, counts and notice updated', async () => {
    const res = await postForm(app, '/group-rules', ruleForm({ matchBy: 'client', value: 'front-door', groups: [readers] }), htmx);
    expect(res.status).toBe(200);
    const html = await res.text();
    const rule = (await byValue('front-door'))!;
    expect(html.startsWith('<form id="add-rule-form"')).toBe(true);
    expect(html).toMatch(/id="new-rule-value" value=""/);
    expect(html).toContain(`<hx-partial hx-target="#rule-rows" hx-swap="beforeend"><tr id="rule-${rule.id}">`);
    expect(html).toContain(`<a href="/clients/${rule.clientRowId}" class="truncate" title="Front door">Front door</a>`);
    expect(html).toMatch(/>Readers<\/a> 2 · <a href="\/groups\/\d+\/edit">Sensors<\/a> 1/);
    expect(html).toContain('<p id="rule-summary">2 rules.</p>');
    expect(html).toContain('Rule for “front-door” added.');
  });

  it('refuses a bad new rule with 422, showing what is wrong and keeping what was typed', async () => {
    const before = await listGroupRules(database.db);
    for (const headers of [{}, htmx]) {
      const res = await postForm(app, '/group-rules', ruleForm({ matchBy: 'client', value: 'ghost', groups: [] }), headers);
      expect(res.status).toBe(422);
      const html = await res.text();
      expect(html).toMatch(/id="new-rule-value" value="ghost"[^>]*aria-invalid="true"/);
      expect(html).toContain('<small id="new-rule-value-error" class="field-error">No client has this username.</small>');
      expect(html).toContain('<small id="new-rule-groups-error" class="field-error">Choose at least one group.</small>');
      expect(html).toContain('data-unsaved="true"');
      expect(html.includes('<h1>Group rules</h1>')).toBe(headers !== htmx);
    }
    const bad = await postForm(app, '/group-rules', ruleForm({ matchBy: 'certificate', value: 'AB:CD', groups: [sensors] }));
    expect(await bad.text()).toContain('Enter a SHA-256 certificate fingerprint: 64 hexadecimal digits, colons allowed.');
    const long = await postForm(app, '/group-rules', ruleForm({ matchBy: 'client_id', value: 'x'.repeat(5000), groups: [sensors] }));
    expect(long.status).toBe(422);
    expect(await listGroupRules(database.db)).toEqual(before);
  });

  it('opens a rule for editing in its row (htmx) or on the page (?edit=ID, without JavaScript), and Cancel gives the row back', async () => {
    const rule = (await byValue('sensor-*'))!;
    const row = await (await send(app, `/group-rules/${rule.id}/edit`, { headers: htmx })).text();
    expect(row.startsWith(`<tr id="rule-${rule.id}" class="editing">`)).toBe(true);
    expect(row).toContain(`hx-post="/group-rules/${rule.id}"`);
    expect(row).toContain(`<input type="hidden" name="revision" value="${ruleRevision(rule)}"/>`);
    expect(row).toMatch(new RegExp(`id="rule-${rule.id}-value" value="sensor-\\*"`));
    expect(row).toMatch(new RegExp(`id="rule-${rule.id}-matchBy"[^>]*autofocus`));

    const page = await (await send(app, `/group-rules?edit=${rule.id}`)).text();
    expect(page).toContain('<h1>Group rules</h1>');
    expect(page).toContain(`<tr id="rule-${rule.id}" class="editing">`);
    expect(page).toContain(`<form method="post" action="/group-rules/${rule.id}"`);
    // The other rows are shown as they are.
    expect(page).toContain(`<tr id="rule-${(await byValue('front-door'))!.id}">`);
    // The row's menu links there without JavaScript.
    const list = await (await send(app, '/group-rules')).text();
    expect(list).toContain(`href="/group-rules?edit=${rule.id}#rule-${rule.id}" hx-get="/group-rules/${rule.id}/edit"`);

    const cancelled = await (await send(app, `/group-rules/${rule.id}/row`, { headers: htmx })).text();
    expect(cancelled.startsWith(`<tr id="rule-${rule.id}">`)).toBe(true);
  });

  it('saves an edited row with htmx: the row back, counts and notice updated, audited before and after, heard by the access model', async () => {
    const rule = (await byValue('sensor-*'))!;
    const res = await postForm(app, `/group-rules/${rule.id}`, ruleForm({ matchBy: 'client_id', value: 'sensor-*', groups: [sensors] }, [['revision', ruleRevision(rule)]]), htmx);
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html.startsWith(`<tr id="rule-${rule.id}">`)).toBe(true);
    expect(html).toMatch(/>Readers<\/a> 1 · <a href="\/groups\/\d+\/edit">Sensors<\/a> 1/);
    expect(html).toContain('Rule for “sensor-*” saved.');
    const saved = (await byValue('sensor-*'))!;
    expect(saved.id).toBe(rule.id);
    expect(saved.position).toBe(rule.position);
    expect(saved.groups.map((g) => g.name)).toEqual(['Sensors']);
    expect(await modelGroups('sensor-*')).toEqual(['Sensors']);
    const [updated] = await eventsOf('group_rule.updated');
    expect(updated!.details).toEqual({
      before: { matchBy: 'MQTT Client ID', value: 'sensor-*', groups: ['Readers', 'Sensors'] },
      after: { matchBy: 'MQTT Client ID', value: 'sensor-*', groups: ['Sensors'] },
    });
  });

  it('saves an edited row without JavaScript: 303 back to the page and its search', async () => {
    const rule = (await byValue('sensor-*'))!;
    const res = await postForm(app, `/group-rules/${rule.id}`, ruleForm({ matchBy: 'client_id', value: 'sensor-?-*', groups: [sensors] }, [['revision', ruleRevision(rule)], ['q', 'sensor']]));
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(`/group-rules?q=sensor#rule-${rule.id}`);
    expect(noticeOf(res)).toBe('Rule for “sensor-?-*” saved. It applies to devices as they next connect.');
    expect(await modelGroups('sensor-?-*')).toEqual(['Sensors']);
    expect(await modelGroups('sensor-*')).toEqual([]);
  });

  it('refuses a bad edit with 422, in the row or on the page, keeping what was typed', async () => {
    const rule = (await byValue('sensor-?-*'))!;
    const fields = ruleForm({ matchBy: 'client', value: 'nobody', groups: [sensors] }, [['revision', ruleRevision(rule)]]);
    const inRow = await postForm(app, `/group-rules/${rule.id}`, fields, htmx);
    expect(inRow.status).toBe(422);
    const row = await inRow.text();
    expect(row.startsWith(`<tr id="rule-${rule.id}" class="editing">`)).toBe(true);
    expect(row).toMatch(new RegExp(`id="rule-${rule.id}-value" value="nobody"[^>]*aria-invalid="true"`));
    expect(row).toContain('<option value="client" selected="">Client</option>');
    expect(row).toContain(`<small id="rule-${rule.id}-value-error" class="field-error">No client has this username.</small>`);
    expect(row).toContain('data-unsaved="true"');
    const onPage = await postForm(app, `/group-rules/${rule.id}`, fields);
    expect(onPage.status).toBe(422);
    const page = await onPage.text();
    expect(page).toContain('<h1>Group rules</h1>');
    expect(page).toMatch(new RegExp(`id="rule-${rule.id}-value" value="nobody"`));
    expect(await byValue('sensor-?-*')).toEqual(rule);
  });

  it('refuses an edit made from before someone else changed the rule (409), keeps what was typed, and saving again replaces theirs', async () => {
    const rule = (await byValue('sensor-?-*'))!;
    const stale = ruleRevision(rule);
    // Someone else gives the rule Readers too.
    await postForm(app, `/group-rules/${rule.id}`, ruleForm({ matchBy: 'client_id', value: 'sensor-?-*', groups: [sensors, readers] }, [['revision', stale]]));
    const res = await postForm(app, `/group-rules/${rule.id}`, ruleForm({ matchBy: 'client_id', value: 'mine-*', groups: [sensors] }, [['revision', stale]]), htmx);
    expect(res.status).toBe(409);
    const html = await res.text();
    expect(html).toContain('Someone else changed this rule since you opened it: it now gives “Readers”, “Sensors” to MQTT client ID pattern “sensor-?-*”.');
    expect(html).toMatch(new RegExp(`id="rule-${rule.id}-value" value="mine-\\*"`));
    expect((await byValue('sensor-?-*'))!.groups.map((g) => g.name)).toEqual(['Readers', 'Sensors']);
    const current = ruleRevision((await byValue('sensor-?-*'))!);
    expect(current).not.toBe(stale);
    expect(html).toContain(`<input type="hidden" name="revision" value="${current}"/>`);

    const again = await postForm(app, `/group-rules/${rule.id}`, ruleForm({ matchBy: 'client_id', value: 'mine-*', groups: [sensors] }, [['revision', current]]), htmx);
    expect(again.status).toBe(200);
    expect((await byValue('mine-*'))!.id).toBe(rule.id);
  });

  it('says so when the rule edited was deleted meanwhile', async () => {
    await appendRules(database.db, [{ matchBy: 'client_id', value: 'short-lived', groups: [readers] }]);
    const rule = (await byValue('short-lived'))!;
    await postForm(app, `/group-rules/${rule.id}/delete`, [['revision', ruleRevision(rule)]]);
    const fields = ruleForm({ matchBy: 'client_id', value: 'short-lived-2', groups: [readers] }, [['revision', ruleRevision(rule)]]);
    const inRow = await postForm(app, `/group-rules/${rule.id}`, fields, htmx);
    expect(inRow.status).toBe(409);
    expect(await inRow.text()).toContain('Someone else deleted this rule meanwhile, so your change was not saved.');
    // The row open for editing goes: there is nothing left to edit.
    expect(inRow.headers.get('hx-reswap')).toBe('outerHTML swapEmpty:true');
    const cancel = await send(app, `/group-rules/${rule.id}/row`, { headers: htmx });
    expect(cancel.headers.get('hx-reswap')).toBe('outerHTML swapEmpty:true');
    expect(await cancel.text()).toContain('This rule does not exist any more: someone else may have deleted it.');
    const onPage = await postForm(app, `/group-rules/${rule.id}`, fields);
    expect(onPage.status).toBe(303);
    expect(noticeOf(onPage)).toContain('Someone else deleted this rule meanwhile');
    expect(await byValue('short-lived-2')).toBeUndefined();
    expect((await send(app, `/group-rules/${rule.id}/edit`)).status).toBe(404);
  });

  it('deletes a rule through the confirmation page without JavaScript, audited, and the access model hears it', async () => {
    await appendRules(database.db, [{ matchBy: 'client_id', value: 'doomed-*', groups: [readers] }]);
    const rule = (await byValue('doomed-*'))!;
    expect(await modelGroups('doomed-*')).toEqual(['Readers']);
    const list = await (await send(app, '/group-rules')).text();
    expect(list).toContain(`<a href="/group-rules/${rule.id}/delete" hx-delete="/group-rules/${rule.id}?revision=${ruleRevision(rule)}" hx-confirm="Delete the rule for MQTT Client ID “doomed-*”?`);
    expect(list).toContain('data-confirm-label="Delete rule"');
    const confirm = await (await send(app, `/group-rules/${rule.id}/delete`)).text();
    expect(confirm).toContain('<h1>Delete the rule for MQTT Client ID “doomed-*”?</h1>');
    expect(confirm).toContain('It gives “Readers”.');
    expect(confirm).toMatch(/<a href="\/group-rules" role="button" class="secondary outline">Keep it<\/a><button type="submit" class="danger">Delete rule<\/button>/);
    const res = await postForm(app, `/group-rules/${rule.id}/delete`, [['revision', ruleRevision(rule)]]);
    expect(res.status).toBe(303);
    expect(noticeOf(res)).toBe('Rule for “doomed-*” deleted.');
    expect(await byValue('doomed-*')).toBeUndefined();
    expect(await modelGroups('doomed-*')).toEqual([]);
    const [deleted] = await eventsOf('group_rule.deleted');
    expect(deleted).toMatchObject({ subject: 'MQTT Client ID doomed-*', details: { before: { matchBy: 'MQTT Client ID', value: 'doomed-*', groups: ['Readers'] } } });
    expect((await postForm(app, `/group-rules/${rule.id}/delete`, [['revision', ruleRevision(rule)]])).status).toBe(404);
  });

  it('deletes a rule with htmx, and refuses (409, the row as it is now) when someone else changed it since', async () => {
    await appendRules(database.db, [
      { matchBy: 'client_id', value: 'gone-*', groups: [readers] },
      { matchBy: 'client_id', value: 'changed-*', groups: [readers] },
    ]);
    const gone = (await byValue('gone-*'))!;
    const res = await send(app, `/group-rules/${gone.id}?revision=${ruleRevision(gone)}`, { method: 'DELETE', headers: htmx });
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).not.toContain(`<tr id="rule-${gone.id}"`);
    expect(html).toContain('Rule for “gone-*” deleted.');
    expect(html).toContain('<hx-partial hx-target="#rule-counts" hx-swap="outerHTML">');
    expect(await byValue('gone-*')).toBeUndefined();
    // Deleted twice (another tab): the row goes, and the notice says so.
    expect(await (await send(app, `/group-rules/${gone.id}?revision=${ruleRevision(gone)}`, { method: 'DELETE', headers: htmx })).text()).toContain('This rule was already deleted.');

    const changed = (await byValue('changed-*'))!;
    const stale = ruleRevision(changed);
    await postForm(app, `/group-rules/${changed.id}`, ruleForm({ matchBy: 'client_id', value: 'changed-*', groups: [sensors] }, [['revision', stale]]));
    const refused = await send(app, `/group-rules/${changed.id}?revision=${stale}`, { method: 'DELETE', headers: htmx });
    expect(refused.status).toBe(409);
    const back = await refused.text();
    expect(back.startsWith(`<tr id="rule-${changed.id}">`)).toBe(true);
    expect(back).toContain('Someone else changed this rule since the page was loaded, so it was not deleted: it now gives “Sensors” to MQTT client ID pattern “changed-*”.');
    expect(await byValue('changed-*')).toBeDefined();
    // The same without JavaScript: the confirmation again, for the rule as it is now.
    const page = await postForm(app, `/group-rules/${changed.id}/delete`, [['revision', stale]]);
    expect(page.status).toBe(409);
    const pageHtml = await page.text();
    expect(pageHtml).toContain('so it was not deleted');
    expect(pageHtml).toContain(`<input type="hidden" name="revision" value="${ruleRevision((await byValue('changed-*'))!)}"/>`);
  });

  it('narrows the table to a search on the server, keeps the counts over every rule, and keeps rows open for editing', async () => {
    const rules = await listGroupRules(database.db);
    const matching = (rule: GroupRule) => rule.value.includes('front') || rule.clientName === 'Front door';
    const html = await (await send(app, '/group-rules?q=front')).text();
    expect(rowIds(html)).toEqual(rules.filter(matching).map((r) => r.id));
    expect(html).toContain(`<p id="rule-summary">1 of ${rules.length} rules match “front”. <a href="/group-rules">Show all</a></p>`);
    expect(html).toContain('<input type="search" name="q" value="front"');
    const giving = (name: string) => rules.filter((rule) => rule.groups.some((g) => g.name === name)).length;
    expect(html).toMatch(new RegExp(`>Readers</a> ${giving('Readers')} · <a href="/groups/\\d+/edit">Sensors</a> ${giving('Sensors')}`));
    const none = await (await send(app, '/group-rules?q=zzz')).text();
    expect(rowIds(none)).toEqual([]);
    expect(none).toContain('No rule matches “zzz”.');

    // With htmx, a row open for editing is kept (a placeholder htmx leaves the open row in), matching or not.
    const open = rules.find((rule) => !matching(rule))!;
    const narrowed = await (await send(app, '/group-rules?q=front', { headers: { ...htmx, 'x-rules-editing': `${open.id},x,99999` } })).text();
    expect(narrowed).toContain(`<tr id="rule-${open.id}" class="editing" hx-preserve="true"></tr>`);
    expect(rowIds(narrowed).sort()).toEqual([...rules.filter(matching).map((r) => r.id), open.id].sort());
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
    const rule = (await byValue('"><script>alert(1)</script>'))!;
    const confirm = await (await send(app, `/group-rules/${rule.id}/delete`)).text();
    expect(confirm).not.toContain('<script>alert(1)</script>');
  });
});
