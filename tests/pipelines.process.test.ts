import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db';
import { createClient } from '../src/domain/clients';
import { createPipeline } from '../src/domain/pipelines/pipelines';
import { grantGroup } from './support/acl';
import { connect, endClient } from './support/mqtt';
import { seedDataDir } from './support/pgliteTemplate';
import { startProcess, stopProcess, waitForPorts, type Running } from './support/process';
import { startReceiver, type Receiver } from './support/receiver';

const SECRET_KEY = 'a-secret-key-for-the-process-test';
const device = { username: 'sensor-1', password: 'a-long-device-password-1' };

// The "done when": sensors/# mapped to a webhook, the endpoint down, Gatehouse killed with
// kill -9 meanwhile, and every acknowledged message arrives once the endpoint is back, signed, in order per topic.
describe('a webhook pipeline on the default install across kill -9', { timeout: 240_000 }, () => {
  let dataDir: string;
  let running: Running | undefined;
  let receiver: Receiver;
  let signingSecret: string;

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-pipelines-'));
    receiver = await startReceiver();
    await seedDataDir(dataDir);
    const seeded = await openDatabase({ kind: 'pglite', dataDir });
    await createClient(seeded.db, { name: 'Sensor', ...device });
    await grantGroup(seeded.db, { name: 'Sensors', permissions: [['allow', 'publish', 'sensors/#']], usernames: [device.username] });
    const created = await createPipeline(seeded.db, { name: 'lab', kind: 'webhook', enabled: 'on', url: `${receiver.url}/in`, mappings: [{ topicFilter: 'sensors/#' }] }, SECRET_KEY);
    signingSecret = created.signingSecret!;
    await seeded.close();
  });
  afterEach(async () => {
    if (running) await stopProcess(running, 'SIGKILL');
    running = undefined;
    await receiver.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('delivers every acknowledged message after the endpoint comes back, once each, signed, in order per topic', async () => {
    let up = false;
    receiver.answer = () => (up ? { status: 200 } : { status: 503, body: 'down for maintenance' });
    const env = { DATA_DIR: dataDir, SECRET_KEY, PIPELINES_ALLOW_PRIVATE_NETWORKS: '1', PIPELINES_RETRY_MAX_MS: '500' };
    running = startProcess(env);
    const ports = await waitForPorts(running);
    const client = await connect(`mqtt://127.0.0.1:${ports.mqtt}`, { ...device, clientId: 'sensor-1' });
    const count = 60;
    // publishAsync resolves on PUBACK: from then on Gatehouse owes the endpoint these messages.
    await Promise.all(Array.from({ length: count }, (_, i) => client.publishAsync(`sensors/${i % 4}/temp`, String(i), { qos: 1 })));
    await endClient(client);
    // The endpoint was asked (and answered 503) before the kill: the outbox held them.
    await expect.poll(() => receiver.received.length, { timeout: 20_000 }).toBeGreaterThan(0);
    expect(receiver.accepted()).toHaveLength(0);
    expect(await stopProcess(running, 'SIGKILL')).toBe(null);

    up = true;
    running = startProcess(env);
    await waitForPorts(running);
    const accepted = await receiver.waitFor(count, 60_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const bodies = receiver.accepted().map((request) => {
      // Verified as the receiving side would, with the Standard Webhooks library.
      return new Webhook(signingSecret).verify(request.body, request.headers as Record<string, string>) as { id: string; topic: string; payload: string };
    });
    expect(accepted.length).toBe(count);
    expect(bodies).toHaveLength(count);
    expect(new Set(bodies.map((b) => b.id)).size).toBe(count);
    expect(new Set(bodies.map((b) => b.payload))).toEqual(new Set(Array.from({ length: count }, (_, i) => String(i))));
    for (let t = 0; t < 4; t++) {
      const order = bodies.filter((b) => b.topic === `sensors/${t}/temp`).map((b) => Number(b.payload));
      expect(order).toEqual([...order].sort((a, b) => a - b));
    }
  });
});
