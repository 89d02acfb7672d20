import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { createClient, getClient, listClients } from '../src/domain/clients';
import { listGroupRules } from '../src/domain/groupRules';
import { createGroup } from '../src/domain/groups';
import { createApp } from '../src/web/app';
import { signIn, type SignedInApp } from './support/admin';
import { certificateFactory } from './support/certs';
import { createTestDatabase, drivers } from './support/db';
import { htmx, postForm, send } from './support/http';
import { tableRows } from './support/html';

const certs = certificateFactory();
const ca = certs.ca('Console devices CA');
const doorCert = certs.client(ca, 'console-door');
const gateCert = certs.client(ca, 'console-gate');
afterAll(() => certs.remove());

function clientForm(fields: Record<string, string>, certificate?: string): FormData {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  form.append('certificateFile', certificate ? new File([certificate], 'device.crt') : new File([], ''));
  return form;
}

describe.each(drivers)('certificate clients in the console on %s', (driver) => {
  let database: OpenDatabase;
  let app: SignedInApp;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
    app = await signIn(createApp({ db: database.db, log: () => {} }), database.db);
  });
  afterAll(async () => {
    await database?.close();
  });

  const post = (path: string, body: FormData, headers: Record<string, string> = {}) => app.request(path, { method: 'POST', body, headers });

  it('offers the three authentication types on the New client page', async () => {
    const html = await (await send(app, '/clients/new')).text();
    expect(html).toContain('<option value="password" selected="">Username/Password</option>');
    expect(html).toContain('<option value="certificate">Certificate</option>');
    expect(html).toContain('<option value="certificate_password">Certificate + Password</option>');
    expect(html).toContain('enctype="multipart/form-data"');
  });

  it('creates a Certificate client from an uploaded certificate, keeping only its fingerprint', async () => {
    const response = await post('/clients', clientForm({ name: 'Door', username: 'door', authType: 'certificate', fingerprint: '', password: '' }, doorCert.cert));
    expect(response.status).toBe(303);
    const listed = (await listClients(database.db, { query: 'door' })).clients[0]!;
    expect(listed.authType).toBe('certificate');
    expect((await getClient(database.db, listed.id))!.certFingerprint).toBe(doorCert.fingerprint);
    expect(tableRows(await (await send(app, '/clients')).text()).map((row) => row.Authentication)).toContain('Certificate');
  });

  it('creates a Certificate + Password client from a pasted fingerprint', async () => {
    const pasted = `sha256 Fingerprint=${gateCert.fingerprint}`;
    const response = await post('/clients', clientForm({ name: 'Gate', username: 'gate', authType: 'certificate_password', fingerprint: pasted, password: 'gate-password' }));
    expect(response.status).toBe(303);
    const listed = (await listClients(database.db, { query: 'gate' })).clients[0]!;
    expect((await getClient(database.db, listed.id))!).toMatchObject({ authType: 'certificate_password', certFingerprint: gateCert.fingerprint });
  });

  it('asks for the certificate, refuses one another client uses, and keeps what was typed', async () => {
    const missing = await post('/clients', clientForm({ name: 'Nothing', username: 'nothing', authType: 'certificate', fingerprint: '' }), htmx);
    expect(missing.status).toBe(422);
    const html = await missing.text();
    expect(html).toContain('Upload the client certificate or paste its SHA-256 fingerprint.');
    expect(html).toMatch(/<option value="certificate" selected="">/);
    expect(html).toMatch(/id="username"[^>]*value="nothing"/);
    const taken = await post('/clients', clientForm({ name: 'Copy', username: 'copy', authType: 'certificate', fingerprint: doorCert.fingerprint }), htmx);
    expect(taken.status).toBe(409);
    expect(await taken.text()).toContain('Another client already uses this certificate.');
    const bad = await post('/clients', clientForm({ name: 'Bad', username: 'bad', authType: 'certificate', fingerprint: 'AB:CD:EF' }), htmx);
    expect(bad.status).toBe(422);
    expect(await bad.text()).toMatch(/id="fingerprint"[^>]*value="AB:CD:EF"/);
  });

  it('saves a group rule by certificate fingerprint, normalised, and refuses a malformed one', async () => {
    const group = await createGroup(database.db, {
      name: 'Doors',
      permissions: [
        { effect: 'allow', action: 'publish', topic: 'doors/%u/#' },
        { effect: 'allow', action: 'subscribe', topic: 'doors/#' },
      ],
    });
    const form = (value: string): Array<[string, string]> => [
      ['matchBy', 'certificate'],
      ['value', value],
      ['groups', String(group.id)],
    ];
    const refused = await postForm(app, '/group-rules', form('not-a-fingerprint'));
    expect(refused.status).toBe(422);
    expect(await refused.text()).toContain('Enter a SHA-256 certificate fingerprint: 64 hexadecimal digits, colons allowed.');
    const saved = await postForm(app, '/group-rules', form(doorCert.fingerprint.replace(/:/g, '').toLowerCase()));
    expect(saved.status).toBe(303);
    const [rule] = await listGroupRules(database.db);
    expect(rule).toMatchObject({ matchBy: 'certificate', value: doorCert.fingerprint, clientRowId: null });
    const after = await (await send(app, `/group-rules?edit=${rule!.id}`)).text();
    expect(after).toContain('<option value="certificate" selected="">Certificate fingerprint</option>');
    expect(after).toContain(`value="${doorCert.fingerprint}"`);
  });

  it('checks permissions with the certificate fingerprint, the client’s own by default', async () => {
    const door = (await listClients(database.db, { query: 'door' })).clients[0]!;
    const own = await (await send(app, `/clients/${door.id}?clientId=door-1&action=publish&topic=doors/door/state`)).text();
    expect(own).toMatch(/id="check-fingerprint"[^>]*value="[0-9A-F:]{95}"/);
    expect(own).toContain('<strong>Allowed</strong>');
    expect(own).toContain(`Certificate fingerprint ${doorCert.fingerprint}`);
    const other = await (
      await send(app, `/clients/${door.id}?clientId=door-1&action=publish&topic=doors/door/state&fingerprint=${encodeURIComponent(gateCert.fingerprint)}`)
    ).text();
    expect(other).toContain('<strong>Denied</strong>');
    const malformed = await send(app, `/clients/${door.id}?clientId=door-1&fingerprint=zz`);
    expect(malformed.status).toBe(422);
    // Password clients have no certificate: the checker does not ask for one.
    const sensor = await createClient(database.db, { name: 'Sensor', username: 'sensor', password: 'sensor-password' });
    expect(await (await send(app, `/clients/${sensor.id}`)).text()).not.toContain('id="check-fingerprint"');
  });
});
