/**
 * One process of the load generator (forked by generator.ts). It holds mqtt.js
 * clients, publishes on a schedule, records latencies, and runs connect
 * storms; the parent drives it over IPC, one request at a time per worker.
 *
 * Latency is measured from the time a message was due, not the time it was
 * sent: every payload starts with its due time on CLOCK_MONOTONIC
 * (`process.hrtime`), which every process of the machine shares, so a
 * subscriber in another worker reads the same clock. A stall anywhere (broker,
 * network, generator) shows up as latency instead of as fewer messages.
 */
import net from 'node:net';
import * as hdr from 'hdr-histogram-js';
import mqtt, { type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { HISTOGRAM, newHistogram } from './histogram';

export interface ClientSpec {
  key: string;
  clientId: string;
  username: string;
  password: string;
  clean: boolean;
  /** 4 (MQTT 3.1.1, the default) or 5 (MQTT 5.0). */
  protocolVersion?: 4 | 5;
  /** Subscribes to this filter once connected, and records what it receives. */
  subscribe?: { filter: string; qos: 0 | 1 };
}

export interface PublisherSpec {
  /** A client connected before with `connect`. */
  key: string;
  topic: string;
  /** Messages per second. */
  rate: number;
  qos: 0 | 1;
  payloadBytes: number;
  /** Where in its period this publisher's first message falls (0–1): devices are not synchronised. */
  phase: number;
}

export interface StormCredential {
  username: string;
  password: string;
  clientId: string;
}

export interface StormResult {
  connected: number;
  /** CONNACKs with a non-zero return code, by code. */
  refused: Record<string, number>;
  /** Attempts that ended without a CONNACK (reset, timeout). */
  failed: number;
  /** From the first attempt to the last CONNACK accepted. */
  elapsedMs: number;
}

export type Request =
  | { op: 'connect'; url: string; clients: ClientSpec[] }
  | { op: 'publish'; startNs: bigint; seconds: number; publishers: PublisherSpec[] }
  | { op: 'stopPublishing' }
  | { op: 'stats'; reset?: boolean }
  | { op: 'count' }
  | { op: 'closeAll' }
  /** `credentials: 'again'`: the devices the last storm connected. */
  | { op: 'storm'; url: string; credentials: StormCredential[] | 'again'; inFlight: number; timeoutMs: number; protocolVersion?: 4 | 5 }
  | { op: 'stormClose' }
  | { op: 'exit' };


let histogram = newHistogram();
/** How late the publishers of this worker sent their messages: the generator's own stalls. */
let lag = newHistogram();
/** QoS 1/2: from each message's due time to its acknowledgement (PUBACK, PUBCOMP) at the publisher. */
let acks = newHistogram();
let received = 0;
const clients = new Map<string, MqttClient>();
let stopPublishing = false;
let publishing: Promise<number> | undefined;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function onMessage(_topic: string, payload: Buffer) {
  if (payload.length < 8) return;
  const due = payload.readBigUInt64BE(0);
  const micros = Number(process.hrtime.bigint() - due) / 1000;
  histogram.recordValue(Math.min(HISTOGRAM.highestTrackableValue, Math.max(1, Math.round(micros))));
  received++;
}

function connectOne(url: string, spec: ClientSpec): Promise<MqttClient> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    // mqtt.js leaves Nagle's algorithm on: with delayed ACKs a small PUBLISH
    // could wait 40 ms for the one before it, which no device does on purpose.
    const stream = () => net.createConnection({ host: hostname, port: Number(port), noDelay: true });
    const client = new mqtt.MqttClient(stream, {
      protocol: 'mqtt',
      protocolVersion: spec.protocolVersion ?? 4,
      clientId: spec.clientId,
      username: spec.username,
      password: spec.password,
      clean: spec.clean,
      reconnectPeriod: 0,
      connectTimeout: 60_000,
      keepalive: 60,
    });
    client.once('connect', () => {
      client.off('error', reject);
      resolve(client);
    });
    client.once('error', reject);
  });
}

