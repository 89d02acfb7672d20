import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createClient, deleteClient, updateClient } from '../src/domain/clients';
import type { Gatehouse } from '../src/server';
import { signIn } from './support/admin';
import { countQueries, drivers, readsOnly } from './support/db';
import { appendRules, grantGroup } from './support/acl';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient, nextMessage, subscribeCodes, tryConnect, type Transport } from './support/mqtt';
import { tableRows } from './support/html';

const transports: Transport[] = ['tcp', 'ws'];

describe.each(drivers)('broker authentication on %s', (driver) => {
  let gatehouse: Gatehouse;
  beforeAll(async () => {
    gatehouse = await startTestGatehouse(driver);
    await createClient(gatehouse.database.db, { name: 'Sensor', username: 'sensor', password: 'sensor-password' });
    // A client with no group can do nothing: give this one what the tests below do.
    await grantGroup(gatehouse.database.db, {
      name: 'Plant',
      permissions: [
        ['allow', 'publish', 'plant/#'],
        ['allow', 'subscribe', 'plant/#'],
        ['allow', 'subscribe', 'ok/#'],
      ],
      usernames: ['sensor'],
    });
  });
  afterAll(async () => {
    await gatehouse?.close();
  });

  describe.each(transports)('over %s', (transport) => {
    it('accepts the right password', async () => {
      const outcome = await tryConnect(brokerUrl(gatehouse, transport), { username: 'sensor', password: 'sensor-password' });
      expect(outcome.ok).toBe(true);
      if (outcome.ok) await endClient(outcome.client);
    });

    it('refuses a wrong password with CONNACK 4', async () => {
      const outcome = await tryConnect(brokerUrl(gatehouse, transport), { username: 'sensor', password: 'wrong-password' });
      expect(outcome).toMatchObject({ ok: false, code: 4 });
    });

    it('refuses an unknown username with the same CONNACK 4', async () => {
      const outcome = await tryConnect(brokerUrl(gatehouse, transport), { username: 'ghost', password: 'sensor-password' });
      expect(outcome).toMatchObject({ ok: false, code: 4 });
    });

    it('refuses a connection without username or password', async () => {
      expect(await tryConnect(brokerUrl(gatehouse, transport), {})).toMatchObject({ ok: false, code: 4 });
      expect(await tryConnect(brokerUrl(gatehouse, transport), { username: 'sensor' })).toMatchObject({ ok: false, code: 4 });
    });
  });

  it.each(transports)('refuses an empty client id with clean session 0 with CONNACK 2 over %s, and accepts it with clean session 1', async (transport) => {
    expect(await rawConnack(gatehouse, transport, { clean: false, username: 'sensor', password: 'sensor-password' })).toEqual({ sessionPresent: false, returnCode: 2 });
    expect(await rawConnack(gatehouse, transport, { clean: true, username: 'sensor', password: 'sensor-password' })).toEqual({ sessionPresent: false, returnCode: 0 });
  });

  it('refuses a client id holding NUL with CONNACK 2, and a username holding NUL with CONNACK 4', async () => {
    expect(await tryConnect(brokerUrl(gatehouse, 'tcp'), { username: 'sensor', password: 'sensor-password', clientId: 'bad\u0000id' })).toMatchObject({ ok: false, code: 2 });
    expect(await tryConnect(brokerUrl(gatehouse, 'ws'), { username: 'sen\u0000sor', password: 'sensor-password' })).toMatchObject({ ok: false, code: 4 });
  });

  it('carries messages between a TCP and a WebSocket client both ways', async () => {
    const tcp = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'sensor', password: 'sensor-password', clientId: 'pub-tcp' });
    const ws = await connect(brokerUrl(gatehouse, 'ws'), { username: 'sensor', password: 'sensor-password', clientId: 'sub-ws' });
    try {
      await ws.subscribeAsync('plant/+/temperature', { qos: 1 });
      await tcp.subscribeAsync('plant/commands', { qos: 1 });
      const toWs = nextMessage(ws, 'plant/boiler/temperature');
      await tcp.publishAsync('plant/boiler/temperature', '71.5', { qos: 1 });
      expect((await toWs).payload).toBe('71.5');
      const toTcp = nextMessage(tcp, 'plant/commands');
      await ws.publishAsync('plant/commands', 'stop', { qos: 0 });
      expect((await toTcp).payload).toBe('stop');
    } finally {
      await endClient(tcp);
      await endClient(ws);
    }
  });

  it('counts live sessions per client, shown in the clients table', async () => {
    const client = await createClient(gatehouse.database.db, { name: 'Counted', username: 'counted', password: 'counted-password' });
    // Written past the console: this node hears of the client through the change feed.
    await gatehouse.accessModel.settled();
    const sessions = () => gatehouse.broker.sessionsByClient().get(client.id) ?? 0;
    const a = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'counted', password: 'counted-password', clientId: 'counted-a' });
    const b = await connect(brokerUrl(gatehouse, 'ws'), { username: 'counted', password: 'counted-password', clientId: 'counted-b' });
    await expect.poll(sessions).toBe(2);
    const console = await signIn(gatehouse.app, gatehouse.database.db);
    const html = await (await console.request('/clients?q=counted')).text();
    expect(tableRows(html).find((row) => row.Username === 'counted')?.['Live sessions']).toBe('2');
    // A refused connection is not a session.
    await tryConnect(brokerUrl(gatehouse, 'tcp'), { username: 'counted', password: 'wrong-password' });
    await endClient(a);
    await expect.poll(sessions).toBe(1);
    await endClient(b);
    await expect.poll(sessions).toBe(0);
  });

  it('refuses subscriptions to $SYS but grants the other filters of the same SUBSCRIBE', async () => {
    const client = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'sensor', password: 'sensor-password' });
    try {
      expect(await subscribeCodes(client, { '$SYS/#': { qos: 0 }, 'ok/topic': { qos: 1 } })).toEqual({ '$SYS/#': 128, 'ok/topic': 1 });
    } finally {
      await endClient(client);
    }
  });

  it('reads no database for any CONNECT, first or repeated, accepted or refused, and applies a rule change saved in the console at the next CONNECT', async () => {
    const operator = await signIn(gatehouse.app, gatehouse.database.db);
    // Saved in the console: applied to this node's model before it answers.
    const created = await operator.request('/clients', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ name: 'Once', username: 'once', password: 'once-password' }),
    });
    expect(created.status).toBe(303);
    const group = await grantGroup(gatehouse.database.db, { name: 'Once', permissions: [['allow', 'subscribe', 'once/#']] });
    await gatehouse.accessModel.settled();
    const queriesFor = async <T>(work: () => Promise<T>) => {
      // Refused CONNECTs are written to the audit trail meanwhile: reads are what CONNECT would send.
      const counter = countQueries(gatehouse.database.db, readsOnly);
      try {
        const result = await work();
        return { result, queries: counter.count() };
      } finally {
        counter.stop();
      }
    };
    const connectOnce = (password: string, clientId = 'once-1', username = 'once') => tryConnect(brokerUrl(gatehouse, 'tcp'), { username, password, clientId });

    // The very first CONNECTs, refused and accepted, and an unknown username.
    const unknown = await queriesFor(() => connectOnce('once-password', 'once-x', 'nobody-once'));
    expect(unknown).toMatchObject({ result: { ok: false, code: 4 }, queries: 0 });
    const refused = await queriesFor(() => connectOnce('wrong-password'));
    expect(refused).toMatchObject({ result: { ok: false, code: 4 }, queries: 0 });

    // No rule gives the group yet: connected, but may not subscribe.
    const before = await queriesFor(() => connectOnce('once-password'));
    expect(before.queries).toBe(0);
    expect(before.result.ok).toBe(true);
    if (!before.result.ok) return;
    expect(await subscribeCodes(before.result.client, { 'once/a': { qos: 1 } })).toEqual({ 'once/a': 128 });

    const saved = await operator.request('/group-rules', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams([
        ['matchBy', 'client_id'],
        ['value', 'once-*'],
        ['groups', String(group.id)],
      ]),
    });
    expect(saved.status).toBe(303);
    // The live session keeps its snapshot; the very next CONNECT gets the rule, still without a read.
    expect(await subscribeCodes(before.result.client, { 'once/b': { qos: 1 } })).toEqual({ 'once/b': 128 });
    const after = await queriesFor(() => connectOnce('once-password', 'once-2'));
    expect(after.queries).toBe(0);
    expect(after.result.ok).toBe(true);
    if (!after.result.ok) return;
    expect(await subscribeCodes(after.result.client, { 'once/c': { qos: 1 } })).toEqual({ 'once/c': 1 });
    await endClient(after.result.client);
    await endClient(before.result.client);
  });

  it('leaves live connections alone when their client is edited or deleted, and applies the change at reconnect', async () => {
    const edited = await createClient(gatehouse.database.db, { name: 'Edited', username: 'edited', password: 'old-password' });
    const deleted = await createClient(gatehouse.database.db, { name: 'Deleted', username: 'deleted', password: 'doomed-password' });
    await grantGroup(gatehouse.database.db, {
      name: 'Alive',
      permissions: [
        ['allow', 'publish', 'still/alive'],
        ['allow', 'subscribe', 'still/alive'],
      ],
      usernames: ['edited', 'deleted'],
    });
    const liveEdited = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'edited', password: 'old-password', clientId: 'live-edited' });
    const liveDeleted = await connect(brokerUrl(gatehouse, 'ws'), { username: 'deleted', password: 'doomed-password', clientId: 'live-deleted' });
    try {
      await updateClient(gatehouse.database.db, edited.id, { name: 'Edited', username: 'edited', password: 'new-password' });
      await deleteClient(gatehouse.database.db, deleted.id);

      // Both sessions still work: a message goes from one to the other.
      await liveDeleted.subscribeAsync('still/alive', { qos: 1 });
      const received = nextMessage(liveDeleted, 'still/alive');
      await liveEdited.publishAsync('still/alive', 'yes', { qos: 1 });
      expect((await received).payload).toBe('yes');
      expect(liveEdited.connected && liveDeleted.connected).toBe(true);

      // New connections see the new state.
      expect(await tryConnect(brokerUrl(gatehouse, 'tcp'), { username: 'edited', password: 'old-password' })).toMatchObject({ ok: false, code: 4 });
      const fresh = await tryConnect(brokerUrl(gatehouse, 'ws'), { username: 'edited', password: 'new-password' });
      expect(fresh.ok).toBe(true);
      if (fresh.ok) await endClient(fresh.client);
      expect(await tryConnect(brokerUrl(gatehouse, 'ws'), { username: 'deleted', password: 'doomed-password' })).toMatchObject({ ok: false, code: 4 });
    } finally {
      await endClient(liveEdited);
      await endClient(liveDeleted);
    }
  });
});

