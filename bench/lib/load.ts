import mqtt, { type MqttClient } from 'mqtt';
import { BENCH_USER } from './user';
import { usage } from './proc';

let clientCounter = 0;

export function connectClient(url: string, options: mqtt.IClientOptions = {}): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, {
      ...BENCH_USER,
      clientId: `bench-${process.pid}-${++clientCounter}`,
      reconnectPeriod: 0,
      connectTimeout: 30_000,
      ...options,
    });
    client.once('connect', () => {
      client.off('error', reject);
      resolve(client);
    });
    client.once('error', reject);
  });
}

const end = (client: MqttClient) => new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `done()` or `timeoutMs`. */
async function settle(done: () => boolean, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!done() && Date.now() < deadline) await sleep(20);
}

export interface FixedRateResult {
  sent: number;
  delivered: number;
  /** Broker CPU (all its processes) per delivered message, in microseconds. */
  cpuMicrosPerMessage: number;
}

/**
 * Open loop: one publisher sends `rate` messages a second for `seconds` at
 * their scheduled times, whatever the broker answers; one subscriber (a
 * persistent session when `persistentSubscriber`, so QoS 1 goes through the
 * broker's store) counts them. Broker CPU is read from /proc around the run.
 */
export async function fixedRate(options: {
  url: string;
  brokerPids: () => number[];
  rate: number;
  seconds: number;
  qos: 0 | 1;
  payloadBytes: number;
  persistentSubscriber: boolean;
}): Promise<FixedRateResult> {
  const topic = `bench/fixed/${process.pid}-${++clientCounter}`;
  const subscriber = await connectClient(options.url, { clean: !options.persistentSubscriber, clientId: `bench-sub-${clientCounter}` });
  await subscriber.subscribeAsync(topic, { qos: options.qos });
  const publisher = await connectClient(options.url);
  let delivered = 0;
  subscriber.on('message', () => delivered++);
  const payload = Buffer.alloc(options.payloadBytes, 120);
  const total = Math.round(options.rate * options.seconds);

  const before = usage(options.brokerPids());
  const start = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * options.rate));
    for (; sent < due; sent++) publisher.publish(topic, payload, { qos: options.qos });
    await sleep(1);
  }
  await settle(() => delivered >= total, 5_000);
  const after = usage(options.brokerPids());
  await end(publisher);
  // A persistent session is removed by connecting again with clean = 1.
  await subscriber.unsubscribeAsync(topic);
  await end(subscriber);
  return { sent, delivered, cpuMicrosPerMessage: ((after.cpuSeconds - before.cpuSeconds) * 1e6) / Math.max(1, delivered) };
}

export interface ThroughputResult {
  /** Messages received by the subscribers, per second. */
  deliveredPerSecond: number;
  cpuSeconds: number;
  delivered: number;
}

/**
 * Closed loop: each pair's publisher keeps `window` QoS 1 messages unacknowledged,
 * publishing on `pair.publishUrl`; its subscriber listens on `pair.subscribeUrl`.
 * Counts what the subscribers received over `seconds`.
 */
export async function throughput(options: {
  pairs: Array<{ publishUrl: string; subscribeUrl: string }>;
  brokerPids: () => number[];
  seconds: number;
  window: number;
  payloadBytes: number;
  /** Subscribers as persistent sessions (clean = 0): every message goes through the broker's store. */
  persistentSubscribers?: boolean;
}): Promise<ThroughputResult> {
  const clients: MqttClient[] = [];
  let delivered = 0;
  let running = true;
  const payload = Buffer.alloc(options.payloadBytes, 120);
  const loops: Promise<void>[] = [];
  for (const [i, pair] of options.pairs.entries()) {
    const topic = `bench/pairs/${process.pid}/${i}`;
    const subscriber = await connectClient(pair.subscribeUrl, { clean: !options.persistentSubscribers });
    await subscriber.subscribeAsync(topic, { qos: 1 });
    subscriber.on('message', () => running && delivered++);
    const publisher = await connectClient(pair.publishUrl);
    clients.push(subscriber, publisher);
    loops.push(
      new Promise<void>((resolve) => {
        let inFlight = 0;
        const pump = () => {
          while (running && inFlight < options.window) {
            inFlight++;
            publisher.publish(topic, payload, { qos: 1 }, () => {
              inFlight--;
              if (running) setImmediate(pump);
              else if (inFlight === 0) resolve();
            });
          }
        };
        pump();
      }),
    );
  }
  await sleep(1000); // warm-up
  delivered = 0;
  const before = usage(options.brokerPids());
  const start = performance.now();
  await sleep(options.seconds * 1000);
  const count = delivered;
  const elapsed = (performance.now() - start) / 1000;
  const after = usage(options.brokerPids());
  running = false;
  await Promise.race([Promise.all(loops), sleep(5000)]);
  await Promise.all(clients.map(end));
  return { deliveredPerSecond: count / elapsed, cpuSeconds: after.cpuSeconds - before.cpuSeconds, delivered: count };
}
