import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../src/domain/clients';
import { createPipeline } from '../src/domain/pipelines/pipelines';
import { grantGroup } from './support/acl';
import { drivers } from './support/db';
import { startTestGatehouse } from './support/gatehouse';
import { connect, endClient } from './support/mqtt';
import { startReceiver, type Receiver } from './support/receiver';

type Gatehouse = Awaited<ReturnType<typeof startTestGatehouse>>;
const SECRET_KEY = 'a-secret-key-for-the-tests';
const device = { username: 'sensor-1', password: 'a-long-device-password-1' };

describe.runIf(drivers.includes('postgres'))('a pipeline behind the broker (PostgreSQL)', () => {
  let gatehouse: Gatehouse;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = await startReceiver();
    gatehouse = await startTestGatehouse('postgres', { SECRET_KEY, PIPELINES_ALLOW_PRIVATE_NETWORKS: '1' });
    const db = gatehouse.database.db;
    await createClient(db, { name: 'Sensor', ...device });
    await grantGroup(db, { name: 'Sensors', permissions: [['allow', 'publish', 'sensors/#'], ['allow', 'publish', 'full/#']], usernames: [device.username] });
    await createPipeline(db, { name: 'lab', kind: 'webhook', enabled: 'on', url: `${receiver.url}/in`, mappings: [{ topicFilter: 'sensors/#', narrowBy: 'group', narrowValue: 'Sensors' }] }, SECRET_KEY);
  });
  afterAll(async () => {
    await gatehouse?.close();
    await receiver?.close();
  });

  it('sends PUBACK only once the message is in the outbox', async () => {
    // A second connection holds the outbox locked: the broker's INSERT waits behind it.
    const locker = postgres((gatehouse.database.db as unknown as { $client: postgres.Sql }).$client.options as never);
    const client = await connect(`mqtt://127.0.0.1:${gatehouse.mqttPort}`, { ...device, clientId: 'sensor-1' });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    try {
      let acknowledged = false;
      let locked!: () => void;
      const isLocked = new Promise<void>((resolve) => (locked = resolve));
      const lock = locker.begin(async (tx) => {
        await tx`lock table pipeline_outbox in exclusive mode`;
        locked();
        await held;
      });
      await isLocked;
      const published = client.publishAsync('sensors/held', 'waits', { qos: 1 }).then(() => (acknowledged = true));
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(acknowledged).toBe(false);
      release();
      await lock;
      await published;
      expect(acknowledged).toBe(true);
      const [request] = await receiver.waitFor(1);
      expect(JSON.parse(request!.body)).toMatchObject({ topic: 'sensors/held', payload: 'waits', username: 'sensor-1', clientId: 'sensor-1', qos: 1 });
    } finally {
      release();
      await endClient(client);
      await locker.end();
    }
  });

  it('forwards nothing the mappings do not match', async () => {
    const before = receiver.received.length;
    const client = await connect(`mqtt://127.0.0.1:${gatehouse.mqttPort}`, { ...device, clientId: 'sensor-2' });
    await client.publishAsync('full/other', 'not mapped', { qos: 1 });
    await client.publishAsync('sensors/mapped', 'mapped', { qos: 1 });
    await endClient(client);
    await receiver.waitFor(before + 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(receiver.received.slice(before).map((r) => (JSON.parse(r.body) as { topic: string }).topic)).toEqual(['sensors/mapped']);
  });
});
