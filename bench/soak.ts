/**
 * `npm run soak`: Gatehouse under ten minutes of mixed traffic, then a
 * markdown report. Not part of `npm test`.
 *
 * One Gatehouse process (the shipped bundle, embedded PGlite, a fresh
 * DATA_DIR) and, all at once for SOAK_SECONDS (default 600):
 *
 * - publishers sending sequence-numbered messages at QoS 0, 1 and 2 at a steady
 *   rate (SOAK_RATE messages a second in all, default 240), and a retained
 *   QoS 1 message per publisher every second;
 * - subscribers on every publisher's QoS 0/1/2 topics: clean ones that stay
 *   connected, and persistent ones (clean session 0) that disconnect (in turn
 *   politely and by dropping the socket) and come back a few seconds later;
 *   one of each over WebSocket, the others over TCP;
 * - churn: SOAK_CHURN_PER_SECOND short connections a second (TCP and
 *   WebSocket), each checking that it gets every publisher's current retained
 *   message, publishing once, and leaving; one in ten resumes a persistent
 *   session and checks that the broker says so;
 * - wrong passwords, SOAK_WRONG_PASSWORDS_PER_SECOND a second, from another
 *   loopback address (127.0.0.2) so that the address back-off they earn does
 *   not fall on the devices above: CONNACK 4, or 3 once throttled (counted,
 *   not failed); half of them guess the password of a username the churn
 *   clients use, which must not lock those clients out;
 * - console edits every SOAK_CONSOLE_EVERY_S seconds (default 3) over HTTP:
 *   create a client, find it, connect with it, edit it (new password), connect
 *   with the new password, delete it. Any answer other than 2xx/3xx is an error.
 *
 * Broker RSS and CPU are read from /proc every 10 s.
 *
 * Loss rules (QoS 1 and 2; the ack is PUBACK or PUBCOMP to the publisher):
 * - a clean subscriber must receive every message that its publisher sent
 *   after the subscriber's SUBACK and that was acknowledged before the
 *   subscriber's connection ended (it ends only at the very end, unless the
 *   broker drops it, which is reported as an error of its own);
 * - a persistent subscriber must receive every message sent after its first
 *   SUBACK, whether it was connected when the message was published or not:
 *   MQTT 3.1.1 [MQTT-3.1.2-5] keeps QoS 1 and 2 messages for a session with
 *   clean session 0 while its client is away and delivers them when it comes
 *   back, so a message missing there is lost too. Its losses are counted
 *   separately by where the subscriber was when the message was published
 *   (connected, or offline / reconnecting). The client's QoS 2 store is kept
 *   across its connections (as a real device's would be), so a PUBREL
 *   resent after a reconnection finds its message.
 * Duplicates are allowed at QoS 1, not at QoS 2. QoS 0 may be dropped; its
 * delivery ratio is reported.
 *
 * Exit status 1 on any QoS 1/2 loss, a QoS 2 duplicate, a broker crash, or a
 * broker that does not stop cleanly on SIGTERM. Ctrl-C stops early (the
 * report still follows); a second Ctrl-C quits at once. Every process and the
 * DATA_DIR go away in both cases.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import mqtt, { Store, type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { openDatabase } from '../src/db';
import { createAdministrator } from '../src/domain/administrators';
import { createClient } from '../src/domain/clients';
import { createSession } from '../src/domain/sessions';
import { SESSION_COOKIE } from '../src/web/session';
import { grantGroup } from '../tests/support/acl';
import { startProcess, stopProcess, waitForPorts, type Running } from '../tests/support/process';
import { processTree, usage } from './lib/proc';

const setting = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a number ≥ 0`);
  return value;
};
const SECONDS = setting('SOAK_SECONDS', 600);
const PUBLISHERS = Math.max(1, setting('SOAK_PUBLISHERS', 4));
const RATE = setting('SOAK_RATE', 240);
const CLEAN_SUBSCRIBERS = setting('SOAK_CLEAN_SUBSCRIBERS', 3);
const PERSISTENT_SUBSCRIBERS = setting('SOAK_PERSISTENT_SUBSCRIBERS', 3);
const CHURN_PER_SECOND = setting('SOAK_CHURN_PER_SECOND', 3);
const WRONG_PER_SECOND = setting('SOAK_WRONG_PASSWORDS_PER_SECOND', 3);
const CONSOLE_EVERY_MS = setting('SOAK_CONSOLE_EVERY_S', 3) * 1000;
const SAMPLE_MS = 10_000;
/** A publisher with this many QoS 1/2 messages unacknowledged skips its turn (counted). */
const MAX_OUTSTANDING = 2000;
const PAD = 'x'.repeat(80);

type Qos = 0 | 1 | 2;
type Transport = 'tcp' | 'ws';
const QOS: Qos[] = [0, 1, 2];
const now = () => performance.now();
const sleepUntil = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
const between = (low: number, high: number) => low + Math.random() * (high - low);

// ---------------------------------------------------------------- what happened

/** Errors by kind, with the first example of each. */
const errors = new Map<string, { count: number; example: string }>();
function error(kind: string, example = '') {
  // After Ctrl-C the terminal's SIGINT stops the broker too: what fails then is no finding.
  if (interrupted) return;
  const entry = errors.get(kind);
  if (entry) entry.count++;
  else errors.set(kind, { count: 1, example });
}

/** One publisher's messages of one kind: when each was sent and acknowledged (NaN: not yet). */
interface Sent {
  sent: number[];
  acked: number[];
}
const newSent = (): Sent => ({ sent: [], acked: [] });

interface Publisher {
  index: number;
  client: MqttClient;
  streams: [Sent, Sent, Sent];
  retained: Sent;
  /** Highest retained sequence number acknowledged so far (-1: none). */
  lastRetainedAcked: number;
  owed: [number, number, number];
  outstanding: number;
  skippedTurns: number;
}

interface Interval {
  from: number;
  to: number;
  /** Ended without the subscriber asking. */
  unexpected: boolean;
}

interface Subscriber {
  name: string;
  clientId: string;
  persistent: boolean;
  transport: Transport;
  client?: MqttClient;
  /** Kept across connections of a persistent subscriber (its QoS 2 state). */
  incomingStore?: Store;
  outgoingStore?: Store;
  /** Receptions by `publisher * 3 + qos`, then by sequence number. */
  received: number[][];
  /** Clean: from SUBACK to the connection's end. Persistent: from CONNACK to the end. */
  intervals: Interval[];
  /** Persistent: the first SUBACK (NaN until then). */
  since: number;
  reconnects: number;
  wrongQos: number;
}

