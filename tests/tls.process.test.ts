import { copyFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db';
import { createClient } from '../src/domain/clients';
import { certificateFactory } from './support/certs';
import { connect, endClient } from './support/mqtt';
import { seedDataDir } from './support/pgliteTemplate';
import { startProcess, stopProcess, waitForPorts } from './support/process';

function servedFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.once('error', reject);
  });
}

async function waitFor<T>(read: () => T | null, what: string, output: () => string): Promise<T> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const value = read();
    if (value !== null) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no ${what} in:\n${output()}`);
}

// Starts the built bundle: slow on a busy machine.
describe('the gatehouse process with TLS', { timeout: 180_000 }, () => {
  const certs = certificateFactory();
  const ca = certs.ca('Process CA');
  const first = certs.server(ca, 'process-first');
  const renewed = certs.server(ca, 'process-renewed');
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-tls-process-'));
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
    certs.remove();
  });

  it('prints the TLS ports, and on SIGHUP gives new connections the new certificate while a device stays connected', async () => {
    await seedDataDir(dataDir);
    const seeded = await openDatabase({ kind: 'pglite', dataDir });
    await createClient(seeded.db, { name: 'Sensor', username: 'sensor', password: 'sensor-password' });
    await seeded.close();
    const certFile = path.join(certs.dir, 'process.crt');
    const keyFile = path.join(certs.dir, 'process.key');
    copyFileSync(first.certFile, certFile);
    copyFileSync(first.keyFile, keyFile);

    const running = startProcess({ DATA_DIR: dataDir, MQTTS_PORT: '0', HTTPS_PORT: '0', TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile, TLS_CA_FILE: ca.certFile });
    try {
      await waitForPorts(running);
      const mqtts = await waitFor(() => /MQTT over TLS\s+mqtts:\/\/[^:]+:(\d+)/.exec(running.output())?.[1] ?? null, 'MQTTS port', running.output);
      const https = await waitFor(() => /console\s+https:\/\/[^:]+:(\d+)\//.exec(running.output())?.[1] ?? null, 'HTTPS port', running.output);
      expect(running.output()).toMatch(/MQTT over WSS\s+wss:\/\/[^:]+:\d+\/mqtt/);
      expect(await servedFingerprint(Number(mqtts), ca.cert)).toBe(first.fingerprint);

      const device = await connect(`mqtts://127.0.0.1:${mqtts}`, { ca: ca.cert, servername: 'localhost', username: 'sensor', password: 'sensor-password' });
      try {
        copyFileSync(renewed.certFile, certFile);
        copyFileSync(renewed.keyFile, keyFile);
        running.child.kill('SIGHUP');
        await waitFor(() => (running.output().includes('SIGHUP: certificates read again') ? true : null), 'SIGHUP answer', running.output);
        expect(await servedFingerprint(Number(mqtts), ca.cert)).toBe(renewed.fingerprint);
        expect(await servedFingerprint(Number(https), ca.cert)).toBe(renewed.fingerprint);
        expect(device.connected).toBe(true);
        await device.publishAsync('anything', 'still connected', { qos: 1 });
        expect(device.connected).toBe(true);
      } finally {
        await endClient(device);
      }
    } finally {
      expect(await stopProcess(running)).toBe(0);
    }
  });
});
