import { copyFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config';
import { createClient } from '../src/domain/clients';
import { plainListenerWarning, type Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { certificateFactory, type Issued } from './support/certs';
import { startTestGatehouse } from './support/gatehouse';
import { connect, endClient, nextMessage, tryConnect } from './support/mqtt';

const TOKEN = 'metrics-token-for-the-tls-tests';
const certs = certificateFactory();
afterAll(() => certs.remove());

/** The fingerprint of the certificate a new TLS connection to `port` is shown. */
function servedFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.once('error', reject);
  });
}

function httpsGet(port: number, path: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path, ca, servername: 'localhost' }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      })
      .once('error', reject);
  });
}

async function handshakeFailures(gatehouse: Gatehouse, listener: string): Promise<number> {
  const text = await (await gatehouse.app.request('/metrics', { headers: { authorization: `Bearer ${TOKEN}` } })).text();
  const line = text.split('\n').find((l) => l.startsWith(`gatehouse_tls_handshake_failures_total{listener="${listener}"} `));
  return Number(line?.split(' ').at(-1));
}

describe('TLS listeners from certificate files', () => {
  let gatehouse: Gatehouse & { logs: string[] };
  let ca: Issued;
  let serverCert: Issued;
  /** The files Gatehouse is told to read (copied over to replace them). */
  let certFile: string;
  let keyFile: string;

  beforeAll(async () => {
    ca = certs.ca('Files CA');
    serverCert = certs.server(ca, 'gatehouse-files');
    certFile = `${certs.dir}/in-use.crt`;
    keyFile = `${certs.dir}/in-use.key`;
    copyFileSync(serverCert.certFile, certFile);
    copyFileSync(serverCert.keyFile, keyFile);
    gatehouse = await startTestGatehouse('pglite', {
      TLS_CERT_FILE: certFile,
      TLS_KEY_FILE: keyFile,
      TLS_CA_FILE: ca.certFile,
      MQTTS_PORT: '0',
      HTTPS_PORT: '0',
      METRICS_TOKEN: TOKEN,
      MQTT_CONNECT_TIMEOUT_MS: '1500',
    });
    await createClient(gatehouse.database.db, { name: 'Sensor', username: 'sensor', password: 'sensor-password' });
    await grantGroup(gatehouse.database.db, {
      name: 'Plant',
      permissions: [
        ['allow', 'publish', 'plant/#'],
        ['allow', 'subscribe', 'plant/#'],
      ],
      usernames: ['sensor'],
    });
  });
  afterAll(async () => {
    await gatehouse?.close();
  });

  const mqttsUrl = () => `mqtts://127.0.0.1:${gatehouse.tls.status().mqttsPort}`;
  const wssUrl = () => `wss://127.0.0.1:${gatehouse.tls.status().httpsPort}/mqtt`;

  it('serves MQTT over TLS and over secure WebSocket, beside the plain listeners', async () => {
    const status = gatehouse.tls.status();
    expect(status).toMatchObject({ source: 'files', hasCa: true, requireClientCert: false });
    expect(status.mqttsPort).toBeGreaterThan(0);
    expect(status.httpsPort).toBeGreaterThan(0);
    const subscriber = await connect(mqttsUrl(), { ca: ca.cert, servername: 'localhost', username: 'sensor', password: 'sensor-password', clientId: 'tls-sub' });
    const publisher = await connect(wssUrl(), { ca: ca.cert, servername: 'localhost', username: 'sensor', password: 'sensor-password', clientId: 'wss-pub' } as never);
    try {
      await subscriber.subscribeAsync('plant/temp', { qos: 1 });
      const message = nextMessage(subscriber, 'plant/temp');
      await publisher.publishAsync('plant/temp', '21.5', { qos: 1 });
      expect((await message).payload).toBe('21.5');
      expect(gatehouse.broker.connectionsByTransport()).toMatchObject({ tls: 1, wss: 1 });
      // The plain listener is still there, as configured.
      const plain = await connect(`mqtt://127.0.0.1:${gatehouse.mqttPort}`, { username: 'sensor', password: 'sensor-password' });
      await endClient(plain);
    } finally {
      await endClient(subscriber);
      await endClient(publisher);
    }
  });

  it('refuses a wrong password over MQTTS with CONNACK 4, as over TCP', async () => {
    expect(await tryConnect(mqttsUrl(), { ca: ca.cert, servername: 'localhost', username: 'sensor', password: 'wrong-password' })).toMatchObject({ ok: false, code: 4 });
  });

  it('serves the console over HTTPS', async () => {
    const response = await httpsGet(gatehouse.tls.status().httpsPort!, '/healthz', ca.cert);
    expect(response).toEqual({ status: 200, body: 'ok' });
  });

  it('refuses TLS 1.1, counts the failed handshake and keeps serving', async () => {
    const before = await handshakeFailures(gatehouse, 'mqtts');
    const error = await new Promise<Error | null>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: gatehouse.tls.status().mqttsPort!, ca: ca.cert, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' }, () => {
        socket.end();
        resolve(null);
      });
      socket.once('error', resolve);
    });
    expect(error).not.toBeNull();
    // Not an MQTT/TLS client at all: plain bytes where a ClientHello belongs.
    await new Promise<void>((resolve) => {
      const socket = net.connect(gatehouse.tls.status().mqttsPort!, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\n\r\n'));
      socket.on('error', () => {});
      socket.once('close', () => resolve());
    });
    await expect.poll(() => handshakeFailures(gatehouse, 'mqtts')).toBeGreaterThanOrEqual(before + 2);
    // Logged once a minute per address, however many fail.
    expect(gatehouse.logs.filter((line) => line.startsWith('TLS handshake from 127.0.0.1 failed'))).toHaveLength(1);
    const client = await connect(mqttsUrl(), { ca: ca.cert, servername: 'localhost', username: 'sensor', password: 'sensor-password' });
    await endClient(client);
  });

  it('closes a connection that never finishes its handshake (the CONNECT timeout covers it)', async () => {
    const before = await handshakeFailures(gatehouse, 'mqtts');
    await new Promise<void>((resolve) => {
      const socket = net.connect(gatehouse.tls.status().mqttsPort!, '127.0.0.1');
      socket.on('error', () => {});
      socket.once('close', () => resolve());
    });
    await expect.poll(() => handshakeFailures(gatehouse, 'mqtts')).toBeGreaterThan(before);
  });

  it('gives new connections a replaced certificate while a connected device stays connected', async () => {
    const port = gatehouse.tls.status().mqttsPort!;
    expect(await servedFingerprint(port, ca.cert)).toBe(serverCert.fingerprint);
    const device = await connect(mqttsUrl(), { ca: ca.cert, servername: 'localhost', username: 'sensor', password: 'sensor-password', clientId: 'stays' });
    try {
      await device.subscribeAsync('plant/after', { qos: 1 });
      const renewed = certs.server(ca, 'gatehouse-files-renewed');
      copyFileSync(renewed.certFile, certFile);
      copyFileSync(renewed.keyFile, keyFile);
      // What SIGHUP does.
      await gatehouse.tls.apply();
      expect(await servedFingerprint(port, ca.cert)).toBe(renewed.fingerprint);
      expect(await servedFingerprint(gatehouse.tls.status().httpsPort!, ca.cert)).toBe(renewed.fingerprint);
      const message = nextMessage(device, 'plant/after');
      const publisher = await connect(wssUrl(), { ca: ca.cert, servername: 'localhost', username: 'sensor', password: 'sensor-password' } as never);
      await publisher.publishAsync('plant/after', 'still here', { qos: 1 });
      expect((await message).payload).toBe('still here');
      expect(device.connected).toBe(true);
      await endClient(publisher);
    } finally {
      await endClient(device);
    }
  });

  it('keeps the certificate in use when the files are replaced by a key that does not match', async () => {
    const port = gatehouse.tls.status().mqttsPort!;
    const current = await servedFingerprint(port, ca.cert);
    const other = certs.server(ca, 'gatehouse-other');
    copyFileSync(other.keyFile, keyFile);
    await expect(gatehouse.tls.apply()).rejects.toThrow(/TLS_KEY_FILE: This private key does not belong/);
    expect(await servedFingerprint(port, ca.cert)).toBe(current);
  });
});

