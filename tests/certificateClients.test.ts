import type { IClientOptions } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, updateClient } from '../src/domain/clients';
import { ConflictError, ValidationError } from '../src/domain/errors';
import { setRequireClientCert } from '../src/domain/tlsSettings';
import type { Gatehouse } from '../src/server';
import { appendRules, grantGroup, removeRules } from './support/acl';
import { signIn } from './support/admin';
import { certificateFactory, type Issued } from './support/certs';
import { countQueries, drivers, readsOnly } from './support/db';
import { startTestGatehouse } from './support/gatehouse';
import { connect, endClient, nextMessage, tryConnect } from './support/mqtt';

type Secure = 'tls' | 'wss';
const transports: Secure[] = ['tls', 'wss'];

describe.each(drivers)('certificate clients on %s', (driver) => {
  const certs = certificateFactory();
  const ca = certs.ca('Devices CA');
  const otherCa = certs.ca('Other CA');
  const serverCert = certs.server(ca, 'broker');
  const door = certs.client(ca, 'door-cert');
  const gate = certs.client(ca, 'gate-cert');
  const stranger = certs.client(ca, 'stranger-cert');
  const old = certs.client(ca, 'old-cert', { expired: true });
  const foreign = certs.client(otherCa, 'foreign-cert');
  let gatehouse: Gatehouse & { logs: string[] };

  beforeAll(async () => {
    gatehouse = await startTestGatehouse(driver, {
      TLS_CERT_FILE: serverCert.certFile,
      TLS_KEY_FILE: serverCert.keyFile,
      TLS_CA_FILE: ca.certFile,
      MQTTS_PORT: '0',
      HTTPS_PORT: '0',
    });
    const db = gatehouse.database.db;
    await createClient(db, { name: 'Door', username: 'door', authType: 'certificate', certificate: door.cert });
    // Pasted the way openssl prints it: lower case without colons works too.
    await createClient(db, { name: 'Gate', username: 'gate', authType: 'certificate_password', fingerprint: gate.fingerprint.replace(/:/g, '').toLowerCase(), password: 'gate-password' });
    await createClient(db, { name: 'Old', username: 'old', authType: 'certificate', fingerprint: old.fingerprint });
    await createClient(db, { name: 'Sensor', username: 'sensor', password: 'sensor-password' });
    // The door gets its group through a rule by certificate fingerprint only.
    const doors = await grantGroup(db, { name: 'Doors', permissions: [['allow', 'publish', 'doors/%u/#'], ['allow', 'subscribe', 'doors/#']] });
    await appendRules(db, [{ matchBy: 'certificate', value: door.fingerprint, groups: [String(doors.id)] }]);
    await grantGroup(db, { name: 'Watchers', permissions: [['allow', 'subscribe', 'doors/#']], usernames: ['gate', 'sensor'] });
  });
  afterAll(async () => {
    await gatehouse?.close();
    certs.remove();
  });

  const url = (transport: Secure) =>
    transport === 'tls' ? `mqtts://127.0.0.1:${gatehouse.tls.status().mqttsPort}` : `wss://127.0.0.1:${gatehouse.tls.status().httpsPort}/mqtt`;
  const withCert = (cert: Issued | null, extra: IClientOptions = {}): IClientOptions =>
    ({ ca: ca.cert, servername: 'localhost', ...(cert ? { cert: cert.cert, key: cert.key } : {}), ...extra }) as IClientOptions;

  describe.each(transports)('over %s, client certificates optional', (transport) => {
    it('connects a Certificate client by its certificate alone, %u being its username, and its rule by fingerprint applies', async () => {
      const watcher = await connect(url(transport), withCert(null, { username: 'sensor', password: 'sensor-password' }));
      const device = await connect(url(transport), withCert(door));
      try {
        await watcher.subscribeAsync('doors/#', { qos: 1 });
        const message = nextMessage(watcher, 'doors/door/state');
        await device.publishAsync('doors/elsewhere/state', 'not mine', { qos: 1 });
        await device.publishAsync('doors/door/state', 'open', { qos: 1 });
        // Only the topic its group allows (doors/%u/#, %u = door) arrives.
        expect(await message).toMatchObject({ payload: 'open' });
        expect(gatehouse.broker.sessionsByClient().size).toBeGreaterThanOrEqual(2);
        // The Connections page names the transport, the TLS version and the certificate.
        const operator = await signIn(gatehouse.app, gatehouse.database.db, `tls-operator-${transport}`);
        const page = await (await operator.request('/connections?q=door')).text();
        expect(page).toContain(transport === 'tls' ? '<td>TLS<br/>' : '<td>WebSocket over TLS<br/>');
        expect(page).toMatch(/<small>TLSv1\.[23]<\/small>/);
        expect(page).toContain(`title="${door.fingerprint}">${door.fingerprint}</code>`);
      } finally {
        await endClient(device);
        await endClient(watcher);
      }
    });

    it('connects a Certificate + Password client only with both', async () => {
      const both = await tryConnect(url(transport), withCert(gate, { username: 'gate', password: 'gate-password' }));
      expect(both.ok).toBe(true);
      if (both.ok) await endClient(both.client);
      expect(await tryConnect(url(transport), withCert(gate, { username: 'gate', password: 'wrong-password' }))).toMatchObject({ ok: false, code: 4 });
      expect(await tryConnect(url(transport), withCert(gate))).toMatchObject({ ok: false, code: 4 });
      // The password without the certificate: no password client has this username.
      expect(await tryConnect(url(transport), withCert(null, { username: 'gate', password: 'gate-password' }))).toMatchObject({ ok: false, code: 4 });
      // Another client's certificate with the right password.
      expect(await tryConnect(url(transport), withCert(stranger, { username: 'gate', password: 'gate-password' }))).toMatchObject({ ok: false, code: 4 });
    });

    it('refuses a Certificate client without its certificate', async () => {
      expect(await tryConnect(url(transport), withCert(null))).toMatchObject({ ok: false, code: 4 });
      expect(await tryConnect(url(transport), withCert(stranger))).toMatchObject({ ok: false, code: 4 });
    });

    it('refuses an expired certificate with CONNACK 5 even where the handshake lets it through', async () => {
      expect(await tryConnect(url(transport), withCert(old))).toMatchObject({ ok: false, code: 5 });
    });

    it('lets a password client connect with a certificate no client has (it is ignored)', async () => {
      const outcome = await tryConnect(url(transport), withCert(stranger, { username: 'sensor', password: 'sensor-password' }));
      expect(outcome.ok).toBe(true);
      if (outcome.ok) await endClient(outcome.client);
    });
  });

  it('reads no database for a Certificate or a Certificate + Password CONNECT, first or repeated, accepted or refused', async () => {
    // Clients no CONNECT has found yet: the first CONNECT of each is a cold one.
    const coldDoor = certs.client(ca, 'cold-door-cert');
    const coldGate = certs.client(ca, 'cold-gate-cert');
    await createClient(gatehouse.database.db, { name: 'Cold door', username: 'cold-door', authType: 'certificate', fingerprint: coldDoor.fingerprint });
    await createClient(gatehouse.database.db, { name: 'Cold gate', username: 'cold-gate', authType: 'certificate_password', fingerprint: coldGate.fingerprint, password: 'cold-gate-password' });
    await gatehouse.accessModel.settled();
    const verifies = gatehouse.authenticator.stats().verifies;
    // Refused CONNECTs are written to the audit trail meanwhile: reads are what CONNECT would send.
    const counter = countQueries(gatehouse.database.db, readsOnly);
    try {
      for (const attempt of ['cold', 'warm']) {
        const door = await tryConnect(url('tls'), withCert(coldDoor));
        expect({ attempt, ok: door.ok }).toEqual({ attempt, ok: true });
        if (door.ok) await endClient(door.client);
        const both = await tryConnect(url('tls'), withCert(coldGate, { username: 'cold-gate', password: 'cold-gate-password' }));
        expect({ attempt, ok: both.ok }).toEqual({ attempt, ok: true });
        if (both.ok) await endClient(both.client);
      }
      expect(await tryConnect(url('tls'), withCert(coldGate, { username: 'cold-gate', password: 'wrong-password' }))).toMatchObject({ ok: false, code: 4 });
      expect(await tryConnect(url('tls'), withCert(stranger))).toMatchObject({ ok: false, code: 4 });
      expect(counter.count()).toBe(0);
    } finally {
      counter.stop();
    }
    // The password was verified once (the first CONNECT) and once more for the wrong one; the warm CONNECT was a cache hit.
    expect(gatehouse.authenticator.stats().verifies - verifies).toBe(2);
  });

  it('refuses a fingerprint another client uses, and checks what is pasted', async () => {
    const db = gatehouse.database.db;
    await expect(createClient(db, { name: 'Copy', username: 'copy', authType: 'certificate', fingerprint: door.fingerprint })).rejects.toBeInstanceOf(ConflictError);
    await expect(createClient(db, { name: 'Bad', username: 'bad', authType: 'certificate', fingerprint: 'AB:CD' })).rejects.toBeInstanceOf(ValidationError);
    await expect(createClient(db, { name: 'None', username: 'none', authType: 'certificate_password', password: 'long-enough' })).rejects.toThrow(ValidationError);
  });

  describe('with client certificates required (mTLS)', () => {
    beforeAll(async () => {
      await setRequireClientCert(gatehouse.database.db, true, true);
      await gatehouse.tls.apply();
    });
    afterAll(async () => {
      await setRequireClientCert(gatehouse.database.db, false, true);
      await gatehouse.tls.apply();
    });

    it.each(transports)('refuses a connection without a certificate, and one the CA did not sign, before MQTT (%s)', async (transport) => {
      const none = await tryConnect(url(transport), withCert(null, { username: 'sensor', password: 'sensor-password' }));
      expect(none).toMatchObject({ ok: false, code: undefined });
      const unsigned = await tryConnect(url(transport), withCert(foreign, { username: 'sensor', password: 'sensor-password' }));
      expect(unsigned).toMatchObject({ ok: false, code: undefined });
    });

    it.each(transports)('refuses an expired certificate in the handshake (%s)', async (transport) => {
      expect(await tryConnect(url(transport), withCert(old))).toMatchObject({ ok: false, code: undefined });
    });

    it.each(transports)('refuses a signed certificate that belongs to no client with CONNACK 5 (%s)', async (transport) => {
      expect(await tryConnect(url(transport), withCert(stranger, { username: 'sensor', password: 'sensor-password' }))).toMatchObject({ ok: false, code: 5 });
    });

    it.each(transports)('connects certificate clients (%s)', async (transport) => {
      const device = await connect(url(transport), withCert(door));
      const both = await connect(url(transport), withCert(gate, { username: 'gate', password: 'gate-password' }));
      await endClient(device);
      await endClient(both);
    });
  });

  describe('wills of certificate clients', () => {
    const porch = certs.client(ca, 'porch-cert');
    const porchNext = certs.client(ca, 'porch-next-cert');
    const shed = certs.client(ca, 'shed-cert');

    it.each(transports)('publishes the will a rule by fingerprint allows when the connection dies (%s)', async (transport) => {
      const watcher = await connect(url(transport), withCert(null, { username: 'sensor', password: 'sensor-password' }));
      const device = await connect(url(transport), withCert(door, { clientId: `door-will-${transport}`, will: { topic: 'doors/door/status', payload: Buffer.from(`gone ${transport}`), qos: 1, retain: false } }));
      try {
        await watcher.subscribeAsync('doors/#', { qos: 1 });
        const will = nextMessage(watcher, 'doors/door/status');
        device.stream.destroy();
        // The door's only group comes from its certificate's fingerprint: the
        // will is judged when it fires with the fingerprint it connected with.
        expect(await will).toMatchObject({ payload: `gone ${transport}` });
      } finally {
        await endClient(device);
        await endClient(watcher);
      }
    });

    it.each([
      ['whose certificate was replaced', 'porch', 'the client no longer exists'],
      ['whose rule by fingerprint was removed', 'shed', 'the client may no longer publish it'],
    ] as const)('drops the will of a Certificate client %s while it was connected', async (_change, username, why) => {
      const db = gatehouse.database.db;
      const issued = username === 'porch' ? porch : shed;
      const client = await createClient(db, { name: username, username, authType: 'certificate', certificate: issued.cert });
      const group = await grantGroup(db, { name: `Wills of ${username}`, permissions: [['allow', 'publish', `doors/${username}/#`]] });
      await appendRules(db, [{ matchBy: 'certificate', value: issued.fingerprint, groups: [String(group.id)] }]);
      const watcher = await connect(url('tls'), withCert(null, { username: 'sensor', password: 'sensor-password' }));
      const clientId = `${username}-will`;
      const device = await connect(url('tls'), withCert(issued, { clientId, will: { topic: `doors/${username}/status`, payload: Buffer.from('gone'), qos: 1, retain: false } }));
      try {
        await watcher.subscribeAsync(`doors/${username}/#`, { qos: 1 });
        const heard: string[] = [];
        watcher.on('message', (topic) => heard.push(topic));

        if (username === 'porch') await updateClient(db, client.id, { name: username, username, authType: 'certificate', certificate: porchNext.cert });
        else await removeRules(db, issued.fingerprint);
        // Once this node has heard the change, the connection dies.
        const who = { clientRowId: client.id, username, mqttClientId: clientId, certFingerprint: issued.fingerprint };
        await expect
          .poll(async () => {
            const access = await gatehouse.authenticator.currentAccess(who);
            return access ? access.groups.length : 'gone';
          })
          .toBe(username === 'porch' ? 'gone' : 0);
        device.stream.destroy();

        await expect.poll(() => gatehouse.logs.join('\n'), { timeout: 10_000 }).toContain(`dropped the will of ${JSON.stringify(username)}`);
        expect(gatehouse.logs.find((line) => line.includes(`dropped the will of ${JSON.stringify(username)}`))).toContain(why);
        // Anything published before the marker has arrived by the time it does.
        const marker = nextMessage(watcher, `doors/${username}/after`);
        gatehouse.broker.aedes.publish({ cmd: 'publish', topic: `doors/${username}/after`, payload: Buffer.from('marker'), qos: 1, retain: false, dup: false }, () => {});
        await marker;
        expect(heard).toEqual([`doors/${username}/after`]);
      } finally {
        await endClient(device);
        await endClient(watcher);
      }
    });
  });

  it('switching a client to Certificate keeps its rows and refuses its old password', async () => {
    const db = gatehouse.database.db;
    const created = await createClient(db, { name: 'Switcher', username: 'switcher', password: 'switcher-password' });
    const switched = await updateClient(db, created.id, { name: 'Switcher', username: 'switcher', authType: 'certificate', certificate: stranger.cert });
    expect(switched).toMatchObject({ authType: 'certificate', certFingerprint: stranger.fingerprint });
    expect(await tryConnect(url('tls'), withCert(null, { username: 'switcher', password: 'switcher-password' }))).toMatchObject({ ok: false, code: 4 });
    const device = await connect(url('tls'), withCert(stranger));
    await endClient(device);
  });
});