/** Connections the soak closes on purpose (a persistent subscriber going away). */
const leaving = new WeakSet<MqttClient>();

const counters = {
  published: [0, 0, 0] as number[],
  delivered: [0, 0, 0] as number[],
  retainedPublished: 0,
  churn: { attempted: 0, connected: 0, skipped: 0, latencies: [] as number[], resumedOk: 0, notResumed: 0, retainedOk: 0, retainedMissing: 0, retainedStale: 0, queuedWithRetain: 0, retainedLatencies: [] as number[] },
  wrong: { attempted: 0, codes: new Map<string, number>(), latencies: [] as number[] },
  console: { cycles: 0, requests: 0, statuses: new Map<number, number>(), latencies: [] as number[], mqttOk: 0 },
};

interface Sample {
  t: number;
  rssMb: number;
  cpuPercent: number;
  heapMb?: number;
  connections?: number;
  publishedPerS: number;
  deliveredPerS: number;
}
const samples: Sample[] = [];

// ---------------------------------------------------------------- the run

let running: Running | undefined;
let dataDir: string | undefined;
let brokerStopping = false;
let crash: { code: number | null; signal: string | null; atS: number } | undefined;
let interrupted = false;
/** When Ctrl-C came: an interrupted run counts losses only among messages sent well before it. */
let interruptedAt = Number.POSITIVE_INFINITY;
const INTERRUPT_MARGIN_MS = 5000;
const loadStop = new AbortController();
let t0 = now();
let mqttPort = 0;
let httpPort = 0;
let metricsToken = '';
const openClients = new Set<MqttClient>();
const openSockets = new Set<net.Socket>();

const urlFor = (transport: Transport) => (transport === 'tcp' ? `mqtt://127.0.0.1:${mqttPort}` : `ws://127.0.0.1:${httpPort}/mqtt`);
const users = {
  publisher: { username: 'soak-publisher', password: 'soak-publisher-password' },
  subscriber: { username: 'soak-subscriber', password: 'soak-subscriber-password' },
  churn: [0, 1, 2].map((i) => ({ username: `soak-churn-${i}`, password: `soak-churn-password-${i}` })),
};

/** Connects once (no automatic reconnection); resolves with the CONNACK or why not. */
function connectOnce(
  transport: Transport,
  options: IClientOptions,
  /** Called at once with the new client: listeners that must not miss what comes right after CONNACK. */
  setup?: (client: MqttClient) => void,
): Promise<{ ok: true; client: MqttClient; sessionPresent: boolean } | { ok: false; code?: number; message: string }> {
  return new Promise((resolve) => {
    const client = mqtt.connect(urlFor(transport), { reconnectPeriod: 0, connectTimeout: 20_000, keepalive: 30, ...options });
    setup?.(client);
    openClients.add(client);
    client.once('close', () => openClients.delete(client));
    let settled = false;
    const fail = (reason: Error & { code?: number | string }) => {
      if (settled) return;
      settled = true;
      client.end(true);
      resolve({ ok: false, code: typeof reason.code === 'number' ? reason.code : undefined, message: reason.message });
    };
    client.once('connect', (connack) => {
      if (settled) return;
      settled = true;
      client.off('error', fail);
      client.on('error', () => {});
      resolve({ ok: true, client, sessionPresent: Boolean(connack.sessionPresent) });
    });
    client.once('error', fail);
    client.once('close', () => fail(new Error('connection closed before CONNACK')));
  });
}

function end(client: MqttClient, force = true): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      client.end(true);
      resolve();
    }, 5000);
    client.end(force, {}, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

// ---- publishers

async function startPublisher(index: number): Promise<Publisher> {
  const client = mqtt.connect(urlFor('tcp'), {
    ...users.publisher,
    clientId: `soak-pub-${index}`,
    clean: true,
    reconnectPeriod: 1000,
    connectTimeout: 20_000,
    keepalive: 30,
  });
  openClients.add(client);
  client.on('error', (reason) => error('publisher connection error', reason.message));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    setTimeout(() => reject(new Error(`publisher ${index} did not connect`)), 30_000);
  });
  client.on('close', () => {
    if (!brokerStopping) error('publisher disconnected unexpectedly', `soak-pub-${index} at ${elapsedS()} s`);
  });
  return { index, client, streams: [newSent(), newSent(), newSent()], retained: newSent(), lastRetainedAcked: -1, owed: [0, 0, 0], outstanding: 0, skippedTurns: 0 };
}

function publish(pub: Publisher, qos: Qos, retained = false) {
  const stream = retained ? pub.retained : pub.streams[qos];
  const seq = stream.sent.length;
  stream.sent.push(now());
  stream.acked.push(Number.NaN);
  if (qos > 0) pub.outstanding++;
  const topic = retained ? `soak/retained/${pub.index}` : `soak/q${qos}/${pub.index}`;
  pub.client.publish(topic, Buffer.from(`${seq} ${PAD}`), { qos, retain: retained }, (reason) => {
    if (qos > 0) pub.outstanding--;
    if (reason) {
      error(`publish failed (QoS ${qos}${retained ? ', retained' : ''})`, reason.message);
      return;
    }
    stream.acked[seq] = now();
    if (retained) {
      counters.retainedPublished++;
      pub.lastRetainedAcked = Math.max(pub.lastRetainedAcked, seq);
    } else counters.published[qos]!++;
  });
}

function runPublishers(publishers: Publisher[]): () => void {
  const perStream = RATE / (publishers.length * 3);
  let last = now();
  const tick = setInterval(() => {
    const at = now();
    const dt = (at - last) / 1000;
    last = at;
    for (const pub of publishers) {
      if (!pub.client.connected) continue;
      for (const qos of QOS) {
        pub.owed[qos] += perStream * dt;
        while (pub.owed[qos] >= 1) {
          if (qos > 0 && pub.outstanding >= MAX_OUTSTANDING) {
            pub.skippedTurns++;
            pub.owed[qos] = 0;
            break;
          }
          publish(pub, qos);
          pub.owed[qos]--;
        }
      }
    }
  }, 50);
  const retainedTick = setInterval(() => {
    for (const pub of publishers) if (pub.client.connected) publish(pub, 1, true);
  }, 1000);
  return () => {
    clearInterval(tick);
    clearInterval(retainedTick);
  };
}

