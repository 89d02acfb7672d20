import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { configSchema } from '../src/config';
import { schema } from '../src/db';
import { openSecret } from '../src/domain/certificates';
import { createClient } from '../src/domain/clients';
import { saveTlsUpload } from '../src/domain/tlsSettings';
import { startGatehouse, type Gatehouse } from '../src/server';
import { createApp } from '../src/web/app';
import { signIn, type SignedInApp } from './support/admin';
import { grantGroup } from './support/acl';
import { certificateFactory } from './support/certs';
import { createTestDatabase } from './support/db';
import { startTestGatehouse } from './support/gatehouse';
import { htmx } from './support/http';
import { connect, endClient, nextMessage } from './support/mqtt';

const SECRET_KEY = 'a-secret-key-for-the-certificate-tests';
const certs = certificateFactory();
const ca = certs.ca('Console CA');
const server = certs.server(ca, 'console-server');
const otherServer = certs.server(ca, 'console-other');
afterAll(() => certs.remove());

function upload(fields: Record<string, string>, files: Record<string, string> = {}): FormData {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  for (const [name, value] of Object.entries(files)) form.append(name, new File([value], `${name}.pem`, { type: 'application/x-pem-file' }));
  return form;
}

function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: ca.cert, servername: 'localhost' }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.once('error', reject);
  });
}

