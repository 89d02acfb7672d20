import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db';
import { createClient } from '../src/domain/clients';
import { connect, endClient } from './support/mqtt';
import { seedDataDir } from './support/pgliteTemplate';
import { childProcesses, residentBytes, startProcess, waitForPorts } from './support/process';

// Each test starts whole processes (the built bundle, then the embedded database): slow on a busy machine.
describe('the gatehouse process', { timeout: 120_000 }, () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-process-'));
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps its data in DATA_DIR, prints the ports it bound, refuses a second process on the same directory, and stops cleanly on SIGTERM', async () => {
    // Data written before start is there after start: the same embedded database.
    await seedDataDir(dataDir);
    const seeded = await openDatabase({ kind: 'pglite', dataDir });
    await createClient(seeded.db, { name: 'Persisted', username: 'persisted', password: 'persisted-password' });
    await seeded.close();

    const first = startProcess({ DATA_DIR: dataDir });
    try {
      const ports = await waitForPorts(first);
      expect(ports.http).toBeGreaterThan(0);
      const response = await fetch(`http://127.0.0.1:${ports.http}/`, { redirect: 'manual' });
      expect(response.status).toBeLessThan(400);
      // A device still connected at SIGTERM does not hold up the shutdown.
      const device = await connect(`mqtt://127.0.0.1:${ports.mqtt}`, { username: 'persisted', password: 'persisted-password' });

      const second = startProcess({ DATA_DIR: dataDir });
      expect(await second.exited).not.toBe(0);
      expect(second.output()).toContain(`data directory ${dataDir} is in use by another Gatehouse process`);

      const deviceClosed = new Promise<void>((resolve) => device.once('close', () => resolve()));
      first.child.kill('SIGTERM');
      expect(await first.exited).toBe(0);
      expect(first.output()).toContain('Stopped.');
      expect(first.output()).not.toContain('Shutdown took too long');
      await deviceClosed;
      await endClient(device);
      expect(existsSync(path.join(dataDir, 'gatehouse.pid'))).toBe(false);
    } finally {
      first.child.kill('SIGKILL');
    }
  });

  it('refuses to start with a bad setting and names the variable', async () => {
    const running = startProcess({ DATA_DIR: dataDir, MQTT_PORT: 'not-a-port' });
    expect(await running.exited).toBe(1);
    expect(running.output()).toMatch(/Invalid configuration:\n\s+MQTT_PORT:/);
  });

  it('says which port is taken when it cannot listen', async () => {
    const blocker = startProcess({ DATA_DIR: path.join(dataDir, 'blocker') });
    try {
      const ports = await waitForPorts(blocker);
      // A first start: the database was created by a child that has exited,
      // and what it took (≈ 800 MB at the peak) went with it.
      expect(childProcesses(blocker.child.pid!)).toEqual([]);
      expect(residentBytes(blocker.child.pid!)).toBeLessThan(300 * 1024 * 1024);
      expect(existsSync(path.join(dataDir, 'blocker', 'pglite', 'PG_VERSION'))).toBe(true);
      expect(readdirSync(path.join(dataDir, 'blocker')).filter((entry) => entry.startsWith('pglite.creating'))).toEqual([]);
      // Its subject is the port, not a first start: its database is made already.
      await seedDataDir(path.join(dataDir, 'clash'));
      const clash = startProcess({ DATA_DIR: path.join(dataDir, 'clash'), MQTT_PORT: String(ports.mqtt) });
      expect(await clash.exited).toBe(1);
      expect(clash.output()).toContain('already in use');
    } finally {
      blocker.child.kill('SIGTERM');
      await blocker.exited;
    }
  });
});