async function connectAll(url: string, specs: ClientSpec[]) {
  let next = 0;
  // A few at a time: setting up a scenario should not be a storm of its own.
  const lane = async () => {
    while (next < specs.length) {
      const spec = specs[next++]!;
      const client = await connectOne(url, spec);
      client.on('error', () => {});
      if (spec.subscribe) {
        const granted = await client.subscribeAsync(spec.subscribe.filter, { qos: spec.subscribe.qos });
        if (granted.some((g) => g.qos >= 128)) throw new Error(`subscription to ${spec.subscribe.filter} refused`);
        client.on('message', onMessage);
      }
      clients.set(spec.key, client);
    }
  };
  await Promise.all(Array.from({ length: Math.min(10, specs.length) }, lane));
}

/**
 * Open loop: each publisher's message k is due at start + (phase + k) / rate
 * and is handed to mqtt.js as soon as it is due, whatever happened to the
 * ones before (no window, no waiting for acknowledgements).
 */
async function publish(startNs: bigint, seconds: number, publishers: PublisherSpec[]): Promise<number> {
  stopPublishing = false;
  const plans = publishers.map((p) => ({
    ...p,
    client: clients.get(p.key)!,
    total: Math.floor(p.rate * seconds),
    sent: 0,
    periodNs: 1e9 / p.rate,
    filler: Buffer.alloc(Math.max(0, p.payloadBytes - 8), 120),
  }));
  const wait = Number(startNs - process.hrtime.bigint()) / 1e6;
  if (wait > 0) await sleep(wait);
  let sent = 0;
  for (;;) {
    const now = process.hrtime.bigint();
    const elapsedNs = Number(now - startNs);
    let remaining = false;
    for (const plan of plans) {
      const due = Math.min(plan.total, Math.floor(elapsedNs / plan.periodNs - plan.phase) + 1);
      for (; plan.sent < due; plan.sent++) {
        const payload = Buffer.allocUnsafe(8 + plan.filler.length);
        const dueNs = startNs + BigInt(Math.round((plan.phase + plan.sent) * plan.periodNs));
        payload.writeBigUInt64BE(dueNs, 0);
        lag.recordValue(Math.min(HISTOGRAM.highestTrackableValue, Math.max(1, Math.round(Number(now - dueNs) / 1000))));
        plan.filler.copy(payload, 8);
        if (plan.qos === 0) plan.client.publish(plan.topic, payload, { qos: 0 });
        else {
          plan.client.publish(plan.topic, payload, { qos: plan.qos }, (error) => {
            if (!error) acks.recordValue(Math.min(HISTOGRAM.highestTrackableValue, Math.max(1, Math.round(Number(process.hrtime.bigint() - dueNs) / 1000))));
          });
        }
        sent++;
      }
      if (plan.sent < plan.total) remaining = true;
    }
    if (!remaining || stopPublishing) return sent;
    await sleep(1);
  }
}

const end = (client: MqttClient) => new Promise<void>((resolve) => client.end(false, {}, () => resolve()));

// Connect storms: plain sockets and a CONNECT made once by mqtt-packet. The
// generator has one core; mqtt.js would spend far more of it per connection
// than a broker does, and the storm would measure the generator.
const stormSockets: net.Socket[] = [];
/** The devices the last storm connected: a warm storm brings back only those, all verified once. */
let lastConnected: StormCredential[] = [];

function attempt(host: string, port: number, packet: Buffer): Promise<{ socket: net.Socket; code: number } | { socket: undefined; code: -1 }> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setNoDelay(true);
    let buffer = Buffer.alloc(0);
    let settled = false;
    const settle = (result: { socket: net.Socket; code: number } | { socket: undefined; code: -1 }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const timer = setTimeout(() => {
      socket.destroy();
      settle({ socket: undefined, code: -1 });
    }, 60_000);
    socket.once('connect', () => socket.write(packet));
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (buffer.length < 4) return;
      if (buffer[0] !== 0x20) {
        socket.off('data', onData);
        socket.destroy();
        return settle({ socket: undefined, code: -1 });
      }
      // After the remaining length (1–4 bytes): the flags, then the return code (5.0: the reason code).
      let at = 1;
      while (buffer[at]! & 0x80 && at < 4) at++;
      if (buffer.length < at + 3) return;
      socket.off('data', onData);
      const code = buffer[at + 2]!;
      if (code !== 0) socket.destroy();
      settle({ socket, code });
    };
    socket.on('data', onData);
    socket.on('error', () => {});
    socket.once('close', () => settle({ socket: undefined, code: -1 }));
  });
}