describe('broker when the database is unreachable', () => {
  it('during a database outage connects known devices with what was last known, refuses the others, and keeps connected devices working', async () => {
    const gatehouse = await startTestGatehouse('pglite');
    try {
      await createClient(gatehouse.database.db, { name: 'Device', username: 'device', password: 'device-password' });
      await grantGroup(gatehouse.database.db, {
        name: 'Loop',
        permissions: [
          ['allow', 'publish', 'loop'],
          ['allow', 'subscribe', 'loop'],
        ],
        usernames: ['device'],
      });
      const live = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'device', password: 'device-password' });
      await live.subscribeAsync('loop', { qos: 0 });
      await gatehouse.database.close();

      for (const transport of transports) {
        const again = await tryConnect(brokerUrl(gatehouse, transport), { username: 'device', password: 'device-password', clientId: `device-${transport}` });
        expect(again).toMatchObject({ ok: true });
        // With the permissions last known.
        if (again.ok) {
          expect(await subscribeCodes(again.client, { loop: { qos: 0 }, other: { qos: 0 } })).toEqual({ loop: 0, other: 128 });
          await endClient(again.client);
        }
        expect(await tryConnect(brokerUrl(gatehouse, transport), { username: 'device', password: 'wrong-password' })).toMatchObject({ ok: false, code: 4 });
        expect(await tryConnect(brokerUrl(gatehouse, transport), { username: 'nobody', password: 'device-password' })).toMatchObject({ ok: false, code: 4 });
      }
      expect(gatehouse.authenticator.stats().lastKnownAnswers).toBeGreaterThan(0);
      const echo = nextMessage(live, 'loop');
      await live.publishAsync('loop', 'still here');
      expect((await echo).payload).toBe('still here');
      await endClient(live);
    } finally {
      await gatehouse.broker.close();
    }
  });
});

