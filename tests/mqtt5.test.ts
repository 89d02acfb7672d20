import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt, { type IClientOptions } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { configSchema } from '../src/config';
import { schema } from '../src/db';
import { createClient } from '../src/domain/clients';
import { startGatehouse, type Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { signIn } from './support/admin';
import { createPostgresTestDatabase } from './support/db';
import { requireOrSkip } from './support/env';
import { startTestGatehouse } from './support/gatehouse';
import { certificateFactory, type Issued } from './support/certs';
import { brokerUrl, connect, endClient, nextMessage, subscribeCodes, tryConnect } from './support/mqtt';
import { connectWithConnack, listenerOf, rawClient, serverDisconnect, type AnyTransport } from './support/mqtt5';

/**
 * What a 5.0 device is told, where a 3.1.1 device is told nothing: reason
 * codes from Gatehouse's own decisions (README, "MQTT 5").
 */
const device = { username: 'five', password: 'five-password' };
const v5Options = (clientId: string, options: IClientOptions = {}): IClientOptions => ({ protocolVersion: 5, clientId, ...device, ...options });

async function provision(gatehouse: Gatehouse) {
  await createClient(gatehouse.database.db, { name: 'Five', ...device });
  await grantGroup(gatehouse.database.db, {
    name: 'Five',
    permissions: [
      ['allow', 'publish', 'five/#'],
      ['allow', 'subscribe', 'five/#'],
      ['deny', 'publish', 'five/locked/#'],
    ],
    usernames: [device.username],
  });
}

const certs = certificateFactory();
let ca: Issued;
let expired: Issued;
afterAll(() => certs.remove());

describe.each(['tcp', 'ws', 'tls', 'wss'] as AnyTransport[])('MQTT 5 over %s', { timeout: 60_000 }, (transport) => {
  let gatehouse: Awaited<ReturnType<typeof startTestGatehouse>>;
  let url: string;
  let listenerOptions: IClientOptions;
  const v5 = (clientId: string, options: IClientOptions = {}): IClientOptions => ({ ...listenerOptions, ...v5Options(clientId, options) });
  beforeAll(async () => {
    ca ??= certs.ca('MQTT 5 CA');
    expired ??= certs.client(ca, 'five-expired-cert', { expired: true });
    const server = certs.server(ca, `mqtt5-${transport}`);
    gatehouse = await startTestGatehouse('pglite', {
      MQTT_MAX_SESSION_EXPIRY_S: '60',
      MQTTS_PORT: '0',
      HTTPS_PORT: '0',
      TLS_CERT_FILE: server.certFile,
      TLS_KEY_FILE: server.keyFile,
      TLS_CA_FILE: ca.certFile,
    });
    ({ url, options: listenerOptions } = listenerOf(gatehouse, transport, ca));
    await provision(gatehouse);
    await createClient(gatehouse.database.db, { name: 'Expired', username: 'five-expired', authType: 'certificate', fingerprint: expired.fingerprint });
    await createClient(gatehouse.database.db, { name: 'Guessed', username: 'five-guessed', password: 'guessed-password' });
  });
  afterAll(async () => {
    await gatehouse?.close();
  });

  it('answers a wrong password with CONNACK 0x86', async () => {
    const outcome = await tryConnect(url, v5('five-wrong', { password: 'not-it' }));
    expect(outcome).toMatchObject({ ok: false, code: 0x86 });
  });

  it('answers a client id holding U+0000 with CONNACK 0x85', async () => {
    expect(await tryConnect(url, v5('five\u0000nul'))).toMatchObject({ ok: false, code: 0x85 });
  });

  it('answers a username in back-off after repeated wrong passwords with CONNACK 0x97, where each wrong one got 0x86', async () => {
    const codes: Array<number | undefined> = [];
    for (let attempt = 0; attempt < 12 && codes.at(-1) !== 0x97; attempt++) {
      const outcome = await tryConnect(url, v5(`five-guess-${attempt}`, { username: 'five-guessed', password: 'a-guess' }));
      codes.push(outcome.ok ? 0 : outcome.code);
      if (outcome.ok) await endClient(outcome.client);
    }
    expect(codes.at(-1)).toBe(0x97);
    expect(new Set(codes.slice(0, -1))).toEqual(new Set([0x86]));
  });

  it.runIf(transport === 'tls' || transport === 'wss')('answers a client certificate out of its dates with CONNACK 0x87', async () => {
    const outcome = await tryConnect(url, { ...v5('five-expired'), username: undefined, password: undefined, cert: expired.cert, key: expired.key });
    expect(outcome).toMatchObject({ ok: false, code: 0x87 });
  });

  it('tells a session taken over by a new connection of its client id so with DISCONNECT 0x8E, and serves the new one', async () => {
    const first = await connect(url, v5('five-twin'));
    const told = serverDisconnect(first);
    const second = await connect(url, v5('five-twin'));
    expect(await told).toBe(0x8e);
    const heard = nextMessage(second, 'five/twin');
    await second.subscribeAsync('five/twin', { qos: 1 });
    await second.publishAsync('five/twin', 'still here', { qos: 1 });
    expect((await heard).payload).toBe('still here');
    await endClient(second);
  });

  it('answers PUBACK 0x87 for a publish the groups refuse, delivers nothing and keeps the connection', async () => {
    const listener = await connect(url, v5('five-listener'));
    await listener.subscribeAsync('five/#', { qos: 1 });
    const heard: string[] = [];
    listener.on('message', (topic) => heard.push(topic));
    const publisher = await connect(url, v5('five-publisher'));
    const error = await publisher.publishAsync('five/locked/door', 'open', { qos: 1 }).catch((e: Error & { code?: number }) => e);
    expect((error as { code?: number }).code).toBe(0x87);
    // The refusal says nothing of the rule that decided.
    expect(String((error as Error).message)).not.toMatch(/locked|deny|Five/i);
    const allowed = nextMessage(listener, 'five/open/door');
    await publisher.publishAsync('five/open/door', 'ok', { qos: 1 });
    expect((await allowed).payload).toBe('ok');
    expect(heard).not.toContain('five/locked/door');
    expect(publisher.connected).toBe(true);
    await endClient(publisher);
    await endClient(listener);
  });

  it('answers SUBACK 0x87 for a filter the groups refuse, beside one they grant', async () => {
    const client = await connect(url, v5('five-subscriber'));
    expect(await subscribeCodes(client, { 'five/a': { qos: 1 }, 'other/#': { qos: 1 } })).toEqual({ 'five/a': 1, 'other/#': 0x87 });
    expect(client.connected).toBe(true);
    await endClient(client);
  });

  it('forwards user properties, content type, response topic and correlation data to 3.1.1 and 5.0 subscribers', async () => {
    const five = await connect(url, v5('five-reader'));
    const old = await connect(url, { ...listenerOptions, ...device, clientId: 'five-old-reader' });
    await five.subscribeAsync('five/props', { qos: 1 });
    await old.subscribeAsync('five/props', { qos: 1 });
    const toFive = new Promise<{ payload: string; properties?: Record<string, unknown> }>((resolve) =>
      five.once('message', (_t, payload, packet) => resolve({ payload: payload.toString(), properties: packet.properties as Record<string, unknown> })),
    );
    const toOld = nextMessage(old, 'five/props');
    const publisher = await connect(url, v5('five-writer'));
    await publisher.publishAsync('five/props', '{"t":21}', {
      qos: 1,
      properties: {
        userProperties: { site: 'north' },
        contentType: 'application/json',
        payloadFormatIndicator: true,
        responseTopic: 'five/replies',
        correlationData: Buffer.from('42'),
      },
    });
    const got = await toFive;
    expect(got.payload).toBe('{"t":21}');
    expect(got.properties).toMatchObject({ userProperties: { site: 'north' }, contentType: 'application/json', payloadFormatIndicator: true, responseTopic: 'five/replies' });
    expect(Buffer.from(got.properties!.correlationData as Buffer).toString()).toBe('42');
    expect((await toOld).payload).toBe('{"t":21}');
    for (const client of [five, old, publisher]) await endClient(client);
  });

  it('sends DISCONNECT 0x98 when an operator disconnects the session, and the device may come back', async () => {
    const client = await connect(url, v5('five-kicked'));
    const told = serverDisconnect(client);
    const session = [...gatehouse.broker.liveSessions()].find((s) => s.mqttClientId === 'five-kicked')!;
    expect(session.protocolVersion).toBe(5);
    await gatehouse.broker.endSessions([session.id]);
    expect(await told).toBe(0x98);
  });

  it('grants at most MQTT_MAX_SESSION_EXPIRY_S and says so in CONNACK', async () => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, ...v5('five-long', { clean: false, properties: { sessionExpiryInterval: 3600 } }) });
    const connack = await new Promise<{ properties?: { sessionExpiryInterval?: number; receiveMaximum?: number; maximumPacketSize?: number; topicAliasMaximum?: number } }>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    expect(connack.properties?.sessionExpiryInterval).toBe(60);
    expect(connack.properties).toMatchObject({ receiveMaximum: 1000, maximumPacketSize: 1024 * 1024, topicAliasMaximum: 64 });
    const session = [...gatehouse.broker.liveSessions()].find((s) => s.mqttClientId === 'five-long')!;
    expect(session.sessionExpiryS).toBe(60);
    // The Connections page says which protocol each session speaks.
    const old = await connect(url, { ...listenerOptions, ...device, clientId: 'five-old-timer' });
    const operator = await signIn(gatehouse.app, gatehouse.database.db);
    const page = await (await operator.request('/connections')).text();
    expect(page).toContain('MQTT 5.0, session expiry 60 s');
    expect(page).toContain('MQTT 3.1.1');
    await endClient(old);
    await endClient(client);
  });
});

