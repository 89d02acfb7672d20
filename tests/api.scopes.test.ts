import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { createApiToken } from '../src/domain/apiTokens';
import { createGroup } from '../src/domain/groups';
import { exportBundle } from '../src/domain/transfer/export';
import { createApp } from '../src/web/app';
import { createTestDatabase } from './support/db';

/** What a Gatehouse grants, without the export's time. */
async function stateOf(db: OpenDatabase['db']) {
  const { exportedAt: _, ...rest } = await exportBundle(db);
  return rest;
}

describe('a token never reaches past its scope', () => {
  let database: OpenDatabase;
  let app: ReturnType<typeof createApp>;
  let clientsOnly: string;
  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    app = createApp({ db: database.db, log: () => {} });
    clientsOnly = (await createApiToken(database.db, { name: 'clients-only', preset: 'custom', scopes: { clients: 'write' } })).secret;
    await createGroup(database.db, { name: 'operators', description: 'kept', permissions: [{ effect: 'allow', action: 'subscribe', topic: 'ops/#' }] });
  });
  afterAll(async () => {
    await database?.close();
  });

  const importAs = (token: string, query: string, body: string, type: string) =>
    app.request(`/api/v1/import?${query}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': type }, body });

  it('refuses a clients-only token an import whose NDJSON lines change a group or make rules, in a dry run and for real', async () => {
    const before = await stateOf(database.db);
    // The group every operator's device has, widened to everything.
    const widen = JSON.stringify({ group: { name: 'operators', description: 'kept', permissions: [{ effect: 'allow', action: 'subscribe', topic: '#' }] } });
    const rule = JSON.stringify({ rule: { matchBy: 'client_id', value: '*', groups: ['operators'] } });
    for (const query of ['format=ndjson', 'format=ndjson&dryRun=false'])
      for (const ndjson of [widen, rule]) {
        const res = await importAs(clientsOnly, query, ndjson, 'application/x-ndjson');
        expect(res.status, `${query} ${ndjson}`).toBe(403);
        expect((await res.json()).detail).toContain('groups:write');
      }
    expect(await stateOf(database.db)).toEqual(before);
  });

  it('refuses a clients-only token an import that has groups and clients, whatever the format', async () => {
    const before = await stateOf(database.db);
    const ndjson = [
      JSON.stringify({ name: 'Mine', username: 'mine', password: 'mine-secret-1' }),
      JSON.stringify({ group: { name: 'everything', permissions: [{ effect: 'allow', action: 'publish', topic: '#' }] } }),
    ].join('\n');
    for (const query of ['format=ndjson', 'format=ndjson&dryRun=false']) {
      const res = await importAs(clientsOnly, query, ndjson, 'application/x-ndjson');
      expect(res.status, query).toBe(403);
      expect((await res.json()).detail).toContain('groups:write');
    }
    expect(await stateOf(database.db)).toEqual(before);
  });

  it('refuses a clients-only token a sync whose bundle spells "groups" with a JSON escape (it would delete every group)', async () => {
    const before = await stateOf(database.db);
    const bundle = `{"format":"gatehouse-export","version":1,"clients":[{"name":"Mine","username":"mine","password":"mine-secret-1"}],"group\\u0073":[],"rule\\u0073":[]}`;
    expect(JSON.parse(bundle).groups).toEqual([]);
    const res = await importAs(clientsOnly, 'format=gatehouse&mode=sync&dryRun=false&confirm=true', bundle, 'application/json');
    expect(res.status).toBe(403);
    expect(await stateOf(database.db)).toEqual(before);
    expect(before.groups.map((g) => g.name)).toEqual(['operators']);
  });

  it('lets a clients-only token import a file of clients only', async () => {
    const res = await importAs(clientsOnly, 'format=csv&dryRun=false', 'name,username,password\nPlain,plain-1,plain-secret-1\n', 'text/csv');
    expect(res.status).toBe(200);
    expect((await res.json()).counts.create).toBe(1);
  });
});

describe('the allowed-addresses check', () => {
  let database: OpenDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('pglite');
  });
  afterAll(async () => {
    await database?.close();
  });

  it('reads X-Forwarded-For only behind a trusted proxy, and then only its last hop, in any address form', async () => {
    const { secret } = await createApiToken(database.db, { name: 'lan', preset: 'viewer', allowedAddresses: '192.0.2.0/24, 2001:db8::/32' });
    const status = async (trustProxy: boolean, forwardedFor: string) =>
      (await createApp({ db: database.db, log: () => {}, trustProxy }).request('/api/v1/clients', { headers: { authorization: `Bearer ${secret}`, 'x-forwarded-for': forwardedFor } })).status;
    // Without TRUST_PROXY the header is anyone's to write: not read.
    expect(await status(false, '192.0.2.5')).toBe(401);
    expect(await status(true, '192.0.2.5')).toBe(200);
    // The proxy appends what it saw; what the client wrote before it does not count.
    expect(await status(true, '192.0.2.5, 198.51.100.1')).toBe(401);
    expect(await status(true, '198.51.100.1, 192.0.2.5')).toBe(200);
    expect(await status(true, '::ffff:192.0.2.5')).toBe(200);
    expect(await status(true, '::ffff:c000:205')).toBe(200);
    expect(await status(true, '2001:0db8:0000::7')).toBe(200);
    expect(await status(true, '2001:db9::7')).toBe(401);
    expect(await status(true, 'not-an-address')).toBe(401);
  });
});