// ---- subscribers

function newSubscriber(name: string, persistent: boolean, transport: Transport): Subscriber {
  return {
    name,
    clientId: `soak-${name}`,
    persistent,
    transport,
    incomingStore: persistent ? new Store({ clean: false }) : undefined,
    outgoingStore: persistent ? new Store({ clean: false }) : undefined,
    received: Array.from({ length: PUBLISHERS * 3 }, () => []),
    intervals: [],
    since: Number.NaN,
    reconnects: 0,
    wrongQos: 0,
  };
}

const SUBSCRIPTIONS = { 'soak/q0/+': { qos: 0 as const }, 'soak/q1/+': { qos: 1 as const }, 'soak/q2/+': { qos: 2 as const } };

function subscribe(client: MqttClient): Promise<void> {
  return new Promise((resolve, reject) => {
    client.subscribe(SUBSCRIPTIONS, (reason, granted) => {
      if (reason) return reject(reason);
      const codes = (granted ?? []).map((g) => g.qos);
      if (codes.join(',') !== '0,1,2') return reject(new Error(`SUBACK granted ${codes.join(',')}`));
      resolve();
    });
  });
}

function received(sub: Subscriber, topic: string, payload: Buffer, deliveredQos: number) {
  const match = /^soak\/q([012])\/(\d+)$/.exec(topic);
  if (!match) return;
  const qos = Number(match[1]) as Qos;
  const seq = Number.parseInt(payload.toString('latin1', 0, 12), 10);
  if (deliveredQos !== qos) sub.wrongQos++;
  const counts = sub.received[Number(match[2]) * 3 + qos];
  if (!counts || !Number.isInteger(seq)) return;
  while (counts.length <= seq) counts.push(0);
  counts[seq]!++;
  counters.delivered[qos]!++;
}

/** Connects (or reconnects) a subscriber; on failure tries again every 2 s while the run lasts. */
async function connectSubscriber(sub: Subscriber): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const outcome = await connectOnce(sub.transport, {
      ...users.subscriber,
      clientId: sub.clientId,
      clean: !sub.persistent,
      resubscribe: false,
      incomingStore: sub.incomingStore,
      outgoingStore: sub.outgoingStore,
    }, (client) => client.on('message', (topic, payload, packet) => received(sub, topic, payload, packet.qos)));
    if (!outcome.ok) {
      error('subscriber could not connect', `${sub.name}: ${outcome.message} (code ${outcome.code ?? '-'})`);
      if (crash || attempt >= 30) return;
      await sleepUntil(2000);
      continue;
    }
    const client = outcome.client;
    sub.client = client;
    const interval: Interval = { from: now(), to: Number.POSITIVE_INFINITY, unexpected: false };
    let lastError = '';
    client.on('error', (reason) => (lastError = reason.message));
    client.on('disconnect', (packet) => (lastError = `DISCONNECT from the broker (reason ${packet.reasonCode ?? '-'})`));
    client.once('close', () => {
      interval.to = now();
      if (leaving.has(client) || brokerStopping) return;
      interval.unexpected = true;
      error('subscriber disconnected unexpectedly', `${sub.name} at ${elapsedS()} s, connected since ${((interval.from - t0) / 1000).toFixed(1)} s: ${lastError || 'no error, no DISCONNECT'}`);
      if (!crash && sub.client === client) setTimeout(() => void connectSubscriber(sub), 1000);
    });
    try {
      if (sub.persistent && !Number.isNaN(sub.since)) {
        if (!outcome.sessionPresent) {
          error('persistent session not resumed (CONNACK session present = 0)', `${sub.name} at ${elapsedS()} s`);
          await subscribe(client);
        }
      } else {
        await subscribe(client);
        if (sub.persistent) sub.since = now();
        else interval.from = now();
      }
    } catch (reason) {
      error('subscribe failed', `${sub.name}: ${(reason as Error).message}`);
    }
    sub.intervals.push(interval);
    return;
  }
}

/** A persistent subscriber's life: connected 10–30 s, away 2–8 s, again; connected at the end. */
async function cyclePersistent(sub: Subscriber) {
  while (!loadStop.signal.aborted && !crash) {
    await sleepUntil(between(10_000, 30_000), loadStop.signal);
    if (loadStop.signal.aborted || crash) break;
    const client = sub.client;
    if (!client?.connected) continue;
    leaving.add(client);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    const started = now();
    if (sub.reconnects % 2 === 1) client.stream.destroy();
    else client.end(false);
    await Promise.race([closed, sleepUntil(10_000)]);
    if (client.connected || now() - started >= 10_000) error('persistent subscriber: its own disconnection took over 10 s', sub.name);
    client.end(true);
    await sleepUntil(between(2000, 8000), loadStop.signal);
    sub.reconnects++;
    if (!crash) await connectSubscriber(sub);
  }
}

// ---- churn

let churnCount = 0;
const churnSeen = new Set<string>();
const churnRunning = new Set<Promise<void>>();

