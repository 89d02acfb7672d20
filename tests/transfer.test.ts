import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createHash, pbkdf2Sync, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema, type OpenDatabase } from '../src/db';
import { createApiToken } from '../src/domain/apiTokens';
import { passwordFormatOf } from '../src/domain/password';
import { exportBundle } from '../src/domain/transfer/export';
import { createApp } from '../src/web/app';
import { createTestDatabase, drivers } from './support/db';
import { requireOrSkip } from './support/env';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, tryConnect } from './support/mqtt';

const run = promisify(execFile);
const haveMosquittoTools = requireOrSkip(
  'mosquitto_passwd and mosquitto_pub',
  ['/usr/bin/mosquitto_passwd', '/usr/bin/mosquitto_pub'].every((file) => existsSync(file)),
  'apt-get install mosquitto mosquitto-clients',
);

type Request = (path: string, init: RequestInit) => Promise<Response>;

function importer(request: Request, token: string) {
  return async (query: string, body: string, type = 'application/octet-stream') => {
    const res = await request(`/api/v1/import?${query}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': type }, body });
    return { status: res.status, report: await res.json() };
  };
}

/** What a Gatehouse grants, without the export's time. */
async function stateOf(db: OpenDatabase['db']) {
  const { exportedAt: _, ...rest } = await exportBundle(db);
  return rest;
}

describe.runIf(haveMosquittoTools)('moving a Mosquitto fleet over', () => {
  it('imports a password file made by mosquitto_passwd (a dry run first, writing nothing), and its devices connect with mosquitto_pub', { timeout: 120_000 }, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-passwd-'));
    const gatehouse = await startTestGatehouse('pglite');
    try {
      const file = path.join(dir, 'passwd');
      await run('mosquitto_passwd', ['-c', '-b', file, 'meter-1', 'meter one secret']);
      await run('mosquitto_passwd', ['-H', 'sha512', '-b', file, 'meter-2', 'meter-2-secret']);
      await run('mosquitto_passwd', ['-b', file, 'meter-3', 'meter-3-secret']);
      const passwd = await readFile(file, 'utf8');
      expect(passwd).toMatch(/^meter-1:\$7\$/m);
      expect(passwd).toMatch(/^meter-2:\$6\$/m);
      const { secret } = await createApiToken(gatehouse.database.db, { name: 'migration', preset: 'editor' });
      const post = importer((p, init) => fetch(`http://127.0.0.1:${gatehouse.httpPort}${p}`, init), secret);
      const before = await stateOf(gatehouse.database.db);
      const dry = await post('format=mosquitto-passwd', passwd);
      expect(dry.status).toBe(200);
      expect(dry.report).toMatchObject({ dryRun: true, applied: false, counts: { create: 3, error: 0 } });
      expect(await stateOf(gatehouse.database.db)).toEqual(before);
      const real = await post('format=mosquitto-passwd&dryRun=false', passwd);
      expect(real.report).toMatchObject({ applied: true, counts: { create: 3 } });
      const rowOf = async (username: string) =>
        (await gatehouse.database.db.select().from(schema.clients).where(eq(schema.clients.username, username)))[0]!;
      expect(passwordFormatOf((await rowOf('meter-1')).passwordHash)).toBe('mosquitto-pbkdf2');
      expect(passwordFormatOf((await rowOf('meter-2')).passwordHash)).toBe('mosquitto-sha512');

      const pub = (username: string, password: string) =>
        run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gatehouse.mqttPort), '-u', username, '-P', password, '-i', `${username}-pub`, '-t', `meters/${username}`, '-m', '1']).then(
          () => 0,
          (error: { code?: number }) => error.code ?? -1,
        );
      expect(await pub('meter-1', 'meter one secret')).toBe(0);
      expect(await pub('meter-2', 'meter-2-secret')).toBe(0);
      expect(await pub('meter-3', 'wrong')).not.toBe(0);
      // Replaced by Argon2id at the first successful CONNECT; the old password still works after.
      expect(passwordFormatOf((await rowOf('meter-1')).passwordHash)).toBe('argon2id');
      expect(passwordFormatOf((await rowOf('meter-2')).passwordHash)).toBe('argon2id');
      expect(passwordFormatOf((await rowOf('meter-3')).passwordHash)).toBe('mosquitto-pbkdf2');
      expect(await pub('meter-1', 'meter one secret')).toBe(0);
      expect(await pub('meter-1', 'meter-1-wrong')).not.toBe(0);
    } finally {
      await gatehouse.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('imports from Mosquitto dynamic security and EMQX', () => {
  let gatehouse: Awaited<ReturnType<typeof startTestGatehouse>>;
  let post: ReturnType<typeof importer>;
  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    const { secret } = await createApiToken(gatehouse.database.db, { name: 'migration', preset: 'editor' });
    post = importer(async (p, init) => gatehouse.app.request(p, init), secret);
  });
  afterAll(async () => {
    await gatehouse?.close();
  });

  it('turns dynamic-security roles into groups, their ACLs into rows, and client roles into rules; devices keep their passwords', async () => {
    const salt = randomBytes(12);
    const hash = pbkdf2Sync('dyn-secret', salt, 101, 64, 'sha512');
    const dynsec = {
      defaultACLAccess: { publishClientSend: false },
      clients: [
        { username: 'door-1', textname: 'Front door', password: hash.toString('base64'), salt: salt.toString('base64'), iterations: 101, roles: [{ rolename: 'doors' }], groups: [{ groupname: 'site' }] },
      ],
      groups: [{ groupname: 'site', roles: [{ rolename: 'site-status' }] }],
      roles: [
        { rolename: 'doors', acls: [{ acltype: 'publishClientSend', topic: 'doors/#', allow: true, priority: 1 }, { acltype: 'publishClientSend', topic: 'doors/secret', allow: false, priority: 5 }] },
        { rolename: 'site-status', acls: [{ acltype: 'subscribePattern', topic: 'site/#', allow: true }, { acltype: 'unsubscribePattern', topic: '#', allow: true }] },
      ],
    };
    const result = await post('format=mosquitto-dynsec&dryRun=false', JSON.stringify(dynsec), 'application/json');
    expect(result.status).toBe(200);
    expect(result.report.counts).toMatchObject({ create: 3, error: 0 });
    expect(result.report.notes.join(' ')).toContain('unsubscribePattern');
    const state = await stateOf(gatehouse.database.db);
    expect(state.groups.find((g) => g.name === 'doors')!.permissions).toEqual([
      { effect: 'deny', action: 'publish', topic: 'doors/secret' },
      { effect: 'allow', action: 'publish', topic: 'doors/#' },
    ]);
    expect(state.rules).toEqual([{ matchBy: 'client', value: 'door-1', groups: ['doors', 'site-status'] }]);
    const outcome = await tryConnect(brokerUrl(gatehouse, 'tcp'), { username: 'door-1', password: 'dyn-secret', clientId: 'door-1' });
    expect(outcome.ok).toBe(true);
    if (outcome.ok) outcome.client.end(true);
  });

  it('imports an EMQX user export with salted SHA-256 and PBKDF2 hashes, given EMQX’s settings', async () => {
    const salt = 'de1024f462fb83910fd13151bd4bd235';
    const users = [{ user_id: 'emqx-sha', password_hash: createHash('sha256').update(salt + 'emqx-secret').digest('hex'), salt, is_superuser: true }];
    const json = await post('format=emqx&dryRun=false&emqxAlgorithm=sha256&emqxSaltPosition=prefix', JSON.stringify(users), 'application/json');
    expect(json.report).toMatchObject({ applied: true, counts: { create: 1 } });
    expect(json.report.notes.join(' ')).toContain('superusers');
    const csv = `user_id,password_hash,salt,is_superuser\nemqx-pbkdf2,${pbkdf2Sync('pbkdf2-secret', 'salty', 1000, 32, 'sha256').toString('hex')},salty,false\n`;
    const fromCsv = await post('format=emqx&dryRun=false&emqxAlgorithm=pbkdf2&emqxMacFun=sha256&emqxIterations=1000', csv, 'text/csv');
    expect(fromCsv.report).toMatchObject({ applied: true, counts: { create: 1 } });
    for (const [username, password] of [['emqx-sha', 'emqx-secret'], ['emqx-pbkdf2', 'pbkdf2-secret']]) {
      const outcome = await tryConnect(brokerUrl(gatehouse, 'tcp'), { username, password, clientId: username });
      expect(outcome.ok, username).toBe(true);
      if (outcome.ok) outcome.client.end(true);
    }
    const wrong = await tryConnect(brokerUrl(gatehouse, 'tcp'), { username: 'emqx-sha', password: 'not-it', clientId: 'x' });
    expect(wrong.ok).toBe(false);
  });
});

