import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../src/domain/clients';
import { setRequireClientCert } from '../src/domain/tlsSettings';
import type { Gatehouse } from '../src/server';
import { appendRules, grantGroup } from './support/acl';
import { certificateFactory } from './support/certs';
import { requireOrSkip } from './support/env';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient, nextMessage } from './support/mqtt';

const run = promisify(execFile);

function hasMosquittoClients(): boolean {
  try {
    execFileSync('mosquitto_pub', ['--help'], { stdio: 'ignore' });
    return true;
  } catch (error) {
    // --help exits 1 but runs: only a missing binary is ENOENT.
    return (error as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

const available = requireOrSkip('mosquitto_pub (Debian package mosquitto-clients)', hasMosquittoClients(), 'apt-get install mosquitto-clients to run the mosquitto_pub TLS test');

/** What the README promises: a device connects with `mosquitto_pub --cafile … --cert … --key …`. */
describe.runIf(available)('a certificate client with mosquitto_pub', { timeout: 60_000 }, () => {
  const certs = certificateFactory();
  const ca = certs.ca('Devices CA');
  const serverCert = certs.server(ca, 'broker');
  const device = certs.client(ca, 'pump-7');
  const stranger = certs.client(ca, 'stranger');
  let gatehouse: Gatehouse;

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite', {
      TLS_CERT_FILE: serverCert.certFile,
      TLS_KEY_FILE: serverCert.keyFile,
      TLS_CA_FILE: ca.certFile,
      MQTTS_PORT: '0',
      HTTPS_PORT: '0',
    });
    const db = gatehouse.database.db;
    await createClient(db, { name: 'Pump 7', username: 'pump-7', authType: 'certificate', certificate: device.cert });
    await createClient(db, { name: 'Watcher', username: 'watcher', password: 'watcher-password' });
    const pumps = await grantGroup(db, { name: 'Pumps', permissions: [['allow', 'publish', 'pumps/%u/#']] });
    await appendRules(db, [{ matchBy: 'certificate', value: device.fingerprint, groups: [String(pumps.id)] }]);
    await grantGroup(db, { name: 'Watchers', permissions: [['allow', 'subscribe', 'pumps/#']], usernames: ['watcher'] });
    // mTLS on (TLS itself is on from the files): the handshake asks every
    // device for a certificate the CA signed.
    await setRequireClientCert(db, true, true);
    await gatehouse.tls.apply();
  });
  afterAll(async () => {
    await gatehouse?.close();
    certs.remove();
  });

  const port = () => String(gatehouse.tls.status().mqttsPort);
  const publish = (cert: { certFile: string; keyFile: string }, topic: string) =>
    run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port(), '--cafile', ca.certFile, '--cert', cert.certFile, '--key', cert.keyFile, '-i', 'pump-7-device', '-q', '1', '-t', topic, '-m', 'running']);

  it('publishes with its certificate and key, no username or password, under the rule by fingerprint', async () => {
    // The watcher listens on the plain listener (under mTLS every TLS session needs a client's certificate).
    const watcher = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'watcher', password: 'watcher-password' });
    try {
      await watcher.subscribeAsync('pumps/#', { qos: 1 });
      const message = nextMessage(watcher, 'pumps/pump-7/state');
      await publish(device, 'pumps/pump-7/state');
      expect(await message).toMatchObject({ payload: 'running' });
    } finally {
      await endClient(watcher);
    }
  });

  it('is refused with a certificate that belongs to no client (CONNACK 5)', async () => {
    await expect(publish(stranger, 'pumps/pump-7/state')).rejects.toMatchObject({ stderr: expect.stringMatching(/not authori[sz]ed/i) });
  });
});