describe('MQTT 5 and MQTT_MAX_PUBLISH_RATE', { timeout: 60_000 }, () => {
  let gatehouse: Awaited<ReturnType<typeof startTestGatehouse>>;
  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite', { MQTT_MAX_PUBLISH_RATE: '1' });
    await provision(gatehouse);
  });
  afterAll(async () => {
    await gatehouse?.close();
  });

  it('sends DISCONNECT 0x96 to a device whose publishes would wait longer than 10 s for their turn', async () => {
    const raw = await rawClient(brokerUrl(gatehouse, 'tcp'), {});
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'five-flood', clean: true, keepalive: 0, ...device });
    expect(await raw.next('connack')).toMatchObject({ reasonCode: 0 });
    // One chunk, read at once: at 1 a second the 12th would wait 11 s.
    raw.sendAll(Array.from({ length: 15 }, (_, i) => ({ cmd: 'publish', topic: 'five/flood', payload: String(i), qos: 0, retain: false, dup: false })));
    expect(await raw.next('disconnect', 10_000)).toMatchObject({ reasonCode: 0x96 });
    raw.close();
  });
});

const databaseUrl = process.env.TEST_DATABASE_URL;
describe.runIf(requireOrSkip('PostgreSQL (TEST_DATABASE_URL)', Boolean(databaseUrl), 'set TEST_DATABASE_URL to run the MQTT 5 restart case'))(
  'an MQTT 5 session across a restart',
  { timeout: 90_000 },
  () => {
    let database: { url: string; drop(): Promise<void> };
    let dataDir: string;
    const start = () =>
      startGatehouse({
        config: configSchema.parse({ PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATABASE_URL: database.url, DATA_DIR: dataDir }),
        log: () => {},
      });
    beforeAll(async () => {
      database = await createPostgresTestDatabase({ migrated: true });
      dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-mqtt5-'));
    });
    afterAll(async () => {
      await database?.drop();
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
    });

    let provisioned = false;
    const startProvisioned = async () => {
      const gatehouse = await start();
      if (!provisioned) await provision(gatehouse);
      provisioned = true;
      return gatehouse;
    };
    /** Connects `clientId` again, resuming its session if there is one; its CONNACK and what it is sent within `ms`. */
    const comeBack = async (gatehouse: Gatehouse, clientId: string, ms = 500) => {
      const back = mqtt.connect(brokerUrl(gatehouse, 'tcp'), { reconnectPeriod: 0, ...v5Options(clientId, { clean: false, properties: { sessionExpiryInterval: 600 } }) });
      const payloads: string[] = [];
      back.on('message', (_topic, payload) => payloads.push(payload.toString()));
      const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
        back.once('connect', resolve);
        back.once('error', reject);
      });
      await new Promise((resolve) => setTimeout(resolve, ms));
      await endClient(back);
      return { sessionPresent: connack.sessionPresent, payloads };
    };
    /** A 5.0 session of `clientId` kept for `expiryS` after it disconnects now, with a message queued for it. */
    const leaveSession = async (gatehouse: Gatehouse, clientId: string, expiryS: number) => {
      const client = await connect(brokerUrl(gatehouse, 'tcp'), v5Options(clientId, { clean: false, properties: { sessionExpiryInterval: expiryS } }));
      await client.subscribeAsync(`five/${clientId}`, { qos: 1 });
      await endClient(client);
      const leftAt = Date.now();
      const publisher = await connect(brokerUrl(gatehouse, 'tcp'), v5Options(`${clientId}-pub`));
      await publisher.publishAsync(`five/${clientId}`, 'queued', { qos: 1 });
      await endClient(publisher);
      return leftAt + expiryS * 1000;
    };

    it('removes at start a session whose expiry passed while it was down, with what was queued for it', async () => {
      let gatehouse = await startProvisioned();
      const expiresAt = await leaveSession(gatehouse, 'five-brief', 2);
      await gatehouse.close();
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now()) + 300));
      gatehouse = await start();
      try {
        expect(await comeBack(gatehouse, 'five-brief')).toEqual({ sessionPresent: false, payloads: [] });
      } finally {
        await gatehouse.close();
      }
    });

    it('removes a session whose expiry falls after a restart when it falls, and keeps it until then', async () => {
      let gatehouse = await startProvisioned();
      const expiresAt = await leaveSession(gatehouse, 'five-later', 6);
      const keptAt = await leaveSession(gatehouse, 'five-kept', 6);
      await gatehouse.close();
      gatehouse = await start();
      try {
        // Restarted before either expiry: what follows is the restarted node's own timing.
        expect(Date.now()).toBeLessThan(Math.min(expiresAt, keptAt) - 1000);
        expect(await comeBack(gatehouse, 'five-kept', 200)).toEqual({ sessionPresent: true, payloads: ['queued'] });
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now()) + 500));
        expect(await comeBack(gatehouse, 'five-later')).toEqual({ sessionPresent: false, payloads: [] });
      } finally {
        await gatehouse.close();
      }
    });

    it('writes no row when a device with no expiring session connects, and marks in use one that had one, so a restart keeps it', async () => {
      let gatehouse = await startProvisioned();
      const rowsOf = async (clientId: string) => {
        await gatehouse.broker.sessionExpiriesWritten();
        return gatehouse.database.db.select({ expiresAt: schema.sessionExpiries.expiresAt }).from(schema.sessionExpiries).where(eq(schema.sessionExpiries.mqttClientId, clientId));
      };
      const v3Persistent = (clientId: string): IClientOptions => ({ protocolVersion: 4, clientId, clean: false, ...device });
      try {
        // The only node knows every row: none for these, so none is written.
        const plain = await connect(brokerUrl(gatehouse, 'tcp'), v3Persistent('five-plain'));
        const lasting = await connect(brokerUrl(gatehouse, 'tcp'), v5Options('five-lasting', { clean: false, properties: { sessionExpiryInterval: 0xffffffff } }));
        expect(await rowsOf('five-plain')).toEqual([]);
        expect(await rowsOf('five-lasting')).toEqual([]);
        await endClient(plain);
        await endClient(lasting);

        // A 5.0 session that expires in 2 s, taken back by a 3.1.1 connection that keeps its session.
        const expiresAt = await leaveSession(gatehouse, 'five-switch', 2);
        expect((await rowsOf('five-switch')).map((row) => row.expiresAt?.getTime())).toEqual([expect.any(Number)]);
        const back = await connect(brokerUrl(gatehouse, 'tcp'), v3Persistent('five-switch'));
        await back.subscribeAsync('five/five-switch/3', { qos: 1 });
        expect(await rowsOf('five-switch'), 'in use, not expiring').toEqual([{ expiresAt: null }]);
        await endClient(back);
        await gatehouse.close();
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now()) + 300));
        gatehouse = await start();
        const { client: again, connack } = await connectWithConnack(brokerUrl(gatehouse, 'tcp'), v3Persistent('five-switch'));
        await endClient(again);
        expect(connack.sessionPresent, 'the 3.1.1 session outlived the 5.0 expiry it replaced').toBe(true);
      } finally {
        await gatehouse.close();
      }
    });

    it('keeps the session it asked for, with what was queued, and tells it 0x8B at shutdown', async () => {
      let gatehouse = await startProvisioned();
      const client = await connect(brokerUrl(gatehouse, 'tcp'), v5Options('five-durable', { clean: false, properties: { sessionExpiryInterval: 600 } }));
      await client.subscribeAsync('five/durable', { qos: 1 });
      const told = serverDisconnect(client);
      await gatehouse.close();
      expect(await told).toBe(0x8b);

      gatehouse = await start();
      try {
        const publisher = await connect(brokerUrl(gatehouse, 'tcp'), v5Options('five-durable-pub'));
        await publisher.publishAsync('five/durable', 'while restarting', { qos: 1 });
        await endClient(publisher);
        const back = mqtt.connect(brokerUrl(gatehouse, 'tcp'), { reconnectPeriod: 0, ...v5Options('five-durable', { clean: false, properties: { sessionExpiryInterval: 600 } }) });
        const heard = nextMessage(back, 'five/durable');
        const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
          back.once('connect', resolve);
          back.once('error', reject);
        });
        expect(connack.sessionPresent).toBe(true);
        expect((await heard).payload).toBe('while restarting');
        await endClient(back);
      } finally {
        await gatehouse.close();
      }
    });
  },
);

