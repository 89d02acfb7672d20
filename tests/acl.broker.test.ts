import { sql } from 'drizzle-orm';
import type { IClientOptions, MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, deleteClient } from '../src/domain/clients';
import { deleteGroup, listGroups } from '../src/domain/groups';
import type { Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { signIn } from './support/admin';
import { postForm } from './support/http';
import { drivers } from './support/db';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient, nextMessage, subscribeCodes, tryConnect, type Transport } from './support/mqtt';

const transports: Transport[] = ['tcp', 'ws'];
const PASSWORD = 'acl-password';

/**
 * Every message `client` receives until `stop()` is called; retained ones
 * (which other tests leave behind) only when asked for.
 */
function record(client: MqttClient, options: { retained?: boolean } = {}) {
  const seen: Array<{ topic: string; payload: string; retain: boolean }> = [];
  const onMessage = (topic: string, payload: Buffer, packet: { retain?: boolean }) => {
    if (packet.retain && !options.retained) return;
    seen.push({ topic, payload: payload.toString(), retain: Boolean(packet.retain) });
  };
  client.on('message', onMessage);
  return {
    seen,
    stop() {
      client.off('message', onMessage);
      return seen;
    },
  };
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(drivers)('ACL enforcement in the broker on %s', (driver) => {
  let gatehouse: Gatehouse & { logs: string[] };
  const open: MqttClient[] = [];
  const as = async (transport: Transport, username: string, clientId: string, options: Pick<IClientOptions, 'will'> = {}) => {
    const client = await connect(brokerUrl(gatehouse, transport), { username, password: PASSWORD, clientId, ...options });
    open.push(client);
    return client;
  };

  beforeAll(async () => {
    gatehouse = await startTestGatehouse(driver);
    const db = gatehouse.database.db;
    for (const username of ['sensor', 'dashboard', 'admin', 'nobody', 'merged', 'editable']) {
      await createClient(db, { name: `ACL ${username}`, username, password: PASSWORD });
    }
    // Each sensor may publish only under sensors/<its client id>/#.
    await grantGroup(db, { name: 'Sensors', permissions: [['allow', 'publish', 'sensors/%c/#']], clientIds: ['sensor-*'] });
    // Dashboards read sensors/#, except what lies under sensors/secret/#.
    await grantGroup(db, {
      name: 'Readers',
      permissions: [
        ['allow', 'subscribe', 'sensors/#'],
        ['deny', 'subscribe', 'sensors/secret/#'],
      ],
      usernames: ['dashboard'],
    });
    await grantGroup(db, {
      name: 'Admin',
      permissions: [
        ['allow', 'publish', '#'],
        ['allow', 'subscribe', '#'],
      ],
      usernames: ['admin'],
    });
    await grantGroup(db, { name: 'Merged publish', permissions: [['allow', 'publish', 'merged/#']], usernames: ['merged'] });
    await grantGroup(db, { name: 'Merged subscribe', permissions: [['allow', 'subscribe', 'merged/#']], usernames: ['merged'] });
    await grantGroup(db, {
      name: 'Editable',
      permissions: [
        ['allow', 'publish', 'edit/#'],
        ['allow', 'subscribe', 'edit/#'],
      ],
      usernames: ['editable'],
    });
  });
  afterAll(async () => {
    for (const client of open) await endClient(client);
    await gatehouse?.close();
  });

  describe.each(transports)('over %s', (transport) => {
    const other: Transport = transport === 'tcp' ? 'ws' : 'tcp';

    it('delivers a publish the group allows (a rule by client-id pattern, %c substituted)', async () => {
      const sensor = await as(transport, 'sensor', `sensor-${transport}-1`);
      const dashboard = await as(other, 'dashboard', `dash-${transport}-1`);
      await dashboard.subscribeAsync('sensors/#', { qos: 1 });
      const received = nextMessage(dashboard, `sensors/sensor-${transport}-1/temp`);
      await sensor.publishAsync(`sensors/sensor-${transport}-1/temp`, '21.5', { qos: 1 });
      expect((await received).payload).toBe('21.5');
    });

    it('acknowledges a refused publish at every QoS, keeps the connection, and neither delivers nor retains it', async () => {
      const sensor = await as(transport, 'sensor', `sensor-${transport}-2`);
      const dashboard = await as(other, 'dashboard', `dash-${transport}-2`);
      await dashboard.subscribeAsync('sensors/#', { qos: 2 });
      const log = record(dashboard);
      const foreign = `sensors/someone-else-${transport}/temp`;
      await sensor.publishAsync(foreign, 'forged-0', { qos: 0, retain: true });
      await sensor.publishAsync(foreign, 'forged-1', { qos: 1, retain: true }); // resolves on PUBACK
      await sensor.publishAsync(foreign, 'forged-2', { qos: 2, retain: true }); // resolves on PUBCOMP
      // The connection is still there and still works: an allowed message follows.
      const own = `sensors/sensor-${transport}-2/after`;
      const after = nextMessage(dashboard, own);
      await sensor.publishAsync(own, 'allowed', { qos: 1 });
      expect((await after).payload).toBe('allowed');
      expect(sensor.connected).toBe(true);
      expect(log.stop().map((m) => m.topic)).toEqual([own]);

      // Nothing was retained either.
      const late = await as(other, 'dashboard', `dash-${transport}-2-late`);
      const lateLog = record(late, { retained: true });
      expect(await subscribeCodes(late, { [foreign]: { qos: 1 } })).toEqual({ [foreign]: 1 });
      await pause(300);
      expect(lateLog.stop()).toEqual([]);
    });

    it('grants an allowed subscription and refuses a denied one with 0x80, the other filters of the packet unaffected', async () => {
      const dashboard = await as(transport, 'dashboard', `dash-${transport}-3`);
      expect(
        await subscribeCodes(dashboard, {
          'sensors/#': { qos: 1 },
          'sensors/secret/#': { qos: 1 },
          'sensors/+/temp': { qos: 0 },
          'elsewhere/#': { qos: 1 },
          '#': { qos: 1 },
          '$SYS/#': { qos: 0 },
        }),
      ).toEqual({ 'sensors/#': 1, 'sensors/secret/#': 128, 'sensors/+/temp': 0, 'elsewhere/#': 128, '#': 128, '$SYS/#': 128 });
      expect(dashboard.connected).toBe(true);
    });

    it('grants sensors/# inside which sensors/secret/# is denied, and never delivers the secret messages, live or retained', async () => {
      const admin = await as(other, 'admin', `admin-${transport}-4`);
      const secret = `sensors/secret/${transport}-key`;
      const visible = `sensors/public/${transport}-note`;
      await admin.publishAsync(secret, 'retained secret', { qos: 1, retain: true });
      await admin.publishAsync(visible, 'retained note', { qos: 1, retain: true });

      const dashboard = await as(transport, 'dashboard', `dash-${transport}-4`);
      const log = record(dashboard, { retained: true });
      const retained = nextMessage(dashboard, visible);
      expect(await subscribeCodes(dashboard, { 'sensors/#': { qos: 1 } })).toEqual({ 'sensors/#': 1 });
      expect(await retained).toMatchObject({ payload: 'retained note', retain: true });

      // Live: the secret goes first, then a visible message; only the latter arrives.
      const live = nextMessage(dashboard, `sensors/public/${transport}-live`);
      await admin.publishAsync(`sensors/secret/${transport}-live`, 'live secret', { qos: 1 });
      await admin.publishAsync(`sensors/public/${transport}-live`, 'live note', { qos: 1 });
      await live;
      await pause(200);
      const topics = log.stop().map((m) => m.topic);
      expect(topics.filter((t) => t.includes('secret'))).toEqual([]);
      expect(topics.filter((t) => t.includes(transport))).toEqual([visible, `sensors/public/${transport}-live`]);

      // The admin, allowed everything, does get the retained secret: it was stored.
      const control = await as(other, 'admin', `admin-${transport}-4-control`);
      const controlMessage = nextMessage(control, secret);
      await control.subscribeAsync(secret, { qos: 1 });
      expect((await controlMessage).payload).toBe('retained secret');
    });
  });

  it('applies a rule by client whatever the client id, and a client-id rule only to matching ids', async () => {
    const admin = await as('tcp', 'admin', 'admin-rules');
    await admin.subscribeAsync('sensors/#', { qos: 1 });
    const log = record(admin);
    // Same username, a client id no rule matches: no group at all.
    const stray = await as('ws', 'sensor', 'not-a-sensor');
    await stray.publishAsync('sensors/not-a-sensor/x', 'stray', { qos: 1 });
    const matching = await as('ws', 'sensor', 'sensor-rules');
    const arrived = nextMessage(admin, 'sensors/sensor-rules/x');
    await matching.publishAsync('sensors/sensor-rules/x', 'ok', { qos: 1 });
    await arrived;
    expect(log.stop().map((m) => m.payload)).toEqual(['ok']);
    // The dashboard's rule names the client: any client id will do.
    const dashboard = await as('tcp', 'dashboard', 'whatever-id-i-like');
    expect(await subscribeCodes(dashboard, { 'sensors/#': { qos: 0 } })).toEqual({ 'sensors/#': 0 });
  });

  it('never lets a hostile client id widen a %c grant', async () => {
    const admin = await as('tcp', 'admin', 'admin-hostile');
    await admin.subscribeAsync('sensors/#', { qos: 1 });
    const log = record(admin);
    for (const clientId of ['sensor-#', 'sensor-+', 'sensor-a/b']) {
      const hostile = await as('tcp', 'sensor', clientId);
      await hostile.publishAsync('sensors/sensor-a/b/x', 'widened?', { qos: 1 });
      await hostile.publishAsync('sensors/victim/x', 'widened?', { qos: 1 });
      expect(hostile.connected).toBe(true);
    }
    await pause(200);
    expect(log.stop()).toEqual([]);
  });

  it('merges the permissions of two groups', async () => {
    const merged = await as('ws', 'merged', 'merged-1');
    expect(await subscribeCodes(merged, { 'merged/#': { qos: 1 } })).toEqual({ 'merged/#': 1 });
    const echo = nextMessage(merged, 'merged/echo');
    await merged.publishAsync('merged/echo', 'both groups', { qos: 1 });
    expect((await echo).payload).toBe('both groups');
  });

  it('lets a client that matches no rule connect, and do nothing', async () => {
    const admin = await as('tcp', 'admin', 'admin-nobody');
    await admin.subscribeAsync('#', { qos: 1 });
    const log = record(admin);
    const nobody = await as('ws', 'nobody', 'nobody-1');
    expect(await subscribeCodes(nobody, { '#': { qos: 0 }, 'a/b': { qos: 1 } })).toEqual({ '#': 128, 'a/b': 128 });
    await nobody.publishAsync('a/b', 'nothing', { qos: 1 });
    await pause(200);
    expect(log.stop()).toEqual([]);
    expect(nobody.connected).toBe(true);
  });

  it('drops a will the client may not publish, and delivers one it may', async () => {
    const admin = await as('tcp', 'admin', 'admin-wills');
    await admin.subscribeAsync('sensors/#', { qos: 1 });
    const log = record(admin);
    const forbidden = await as('tcp', 'sensor', 'sensor-will-a', {
      will: { topic: 'sensors/elsewhere/status', payload: Buffer.from('gone'), qos: 1, retain: false },
    });
    const allowed = await as('ws', 'sensor', 'sensor-will-b', {
      will: { topic: 'sensors/sensor-will-b/status', payload: Buffer.from('gone'), qos: 1, retain: false },
    });
    const delivered = nextMessage(admin, 'sensors/sensor-will-b/status');
    forbidden.stream.destroy();
    allowed.stream.destroy();
    await delivered;
    await pause(200);
    expect(log.stop().map((m) => m.topic)).toEqual(['sensors/sensor-will-b/status']);
  });

  describe.each(['deleted', 'stripped of its group'] as const)('a will whose client was %s while connected', (change) => {
    it('is not published when the connection dies', async () => {
      const db = gatehouse.database.db;
      const username = change === 'deleted' ? 'will-deleted' : 'will-stripped';
      const client = await createClient(db, { name: `ACL ${username}`, username, password: PASSWORD });
      const group = await grantGroup(db, { name: `Wills of ${username}`, permissions: [['allow', 'publish', `${username}/#`]], usernames: [username] });
      const admin = await as('tcp', 'admin', `admin-${username}`);
      await admin.subscribeAsync(`${username}/#`, { qos: 1 });
      const log = record(admin);
      const device = await as('tcp', username, `${username}-1`, {
        will: { topic: `${username}/status`, payload: Buffer.from('gone'), qos: 1, retain: false },
      });

      if (change === 'deleted') await deleteClient(db, client.id);
      else await deleteGroup(db, group.id);
      // Once the node has heard the change (NOTIFY), the connection dies.
      const who = { clientRowId: client.id, username, mqttClientId: `${username}-1` };
      await expect
        .poll(async () => {
          const access = await gatehouse.authenticator.currentAccess(who);
          return access ? access.groups.length : 'gone';
        })
        .toBe(change === 'deleted' ? 'gone' : 0);
      device.stream.destroy();

      await expect.poll(() => gatehouse.logs.join('\n'), { timeout: 10_000 }).toContain(`dropped the will of ${JSON.stringify(username)}`);
      const marker = nextMessage(admin, `${username}/after`);
      await admin.publishAsync(`${username}/after`, 'marker', { qos: 1 });
      await marker;
      expect(log.stop().map((m) => m.topic)).toEqual([`${username}/after`]);
    });
  });

  it('keeps the permissions a session connected with when its group is edited, and applies the edit at reconnect', async () => {
    const db = gatehouse.database.db;
    const live = await as('tcp', 'editable', 'editable-live');
    expect(await subscribeCodes(live, { 'edit/a': { qos: 1 } })).toEqual({ 'edit/a': 1 });
    const [group] = (await listGroups(db, { query: 'Editable' })).groups;
    // Saved in the console: once it answers, this node's next CONNECT has the edit.
    const operator = await signIn(gatehouse.app, db);
    const saved = await postForm(operator, `/groups/${group!.id}`, [
      ['name', 'Editable'],
      ['description', ''],
      ...['publish', 'subscribe'].flatMap((action): Array<[string, string]> => [
        ['permission-effect', 'allow'],
        ['permission-action', action],
        ['permission-topic', 'changed/#'],
      ]),
      ['_action', 'save'],
    ]);
    expect(saved.status).toBe(303);
    // The live session still has edit/#, and not changed/#.
    expect(await subscribeCodes(live, { 'edit/b': { qos: 1 }, 'changed/x': { qos: 1 } })).toEqual({ 'edit/b': 1, 'changed/x': 128 });
    const echo = nextMessage(live, 'edit/a');
    await live.publishAsync('edit/a', 'old rules', { qos: 1 });
    expect((await echo).payload).toBe('old rules');

    // A new connection gets the group as edited.
    const fresh = await as('ws', 'editable', 'editable-fresh');
    expect(await subscribeCodes(fresh, { 'edit/b': { qos: 1 }, 'changed/x': { qos: 1 } })).toEqual({ 'edit/b': 128, 'changed/x': 1 });
  });

  it('answers CONNECTs from memory: rules the database can no longer read still apply as last known', async () => {
    const failing = await startTestGatehouse('pglite');
    try {
      await createClient(failing.database.db, { name: 'X', username: 'x-user', password: PASSWORD });
      await grantGroup(failing.database.db, { name: 'X', permissions: [['allow', 'subscribe', 'x/#']], usernames: ['x-user'] });
      await failing.accessModel.settled();
      // The rules cannot be read any more (nothing announces a dropped table).
      await failing.database.db.execute(sql`drop table group_rule_groups`);
      for (const transport of transports) {
        const connected = await tryConnect(brokerUrl(failing, transport), { username: 'x-user', password: PASSWORD, clientId: `x-${transport}` });
        expect(connected).toMatchObject({ ok: true });
        if (connected.ok) {
          expect(await subscribeCodes(connected.client, { 'x/a': { qos: 0 } })).toEqual({ 'x/a': 0 });
          await endClient(connected.client);
        }
      }
      expect(await tryConnect(brokerUrl(failing, 'tcp'), { username: 'x-user', password: 'wrong-password' })).toMatchObject({ ok: false, code: 4 });
      expect(failing.authenticator.stats().databaseReads).toBe(0);
    } finally {
      await failing.close();
    }
  });
});
