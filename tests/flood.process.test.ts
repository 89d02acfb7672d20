import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqttPacket from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db';
import { createClient } from '../src/domain/clients';
import { grantGroup } from './support/acl';
import { connect, endClient, nextMessage } from './support/mqtt';
import { seedDataDir } from './support/pgliteTemplate';
import { startProcess, stopProcess, waitForPorts, type Running } from './support/process';

/** FLOOD_SECONDS lengthens it (the README's figures are from 15 s). */
const floodSeconds = Number(process.env.FLOOD_SECONDS ?? 5);
const auth = { username: 'flood', password: 'flood-password' };
const raw = (packet: object) => mqttPacket.generate(packet as mqttPacket.Packet);
const rawConnect = (clientId: string) => raw({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0, ...auth });

function residentKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1]);
}

describe('a saturating QoS 0 flood beside a subscriber that stopped reading', { timeout: 120_000 + floodSeconds * 4000 }, () => {
  let dataDir: string;
  let running: Running;
  let url: string;
  let port: number;
  const clients: MqttClient[] = [];
  const sockets: net.Socket[] = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-flood-'));
    await seedDataDir(dataDir);
    const seeded = await openDatabase({ kind: 'pglite', dataDir });
    await createClient(seeded.db, { name: 'Flood', ...auth });
    await grantGroup(seeded.db, { name: 'Flood', permissions: [['allow', 'publish', '#'], ['allow', 'subscribe', '#']], usernames: ['flood'] });
    await seeded.close();
    running = startProcess({ DATA_DIR: dataDir });
    const ports = await waitForPorts(running);
    port = ports.mqtt;
    url = `mqtt://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await Promise.all(clients.map((client) => endClient(client)));
    if (running) await stopProcess(running, 'SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps accepting new clients, keeps delivering to the others, and stays up with bounded memory', async () => {
    const before = await connect(url, { ...auth, clientId: 'subscribed-before' });
    clients.push(before);
    await before.subscribeAsync('after/flood', { qos: 1 });
    const reader = await connect(url, { ...auth, clientId: 'healthy-reader' });
    clients.push(reader);
    await reader.subscribeAsync('flood/#', { qos: 0 });
    let read = 0;
    reader.on('message', () => read++);

    // A subscriber that stops reading its socket.
    const stalled = net.connect(port, '127.0.0.1');
    sockets.push(stalled);
    stalled.on('error', () => {});
    stalled.write(rawConnect('stalled'));
    stalled.write(raw({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flood/#', qos: 0 }] }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    stalled.pause();

    // A publisher that writes QoS 0 as fast as the broker takes it.
    const flooder = net.connect(port, '127.0.0.1');
    sockets.push(flooder);
    flooder.on('error', () => {});
    flooder.write(rawConnect('flooder'));
    const burst = Buffer.concat(Array.from({ length: 200 }, () => raw({ cmd: 'publish', topic: 'flood/x', payload: Buffer.alloc(64), qos: 0, retain: false, dup: false })));
    let flooding = true;
    let sent = 0;
    const pump = () => {
      while (flooding) {
        sent += 200;
        if (!flooder.write(burst)) {
          flooder.once('drain', pump);
          return;
        }
      }
    };
    pump();

    // New clients during the flood are accepted.
    const connectTimes: number[] = [];
    const deadline = Date.now() + floodSeconds * 1000;
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const started = Date.now();
      const probe = await connect(url, { ...auth, clientId: `during-${started}`, connectTimeout: 5000 });
      connectTimes.push(Date.now() - started);
      await endClient(probe);
    }
    flooding = false;
    flooder.destroy();
    const peakKb = residentKb(running.child.pid!, 'VmHWM');

    // Right after it: a new client is accepted and the subscriber from before hears it.
    const after = await connect(url, { ...auth, clientId: 'right-after', connectTimeout: 5000 });
    clients.push(after);
    const heard = nextMessage(before, 'after/flood', 5000);
    await after.publishAsync('after/flood', 'the flood is over', { qos: 1 });
    expect((await heard).payload).toBe('the flood is over');

    expect(running.child.exitCode).toBeNull();
    expect(sent).toBeGreaterThan(0);
    expect(peakKb).toBeLessThan(1024 * 1024);
    console.log(
      `flood of ${floodSeconds} s: ${sent} messages offered, the healthy reader got ${read}; ` +
        `CONNACK during it in ${connectTimes.join(', ')} ms; broker peak RSS ${Math.round(peakKb / 1024)} MB`,
    );
  });
});