describe.each(drivers)('export and import on %s', (driver) => {
  let source: OpenDatabase;
  let target: OpenDatabase;
  let fromApp: ReturnType<typeof createApp>;
  let toApp: ReturnType<typeof createApp>;
  let sourceToken: string;
  let targetToken: string;
  beforeAll(async () => {
    source = await createTestDatabase(driver);
    target = await createTestDatabase(driver);
    fromApp = createApp({ db: source.db, log: () => {} });
    toApp = createApp({ db: target.db, log: () => {} });
    sourceToken = (await createApiToken(source.db, { name: 'exporter', preset: 'administrator' })).secret;
    targetToken = (await createApiToken(target.db, { name: 'importer', preset: 'administrator' })).secret;
  });
  afterAll(async () => {
    await source?.close();
    await target?.close();
  });

  it('imports an export into an empty Gatehouse to the same state; a dry run writes nothing', async () => {
    const post = importer(async (p, init) => fromApp.request(p, init), sourceToken);
    const csv = 'name,username,authType,password\nBoiler 1,boiler-1,password,boiler-one-secret\n"=Tricky, name",tricky,password,tricky-secret\n';
    expect((await post('format=csv&dryRun=false', csv, 'text/csv')).report.counts.create).toBe(2);
    const fingerprint = 'AB:'.repeat(31) + 'AB';
    const ndjson = [
      JSON.stringify({ name: 'Camera', username: 'camera', authType: 'certificate', certFingerprint: fingerprint }),
      JSON.stringify({ group: { name: 'boilers', description: 'all boilers', permissions: [{ effect: 'allow', action: 'publish', topic: 'boilers/%u/#' }] } }),
      JSON.stringify({ rule: { matchBy: 'client', value: 'boiler-1', groups: ['boilers'] } }),
      JSON.stringify({ rule: { matchBy: 'client_id', value: 'cam-*', groups: ['boilers'] } }),
    ].join('\n');
    const imported = await post('format=ndjson&dryRun=false', ndjson, 'application/x-ndjson');
    expect(imported.report).toMatchObject({ applied: true, counts: { create: 2, update: 2, error: 0 } });

    const exported = await fromApp.request('/api/v1/export', { headers: { authorization: `Bearer ${sourceToken}` } });
    const bundle = await exported.text();
    expect(bundle).not.toContain('PRIVATE KEY');
    expect(JSON.parse(bundle).clients).toHaveLength(3);

    const into = importer(async (p, init) => toApp.request(p, init), targetToken);
    const empty = await stateOf(target.db);
    const dry = await into('format=gatehouse', bundle, 'application/json');
    expect(dry.report).toMatchObject({ dryRun: true, applied: false, counts: { create: 4, update: 2 } });
    expect(await stateOf(target.db)).toEqual(empty);
    const real = await into('format=gatehouse&dryRun=false', bundle, 'application/json');
    expect(real.report.applied).toBe(true);
    expect(await stateOf(target.db)).toEqual(await stateOf(source.db));
    // Again: every row unchanged.
    expect((await into('format=gatehouse', bundle, 'application/json')).report.counts).toMatchObject({ create: 0, update: 2, unchanged: 4 });

    // The clients CSV reads back as the same clients.
    const clientsCsv = await (await fromApp.request('/api/v1/export/clients.csv', { headers: { authorization: `Bearer ${sourceToken}` } })).text();
    expect(clientsCsv).toContain(`"'=Tricky, name"`);
    expect((await into('format=csv', clientsCsv, 'text/csv')).report.counts).toMatchObject({ unchanged: 3, error: 0 });
  });

  it('writes nothing when one row is wrong (all or nothing), skips it when asked, and syncs only when confirmed', async () => {
    const post = importer(async (p, init) => toApp.request(p, init), targetToken);
    const before = await stateOf(target.db);
    const csv = 'name,username,password\nNew 1,new-1,new-1-secret\nBad,has space,bad-secret-1\n';
    const refused = await post('format=csv&dryRun=false', csv, 'text/csv');
    expect(refused.status).toBe(409);
    expect(refused.report.rows.find((r: { key: string }) => r.key === 'has space')).toMatchObject({ action: 'error', line: 3 });
    expect(await stateOf(target.db)).toEqual(before);
    const partial = await post('format=csv&dryRun=false&allOrNothing=false', csv, 'text/csv');
    expect(partial.report).toMatchObject({ applied: true, counts: { create: 1, error: 1 } });
    const createOnly = await post('format=csv&dryRun=false&mode=create-only', 'username,password\nnew-1,changed-secret\n', 'text/csv');
    expect(createOnly.status).toBe(409);

    const onlyOne = 'name,username,password\nNew 1,new-1,new-1-secret\n';
    const unconfirmed = await toApp.request('/api/v1/import?format=csv&dryRun=false&mode=sync', { method: 'POST', headers: { authorization: `Bearer ${targetToken}`, 'content-type': 'text/csv' }, body: onlyOne });
    expect(unconfirmed.status).toBe(422);
    expect((await unconfirmed.json()).errors[0].field).toBe('confirm');
    const preview = await post('format=csv&mode=sync', onlyOne, 'text/csv');
    expect(preview.report.counts.delete).toBe(3);
    const synced = await post('format=csv&mode=sync&dryRun=false&confirm=true', onlyOne, 'text/csv');
    expect(synced.report.applied).toBe(true);
    expect((await stateOf(target.db)).clients.map((c) => c.username)).toEqual(['new-1']);
  });
});

