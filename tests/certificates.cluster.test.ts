import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../src/config';
import { createClient } from '../src/domain/clients';
import { startGatehouse, type Gatehouse } from '../src/server';
import { signIn } from './support/admin';
import { certificateFactory } from './support/certs';
import { createPostgresTestDatabase } from './support/db';
import { requireOrSkip } from './support/env';
import { connect, endClient } from './support/mqtt';

const databaseUrl = process.env.TEST_DATABASE_URL;
const havePostgres = requireOrSkip('PostgreSQL (TEST_DATABASE_URL)', Boolean(databaseUrl), 'set TEST_DATABASE_URL=postgres://… to run the two-node certificates suite');
const SECRET_KEY = 'the-secret-key-both-nodes-share';

function servedFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.once('error', reject);
  });
}

describe.runIf(havePostgres)('certificates on two nodes sharing PostgreSQL', { timeout: 120_000 }, () => {
  const certs = certificateFactory();
  const ca = certs.ca('Cluster CA');
  const first = certs.server(ca, 'cluster-first');
  const renewed = certs.server(ca, 'cluster-renewed');
  let database: { url: string; drop(): Promise<void> };
  let dataDir: string;
  let a: Gatehouse;
  let b: Gatehouse;

  beforeAll(async () => {
    database = await createPostgresTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-tls-cluster-'));
    const start = (name: string) =>
      startGatehouse({
        config: configSchema.parse({
          PORT: '0',
          MQTT_PORT: '0',
          MQTTS_PORT: '0',
          HTTPS_PORT: '0',
          HOST: '127.0.0.1',
          DATABASE_URL: database.url,
          DATA_DIR: path.join(dataDir, name),
          SECRET_KEY,
        }),
        log: () => {},
      });
    a = await start('a');
    b = await start('b');
    await createClient(a.database.db, { name: 'Sensor', username: 'sensor', password: 'sensor-password' });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await database?.drop();
    await rm(dataDir, { recursive: true, force: true });
    certs.remove();
  });

  it('starts the other node’s TLS listeners and gives it a replaced certificate, from one node’s console', async () => {
    const admin = await signIn(a.app, a.database.db);
    const upload = (cert: string, key: string, caPem?: string) => {
      const form = new FormData();
      if (caPem) form.append('ca', caPem);
      form.append('cert', cert);
      form.append('key', key);
      return admin.request('/certificates', { method: 'POST', body: form });
    };
    expect((await upload(first.cert, first.key, ca.cert)).status).toBe(303);
    expect((await admin.request('/certificates/enable', { method: 'POST', body: new URLSearchParams() })).status).toBe(303);
    await expect.poll(() => b.tls.status().source, { timeout: 30_000 }).toBe('console');
    const port = b.tls.status().mqttsPort!;
    expect(await servedFingerprint(port, ca.cert)).toBe(first.fingerprint);
    const device = await connect(`mqtts://127.0.0.1:${port}`, { ca: ca.cert, servername: 'localhost', username: 'sensor', password: 'sensor-password' });
    try {
      expect((await upload(renewed.cert, renewed.key)).status).toBe(303);
      await expect.poll(() => servedFingerprint(port, ca.cert), { timeout: 30_000 }).toBe(renewed.fingerprint);
      expect(device.connected).toBe(true);
    } finally {
      await endClient(device);
    }
  });
});
