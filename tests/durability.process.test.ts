import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BrokerStateLockedError } from '../src/broker/state';
import { configSchema } from '../src/config';
import { openDatabase } from '../src/db';
import { createClient } from '../src/domain/clients';
import { startGatehouse, type Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { createPostgresTestDatabase, drivers } from './support/db';
import { connect, endClient, nextMessage, type Transport } from './support/mqtt';
import { seedDataDir } from './support/pgliteTemplate';
import { startProcess, stopProcess, waitForPorts, type Running } from './support/process';

const transports: Transport[] = ['tcp', 'ws'];
const device = { username: 'keeper', password: 'keeper-password' };

function urlOf(ports: { http: number; mqtt: number }, transport: Transport) {
  return transport === 'tcp' ? `mqtt://127.0.0.1:${ports.mqtt}` : `ws://127.0.0.1:${ports.http}/mqtt`;
}

/**
 * Connects and collects every message from the first packet on (a queued
 * message arrives right after CONNACK), with the CONNACK's session present flag.
 */
function connectCollecting(url: string, options: IClientOptions) {
  return new Promise<{ client: MqttClient; sessionPresent: boolean; messages: Array<{ topic: string; payload: string }> }>((resolve, reject) => {
    const messages: Array<{ topic: string; payload: string }> = [];
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 10_000, ...options });
    client.on('message', (topic, payload) => messages.push({ topic, payload: payload.toString() }));
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent, messages }));
    client.once('error', reject);
  });
}

async function until(condition: () => boolean, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// Whole processes on the embedded database, stopped and started again on one DATA_DIR.
describe('broker state on the default install', { timeout: 180_000 }, () => {
  let dataDir: string;
  let running: Running | undefined;
  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-durable-'));
    await seedDataDir(dataDir);
    const seeded = await openDatabase({ kind: 'pglite', dataDir });
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
  });
  afterEach(async () => {
    if (running) await stopProcess(running, 'SIGKILL');
    running = undefined;
    await rm(dataDir, { recursive: true, force: true });
  });

  /** What each transport leaves behind: a retained message and a persistent session with a queued QoS 1 message. */
  async function leaveState(ports: { http: number; mqtt: number }) {
    for (const transport of transports) {
      const url = urlOf(ports, transport);
      const keeper = await connect(url, { ...device, clientId: `keeper-${transport}`, clean: false });
      await keeper.subscribeAsync(`state/${transport}/queue`, { qos: 1 });
      await endClient(keeper);
      const publisher = await connect(url, { ...device, clientId: `publisher-${transport}` });
      // publishAsync resolves on PUBACK: from then on the broker owes these messages.
      await publisher.publishAsync(`state/${transport}/retained`, `kept over ${transport}`, { qos: 1, retain: true });
      await publisher.publishAsync(`state/${transport}/queue`, `queued over ${transport}`, { qos: 1 });
      await endClient(publisher);
    }
  }

  async function expectStateBack(ports: { http: number; mqtt: number }) {
    for (const transport of transports) {
      const url = urlOf(ports, transport);
      const keeper = await connectCollecting(url, { ...device, clientId: `keeper-${transport}`, clean: false });
      try {
        expect(keeper.sessionPresent, `session present over ${transport}`).toBe(true);
        await until(() => keeper.messages.length > 0, 5000, `the queued message over ${transport}`);
        expect(keeper.messages).toEqual([{ topic: `state/${transport}/queue`, payload: `queued over ${transport}` }]);
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
  }

  it('keeps retained messages and persistent sessions with their queued messages across a SIGTERM restart', async () => {
    running = startProcess({ DATA_DIR: dataDir });
    await leaveState(await waitForPorts(running));
    expect(await stopProcess(running, 'SIGTERM')).toBe(0);

    running = startProcess({ DATA_DIR: dataDir });
    await expectStateBack(await waitForPorts(running));
  });

  it('keeps them across kill -9, and publishes the will of a device connected when the process died', async () => {
    // A short heartbeat: the restarted broker publishes the wills of the dead one after 3 to 7 of them.
    const env = { DATA_DIR: dataDir, NODE_HEARTBEAT_MS: '300' };
    running = startProcess(env);
    const ports = await waitForPorts(running);
    await leaveState(ports);
    const dying = await connect(urlOf(ports, 'tcp'), {
      ...device,
      clientId: 'dying',
      will: { topic: 'state/wills/dying', payload: Buffer.from('gone'), qos: 1, retain: false },
    });
    expect(await stopProcess(running, 'SIGKILL')).toBe(null);
    await endClient(dying);
    // In a container the restarted process often gets the dead one's pid, or the
    // file names pid 1: the DATA_DIR lock must not trust it.
    await writeFile(path.join(dataDir, 'gatehouse.pid'), '1');

    running = startProcess(env);
    const restarted = await waitForPorts(running);
    const watcher = await connect(urlOf(restarted, 'ws'), { ...device, clientId: 'will-watcher' });
    try {
      const will = nextMessage(watcher, 'state/wills/dying', 15_000);
      await watcher.subscribeAsync('state/wills/#', { qos: 1 });
      expect((await will).payload).toBe('gone');
    } finally {
      await endClient(watcher);
    }
    await expectStateBack(restarted);
  });
});

describe.runIf(drivers.includes('postgres'))('broker state with DATABASE_URL and no REDIS_URL', { timeout: 120_000 }, () => {
  it('keeps it under DATA_DIR across a restart, and refuses a second node on the same DATA_DIR', async () => {
    const database = await createPostgresTestDatabase();
    const dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-pg-state-'));
    const config = configSchema.parse({ PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATABASE_URL: database.url, DATA_DIR: dataDir });
    let node: Gatehouse | undefined;
    try {
      node = await startGatehouse({ config, log: () => {} });
      expect(node.brokerState.location).toBe(path.join(dataDir, 'broker'));
      await createClient(node.database.db, { name: 'Keeper', ...device });
      await grantGroup(node.database.db, { name: 'State', permissions: [['allow', 'publish', 'state/#'], ['allow', 'subscribe', 'state/#']], usernames: ['keeper'] });
      const publisher = await connect(`mqtt://127.0.0.1:${node.mqttPort}`, { ...device, clientId: 'pg-publisher' });
      await publisher.publishAsync('state/pg/retained', 'kept beside PostgreSQL', { qos: 1, retain: true });
      await endClient(publisher);

      const error = await startGatehouse({ config, log: () => {} }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BrokerStateLockedError);
      expect((error as Error).message).toContain(`The broker state in ${path.join(dataDir, 'broker')} is in use by another process`);

      await node.close();
      node = await startGatehouse({ config, log: () => {} });
      const reader = await connect(`ws://127.0.0.1:${node.httpPort}/mqtt`, { ...device, clientId: 'pg-reader' });
      try {
        const retained = nextMessage(reader, 'state/pg/retained');
        await reader.subscribeAsync('state/pg/retained', { qos: 1 });
        expect(await retained).toMatchObject({ payload: 'kept beside PostgreSQL', retain: true });
      } finally {
        await endClient(reader);
      }
    } finally {
      await node?.close();
      await database.drop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