async function churnOnce(n: number, publishers: Publisher[]) {
  counters.churn.attempted++;
  const persistent = n % 10 === 0;
  const clientId = persistent ? `soak-churn-p${(n / 10) % 5}` : `soak-churn-${n}`;
  const user = users.churn[n % users.churn.length]!;
  const transport: Transport = n % 2 === 0 ? 'tcp' : 'ws';
  const started = now();
  const outcome = await connectOnce(transport, { ...user, clientId, clean: !persistent });
  if (!outcome.ok) {
    error(`churn connect failed (${outcome.code === undefined ? outcome.message : `CONNACK ${outcome.code}`})`, `${clientId} over ${transport} at ${elapsedS()} s`);
    return;
  }
  counters.churn.latencies.push(now() - started);
  counters.churn.connected++;
  const client = outcome.client;
  try {
    if (persistent) {
      const expected = churnSeen.has(clientId);
      if (outcome.sessionPresent === expected) counters.churn.resumedOk++;
      else {
        counters.churn.notResumed++;
        error('churn session present flag wrong', `${clientId}: expected ${expected}, got ${outcome.sessionPresent}`);
      }
      churnSeen.add(clientId);
    }
    // Every publisher's retained message, at least as new as the last one acknowledged.
    const expected = publishers.map((pub) => pub.lastRetainedAcked);
    const seen = publishers.map(() => -1);
    const older: string[] = [];
    let allSeen: () => void = () => {};
    const done = new Promise<void>((resolve) => (allSeen = resolve));
    client.on('message', (topic, payload, packet) => {
      const match = /^soak\/retained\/(\d+)$/.exec(topic);
      if (!match || !packet.retain) return;
      const index = Number(match[1]);
      const seq = Number.parseInt(payload.toString('latin1', 0, 12), 10);
      if (seq < (expected[index] ?? -1)) older.push(`p${index} #${seq}`);
      seen[index] = Math.max(seen[index] ?? -1, seq);
      if (expected.every((e, i) => seen[i]! >= e)) allSeen();
    });
    await client.subscribeAsync('soak/retained/+', { qos: 1 });
    if (expected.every((e) => e < 0)) allSeen();
    const asked = now();
    await Promise.race([done, sleepUntil(10_000)]);
    if (expected.some((e) => e >= 0)) counters.churn.retainedLatencies.push(now() - asked);
    expected.forEach((e, i) => {
      if (e < 0) return;
      if (seen[i]! < 0) {
        counters.churn.retainedMissing++;
        error('retained message missing for a new subscription (none within 10 s)', `${clientId} at ${elapsedS()} s: publisher ${i} (last acknowledged #${e})`);
      } else if (seen[i]! < e) {
        counters.churn.retainedStale++;
        error('retained message older than the last acknowledged one', `${clientId}: publisher ${i}: newest got #${seen[i]}, #${e} was acknowledged before SUBSCRIBE`);
      } else counters.churn.retainedOk++;
    });
    // Older messages flagged RETAIN: on a resumed session, those queued while it was away.
    if (older.length) {
      if (persistent && outcome.sessionPresent) {
        counters.churn.queuedWithRetain += older.length;
        error('queued message delivered with RETAIN=1 on a resumed session ([MQTT-3.3.1-9] says 0)', `${clientId}: ${older.slice(0, 4).join(', ')}${older.length > 4 ? ', …' : ''}`);
      } else error('old retained message delivered to a new subscription', `${clientId}: ${older.slice(0, 4).join(', ')}`);
    }
    await Promise.race([
      client.publishAsync(`soak/churn/${n % 50}`, 'hello', { qos: 1 }),
      sleepUntil(10_000).then(() => Promise.reject(new Error('no PUBACK within 10 s'))),
    ]);
  } catch (reason) {
    error('churn client error', `${clientId}: ${(reason as Error).message}`);
  } finally {
    await end(client, false);
  }
}

function runChurn(publishers: Publisher[]): () => void {
  if (CHURN_PER_SECOND <= 0) return () => {};
  const timer = setInterval(() => {
    for (let i = 0; i < CHURN_PER_SECOND; i++) {
      if (churnRunning.size >= 50) {
        counters.churn.skipped++;
        continue;
      }
      const task = churnOnce(churnCount++, publishers).catch((reason) => error('churn client error', (reason as Error).message));
      churnRunning.add(task);
      void task.finally(() => churnRunning.delete(task));
    }
  }, 1000);
  return () => clearInterval(timer);
}

// ---- wrong passwords

let attackerAddress = '127.0.0.2';
const wrongRunning = new Set<Promise<void>>();

function wrongPasswordOnce(n: number): Promise<void> {
  counters.wrong.attempted++;
  const username = n % 2 === 0 ? users.churn[0]!.username : `soak-nobody-${n % 50}`;
  const packet = mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: `soak-guess-${n}`,
    keepalive: 0,
    username,
    password: Buffer.from(`wrong-password-${n}`),
  });
  const started = now();
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port: mqttPort, localAddress: attackerAddress });
    openSockets.add(socket);
    let buffer = Buffer.alloc(0);
    let finished = false;
    const finish = (outcome: string) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      openSockets.delete(socket);
      counters.wrong.codes.set(outcome, (counters.wrong.codes.get(outcome) ?? 0) + 1);
      if (/^CONNACK [34]$/.test(outcome)) counters.wrong.latencies.push(now() - started);
      else error(`wrong password answered with ${outcome}`, `${username} from ${attackerAddress} at ${elapsedS()} s`);
      resolve();
    };
    const timer = setTimeout(() => finish('no CONNACK within 15 s'), 15_000);
    socket.on('connect', () => socket.write(packet));
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (buffer.length >= 4) finish(buffer[0] === 0x20 ? `CONNACK ${buffer[3]}` : `packet type ${buffer[0]! >> 4}`);
    });
    socket.on('error', (reason) => finish(`socket error (${(reason as NodeJS.ErrnoException).code ?? reason.message})`));
    socket.on('close', () => finish('closed without CONNACK'));
  });
}

async function checkAttackerAddress() {
  const ok = await new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port: mqttPort, localAddress: '127.0.0.2' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
  if (!ok) attackerAddress = '127.0.0.1';
}

function runWrongPasswords(): () => void {
  if (WRONG_PER_SECOND <= 0) return () => {};
  let n = 0;
  const timer = setInterval(() => {
    if (wrongRunning.size >= 100) return;
    const task = wrongPasswordOnce(n++);
    wrongRunning.add(task);
    void task.finally(() => wrongRunning.delete(task));
  }, 1000 / WRONG_PER_SECOND);
  return () => clearInterval(timer);
}

// ---- console

let cookie = '';