describe('the certificates page', () => {
  let gatehouse: Gatehouse;
  let admin: SignedInApp;
  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite', { SECRET_KEY, MQTTS_PORT: '0', HTTPS_PORT: '0' });
    admin = await signIn(gatehouse.app, gatehouse.database.db);
    await createClient(gatehouse.database.db, { name: 'Sensor', username: 'sensor', password: 'sensor-password' });
    await grantGroup(gatehouse.database.db, { name: 'Plant', permissions: [['allow', 'publish', 'plant/#'], ['allow', 'subscribe', 'plant/#']], usernames: ['sensor'] });
  });
  afterAll(async () => {
    await gatehouse?.close();
  });

  const post = (path: string, body: FormData | URLSearchParams, headers: Record<string, string> = {}) => admin.request(path, { method: 'POST', body, headers });

  it('is in the navigation and says TLS is off with nothing uploaded', async () => {
    const response = await admin.request('/certificates');
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain('href="/certificates" aria-current="page"');
    expect(html).toContain('Nothing uploaded yet.');
    expect(html).toMatch(/<dt>TLS<\/dt><dd>Off<\/dd>/);
    // Nothing to enable and no CA: the actions are not offered, and the page says what they need.
    expect(html).not.toContain('href="/certificates/enable"');
    expect(html).not.toContain('href="/certificates/require-client-cert"');
    expect(html).toContain('Upload a server certificate and its private key below to enable TLS.');
    expect(html).toContain('Requiring client certificates (mTLS) needs a CA certificate: upload one below.');
  });

  it('warns on the clients list and form that certificate clients cannot connect while TLS is off', async () => {
    const door = await createClient(gatehouse.database.db, { name: 'Door while off', username: 'door-off', authType: 'certificate', fingerprint: 'EF'.repeat(32) });
    const list = await (await admin.request('/clients?q=door-off')).text();
    expect(list).toContain('<small class="no-access">TLS is off: cannot connect</small>');
    // A password client gets no such warning.
    expect(await (await admin.request('/clients?q=sensor')).text()).not.toContain('TLS is off: cannot connect');
    const form = await (await admin.request(`/clients/${door.id}/edit`)).text();
    expect(form).toContain('TLS is off now: certificate clients cannot connect until certificates are enabled');
  });

  it('refuses a key that does not match the certificate, keeping the certificates typed but not the key', async () => {
    const response = await post('/certificates', upload({ ca: ca.cert, cert: server.cert, key: otherServer.key }));
    expect(response.status).toBe(422);
    const html = await response.text();
    expect(html).toContain('This private key does not belong to the server certificate.');
    expect(html).toContain(server.cert.trim().split('\n')[1]!);
    expect(html).not.toContain(otherServer.key.trim().split('\n')[1]!);
    const [row] = await gatehouse.database.db.select().from(schema.tlsSettings);
    expect(row).toBeUndefined();
  });

  it('asks for the key again after another field was wrong', async () => {
    const response = await post('/certificates', upload({ ca: 'not a certificate', cert: server.cert, key: server.key }), htmx);
    expect(response.status).toBe(422);
    const html = await response.text();
    expect(html).toContain('id="certificates-form"');
    expect(html).toContain('This is not a PEM certificate');
    expect(html).toContain('Paste or upload the private key again');
    expect(html).not.toContain(server.key.trim().split('\n')[1]!);
  });

  it('saves uploaded files, shows what they are, and stores the key only encrypted', async () => {
    const response = await post('/certificates', upload({}, { caFile: ca.cert, certFile: server.cert, keyFile: server.key }));
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/certificates?done=saved');
    const html = await (await admin.request('/certificates?done=saved')).text();
    expect(html).toContain('Certificates saved.');
    expect(html).toContain(server.fingerprint);
    expect(html).toContain(ca.fingerprint);
    expect(html).toContain('CN=console-server');
    expect(html).toContain('IP Address:127.0.0.1, DNS:localhost');
    expect(html).toContain('stored, encrypted');
    expect(html).not.toContain('PRIVATE KEY');
    const [row] = await gatehouse.database.db.select().from(schema.tlsSettings);
    expect(row!.keySealed).not.toContain('PRIVATE');
    expect(openSecret(SECRET_KEY, row!.keySealed!)).toBe(server.key.trim());
    expect(() => openSecret('another-secret-key-entirely', row!.keySealed!)).toThrow(/SECRET_KEY is not the key/);
  });

  it('warns when a certificate expires within 30 days', async () => {
    const soon = certs.server(ca, 'console-soon', { days: 10 });
    expect((await post('/certificates', upload({ cert: soon.cert, key: soon.key }))).status).toBe(303);
    const html = await (await admin.request('/certificates')).text();
    expect(html).toMatch(/The server certificate expires on \d{4}-\d\d-\d\d, in less than 30 days\./);
    expect((await post('/certificates', upload({ cert: server.cert, key: server.key }))).status).toBe(303);
  });

  it('offers Enable and Require client certificates once what they need is stored', async () => {
    const html = await (await admin.request('/certificates')).text();
    expect(html).toContain('href="/certificates/enable"');
    expect(html).toContain('href="/certificates/require-client-cert"');
    expect(html).not.toContain('Upload a server certificate and its private key below to enable TLS.');
  });

  it('confirms enabling on a page of its own, then starts the TLS listeners without a restart', async () => {
    const confirm = await admin.request('/certificates/enable');
    expect(confirm.status).toBe(200);
    const page = await confirm.text();
    expect(page).toContain('Enable certificates?');
    expect(page).toContain('Devices connected now are not affected');
    expect(page).toContain('action="/certificates/enable"');
    expect(gatehouse.tls.status().source).toBeNull();

    const response = await post('/certificates/enable', new URLSearchParams());
    expect(response.status).toBe(303);
    const status = gatehouse.tls.status();
    expect(status).toMatchObject({ source: 'console', hasCa: true });
    expect(await servedFingerprint(status.mqttsPort!)).toBe(server.fingerprint);
    const client = await connect(`mqtts://127.0.0.1:${status.mqttsPort}`, { ca: ca.cert, servername: 'localhost', username: 'sensor', password: 'sensor-password' });
    await endClient(client);
    // With TLS on, the clients list no longer warns.
    expect(await (await admin.request('/clients?q=door-off')).text()).not.toContain('TLS is off: cannot connect');

    // The audit trail says who uploaded and who enabled, never with the key.
    await gatehouse.audit.flush();
    const events = await gatehouse.database.db.select().from(schema.auditEvents).where(eq(schema.auditEvents.kind, 'certificates.changed')).orderBy(schema.auditEvents.id);
    expect(events.map((event) => event.details.change)).toContain('uploaded');
    expect(events.at(-1)).toMatchObject({ details: { change: 'enable' } });
    expect(events.every((event) => event.actor !== null)).toBe(true);
    expect(JSON.stringify(events)).not.toContain(server.key.trim().split('\n')[1]!);
  });

  it('gives new connections an uploaded replacement while a connected device stays connected', async () => {
    const status = gatehouse.tls.status();
    const device = await connect(`mqtts://127.0.0.1:${status.mqttsPort}`, { ca: ca.cert, servername: 'localhost', username: 'sensor', password: 'sensor-password', clientId: 'stays' });
    try {
      await device.subscribeAsync('plant/renewed', { qos: 1 });
      const renewed = certs.server(ca, 'console-renewed');
      expect((await post('/certificates', upload({ cert: renewed.cert, key: renewed.key }), htmx)).headers.get('hx-redirect')).toBe('/certificates?done=saved');
      expect(await servedFingerprint(status.mqttsPort!)).toBe(renewed.fingerprint);
      expect(await servedFingerprint(status.httpsPort!)).toBe(renewed.fingerprint);
      const message = nextMessage(device, 'plant/renewed');
      const publisher = await connect(`wss://127.0.0.1:${status.httpsPort}/mqtt`, { ca: ca.cert, servername: 'localhost', username: 'sensor', password: 'sensor-password' } as never);
      await publisher.publishAsync('plant/renewed', 'hello', { qos: 1 });
      expect((await message).payload).toBe('hello');
      await endClient(publisher);
    } finally {
      await endClient(device);
    }
  });

  it('disabling stops new TLS connections but keeps established ones', async () => {
    const status = gatehouse.tls.status();
    const device = await connect(`mqtts://127.0.0.1:${status.mqttsPort}`, { ca: ca.cert, servername: 'localhost', username: 'sensor', password: 'sensor-password', clientId: 'kept' });
    try {
      const confirm = await (await admin.request('/certificates/disable')).text();
      expect(confirm).toContain('Devices connected over TLS stay connected until they disconnect');
      const response = await post('/certificates/disable', new URLSearchParams(), htmx);
      expect(response.headers.get('hx-redirect')).toBe('/certificates?done=disable');
      expect(gatehouse.tls.status().source).toBeNull();
      await expect(servedFingerprint(status.mqttsPort!)).rejects.toThrow(/ECONNREFUSED/);
      await device.subscribeAsync('plant/kept', { qos: 1 });
      const message = nextMessage(device, 'plant/kept');
      const publisher = await connect(`mqtt://127.0.0.1:${gatehouse.mqttPort}`, { username: 'sensor', password: 'sensor-password' });
      await publisher.publishAsync('plant/kept', 'still', { qos: 1 });
      expect((await message).payload).toBe('still');
      await endClient(publisher);
    } finally {
      await endClient(device);
    }
  });
});