describe('the Import and export page', () => {
  it('runs a dry run, then imports, from an uploaded file; the client page names an imported format until it is replaced', async () => {
    const database = await createTestDatabase('pglite');
    try {
      const { signIn, TEST_ORIGIN } = await import('./support/admin');
      const admin = await signIn(createApp({ db: database.db, log: () => {} }), database.db);
      const page = await admin.request('/transfer');
      expect(await page.text()).toContain('enctype="multipart/form-data"');
      const salt = randomBytes(12);
      const passwd = `sensor-a:$7$101$${salt.toString('base64')}$${pbkdf2Sync('sensor-a-secret', salt, 101, 64, 'sha512').toString('base64')}\n`;
      const upload = (run: string) => {
        const form = new FormData();
        form.set('file', new Blob([passwd]), 'passwd');
        form.set('format', 'mosquitto-passwd');
        form.set('mode', 'upsert');
        form.set('run', run);
        return admin.request('/transfer/import', { method: 'POST', body: form, headers: { origin: TEST_ORIGIN } });
      };
      const dry = await upload('dry');
      expect(dry.status).toBe(200);
      const dryHtml = await dry.text();
      expect(dryHtml).toContain('Dry run: nothing was written');
      expect(dryHtml).toContain('1 to create');
      expect((await exportBundle(database.db)).clients).toEqual([]);
      const real = await upload('apply');
      expect(await real.text()).toContain('Imported');
      const [row] = await database.db.select().from(schema.clients);
      const clientPage = await (await admin.request(`/clients/${row!.id}`)).text();
      expect(clientPage).toContain('Mosquitto $7$ PBKDF2-SHA512 (imported)');
      const csv = await admin.request('/transfer/clients.csv');
      expect(csv.headers.get('content-disposition')).toContain('attachment');
      expect(await csv.text()).toContain('sensor-a');
    } finally {
      await database.close();
    }
  });
});