async function consoleRequest(step: string, pathname: string, expected: number, form?: Record<string, string>): Promise<string | undefined> {
  const origin = `http://127.0.0.1:${httpPort}`;
  const started = now();
  counters.console.requests++;
  try {
    const response = await fetch(`${origin}${pathname}`, {
      method: form ? 'POST' : 'GET',
      redirect: 'manual',
      headers: { cookie, origin, ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      body: form ? new URLSearchParams(form) : undefined,
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    counters.console.latencies.push(now() - started);
    counters.console.statuses.set(response.status, (counters.console.statuses.get(response.status) ?? 0) + 1);
    if (response.status >= 400) {
      error(`console ${step}: HTTP ${response.status}`, `${pathname} at ${elapsedS()} s: ${text.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 160)}`);
      return undefined;
    }
    if (response.status !== expected) error(`console ${step}: HTTP ${response.status} (expected ${expected})`, pathname);
    return text;
  } catch (reason) {
    error(`console ${step}: no answer`, `${pathname}: ${(reason as Error).message}`);
    return undefined;
  }
}

async function consoleConnect(step: string, username: string, password: string) {
  const outcome = await connectOnce('tcp', { username, password, clientId: `${username}-device`, clean: true });
  if (!outcome.ok) {
    error(`console ${step}: new credentials refused`, `${username}: ${outcome.message} (code ${outcome.code ?? '-'})`);
    return;
  }
  counters.console.mqttOk++;
  await end(outcome.client, false);
}

async function consoleCycle(n: number) {
  counters.console.cycles++;
  const username = `soak-console-${n}`;
  const password = `soak-console-password-${n}`;
  if ((await consoleRequest('create', '/clients', 303, { name: `Soak console ${n}`, username, password })) === undefined) return;
  const list = await consoleRequest('search', `/clients?q=${encodeURIComponent(username)}`, 200);
  const id = list && /\/clients\/(\d+)\/edit/.exec(list)?.[1];
  if (!id) {
    if (list !== undefined) error('console search: created client not listed', username);
    return;
  }
  await consoleConnect('connect', username, password);
  const form = await consoleRequest('edit form', `/clients/${id}/edit`, 200);
  const version = form && /name="version" value="(\d+)"/.exec(form)?.[1];
  if (form !== undefined && !version) error('console edit form: no version field', `/clients/${id}/edit`);
  const newPassword = `${password}-changed`;
  const edited = await consoleRequest('edit', `/clients/${id}`, 303, { name: `Soak console ${n} (edited)`, username, password: newPassword, ...(version ? { version } : {}) });
  if (edited !== undefined) await consoleConnect('connect after edit', username, newPassword);
  await consoleRequest('delete', `/clients/${id}/delete`, 303, {});
  if (n % 5 === 0) {
    await consoleRequest('list', '/clients', 200);
    await consoleRequest('groups', '/groups', 200);
  }
}

async function runConsole() {
  for (let n = 0; !loadStop.signal.aborted && !crash; n++) {
    const started = now();
    await consoleCycle(n);
    await sleepUntil(Math.max(0, CONSOLE_EVERY_MS - (now() - started)), loadStop.signal);
  }
}

// ---- sampling

let lastSample = { at: 0, cpu: 0, published: 0, delivered: 0 };

async function metric(text: string | undefined, name: string): Promise<number | undefined> {
  if (!text) return undefined;
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

async function scrape(): Promise<string | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${httpPort}/metrics`, { headers: { authorization: `Bearer ${metricsToken}` }, signal: AbortSignal.timeout(5000) });
    return response.ok ? await response.text() : undefined;
  } catch {
    return undefined;
  }
}

async function sample() {
  if (!running?.child.pid || crash || running.child.exitCode !== null || running.child.signalCode !== null) return;
  const at = now();
  const { cpuSeconds, rssBytes } = usage(processTree(running.child.pid));
  const published = counters.published.reduce((a, b) => a + b, 0);
  const delivered = counters.delivered.reduce((a, b) => a + b, 0);
  const seconds = (at - lastSample.at) / 1000;
  const text = await scrape();
  const row: Sample = {
    t: Math.round((at - t0) / 1000),
    rssMb: rssBytes / 1024 / 1024,
    cpuPercent: samples.length === 0 && lastSample.at === 0 ? Number.NaN : ((cpuSeconds - lastSample.cpu) / seconds) * 100,
    heapMb: ((await metric(text, 'nodejs_heap_size_used_bytes')) ?? Number.NaN) / 1024 / 1024,
    connections: await metric(text, 'gatehouse_mqtt_connections'),
    publishedPerS: lastSample.at === 0 ? 0 : (published - lastSample.published) / seconds,
    deliveredPerS: lastSample.at === 0 ? 0 : (delivered - lastSample.delivered) / seconds,
  };
  lastSample = { at, cpu: cpuSeconds, published, delivered };
  samples.push(row);
  console.error(
    `[soak] t=${row.t}s rss=${row.rssMb.toFixed(0)} MB cpu=${Number.isNaN(row.cpuPercent) ? '-' : row.cpuPercent.toFixed(0)}% ` +
      `connections=${row.connections ?? '?'} published=${published} delivered=${delivered} errors=${[...errors.values()].reduce((a, e) => a + e.count, 0)}`,
  );
}

// ---------------------------------------------------------------- losses

interface Loss {
  required: number;
  lost: number;
  /** Persistent: published while it was connected / while it was away or reconnecting. */
  lostConnected: number;
  lostAway: number;
  /** Clean: acknowledged within 2 s before the broker dropped the connection (not counted as loss). */
  atUnexpectedEnd: number;
  duplicates: number;
  delivered: number;
}

function lossOf(sub: Subscriber, publishers: Publisher[], qos: Qos): Loss {
  const loss: Loss = { required: 0, lost: 0, lostConnected: 0, lostAway: 0, atUnexpectedEnd: 0, duplicates: 0, delivered: 0 };
  for (const pub of publishers) {
    const stream = pub.streams[qos];
    const counts = sub.received[pub.index * 3 + qos]!;
    for (const c of counts) {
      loss.delivered += c;
      if (c > 1) loss.duplicates += c - 1;
    }
    for (let seq = 0; seq < stream.sent.length; seq++) {
      const sent = stream.sent[seq]!;
      const acked = stream.acked[seq]!;
      if (Number.isNaN(acked)) continue;
      if (sent > interruptedAt - INTERRUPT_MARGIN_MS) continue;
      const within = sub.intervals.find((i) => i.from <= sent && acked <= i.to);
      let required: boolean;
      if (sub.persistent) required = !Number.isNaN(sub.since) && sent >= sub.since;
      else required = within !== undefined;
      if (!required && !sub.persistent && qos > 0) {
        const cut = sub.intervals.find((i) => i.unexpected && i.from <= sent && acked > i.to && acked - i.to < 2000);
        if (cut && !(counts[seq]! > 0)) loss.atUnexpectedEnd++;
      }
      if (!required) continue;
      if (qos === 0 && sub.persistent && !within) continue; // QoS 0 is not kept for an absent client
      if (interrupted && sub.persistent && !within) continue; // its broker may have stopped before it came back
      loss.required++;
      if ((counts[seq] ?? 0) > 0) continue;
      loss.lost++;
      if (within) loss.lostConnected++;
      else loss.lostAway++;
    }
  }
  return loss;
}

/** Where the messages a subscriber lost sit: runs of sequence numbers, with when they were sent. */
function missingRuns(sub: Subscriber, publishers: Publisher[], qos: Qos, limit = 6): string[] {
  const runs: string[] = [];
  let count = 0;
  for (const pub of publishers) {
    const stream = pub.streams[qos];
    const counts = sub.received[pub.index * 3 + qos]!;
    let start = -1;
    const close = (last: number) => {
      count++;
      if (runs.length < limit) {
        const at = (seq: number) => ((stream.sent[seq]! - t0) / 1000).toFixed(1);
        runs.push(`p${pub.index} QoS ${qos} #${start}${last > start ? `–#${last}` : ''} (sent at ${at(start)}${last > start ? `–${at(last)}` : ''} s)`);
      }
      start = -1;
    };
    for (let seq = 0; seq < stream.sent.length; seq++) {
      const lostHere = !Number.isNaN(stream.acked[seq]!) && stream.sent[seq]! <= interruptedAt - INTERRUPT_MARGIN_MS && isRequired(sub, stream, seq) && !((counts[seq] ?? 0) > 0);
      if (lostHere && start < 0) start = seq;
      if (!lostHere && start >= 0) close(seq - 1);
    }
    if (start >= 0) close(stream.sent.length - 1);
  }
  if (count > runs.length) runs.push(`and ${count - runs.length} more run(s)`);
  return runs;
}

