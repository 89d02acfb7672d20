import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../src/domain/clients';
import { createPipeline } from '../src/domain/pipelines/pipelines';
import { grantGroup } from './support/acl';
import { drivers } from './support/db';
import { startTestGatehouse } from './support/gatehouse';
import { connect, endClient } from './support/mqtt';
import { rawClient, type RawClient } from './support/mqtt5';
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

  /** A second connection that holds the outbox locked (the broker's INSERT waits behind it) until `release()`. */
  async function holdOutbox() {
    const locker = postgres((gatehouse.database.db as unknown as { $client: postgres.Sql }).$client.options as never);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const lock = locker.begin(async (tx) => {
      await tx`lock table pipeline_outbox in exclusive mode`;
      locked();
      await held;
    });
    await isLocked;
    return {
      locker,
      /** Ends the lock; resolves once it is gone. */
      release: async () => {
        release();
        await lock;
      },
      close: async () => {
        release();
        await lock.catch(() => {});
        await locker.end();
      },
    };
  }

  it('sends PUBACK only once the message is in the outbox', async () => {
    const client = await connect(`mqtt://127.0.0.1:${gatehouse.mqttPort}`, { ...device, clientId: 'sensor-1' });
    const outbox = await holdOutbox();
    try {
      let acknowledged = false;
      const published = client.publishAsync('sensors/held', 'waits', { qos: 1 }).then(() => (acknowledged = true));
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(acknowledged).toBe(false);
      await outbox.release();
      await published;
      expect(acknowledged).toBe(true);
      const [request] = await receiver.waitFor(1);
      expect(JSON.parse(request!.body)).toMatchObject({ topic: 'sensors/held', payload: 'waits', username: 'sensor-1', clientId: 'sensor-1', qos: 1 });
    } finally {
      await endClient(client);
      await outbox.close();
    }
  });

  /** A raw 3.1.1 connection of `clientId` that keeps its session (clean session 0), CONNACK received. */
  async function rawSession(clientId: string, clean = false): Promise<RawClient> {
    const raw = await rawClient(`mqtt://127.0.0.1:${gatehouse.mqttPort}`, {}, 4);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean, clientId, keepalive: 60, username: device.username, password: Buffer.from(device.password) });
    expect(await raw.next('connack')).toMatchObject({ returnCode: 0 });
    return raw;
  }

  /** Completes the QoS 2 handshake of a PUBLISH `raw` sent, from its PUBREC. */
  async function complete(raw: RawClient, messageId: number) {
    expect(await raw.next('pubrec', 20_000)).toMatchObject({ messageId });
    raw.send({ cmd: 'pubrel', messageId });
    expect(await raw.next('pubcomp')).toMatchObject({ messageId });
  }

  /** The payloads forwarded on `topic`, once a last message published after the others has arrived (order per topic: nothing earlier is still on its way). */
  async function forwardedOn(raw: RawClient, topic: string): Promise<string[]> {
    raw.send({ cmd: 'publish', topic, payload: Buffer.from('last'), qos: 2, messageId: 99, dup: false, retain: false });
    await complete(raw, 99);
    const bodies = () => receiver.accepted().map((r) => JSON.parse(r.body) as { topic: string; payload: string }).filter((m) => m.topic === topic);
    while (!bodies().some((m) => m.payload === 'last')) await receiver.waitFor(receiver.accepted().length + 1);
    return bodies().map((m) => m.payload);
  }

  it('forwards a QoS 2 message once when the device sends it again after a reconnect (DUP, same packet id)', async () => {
    const first = await rawSession('sensor-q2-again');
    const publish = { cmd: 'publish', topic: 'sensors/q2-again', payload: Buffer.from('once'), qos: 2, messageId: 7, retain: false };
    first.send({ ...publish, dup: false });
    // Its PUBREC is lost: the device reconnects and sends the message again.
    expect(await first.next('pubrec')).toMatchObject({ messageId: 7 });
    first.close();
    const again = await rawSession('sensor-q2-again');
    try {
      again.send({ ...publish, dup: true });
      await complete(again, 7);
      expect(await forwardedOn(again, 'sensors/q2-again')).toEqual(['once', 'last']);
    } finally {
      again.close();
    }
  });

  it('forwards a QoS 2 message once when the device sends it again while the first copy is still being written', async () => {
    const first = await rawSession('sensor-q2-held');
    const outbox = await holdOutbox();
    let again: RawClient | undefined;
    try {
      const publish = { cmd: 'publish', topic: 'sensors/q2-held', payload: Buffer.from('once'), qos: 2, messageId: 8, retain: false };
      first.send({ ...publish, dup: false });
      // The first copy's INSERT waits for the lock; no PUBREC comes, and the device reconnects and sends the message again.
      while ((await outbox.locker`select 1 from pg_stat_activity where wait_event_type = 'Lock' and query like '%insert into pipeline_outbox%'`).length === 0) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      first.close();
      again = await rawSession('sensor-q2-held');
      again.send({ ...publish, dup: true });
      // The copy has reached the broker while the first is still held.
      const copyReceived = () => [...gatehouse.broker.liveSessions()].some((session) => session.mqttClientId === 'sensor-q2-held' && (session.messagesIn ?? 0) > 0);
      while (!copyReceived()) await new Promise((resolve) => setTimeout(resolve, 20));
      await outbox.release();
      await complete(again, 8);
      expect(await forwardedOn(again, 'sensors/q2-held')).toEqual(['once', 'last']);
    } finally {
      first.close();
      again?.close();
      await outbox.close();
    }
  });

  it('forwards a new message of a clean session that reuses the packet id of one still being written for its closed connection', async () => {
    const first = await rawSession('sensor-q2-clean', true);
    const outbox = await holdOutbox();
    let again: RawClient | undefined;
    try {
      const publish = { cmd: 'publish', topic: 'sensors/q2-clean', qos: 2, messageId: 1, dup: false, retain: false };
      first.send({ ...publish, payload: Buffer.from('before the restart') });
      while ((await outbox.locker`select 1 from pg_stat_activity where wait_event_type = 'Lock' and query like '%insert into pipeline_outbox%'`).length === 0) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // The device restarts: a clean session, its packet ids from 1 again, a new message.
      first.close();
      again = await rawSession('sensor-q2-clean', true);
      again.send({ ...publish, payload: Buffer.from('after the restart') });
      const received = () => [...gatehouse.broker.liveSessions()].some((session) => session.mqttClientId === 'sensor-q2-clean' && (session.messagesIn ?? 0) > 0);
      while (!received()) await new Promise((resolve) => setTimeout(resolve, 20));
      await outbox.release();
      await complete(again, 1);
      expect(await forwardedOn(again, 'sensors/q2-clean')).toContain('after the restart');
    } finally {
      first.close();
      again?.close();
      await outbox.close();
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
