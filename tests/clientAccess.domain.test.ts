import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { schema, type OpenDatabase } from '../src/db';
import { accessFor } from '../src/domain/access/acl';
import { lastSeenWho } from '../src/domain/access/lastSeen';
import { readRuleModel } from '../src/domain/access/query';
import { createClient, listClients, type ClientPage } from '../src/domain/clients';
import { createGroup } from '../src/domain/groups';
import { createApp } from '../src/web/app';
import { signIn, type SignedInApp } from './support/admin';
import { appendRules } from './support/acl';
import { createTestDatabase, drivers } from './support/db';
import { tableRows } from './support/html';
import { send } from './support/http';

const { clients } = schema;
const FINGERPRINT = Array.from({ length: 32 }, (_, i) => (i + 16).toString(16).toUpperCase()).join(':');
const OTHER_FINGERPRINT = Array.from({ length: 32 }, (_, i) => (i + 100).toString(16).toUpperCase()).join(':');

describe.each(drivers)('access of clients as last seen, and the "no access" list, on %s', (driver) => {
  let database: OpenDatabase;
  let app: SignedInApp;
  const names: Record<string, number> = {};

  beforeAll(async () => {
    database = await createTestDatabase(driver);
    const db = database.db;
    app = await signIn(createApp({ db, log: () => {} }), db);
    const make = async (name: string, spec: { lastClientId?: string; fingerprint?: string } = {}) => {
      const client = await createClient(
        db,
        spec.fingerprint ? { name, username: name, authType: 'certificate', fingerprint: spec.fingerprint } : { name, username: name, password: 'a-password-1' },
      );
      if (spec.lastClientId) await db.update(clients).set({ lastClientId: spec.lastClientId, lastSeenAt: new Date() }).where(eq(clients.id, client.id));
      names[name] = client.id;
    };
    await make('named');
    await make('cert-ok', { fingerprint: FINGERPRINT });
    await make('cert-other', { fingerprint: OTHER_FINGERPRINT });
    await make('exact', { lastClientId: 'dev-1' });
    await make('exact-case', { lastClientId: 'DEV-1' });
    await make('pattern', { lastClientId: 'sens%or_9' });
    // % and _ of the pattern are literal characters, not LIKE's wildcards.
    await make('pattern-like', { lastClientId: 'sensXorY9' });
    await make('never-seen');
    await make('elsewhere', { lastClientId: 'gateway-4' });
    const group = await createGroup(db, { name: 'Plant', permissions: [{ effect: 'allow', action: 'publish', topic: 'plant/#' }] });
    const g = [String(group.id)];
    await appendRules(db, [
      { matchBy: 'client', value: 'named', groups: g },
      { matchBy: 'certificate', value: FINGERPRINT, groups: g },
      { matchBy: 'client_id', value: 'dev-1', groups: g },
      { matchBy: 'client_id', value: 'sens%or_*', groups: g },
    ]);
  });
  afterAll(async () => {
    await database?.close();
  });

  const expectedWithout = ['cert-other', 'elsewhere', 'exact-case', 'never-seen', 'pattern-like'];

  it('lists as without access exactly the clients accessFor gives no group, judged by their last client id and certificate', async () => {
    const model = await readRuleModel(database.db);
    const all = (await listClients(database.db, {})).clients;
    const judged = all.filter((client) => accessFor(model, lastSeenWho(client)).groups.length === 0).map((client) => client.name);
    expect(judged.sort()).toEqual(expectedWithout);
    const listed = await listClients(database.db, { noAccess: model });
    expect(listed.clients.map((client) => client.name).sort()).toEqual(expectedWithout);
    expect(listed).toMatchObject({ total: 5, totalIsLowerBound: false, noAccess: true });
    // With a search too.
    expect((await listClients(database.db, { noAccess: model, query: 'PATTERN' })).clients.map((c) => c.name)).toEqual(['pattern-like']);
  });

  it('shows each client its groups or No access in the Access column, and filters by no access over HTTP', async () => {
    const page = await (await send(app, '/clients')).text();
    const access = new Map(tableRows(page).map((row) => [row.Name, row.Access]));
    expect(access.get('named')).toBe('Plant');
    expect(access.get('cert-ok')).toBe('Plant');
    expect(access.get('exact')).toBe('Plant by client ID dev-1');
    expect(access.get('pattern')).toBe('Plant by client ID sens%or_9');
    expect(access.get('elsewhere')).toBe('No access can connect, cannot publish or subscribe');
    expect(access.get('never-seen')).toBe('No access never seen: rules by client ID match once it connects');
    expect(page).toContain('<input type="checkbox" name="access" value="none"/> No access only');

    const filtered = await (await send(app, '/clients?access=none')).text();
    expect(tableRows(filtered).map((row) => row.Name)).toEqual(expectedWithout);
    expect(filtered).toContain('<input type="checkbox" name="access" value="none" checked=""/> No access only');
    expect(filtered).toContain('5 clients have no access.');
  });

  it('pages through many clients without access, alone and with a search', async () => {
    const db = database.db;
    await db.insert(clients).values(Array.from({ length: 130 }, (_, i) => ({ name: `idle ${String(i).padStart(3, '0')}`, username: `idle-${i}`, passwordHash: 'x' })));
    const model = await readRuleModel(db);
    const walk = async (query: string) => {
      const pages: ClientPage[] = [await listClients(db, { noAccess: model, query })];
      for (let page = pages[0]!; page.next; pages.push(page)) page = await listClients(db, { noAccess: model, query, after: page.next });
      return pages.flatMap((page) => page.clients.map((client) => client.name));
    };
    const idle = Array.from({ length: 130 }, (_, i) => `idle ${String(i).padStart(3, '0')}`);
    const inOrder = [...expectedWithout, ...idle].sort((a, b) => a.localeCompare(b));
    expect(await walk('')).toEqual(inOrder);
    expect(await walk('idle 1')).toEqual(idle.filter((name) => name.startsWith('idle 1')));
    // Over HTTP, Next keeps the filter.
    const first = await (await send(app, '/clients?access=none')).text();
    expect(first).toContain('135 clients have no access.');
    expect(tableRows(first)).toHaveLength(50);
    const next = /href="(\/clients\?access=none&amp;after=[^"]+)"/.exec(first)![1]!.replaceAll('&amp;', '&');
    const second = tableRows(await (await send(app, next)).text());
    expect(second.map((row) => row.Name)).toEqual(inOrder.slice(50, 100));
    expect(second.every((row) => row.Access!.startsWith('No access'))).toBe(true);
  });
});