function isRequired(sub: Subscriber, stream: Sent, seq: number): boolean {
  const sent = stream.sent[seq]!;
  const acked = stream.acked[seq]!;
  const within = sub.intervals.some((i) => i.from <= sent && acked <= i.to);
  if (sub.persistent) return !Number.isNaN(sub.since) && sent >= sub.since && (within || !interrupted);
  return within;
}

function missingNow(subscribers: Subscriber[], publishers: Publisher[]): number {
  let missing = 0;
  for (const sub of subscribers) for (const qos of [1, 2] as Qos[]) missing += lossOf(sub, publishers, qos).lost;
  return missing;
}

// ---------------------------------------------------------------- report

const elapsedS = () => ((now() - t0) / 1000).toFixed(0);
const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '–');
function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const latency = (values: number[]) => `p50 ${fmt(percentile(values, 50))} ms, p99 ${fmt(percentile(values, 99))} ms, max ${fmt(Math.max(...values))} ms`;

function report(
  publishers: Publisher[],
  subscribers: Subscriber[],
  stop: { code: number | null; ms: number; before?: boolean } | undefined,
  brokerLog: string,
  connects: string[],
): { text: string; failures: string[] } {
  const lines: string[] = [];
  const out = (line = '') => lines.push(line);
  const failures: string[] = [];
  const actual = samples.length ? samples[samples.length - 1]!.t : 0;

  const losses = subscribers.map((sub) => ({ sub, byQos: QOS.map((qos) => lossOf(sub, publishers, qos)) }));
  const total = (qos: Qos, key: keyof Loss, persistent?: boolean) =>
    losses.filter((l) => persistent === undefined || l.sub.persistent === persistent).reduce((sum, l) => sum + (l.byQos[qos]![key] as number), 0);
  const unacked = publishers.reduce((sum, pub) => sum + pub.streams.concat(pub.retained).reduce((s, st) => s + st.acked.filter((a) => Number.isNaN(a)).length, 0), 0);

  for (const qos of [1, 2] as Qos[]) {
    const lost = total(qos, 'lost');
    if (lost > 0) failures.push(`${lost} QoS ${qos} message(s) lost`);
  }
  if (total(2, 'duplicates') > 0) failures.push(`${total(2, 'duplicates')} QoS 2 duplicate(s)`);
  if (crash) failures.push(`the broker stopped by itself at ${crash.atS} s (exit code ${crash.code}, signal ${crash.signal})`);
  if (!crash && !interrupted && (!stop || stop.code !== 0 || stop.ms > 10_000)) failures.push(`the broker did not stop cleanly on SIGTERM (${stop ? `exit code ${stop.code} after ${fmt(stop.ms)} ms` : 'no exit'})`);

  out(`# Gatehouse soak`);
  out();
  out(`${new Date().toISOString()} · ${actual} s of ${SECONDS} s planned${interrupted ? ' (**interrupted**)' : ''} · ${os.cpus().length} CPUs, load average at end ${os.loadavg().map((l) => l.toFixed(2)).join(' / ')} · Node ${process.version}`);
  out();
  out(`Load: ${PUBLISHERS} publishers at ${RATE} msg/s in all (QoS 0/1/2 in equal parts) + 1 retained msg/s each; ${CLEAN_SUBSCRIBERS} clean and ${PERSISTENT_SUBSCRIBERS} persistent subscribers; ${CHURN_PER_SECOND} churn connections/s; ${WRONG_PER_SECOND} wrong passwords/s from ${attackerAddress}; a console edit cycle every ${CONSOLE_EVERY_MS / 1000} s.`);
  out();
  out(`**Verdict: ${failures.length === 0 ? 'PASS' : 'FAIL'}**${interrupted ? ' (interrupted run: messages sent in its last 5 s, and those kept for persistent subscribers while away, are not counted; errors after Ctrl-C are not recorded)' : ''}${failures.length ? ` — ${failures.join('; ')}` : ''}`);
  out();
  out(`## Messages`);
  out();
  out(`| QoS | published (acknowledged) | deliveries required | delivered | lost | duplicates |`);
  out(`| --- | ---: | ---: | ---: | ---: | ---: |`);
  for (const qos of QOS) {
    const required = total(qos, 'required');
    const delivered = total(qos, 'delivered');
    const lost = total(qos, 'lost');
    out(
      `| ${qos} | ${counters.published[qos]} | ${required} | ${delivered} | ${qos === 0 ? `${lost} (${fmt((lost / Math.max(1, required)) * 100, 2)} %, allowed)` : lost} | ${total(qos, 'duplicates')}${qos === 1 && total(qos, 'duplicates') ? ' (allowed)' : ''} |`,
    );
  }
  out();
  out(`Retained: ${counters.retainedPublished} published (QoS 1); new subscriptions got every publisher's current one ${counters.churn.retainedOk} times (all of them after SUBSCRIBE: ${latency(counters.churn.retainedLatencies)}), missing ${counters.churn.retainedMissing}, older than the last acknowledged ${counters.churn.retainedStale}; older messages delivered with RETAIN=1 after a resumed session's CONNACK (its queue): ${counters.churn.queuedWithRetain}.`);
  out(`Publishes never acknowledged by the end: ${unacked}. Publisher turns skipped for ${MAX_OUTSTANDING} unacknowledged: ${publishers.reduce((s, p) => s + p.skippedTurns, 0)}.`);
  out();
  out(`### By subscriber (QoS 1 / QoS 2)`);
  out();
  out(`| subscriber | session | transport | reconnects | required | lost while connected | lost while away | duplicates | wrong QoS |`);
  out(`| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |`);
  for (const { sub, byQos } of losses) {
    const pair = (key: keyof Loss) => `${byQos[1]![key]} / ${byQos[2]![key]}`;
    const connectedLost = sub.persistent ? pair('lostConnected') : pair('lost');
    out(
      `| ${sub.name} | ${sub.persistent ? 'persistent' : 'clean'} | ${sub.transport} | ${sub.persistent ? sub.reconnects : sub.intervals.length - 1} | ${pair('required')} | ${connectedLost} | ${sub.persistent ? pair('lostAway') : 'n/a'} | ${pair('duplicates')} | ${sub.wrongQos} |`,
    );
  }
  out();
  out(
    'Clean subscribers must get every message sent after their SUBACK and acknowledged to its publisher before their connection ended. ' +
      'Persistent subscribers (clean session 0) must get every message sent after their first SUBACK, also those published while they were away: ' +
      'MQTT 3.1.1 keeps QoS 1/2 messages for such a session and delivers them on its return, so a message missing there is lost too ("lost while away").',
  );
  for (const { sub, byQos } of losses) {
    if (byQos[1]!.lost + byQos[2]!.lost === 0) continue;
    const periods = sub.intervals.map((i) => `${((i.from - t0) / 1000).toFixed(1)}–${Number.isFinite(i.to) ? ((i.to - t0) / 1000).toFixed(1) : 'end'}${i.unexpected ? ' (dropped)' : ''}`);
    out();
    out(`- ${sub.name} (${sub.persistent ? `subscribed at ${((sub.since - t0) / 1000).toFixed(1)} s; ` : ''}connected ${periods.join(', ')} s) lost: ${[...missingRuns(sub, publishers, 1), ...missingRuns(sub, publishers, 2)].join('; ')}`);
  }
  out();
  const cut = total(1, 'atUnexpectedEnd') + total(2, 'atUnexpectedEnd');
  if (cut) out(`Not counted: ${cut} QoS 1/2 message(s) acknowledged within 2 s before the broker dropped a clean subscriber (see errors).`);
  out();
  out(`## Connections`);
  out();
  out(`- churn: ${counters.churn.attempted} attempted, ${counters.churn.connected} connected (CONNACK ${latency(counters.churn.latencies)}), ${counters.churn.skipped} skipped (50 still running); persistent churn sessions: ${counters.churn.resumedOk} with the right session-present flag, ${counters.churn.notResumed} wrong`);
  out(`- wrong passwords: ${counters.wrong.attempted} attempted (${[...counters.wrong.codes].map(([k, v]) => `${k}: ${v}`).join(', ') || 'none answered'}); answer ${latency(counters.wrong.latencies)}`);
  out(`- console: ${counters.console.cycles} edit cycles, ${counters.console.requests} requests (${[...counters.console.statuses].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}: ${v}`).join(', ')}), ${latency(counters.console.latencies)}; ${counters.console.mqttOk} MQTT connections with the credentials just created or edited`);
  if (connects.length) out(`- broker's own count of CONNECTs (/metrics): ${connects.join(', ')}`);
  out();
  out(`## Errors by kind`);
  out();
  if (errors.size === 0) out('None.');
  else {
    out(`| kind | count | first example |`);
    out(`| --- | ---: | --- |`);
    for (const [kind, entry] of [...errors].sort((a, b) => b[1].count - a[1].count)) out(`| ${kind} | ${entry.count} | ${entry.example.replace(/\|/g, '\\|')} |`);
  }
  out();
  out(`## Broker memory and CPU (every ${SAMPLE_MS / 1000} s)`);
  out();
  out(`| t (s) | RSS (MB) | JS heap used (MB) | CPU (%) | MQTT connections | published/s | delivered/s |`);
  out(`| ---: | ---: | ---: | ---: | ---: | ---: | ---: |`);
  for (const s of samples) out(`| ${s.t} | ${fmt(s.rssMb)} | ${fmt(s.heapMb ?? Number.NaN)} | ${fmt(s.cpuPercent)} | ${s.connections ?? '–'} | ${fmt(s.publishedPerS)} | ${fmt(s.deliveredPerS)} |`);
  if (samples.length > 1) {
    const rss = samples.map((s) => s.rssMb);
    out();
    out(`RSS: first ${fmt(rss[0]!)} MB, max ${fmt(Math.max(...rss))} MB, last ${fmt(rss[rss.length - 1]!)} MB.`);
  }
  out();
  out(`## Broker`);
  out();
  if (crash) out(`- **stopped by itself** at ${crash.atS} s: exit code ${crash.code}, signal ${crash.signal}`);
  else if (stop?.before) out(`- it had already stopped (exit code ${stop.code}): Ctrl-C in a terminal reaches it too`);
  else if (stop) out(`- SIGTERM at the end: exited with code ${stop.code} after ${fmt(stop.ms)} ms`);
  const patterns = new Map<string, { count: number; line: string }>();
  for (const line of brokerLog.split('\n').slice(4)) {
    if (!line.trim() || /^\s+(console|MQTT over)/.test(line)) continue;
    const key = line.replace(/\d+/g, 'N').replace(/"[^"]*"/g, '"…"').slice(0, 120);
    const entry = patterns.get(key);
    if (entry) entry.count++;
    else patterns.set(key, { count: 1, line: line.slice(0, 240) });
  }
  if (patterns.size) {
    out(`- what it logged after starting (similar lines grouped):`);
    out();
    out('```');
    for (const { count, line } of [...patterns.values()].sort((a, b) => b.count - a.count).slice(0, 20)) out(`${String(count).padStart(6)} × ${line}`);
    out('```');
  } else out('- it logged nothing after starting');
  return { text: lines.join('\n'), failures };
}