/**
 * Holds every thread of libuv's pool (where Argon2id verifies run) in a
 * blocking open of a FIFO no one writes to, until `release`: verifies that
 * started wait, holding their slots, and those after them wait for a slot.
 */
async function holdThreadPool(): Promise<{ release(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-pool-'));
  const fifo = path.join(dir, 'held');
  execFileSync('mkfifo', [fifo]);
  const threads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  const opened = Array.from({ length: threads }, () => new Promise<number>((resolve, reject) => fs.open(fifo, 'r', (error, fd) => (error ? reject(error) : resolve(fd)))));
  return {
    async release() {
      // A writer lets every blocked open return; kept open until they all have.
      const writer = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
      for (const fd of await Promise.all(opened)) fs.closeSync(fd);
      fs.closeSync(writer);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('MQTT 5 when too many password checks wait', { timeout: 60_000 }, () => {
  let gatehouse: Awaited<ReturnType<typeof startTestGatehouse>>;
  const crowd = { username: 'crowd', password: 'crowd-password' };
  beforeAll(async () => {
    // More CONNECTs from this one address than the default 256 may be pending.
    gatehouse = await startTestGatehouse('pglite', { MQTT_MAX_PENDING_PER_ADDRESS: '1000' });
    // A typed password: each check is an Argon2id verify on the thread pool.
    await createClient(gatehouse.database.db, { name: 'Crowd', ...crowd });
  });
  afterAll(async () => {
    await gatehouse?.close();
  });

  it('answers CONNACK 0x88 (Server unavailable) once the waiting line is full, and a 3.1.1 device return code 3', async () => {
    const url = brokerUrl(gatehouse, 'tcp');
    const pool = await holdThreadPool();
    const waiting: mqtt.MqttClient[] = [];
    try {
      // Two verify at once here (one per core, one pool thread kept for the store), 256 wait.
      for (let i = 0; i < 258; i++) waiting.push(mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 30_000, clientId: `crowd-${i}`, ...crowd, password: `wrong-${i}` }));
      await expect.poll(() => gatehouse.authenticator.stats().waitingVerifies, { timeout: 30_000 }).toBe(256);
      expect(await tryConnect(url, { protocolVersion: 5, clientId: 'crowd-five', ...crowd })).toMatchObject({ ok: false, code: 0x88 });
      expect(await tryConnect(url, { clientId: 'crowd-311', ...crowd })).toMatchObject({ ok: false, code: 3 });
    } finally {
      await pool.release();
      for (const client of waiting) client.end(true);
    }
    // Audited as the server being unavailable, not as the device's back-off.
    await gatehouse.audit.flush();
    const refused = await gatehouse.database.db.select().from(schema.auditEvents).where(eq(schema.auditEvents.kind, 'mqtt.auth_failed'));
    expect(refused.filter((row) => row.details.reason === 'unavailable').map((row) => [row.details.clientId, row.details.reasonCode ?? null])).toEqual([
      ['crowd-five', '0x88'],
      ['crowd-311', null],
    ]);
  });
});
