import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db';
import { createClient } from '../src/domain/clients';
import { connect, endClient } from './support/mqtt';

const tsx = path.resolve('node_modules/.bin/tsx');

interface Running {
  child: ChildProcessWithoutNullStreams;
  output: () => string;
  exited: Promise<number | null>;
}

function startProcess(env: Record<string, string>): Running {
  const child = spawn(tsx, ['src/main.ts'], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: '0', MQTT_PORT: '0', DATABASE_URL: '', ...env },
    stdio: 'pipe',
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

async function waitForPorts(running: Running): Promise<{ http: number; mqtt: number }> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const http = /console\s+http:\/\/[^:]+:(\d+)\//.exec(running.output());
    const mqtt = /MQTT over TCP\s+mqtt:\/\/[^:]+:(\d+)/.exec(running.output());
    if (http && mqtt) return { http: Number(http[1]), mqtt: Number(mqtt[1]) };
    if (running.child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`Gatehouse did not start:\n${running.output()}`);
}

// Each test starts whole processes (tsx, then the embedded database): slow on a busy machine.
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
      expect(existsSync(path.join(dataDir, 'gatehouse.lock'))).toBe(false);
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
      const clash = startProcess({ DATA_DIR: path.join(dataDir, 'clash'), MQTT_PORT: String(ports.mqtt) });
      expect(await clash.exited).toBe(1);
      expect(clash.output()).toContain('already in use');
    } finally {
      blocker.child.kill('SIGTERM');
      await blocker.exited;
    }
  });
});