// ---------------------------------------------------------------- main

function hardStop() {
  if (running && running.child.exitCode === null && running.child.signalCode === null) running.child.kill('SIGKILL');
  for (const socket of openSockets) socket.destroy();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  dataDir = undefined;
}

function installSignals() {
  let signals = 0;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      signals++;
      if (signals === 1) {
        interrupted = true;
        interruptedAt = now();
        console.error(`\n[soak] ${signal}: stopping early, the report follows (again to quit at once)`);
        loadStop.abort();
        return;
      }
      hardStop();
      process.exit(130);
    });
  }
  process.on('exit', hardStop);
}

async function main() {
  installSignals();
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-soak-'));
  metricsToken = randomBytes(24).toString('hex');

  const seeded = await openDatabase({ kind: 'pglite', dataDir });
  for (const user of [users.publisher, users.subscriber, ...users.churn]) await createClient(seeded.db, { name: user.username, ...user });
  await grantGroup(seeded.db, {
    name: 'Soak',
    permissions: [
      ['allow', 'publish', 'soak/#'],
      ['allow', 'subscribe', 'soak/#'],
    ],
    usernames: [users.publisher.username, users.subscriber.username, ...users.churn.map((u) => u.username)],
  });
  const administrator = await createAdministrator(seeded.db, { username: 'soak-admin', password: 'soak-admin-password' });
  cookie = `${SESSION_COOKIE}=${(await createSession(seeded.db, administrator.id)).token}`;
  await seeded.close();

  console.error('[soak] building and starting Gatehouse…');
  running = startProcess({ DATA_DIR: dataDir, METRICS_TOKEN: metricsToken });
  const ports = await waitForPorts(running);
  mqttPort = ports.mqtt;
  httpPort = ports.http;
  void running.exited.then((code) => {
    if (brokerStopping || interrupted) return;
    crash = { code, signal: running?.child.signalCode ?? null, atS: Number(elapsedS()) };
    console.error(`[soak] the broker stopped by itself (exit code ${code}); stopping`);
    loadStop.abort();
  });
  await checkAttackerAddress();

  t0 = now();
  const subscribers = [
    ...Array.from({ length: CLEAN_SUBSCRIBERS }, (_, i) => newSubscriber(`clean-${i}`, false, i === 0 ? 'ws' : 'tcp')),
    ...Array.from({ length: PERSISTENT_SUBSCRIBERS }, (_, i) => newSubscriber(`persistent-${i}`, true, i === 0 ? 'ws' : 'tcp')),
  ];
  await Promise.all(subscribers.map((sub) => connectSubscriber(sub)));
  const publishers = await Promise.all(Array.from({ length: PUBLISHERS }, (_, i) => startPublisher(i)));
  console.error(`[soak] Gatehouse pid ${running.child.pid}, MQTT ${mqttPort}, console ${httpPort}; load for ${SECONDS} s (SOAK_SECONDS)`);

  await sample();
  const sampler = setInterval(() => void sample(), SAMPLE_MS);
  const stopPublishing = runPublishers(publishers);
  const stopChurn = runChurn(publishers);
  const cycles = subscribers.filter((s) => s.persistent).map((sub) => cyclePersistent(sub));
  // The churn clients prove their passwords first; then the guessing starts.
  let stopWrong = () => {};
  const wrongStart = setTimeout(() => (stopWrong = runWrongPasswords()), 3000);
  const consoleLoop = runConsole();

  await sleepUntil(SECONDS * 1000, loadStop.signal);
  loadStop.abort();
  const quick = interrupted || crash !== undefined;
  console.error(`[soak] load over at ${elapsedS()} s; letting everything settle…`);

  // Stop the load, then let every acknowledgement and delivery arrive.
  clearTimeout(wrongStart);
  stopWrong();
  stopChurn();
  stopPublishing();
  const settle = (what: Promise<unknown>, ms: number) => Promise.race([what, sleepUntil(ms)]);
  await settle(Promise.all([consoleLoop, ...cycles, ...churnRunning, ...wrongRunning]), quick ? 3000 : 60_000);
  const ackDeadline = now() + (quick ? 3000 : 30_000);
  while (publishers.some((p) => p.outstanding > 0) && now() < ackDeadline) await sleepUntil(200);
  let missing = missingNow(subscribers, publishers);
  let progressAt = now();
  const drainDeadline = now() + (quick ? 3000 : 60_000);
  while (missing > 0 && now() < drainDeadline && now() - progressAt < 10_000 && !crash) {
    await sleepUntil(1000);
    const next = missingNow(subscribers, publishers);
    if (next < missing) progressAt = now();
    missing = next;
  }
  if (!crash) await sample();
  clearInterval(sampler);
  const metricsText = crash ? undefined : await scrape();
  const connects: string[] = [];
  for (const line of metricsText?.split('\n') ?? []) {
    const match = /^gatehouse_mqtt_connects_total\{result="(\w+)"\} (\d+)/.exec(line);
    if (match && match[2] !== '0') connects.push(`${match[1]} ${match[2]}`);
  }

  // Close every client, then stop the broker as a service manager would.
  brokerStopping = true;
  await Promise.all([...openClients].map((client) => end(client)));
  for (const socket of openSockets) socket.destroy();
  let stop: { code: number | null; ms: number; before?: boolean } | undefined;
  if (!crash && (running.child.exitCode !== null || running.child.signalCode !== null)) stop = { code: running.child.exitCode, ms: 0, before: true };
  else if (!crash) {
    const started = now();
    const exited = await Promise.race([stopProcess(running, 'SIGTERM').then((code) => ({ code })), sleepUntil(15_000).then(() => undefined)]);
    stop = exited ? { code: exited.code, ms: now() - started } : undefined;
    if (!exited) running.child.kill('SIGKILL');
  }
  await running.exited;
  const brokerLog = running.output();
  const { text, failures } = report(publishers, subscribers, stop, brokerLog, connects);
  console.log(text);
  if (failures.length) {
    const logFile = path.join(os.tmpdir(), `gatehouse-soak-${process.pid}.log`);
    writeFileSync(logFile, brokerLog);
    console.error(`[soak] the broker's whole output: ${logFile}`);
  }
  hardStop();
  process.exit(interrupted ? 130 : failures.length ? 1 : 0);
}

main().catch((reason: unknown) => {
  console.error('[soak] failed:', reason);
  if (running) console.error(running.output().slice(-4000));
  hardStop();
  process.exit(2);
});
