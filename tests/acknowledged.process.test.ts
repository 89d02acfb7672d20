import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db';
import { createClient } from '../src/domain/clients';
import { grantGroup } from './support/acl';
import { createPostgresTestDatabase, drivers, type DriverName } from './support/db';
import { connect, endClient, nextMessage, type Transport } from './support/mqtt';
import { seedDataDir } from './support/pgliteTemplate';
import { startProcess, startScript, stopProcess, waitForPorts, type Running } from './support/process';

const transports: Transport[] = ['tcp', 'ws'];
const device = { username: 'keeper', password: 'keeper-password' };

function urlOf(ports: { http: number; mqtt: number }, transport: Transport) {
  return transport === 'tcp' ? `mqtt://127.0.0.1:${ports.mqtt}` : `ws://127.0.0.1:${ports.http}/mqtt`;
}

function connectCollecting(url: string, options: IClientOptions) {
  return new Promise<{ client: MqttClient; sessionPresent: boolean; messages: string[] }>((resolve, reject) => {
    const messages: string[] = [];
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 10_000, ...options });
    client.on('message', (topic, payload) => messages.push(`${topic} ${payload.toString()}`));
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent, messages }));
    client.once('error', reject);
  });
}

/**
 * kill -9 right after the PUBACKs. The process is one whose store writes each
 * wait 1.5 s before they start (tests/support/heldStoreMain.ts): a broker that
 * acknowledged before storing is killed before its writes, every run, and
 * loses both messages; one that stores first acknowledges only after them.
 */
describe.each(drivers)('a QoS 1 message acknowledged on %s with the local broker store', { timeout: 180_000 }, (driver: DriverName) => {
  const cleanup: Array<() => Promise<unknown>> = [];
  let running: Running | undefined;
  afterEach(async () => {
    if (running) await stopProcess(running, 'SIGKILL');
    running = undefined;
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  it('is there after kill -9 right after its PUBACK, retained and queued, over TCP and WebSocket', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-acked-'));
    cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
    let databaseUrl = '';
    if (driver === 'postgres') {
      const created = await createPostgresTestDatabase();
      cleanup.push(() => created.drop());
      databaseUrl = created.url;
    }
    if (!databaseUrl) await seedDataDir(dataDir);
    const seeded = await openDatabase(databaseUrl ? { kind: 'postgres', url: databaseUrl } : { kind: 'pglite', dataDir });
    await createClient(seeded.db, { name: 'Keeper', ...device });
    await grantGroup(seeded.db, {
      name: 'State',
      permissions: [
        ['allow', 'publish', 'state/#'],
        ['allow', 'subscribe', 'state/#'],
      ],
      usernames: ['keeper'],
    });
    await seeded.close();
    const env = { DATA_DIR: dataDir, DATABASE_URL: databaseUrl };

    running = startScript('heldStoreMain.ts', { ...env, HOLD_STORE_WRITES_MS: '1500' });
    const ports = await waitForPorts(running);
    for (const transport of transports) {
      const keeper = await connect(urlOf(ports, transport), { ...device, clientId: `keeper-${transport}`, clean: false });
      await keeper.subscribeAsync(`state/${transport}/queue`, { qos: 1 });
      await endClient(keeper);
    }
    // Four publishers at once, each waiting for its own PUBACK.
    const publishers = await Promise.all(
      transports.flatMap((transport) => ['retained', 'queue'].map((kind) => connect(urlOf(ports, transport), { ...device, clientId: `publisher-${transport}-${kind}` }))),
    );
    await Promise.all(
      transports.flatMap((transport, t) => [
        publishers[t * 2]!.publishAsync(`state/${transport}/retained`, `kept over ${transport}`, { qos: 1, retain: true }),
        publishers[t * 2 + 1]!.publishAsync(`state/${transport}/queue`, `queued over ${transport}`, { qos: 1 }),
      ]),
    );
    expect(await stopProcess(running, 'SIGKILL')).toBe(null);
    for (const publisher of publishers) publisher.end(true);

    running = startProcess(env);
    const restarted = await waitForPorts(running);
    for (const transport of transports) {
      const url = urlOf(restarted, transport);
      const keeper = await connectCollecting(url, { ...device, clientId: `keeper-${transport}`, clean: false });
      try {
        expect(keeper.sessionPresent).toBe(true);
        const deadline = Date.now() + 5000;
        while (keeper.messages.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
        expect(keeper.messages).toEqual([`state/${transport}/queue queued over ${transport}`]);
      } finally {
        await endClient(keeper.client);
      }
      const reader = await connect(url, { ...device, clientId: `reader-${transport}` });
      try {
        const retained = nextMessage(reader, `state/${transport}/retained`);
        await reader.subscribeAsync(`state/${transport}/retained`, { qos: 1 });
        expect(await retained).toMatchObject({ payload: `kept over ${transport}`, retain: true });
      } finally {
        await endClient(reader);
      }
    }
  });
});
