import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db';
import { createClient } from '../src/domain/clients';
import { grantGroup } from './support/acl';
import { connect, endClient } from './support/mqtt';
import { seedDataDir } from './support/pgliteTemplate';
import { startProcess, stopProcess, waitForPorts, type Running } from './support/process';

const DEVICES = 1000;

describe('graceful stop', { timeout: 180_000 }, () => {
  let dataDir: string;
  let running: Running | undefined;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-shutdown-'));
    await seedDataDir(dataDir);
    const seeded = await openDatabase({ kind: 'pglite', dataDir });
    await createClient(seeded.db, { name: 'Fleet', username: 'fleet', password: 'fleet-password' });
    await grantGroup(seeded.db, { name: 'Fleet', permissions: [['allow', 'subscribe', 'fleet/#']], usernames: ['fleet'] });
    await seeded.close();
  });
  afterAll(async () => {
    if (running) await stopProcess(running, 'SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });

  it(`exits with 0 within 10 s of SIGTERM with ${DEVICES} devices connected, closing their connections, and starts again at once`, async () => {
    running = startProcess({ DATA_DIR: dataDir });
    const ports = await waitForPorts(running);
    const url = `mqtt://127.0.0.1:${ports.mqtt}`;
    const devices: MqttClient[] = [];
    // Half persistent sessions with a subscription each: their state is written as they go.
    for (let i = 0; i < DEVICES; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, DEVICES - i) }, (_, j) =>
          connect(url, { username: 'fleet', password: 'fleet-password', clientId: `device-${i + j}`, clean: (i + j) % 2 === 0 }),
        ),
      );
      devices.push(...batch);
    }
    await Promise.all(devices.filter((_, i) => i % 2 === 1).map((device, i) => device.subscribeAsync(`fleet/${i}`, { qos: 1 })));
    const closed = devices.map((device) => new Promise<void>((resolve) => (device.connected ? device.once('close', () => resolve()) : resolve())));

    // Status 0 is the 10 s bound: past it the process gives up and exits 1.
    expect(await stopProcess(running, 'SIGTERM')).toBe(0);
    expect(running.output()).toContain('Stopped.');
    expect(running.output()).not.toContain('Shutdown took too long');
    await Promise.all(closed);
    await Promise.all(devices.map((device) => endClient(device)));

    running = startProcess({ DATA_DIR: dataDir });
    const again = await waitForPorts(running);
    const device = await connect(`mqtt://127.0.0.1:${again.mqtt}`, { username: 'fleet', password: 'fleet-password', clientId: 'device-1', clean: false });
    await endClient(device);
  });
});
