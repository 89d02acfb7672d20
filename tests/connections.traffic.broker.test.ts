import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../src/domain/clients';
import type { Gatehouse } from '../src/server';
import { signIn, type SignedInApp } from './support/admin';
import { grantGroup } from './support/acl';
import { startTestGatehouse } from './support/gatehouse';
import { tableRows } from './support/html';
import { brokerUrl, connect, endClient, nextMessage } from './support/mqtt';

describe('Connections: subscriptions, messages and bytes per session, and the group filter', () => {
  let gatehouse: Gatehouse;
  let app: SignedInApp;
  const open: MqttClient[] = [];

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    app = await signIn(gatehouse.app, gatehouse.database.db);
    const db = gatehouse.database.db;
    await createClient(db, { name: 'Boiler', username: 'boiler', password: 'boiler-password' });
    await createClient(db, { name: 'Stray', username: 'stray', password: 'stray-password' });
    await grantGroup(db, { name: 'Heating', permissions: [['allow', 'publish', 'heat/#'], ['allow', 'subscribe', 'heat/#']], usernames: ['boiler'] });
    await gatehouse.accessModel.settled();
  });
  afterAll(async () => {
    await Promise.all(open.map((client) => endClient(client)));
    await gatehouse?.close();
  });

  const rows = async (path: string) => {
    const response = await app.request(path);
    expect(response.status).toBe(200);
    return tableRows(await response.text());
  };

  it('shows each session’s filters and what it sent and was sent, and filters by group or no group', async () => {
    const boiler = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'boiler', password: 'boiler-password', clientId: 'boiler-1' });
    open.push(boiler);
    const stray = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'stray', password: 'stray-password', clientId: 'stray-1' });
    open.push(stray);
    for (let i = 0; i < 6; i++) await boiler.subscribeAsync(`heat/room-${i}/#`, { qos: 0 });
    const received = nextMessage(boiler, 'heat/room-0/t');
    await boiler.publishAsync('heat/room-0/t', '12345', { qos: 1 });
    await boiler.publishAsync('heat/room-1/t', 'abc', { qos: 1 });
    await received;
    // The stray client has no group: what it sends is refused, and counted as sent by it all the same.
    await stray.publishAsync('heat/room-0/t', 'xx', { qos: 1 });

    const all = await rows('/connections');
    const boilerRow = all.find((row) => row['MQTT Client ID'] === 'boiler-1')!;
    expect(boilerRow['Subscriptions']).toBe('6 heat/room-0/# heat/room-1/# heat/room-2/# heat/room-3/# heat/room-4/# 1 more');
    // In: its two PUBLISH (5 + 3 bytes); out: the two it subscribes to, delivered back to it.
    expect(boilerRow['Messages in / out']).toBe('2 in · 8 B 2 out · 8 B');
    const strayRow = all.find((row) => row['MQTT Client ID'] === 'stray-1')!;
    expect(strayRow['Messages in / out']).toBe('1 in · 2 B 0 out · 0 B');
    expect(strayRow['Subscriptions']).toBe('0');

    const noGroup = await rows('/connections?group=none');
    expect(noGroup.map((row) => row['MQTT Client ID'])).toEqual(['stray-1']);
    const heating = await rows('/connections?group=g%3AHeating');
    expect(heating.map((row) => row['MQTT Client ID'])).toEqual(['boiler-1']);
    const html = await (await app.request('/connections?group=none')).text();
    expect(html).toContain('1 connection with no group.');
    expect(html).toContain('<option value="none" selected="">No group</option>');
    // The refresh keeps the filter.
    expect(html).toMatch(/hx-get="\/connections\?group=none"[^>]*hx-trigger="every 5s"/);
  });
});
