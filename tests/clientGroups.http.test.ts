import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { listAuditEvents, parseAuditFilters } from '../src/domain/audit';
import { createClient, getClient } from '../src/domain/clients';
import { listGroupRules } from '../src/domain/groupRules';
import { createGroup, deleteGroup } from '../src/domain/groups';
import { createApp } from '../src/web/app';
import { signIn, type SignedInApp } from './support/admin';
import { appendRules } from './support/acl';
import { createTestDatabase, drivers } from './support/db';
import { htmx, noticeOf, postForm, send, type FormFields } from './support/http';

describe.each(drivers)("groups chosen on a client's own form on %s", (driver) => {
  let database: OpenDatabase;
  let app: SignedInApp;
  let plant: number;
  let office: number;
  let lab: number;

  beforeAll(async () => {
    database = await createTestDatabase(driver);
    app = await signIn(createApp({ db: database.db, log: () => {} }), database.db);
    const group = async (name: string) => (await createGroup(database.db, { name, permissions: [{ effect: 'allow', action: 'publish', topic: `${name.toLowerCase()}/#` }] })).id;
    plant = await group('Plant');
    office = await group('Office');
    lab = await group('Lab');
  });
  afterAll(async () => {
    await database?.close();
  });

  /** Rules as [match by, value, group names], in page order. */
  const rules = async () =>
    (await listGroupRules(database.db)).map((rule) => [rule.matchBy, rule.matchBy === 'client' ? rule.clientUsername : rule.value, rule.groups.map((g) => g.name)]);

  const fields = (base: Record<string, string>, groups: number[]): FormFields => [...Object.entries(base), ['groups_shown', '1'], ...groups.map((id): [string, string] => ['groups', String(id)])];

  it('offers every group on New client and creates the client with a rule giving the chosen ones', async () => {
    const form = await (await send(app, '/clients/new')).text();
    expect(form).toContain('<legend>Groups</legend>');
    for (const id of [plant, office, lab]) expect(form).toContain(`name="groups" value="${id}"`);

    const res = await postForm(app, '/clients', fields({ name: 'Boiler', username: 'boiler', password: 'boiler-password' }, [plant, lab]));
    expect(res.status).toBe(303);
    expect(noticeOf(res)).toBe('Client “Boiler” created.');
    expect(await rules()).toEqual([['client', 'boiler', ['Lab', 'Plant']]]);
    // Its page says so first.
    const page = await (await send(app, res.headers.get('location')!)).text();
    expect(page.indexOf('id="access-summary"')).toBeGreaterThan(0);
    expect(page.indexOf('id="access-summary"')).toBeLessThan(page.indexOf('id="try-it"'));
    expect(page).toContain(`<code>boiler</code>: groups <a href="/groups/${lab}/edit">Lab</a>, <a href="/groups/${plant}/edit">Plant</a>.`);
    expect(page).toContain('<li>Publish: <code>lab/#</code>, <code>plant/#</code></li><li>Subscribe: nothing</li>');
    // The change of the rules is in the audit trail.
    const events = await listAuditEvents(database.db, parseAuditFilters({ kind: 'group_rules.saved' }));
    expect(events.events[0]!.details).toMatchObject({ note: 'groups chosen on the client’s form', after: [{ matchBy: 'Client', value: 'boiler', groups: ['Lab', 'Plant'] }] });
  });

  it('creates no rule when no group is chosen', async () => {
    const before = await rules();
    const res = await postForm(app, '/clients', fields({ name: 'Idle', username: 'idle', password: 'idle-password' }, []));
    expect(res.status).toBe(303);
    expect(await rules()).toEqual(before);
  });

  it('keeps the chosen groups when the form comes back with an error', async () => {
    const res = await postForm(app, '/clients', fields({ name: 'Twin', username: 'boiler', password: 'twin-password' }, [office]));
    expect(res.status).toBe(409);
    const html = await res.text();
    expect(html).toContain(`name="groups" value="${office}" checked=""`);
    expect(html).not.toContain(`name="groups" value="${plant}" checked=""`);
    expect((await rules()).some(([, value]) => value === 'twin')).toBe(false);
  });

  it('edits the groups on Edit client: the rule keeps its place, others naming the client go, none removes it', async () => {
    const boiler = (await listGroupRules(database.db))[0]!.clientRowId!;
    await appendRules(database.db, [
      { matchBy: 'client_id', value: 'gw-*', groups: [String(office)] },
      { matchBy: 'client', value: 'boiler', groups: [String(office)] },
    ]);
    const form = await (await send(app, `/clients/${boiler}/edit`)).text();
    // What rules by client give it, all of them.
    for (const id of [plant, office, lab]) expect(form).toContain(`name="groups" value="${id}" checked=""`);

    const client = (await getClient(database.db, boiler))!;
    const save = (groups: number[]) => postForm(app, `/clients/${boiler}`, fields({ name: 'Boiler', username: 'boiler', version: String(client.version) }, groups));
    expect((await save([office])).status).toBe(303);
    expect(await rules()).toEqual([
      ['client', 'boiler', ['Office']],
      ['client_id', 'gw-*', ['Office']],
    ]);
    const saved = (await getClient(database.db, boiler))!;
    expect((await postForm(app, `/clients/${boiler}`, fields({ name: 'Boiler', username: 'boiler', version: String(saved.version) }, []))).status).toBe(303);
    expect(await rules()).toEqual([['client_id', 'gw-*', ['Office']]]);
  });

  it('leaves the groups alone when the in-row form (which does not show them) saves', async () => {
    const lamp = await createClient(database.db, { name: 'Lamp', username: 'lamp', password: 'lamp-password' }, undefined, { groups: [lab] });
    const res = await postForm(app, `/clients/${lamp.id}`, { _view: 'row', name: 'Lamp 2', username: 'lamp', version: String(lamp.version) }, htmx);
    expect(res.status).toBe(200);
    expect((await rules()).filter(([, value]) => value === 'lamp')).toEqual([['client', 'lamp', ['Lab']]]);
    // The row shows what it gets.
    expect(await res.text()).toContain(`<a href="/groups/${lab}/edit" class="badge">Lab</a>`);
  });

  it('refuses a group deleted meanwhile and saves nothing', async () => {
    const gone = (await createGroup(database.db, { name: 'Gone', permissions: [] })).id;
    await deleteGroup(database.db, gone);
    const res = await postForm(app, '/clients', fields({ name: 'Ghost', username: 'ghost', password: 'ghost-password' }, [gone]));
    expect(res.status).toBe(422);
    expect(await res.text()).toContain('A chosen group no longer exists; choose again.');
    expect((await rules()).some(([, value]) => value === 'ghost')).toBe(false);
    expect((await send(app, '/clients?q=ghost')).status).toBe(200);
    expect(await (await send(app, '/clients?q=ghost')).text()).toContain('No client matches your search.');
  });
});