describe('TLS start-up errors and plain listeners', () => {
  const ca = certs.ca('Startup CA');
  const good = certs.server(ca, 'startup-good');
  const other = certs.server(ca, 'startup-other');
  const tlsPorts = { MQTTS_PORT: '0', HTTPS_PORT: '0' };

  it('names TLS_CERT_FILE when the certificate file cannot be read', async () => {
    const start = startTestGatehouse('pglite', { ...tlsPorts, TLS_CERT_FILE: `${certs.dir}/missing.crt`, TLS_KEY_FILE: good.keyFile });
    await expect(start).rejects.toThrow(ConfigError);
    await expect(start).rejects.toThrow(/TLS_CERT_FILE: cannot read .*missing\.crt \(ENOENT\)/);
  });

  it('names TLS_KEY_FILE when the key does not match the certificate', async () => {
    await expect(startTestGatehouse('pglite', { ...tlsPorts, TLS_CERT_FILE: good.certFile, TLS_KEY_FILE: other.keyFile })).rejects.toThrow(
      /TLS_KEY_FILE: This private key does not belong to the server certificate/,
    );
  });

  it('names TLS_CA_FILE when it is not a CA certificate', async () => {
    await expect(startTestGatehouse('pglite', { ...tlsPorts, TLS_CERT_FILE: good.certFile, TLS_KEY_FILE: good.keyFile, TLS_CA_FILE: good.certFile })).rejects.toThrow(
      /TLS_CA_FILE: This certificate is not a CA certificate/,
    );
  });

  it('asks for both TLS_CERT_FILE and TLS_KEY_FILE', () => {
    expect(() => loadConfig({ TLS_CERT_FILE: good.certFile })).toThrow(/TLS_KEY_FILE: TLS_CERT_FILE and TLS_KEY_FILE go together/);
  });

  it('turns the plain listeners off with MQTT_PORT=off and PORT=off, serving over TLS only', async () => {
    const gatehouse = await startTestGatehouse('pglite', { ...tlsPorts, MQTT_PORT: 'off', PORT: 'off', TLS_CERT_FILE: good.certFile, TLS_KEY_FILE: good.keyFile });
    try {
      expect(gatehouse.mqttPort).toBe(0);
      expect(gatehouse.httpPort).toBe(0);
      expect(gatehouse.broker.listening()).toBe(true);
      await createClient(gatehouse.database.db, { name: 'Only TLS', username: 'only-tls', password: 'only-tls-password' });
      const client = await connect(`mqtts://127.0.0.1:${gatehouse.tls.status().mqttsPort}`, { ca: ca.cert, servername: 'localhost', username: 'only-tls', password: 'only-tls-password' });
      await endClient(client);
    } finally {
      await gatehouse.close();
    }
  });

  it('refuses PORT=off while TLS is off: there would be no console', async () => {
    await expect(startTestGatehouse('pglite', { PORT: 'off' })).rejects.toThrow(/PORT: off leaves no console until TLS is on/);
  });

  it('warns when passwords are accepted over a plain listener beyond loopback', () => {
    expect(plainListenerWarning({ HOST: '0.0.0.0', MQTT_PORT: 1883, PORT: 3000 })).toMatch(/passwords are accepted in clear over MQTT on port 1883 \(MQTT_PORT\) and the console/);
    expect(plainListenerWarning({ HOST: '0.0.0.0', MQTT_PORT: 'off', PORT: 'off' })).toBeNull();
    expect(plainListenerWarning({ HOST: '127.0.0.1', MQTT_PORT: 1883, PORT: 3000 })).toBeNull();
  });
});