describe('a stored private key and SECRET_KEY', () => {
  it('refuses to take a key without SECRET_KEY', async () => {
    const database = await createTestDatabase('pglite');
    try {
      const app = createApp({ db: database.db });
      const admin = await signIn(app, database.db);
      const response = await admin.request('/certificates', { method: 'POST', body: upload({ cert: server.cert, key: server.key }) });
      expect(response.status).toBe(422);
      expect(await response.text()).toContain('Set SECRET_KEY in the environment');
    } finally {
      await database.close();
    }
  });

  it('stops the start with a message naming SECRET_KEY when it is missing or wrong', async () => {
    const database = await createTestDatabase('pglite');
    const dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-test-'));
    try {
      await saveTlsUpload(database.db, { ca: ca.cert, cert: server.cert, key: server.key }, SECRET_KEY);
      const base = { PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir };
      const quiet = () => {};
      await expect(startGatehouse({ config: configSchema.parse(base), database, log: quiet })).rejects.toThrow(/SECRET_KEY: a private key is stored in the database/);
      await expect(startGatehouse({ config: configSchema.parse({ ...base, SECRET_KEY: 'not-the-one-it-was-saved-with' }), database, log: quiet })).rejects.toThrow(
        /SECRET_KEY: SECRET_KEY is not the key the stored private key was encrypted with/,
      );
    } finally {
      await database.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('a server certificate loaded from TLS_CERT_FILE', () => {
  let gatehouse: Gatehouse | undefined;
  afterAll(async () => {
    await gatehouse?.close();
  });

  it('is warned about 20 days before it expires, on the certificates page and the overview, and Enable is not offered', async () => {
    const soon = certs.server(ca, 'file-soon', { days: 20 });
    gatehouse = await startTestGatehouse('pglite', { MQTTS_PORT: '0', HTTPS_PORT: '0', TLS_CERT_FILE: soon.certFile, TLS_KEY_FILE: soon.keyFile });
    const admin = await signIn(gatehouse.app, gatehouse.database.db);
    const page = await (await admin.request('/certificates')).text();
    expect(page).toMatch(/The server certificate in use \(loaded from TLS_CERT_FILE\) expires on \d{4}-\d\d-\d\d, in (19|20) days\. Replace it and send SIGHUP before then\./);
    // The files decide: the page cannot turn TLS on or off.
    expect(page).not.toContain('href="/certificates/enable"');
    expect(page).not.toContain('href="/certificates/disable"');
    const overview = await (await admin.request('/')).text();
    expect(overview).toMatch(/<p class="warning">The server certificate in use \(loaded from TLS_CERT_FILE\) expires on/);
  });

  it('says nothing of one far from expiry', async () => {
    await gatehouse?.close();
    gatehouse = await startTestGatehouse('pglite', { MQTTS_PORT: '0', HTTPS_PORT: '0', TLS_CERT_FILE: server.certFile, TLS_KEY_FILE: server.keyFile });
    const admin = await signIn(gatehouse.app, gatehouse.database.db);
    expect(await (await admin.request('/certificates')).text()).not.toContain('certificate-in-use-warning');
    expect(await (await admin.request('/')).text()).not.toContain('The server certificate in use');
  });
});