/**
 * Closed loop of `inFlight` CONNECTs: each accepted connection stays open and
 * the next device starts; a refused or broken attempt is tried again after
 * 1–2 s, as a device's reconnect back-off would.
 */
async function storm(url: string, credentials: StormCredential[], inFlight: number, timeoutMs: number, protocolVersion: 4 | 5 = 4): Promise<StormResult> {
  const { hostname, port } = new URL(url);
  lastConnected = [];
  const pending = credentials.map((c) => ({
    credential: c,
    packet: mqttPacket.generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion,
      clean: true,
      clientId: c.clientId,
      keepalive: 0,
      username: c.username,
      password: Buffer.from(c.password),
    }),
  }));
  const result: StormResult = { connected: 0, refused: {}, failed: 0, elapsedMs: 0 };
  const started = performance.now();
  const deadline = started + timeoutMs;
  let retrying = 0;
  const lane = async () => {
    for (;;) {
      // Past the deadline nothing new starts: the storm is reported as far as it got.
      if (performance.now() > deadline) return;
      const next = pending.shift();
      if (!next) {
        if (retrying === 0 || performance.now() > deadline) return;
        await sleep(50);
        continue;
      }
      const outcome = await attempt(hostname, Number(port), next.packet);
      if (outcome.socket && outcome.code === 0) {
        stormSockets.push(outcome.socket);
        lastConnected.push(next.credential);
        result.connected++;
        result.elapsedMs = performance.now() - started;
        continue;
      }
      if (outcome.code === -1) result.failed++;
      else result.refused[outcome.code] = (result.refused[outcome.code] ?? 0) + 1;
      if (performance.now() > deadline) continue;
      retrying++;
      setTimeout(() => {
        retrying--;
        pending.push(next);
      }, 1000 + Math.random() * 1000);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(inFlight, credentials.length)) }, lane));
  return result;
}

async function stormClose() {
  const disconnect = Buffer.from([0xe0, 0x00]);
  await Promise.all(
    stormSockets.splice(0).map(
      (socket) =>
        new Promise<void>((resolve) => {
          if (socket.destroyed) return resolve();
          const timer = setTimeout(() => {
            socket.destroy();
            resolve();
          }, 10_000);
          socket.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
          socket.end(disconnect);
        }),
    ),
  );
}

async function handle(request: Request): Promise<unknown> {
  switch (request.op) {
    case 'connect':
      await connectAll(request.url, request.clients);
      return { connected: request.clients.length };
    case 'publish':
      publishing = publish(request.startNs, request.seconds, request.publishers);
      return { sent: await publishing };
    case 'stopPublishing':
      stopPublishing = true;
      return { sent: publishing ? await publishing : 0 };
    case 'count':
      return { received };
    case 'stats': {
      const stats = { received, histogram: hdr.encodeIntoCompressedBase64(histogram), lag: hdr.encodeIntoCompressedBase64(lag), acks: hdr.encodeIntoCompressedBase64(acks) };
      if (request.reset) {
        histogram = newHistogram();
        lag = newHistogram();
        acks = newHistogram();
        received = 0;
      }
      return stats;
    }
    case 'closeAll': {
      stopPublishing = true;
      const all = [...clients.values()];
      clients.clear();
      await Promise.race([Promise.all(all.map(end)), sleep(10_000)]);
      for (const client of all) client.end(true);
      histogram = newHistogram();
      lag = newHistogram();
      acks = newHistogram();
      received = 0;
      return {};
    }
    case 'storm':
      return storm(request.url, request.credentials === 'again' ? lastConnected : request.credentials, request.inFlight, request.timeoutMs, request.protocolVersion);
    case 'stormClose':
      await stormClose();
      return {};
    case 'exit':
      setImmediate(() => process.exit(0));
      return {};
  }
}

// Requests are answered in any order (a `publish` runs while `stats` are read).
process.on('message', (message: { id: number; request: Request }) => {
  handle(message.request).then(
    (result) => process.send!({ id: message.id, result }),
    (error: unknown) => process.send!({ id: message.id, error: (error as Error).stack ?? String(error) }),
  );
});
// The parent is gone (killed, Ctrl-C): nothing here may outlive it.
process.on('disconnect', () => process.exit(0));