/**
 * Sends a hand-built MQTT 3.1.1 CONNECT with an empty client id (mqtt.js
 * refuses to send one with clean session 0) and reads the CONNACK.
 */
async function rawConnack(
  gatehouse: Gatehouse,
  transport: Transport,
  options: { clean: boolean; username: string; password: string },
): Promise<{ sessionPresent: boolean; returnCode: number }> {
  const string = (text: string) => {
    const bytes = Buffer.from(text, 'utf8');
    return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes]);
  };
  const flags = 0x80 | 0x40 | (options.clean ? 0x02 : 0);
  const body = Buffer.concat([string('MQTT'), Buffer.from([4, flags, 0, 60]), string(''), string(options.username), string(options.password)]);
  const packet = Buffer.concat([Buffer.from([0x10, body.length]), body]);
  const parse = (data: Buffer) => {
    if (data[0] !== 0x20) throw new Error(`not a CONNACK: ${data.toString('hex')}`);
    return { sessionPresent: (data[2]! & 1) === 1, returnCode: data[3]! };
  };
  if (transport === 'tcp') {
    return new Promise((resolve, reject) => {
      const socket = net.connect(gatehouse.mqttPort, '127.0.0.1', () => socket.write(packet));
      let received = Buffer.alloc(0);
      socket.on('data', (data) => {
        received = Buffer.concat([received, data]);
        if (received.length < 4) return;
        socket.destroy();
        try {
          resolve(parse(received));
        } catch (error) {
          reject(error);
        }
      });
      socket.once('error', reject);
    });
  }
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(brokerUrl(gatehouse, 'ws'), 'mqtt');
    // The CONNACK may come in more than one frame.
    let received = Buffer.alloc(0);
    ws.once('open', () => ws.send(packet));
    ws.on('message', (data) => {
      received = Buffer.concat([received, data as Buffer]);
      if (received.length < 4) return;
      ws.terminate();
      try {
        resolve(parse(received));
      } catch (error) {
        reject(error);
      }
    });
    ws.once('error', reject);
  });
}
