import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { configSchema } from '../src/config';
import { schema } from '../src/db';
import { createClient } from '../src/domain/clients';
import { startGatehouse, type Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { signIn } from './support/admin';
import { createTestDatabase, drivers } from './support/db';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient, subscribeCodes, tryConnect } from './support/mqtt';

const { auditEvents } = schema;

describe.each(drivers)('what the broker writes to the audit trail on %s', (driver) => {
  let gatehouse: Gatehouse;
  // A clock the test moves: failures are counted per minute.
  let now = Date.parse('2025-06-01T08:30:10.000Z');

  beforeAll(async () => {
    gatehouse = await startTestGatehouse(driver, {}, { audit: { now: () => now, flushIntervalMs: 3_600_000 } });
    await createClient(gatehouse.database.db, { name: 'Meter', username: 'meter', password: 'meter-password' });
    // Guessed at below (its failures lock it out for a moment; the meter stays usable).
    await createClient(gatehouse.database.db, { name: 'Vault', username: 'vault', password: 'vault-password' });
    await grantGroup(gatehouse.database.db, { name: 'Meters', permissions: [['allow', 'publish', 'meters/%u'], ['allow', 'subscribe', 'meters/%u']], usernames: ['meter'] });
  });
  afterAll(async () => {
    await gatehouse?.close();
  });
  beforeEach(async () => {
    await gatehouse.audit.flush();
    await gatehouse.database.db.delete(auditEvents);
  });

  const rowsOf = (kind: string) => gatehouse.database.db.select().from(auditEvents).where(eq(auditEvents.kind, kind)).orderBy(auditEvents.id);

  it('counts 3 wrong CONNECTs in a minute into one row, and adds later ones of that minute to it', async () => {
    const url = brokerUrl(gatehouse, 'tcp');
    for (let i = 0; i < 3; i++) {
      const outcome = await tryConnect(url, { username: 'vault', password: `wrong-${i}`, clientId: `guess-${i}` });
      expect(outcome).toMatchObject({ ok: false, code: 4 });
    }
    // The broker only buffered them: written by the flush.
    expect(await rowsOf('mqtt.auth_failed')).toEqual([]);
    await gatehouse.audit.flush();
    const [row, ...others] = await rowsOf('mqtt.auth_failed');
    expect(others).toEqual([]);
    expect(row).toMatchObject({ actor: 'vault', address: '127.0.0.1', count: 3, at: new Date('2025-06-01T08:30:00.000Z') });
    expect(row!.details).toMatchObject({ reason: 'bad_credentials', clientId: 'guess-0', transport: 'tcp' });
    expect(JSON.stringify(row)).not.toContain('wrong-');

    // Same minute, a later flush: the same row counts on.
    now += 20_000;
    expect(await tryConnect(url, { username: 'vault', password: 'wrong-again', clientId: 'guess-3' })).toMatchObject({ ok: false });
    await gatehouse.audit.flush();
    expect((await rowsOf('mqtt.auth_failed')).map((r) => r.count)).toEqual([4]);

    // The next minute starts a row of its own; so does another username.
    now += 60_000;
    expect(await tryConnect(url, { username: 'vault', password: 'wrong-later', clientId: 'guess-4' })).toMatchObject({ ok: false });
    expect(await tryConnect(url, { username: 'nobody', password: 'whatever-pw', clientId: 'guess-5' })).toMatchObject({ ok: false });
    await gatehouse.audit.flush();
    expect((await rowsOf('mqtt.auth_failed')).map((r) => [r.actor, r.count, r.at.toISOString()])).toEqual([
      ['vault', 4, '2025-06-01T08:30:00.000Z'],
      ['vault', 1, '2025-06-01T08:31:00.000Z'],
      ['nobody', 1, '2025-06-01T08:31:00.000Z'],
    ]);
  });

  it('records refused publishes and subscriptions once per session and topic', async () => {
    const device = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'meter', password: 'meter-password', clientId: 'meter-1' });
    try {
      for (let i = 0; i < 5; i++) await device.publishAsync('meters/someone-else', 'x', { qos: 1 });
      await device.publishAsync('valves/open', 'x', { qos: 1 });
      await device.publishAsync('meters/meter', 'allowed', { qos: 1 });
      expect(await subscribeCodes(device, { 'meters/#': { qos: 0 } })).toEqual({ 'meters/#': 128 });
      expect(await subscribeCodes(device, { 'meters/#': { qos: 0 } })).toEqual({ 'meters/#': 128 });
    } finally {
      await endClient(device);
    }
    await gatehouse.audit.flush();
    const published = await rowsOf('mqtt.publish_refused');
    expect(published.map((r) => [r.actor, r.subject, r.address, r.count])).toEqual([
      ['meter', 'meters/someone-else', '127.0.0.1', 1],
      ['meter', 'valves/open', '127.0.0.1', 1],
    ]);
    expect(published[0]!.details).toEqual({ clientId: 'meter-1', transport: 'tcp' });
    expect((await rowsOf('mqtt.subscribe_refused')).map((r) => [r.actor, r.subject])).toEqual([['meter', 'meters/#']]);
  });

  it('records with a 5.0 device\'s refused publish and subscription the reason code it was answered with', async () => {
    const device = await connect(brokerUrl(gatehouse, 'ws'), { protocolVersion: 5, username: 'meter', password: 'meter-password', clientId: 'meter-5' });
    try {
      const refused = await device.publishAsync('valves/close', 'x', { qos: 1 }).catch((error: { code?: number }) => error);
      expect((refused as { code?: number }).code).toBe(0x87);
      expect(await subscribeCodes(device, { 'valves/#': { qos: 0 } })).toEqual({ 'valves/#': 0x87 });
    } finally {
      await endClient(device);
    }
    await gatehouse.audit.flush();
    expect((await rowsOf('mqtt.publish_refused')).map((r) => [r.subject, r.details])).toEqual([['valves/close', { clientId: 'meter-5', transport: 'ws', reasonCode: '0x87' }]]);
    expect((await rowsOf('mqtt.subscribe_refused')).map((r) => [r.subject, r.details])).toEqual([['valves/#', { clientId: 'meter-5', transport: 'ws', reasonCode: '0x87' }]]);
  });

  it("records with a 5.0 device's refused CONNECT the CONNACK reason code it was sent, in a row apart from a 3.1.1 device's, and the Broker refusals page shows it", async () => {
    const url = brokerUrl(gatehouse, 'tcp');
    // The same username (no client's), address, reason and minute: 3.1.1, then 5.0 twice.
    expect(await tryConnect(url, { username: 'keypad', password: 'wrong-311', clientId: 'old-guess' })).toMatchObject({ ok: false, code: 4 });
    for (let i = 0; i < 2; i++) {
      expect(await tryConnect(url, { protocolVersion: 5, username: 'keypad', password: `wrong-5-${i}`, clientId: `five-guess-${i}` })).toMatchObject({ ok: false, code: 0x86 });
    }
    // A client id holding U+0000 (5.0: 0x85).
    expect(await tryConnect(url, { protocolVersion: 5, username: 'meter', password: 'meter-password', clientId: 'bad\u0000id' })).toMatchObject({ ok: false, code: 0x85 });
    await gatehouse.audit.flush();
    const rows = await rowsOf('mqtt.auth_failed');
    expect(rows.map((r) => [r.actor, r.count, r.details])).toEqual([
      ['keypad', 1, { reason: 'bad_credentials', clientId: 'old-guess', transport: 'tcp' }],
      ['keypad', 2, { reason: 'bad_credentials', clientId: 'five-guess-0', transport: 'tcp', reasonCode: '0x86' }],
      // (The audit keeps no control character: U+0000 is stored as U+FFFD.)
      ['meter', 1, { reason: 'bad_client_id', clientId: 'bad\ufffdid', transport: 'tcp', reasonCode: '0x85' }],
    ]);
    // A later flush of the same minute adds to the 5.0 row, not to the 3.1.1 one.
    expect(await tryConnect(url, { protocolVersion: 5, username: 'keypad', password: 'wrong-5-again', clientId: 'five-guess-2' })).toMatchObject({ ok: false, code: 0x86 });
    await gatehouse.audit.flush();
    expect((await rowsOf('mqtt.auth_failed')).map((r) => [r.actor, r.count, r.details.reasonCode ?? null])).toEqual([
      ['keypad', 1, null],
      ['keypad', 3, '0x86'],
      ['meter', 1, '0x85'],
    ]);

    const admin = await signIn(gatehouse.app, gatehouse.database.db);
    const page = await (await admin.request('/audit?view=refusals&actor=keypad')).text();
    const cells = [...page.matchAll(/<ul class="audit-details">([\s\S]*?)<\/ul>/g)].map((match) => match[1]!.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim());
    expect(cells).toEqual(['reason: bad_credentials clientId: five-guess-0 transport: tcp reasonCode: 0x86', 'reason: bad_credentials clientId: old-guess transport: tcp']);
  });

  it('writes what is still buffered when it stops', async () => {
    const database = await createTestDatabase(driver);
    const dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-audit-'));
    try {
      const config = configSchema.parse({ PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir });
      const other = await startGatehouse({ config, database, log: () => {}, audit: { flushIntervalMs: 3_600_000 } });
      expect(await tryConnect(brokerUrl(other, 'tcp'), { username: 'ghost', password: 'ghost-password' })).toMatchObject({ ok: false, code: 4 });
      expect(await database.db.select().from(auditEvents)).toEqual([]);
      await other.close();
      expect((await database.db.select().from(auditEvents)).map((r) => [r.kind, r.actor, r.count])).toEqual([['mqtt.auth_failed', 'ghost', 1]]);
    } finally {
      await database.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
