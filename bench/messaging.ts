/**
 * Messages at a fixed rate, open loop: fan-in (many publishers, one
 * subscriber), point-to-point pairs, fan-out (one publisher, many
 * subscribers); QoS 0 and 1; 64 B and 1 KB. Every case delivers 5,000
 * messages a second, so broker CPU per delivered message compares shapes at
 * one load. All sessions are clean (the persistence scenario covers
 * persistent ones). One broker start per round serves every case asked for.
 */
import { connectClient } from './lib/load';
import { usage } from './lib/proc';
import type { RunningBroker } from './lib/brokers';
import { BENCH_USER } from './lib/user';
import { comparisonTable, contenders, fmt, GATEHOUSE, BARE_AEDES, MOSQUITTO_NAME, reportDeath, table, median, type Column } from './lib/contenders';
import type { Fleet } from './lib/fleet';
import { Generator } from './lib/generator';
import type { ClientSpec, PublisherSpec } from './lib/worker';

export type Shape = 'fanin' | 'pairs' | 'fanout';

export interface MessageCase {
  id: string;
  shape: Shape;
  qos: 0 | 1;
  payloadBytes: number;
  title: string;
  /**
   * Fan-in: a persistent session subscribed to the same filter is away, so
   * every message is also written to its queue in the broker's store.
   */
  awaySession?: boolean;
  /** Every client of the case speaks this version: 4 (MQTT 3.1.1, the default) or 5 (MQTT 5.0). */
  protocolVersion?: 4 | 5;
}

/** Deliveries per second in every case. */
export const DELIVERIES_PER_SECOND = 5000;
const FANIN_PUBLISHERS = 100;
const PAIRS = 50;
const FANOUT_SUBSCRIBERS = 50;

export const CASES: MessageCase[] = [
  { id: 'fanin-qos1-64', shape: 'fanin', qos: 1, payloadBytes: 64, title: `QoS 1 fan-in, 64 B: ${FANIN_PUBLISHERS} publishers × ${DELIVERIES_PER_SECOND / FANIN_PUBLISHERS} msg/s → 1 subscriber (\`bench/fanin/+\`)` },
  { id: 'fanin-qos0-64', shape: 'fanin', qos: 0, payloadBytes: 64, title: `QoS 0 fan-in, 64 B: ${FANIN_PUBLISHERS} publishers × ${DELIVERIES_PER_SECOND / FANIN_PUBLISHERS} msg/s → 1 subscriber` },
  { id: 'pairs-qos1-1k', shape: 'pairs', qos: 1, payloadBytes: 1024, title: `QoS 1 point-to-point, 1 KB: ${PAIRS} pairs × ${DELIVERIES_PER_SECOND / PAIRS} msg/s` },
  { id: 'fanout-qos0-1k', shape: 'fanout', qos: 0, payloadBytes: 1024, title: `QoS 0 fan-out, 1 KB: 1 publisher × ${DELIVERIES_PER_SECOND / FANOUT_SUBSCRIBERS} msg/s → ${FANOUT_SUBSCRIBERS} subscribers` },
];

interface Plan {
  /** Per worker: clients to connect (subscribers first), and publishers to run. */
  subscribers: ClientSpec[][];
  publishers: ClientSpec[][];
  schedules: PublisherSpec[][];
  expected: number;
  /** The filter the subscribers listen on (fan-in). */
  filter?: string;
}

let planCounter = 0;

/**
 * Who runs where: subscribers and publishers in different workers where the
 * shape allows, so a subscriber's latency is not its own publisher's stall.
 */
function plan(c: MessageCase, workers: number, seconds: number): Plan {
  const run = `${process.pid}-${++planCounter}`;
  const p: Plan = {
    subscribers: Array.from({ length: workers }, () => []),
    publishers: Array.from({ length: workers }, () => []),
    schedules: Array.from({ length: workers }, () => []),
    expected: 0,
  };
  const client = (key: string, subscribe?: ClientSpec['subscribe']): ClientSpec => ({
    key,
    clientId: `${key}-${run}`,
    ...BENCH_USER,
    clean: true,
    protocolVersion: c.protocolVersion,
    subscribe,
  });
  const others = (i: number) => (workers > 1 ? 1 + (i % (workers - 1)) : 0);
  const addPublisher = (worker: number, key: string, topic: string, rate: number, index: number, count: number) => {
    p.publishers[worker]!.push(client(key));
    p.schedules[worker]!.push({ key, topic, rate, qos: c.qos, payloadBytes: c.payloadBytes, phase: index / count });
  };
  if (c.shape === 'fanin') {
    const rate = DELIVERIES_PER_SECOND / FANIN_PUBLISHERS;
    p.filter = `bench/fanin-${run}/+`;
    p.subscribers[0]!.push(client('fanin-sub', { filter: p.filter, qos: c.qos }));
    for (let i = 0; i < FANIN_PUBLISHERS; i++) addPublisher(others(i), `fanin-pub-${i}`, `bench/fanin-${run}/${i}`, rate, i, FANIN_PUBLISHERS);
    p.expected = FANIN_PUBLISHERS * Math.floor(rate * seconds);
  } else if (c.shape === 'pairs') {
    const rate = DELIVERIES_PER_SECOND / PAIRS;
    for (let i = 0; i < PAIRS; i++) {
      const topic = `bench/pairs-${run}/${i}`;
      p.subscribers[i % workers]!.push(client(`pair-sub-${i}`, { filter: topic, qos: c.qos }));
      addPublisher((i + 1) % workers, `pair-pub-${i}`, topic, rate, i, PAIRS);
    }
    p.expected = PAIRS * Math.floor(rate * seconds);
  } else {
    const rate = DELIVERIES_PER_SECOND / FANOUT_SUBSCRIBERS;
    const topic = `bench/fanout-${run}/all`;
    for (let i = 0; i < FANOUT_SUBSCRIBERS; i++) p.subscribers[others(i)]!.push(client(`fanout-sub-${i}`, { filter: topic, qos: c.qos }));
    addPublisher(0, 'fanout-pub', topic, rate, 0, 1);
    p.expected = FANOUT_SUBSCRIBERS * Math.floor(rate * seconds);
  }
  return p;
}

export interface CaseResult {
  cpuMicrosPerMessage: number;
  brokerCores: number;
  p50: number;
  p99: number;
  max: number;
  deliveredShare: number;
  rssMB: number;
  generatorCores: number;
  /** p99 of how late the generator sent messages after their due time (ms). */
  generatorLagP99: number;
  /** QoS 1: from each message's due time to its PUBACK at the publisher (ms); NaN for QoS 0. */
  ackP50: number;
  ackP99: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function runCase(broker: RunningBroker, generator: Generator, c: MessageCase, seconds: number): Promise<CaseResult> {
  const p = plan(c, generator.size, seconds);
  const away = c.awaySession && p.filter ? await leaveSessionAway(broker.mqttUrl, p.filter) : undefined;
  try {
    await generator.all((i) => (p.subscribers[i]!.length ? { op: 'connect', url: broker.mqttUrl, clients: p.subscribers[i]! } : undefined));
    await generator.all((i) => (p.publishers[i]!.length ? { op: 'connect', url: broker.mqttUrl, clients: p.publishers[i]! } : undefined));
    await sleep(300);
    await generator.stats(true);
    let rss = 0;
    const sampler = setInterval(() => (rss = Math.max(rss, usage(broker.pids()).rssBytes)), 250);
    const before = usage(broker.pids());
    const generatorBefore = usage([process.pid, ...generator.pids()]);
    const started = performance.now();
    const startNs = process.hrtime.bigint() + 200_000_000n;
    try {
      await generator.all((i) => (p.schedules[i]!.length ? { op: 'publish', startNs, seconds, publishers: p.schedules[i]! } : undefined));
      // Whatever is still on its way gets 5 s (QoS 0 may lose some: counted, not waited for).
      const drainUntil = performance.now() + 5000;
      for (;;) {
        const counts = await generator.all<{ received: number }>(() => ({ op: 'count' }));
        if (counts.reduce((sum, x) => sum + x.received, 0) >= p.expected || performance.now() > drainUntil || !broker.alive()) break;
        await sleep(50);
      }
    } finally {
      clearInterval(sampler);
    }
    const elapsed = (performance.now() - started) / 1000;
    const after = usage(broker.pids());
    const generatorAfter = usage([process.pid, ...generator.pids()]);
    // A broker that died mid-run measured nothing: no row from it.
    if (!broker.alive()) throw new Error('the broker died during the run');
    const { received, histogram, lag, acks } = await generator.stats(true);
    const cpu = after.cpuSeconds - before.cpuSeconds;
    const result: CaseResult = {
      cpuMicrosPerMessage: (cpu * 1e6) / Math.max(1, received),
      brokerCores: cpu / elapsed,
      p50: histogram.getValueAtPercentile(50) / 1000,
      p99: histogram.getValueAtPercentile(99) / 1000,
      max: histogram.maxValue / 1000,
      deliveredShare: (100 * received) / p.expected,
      rssMB: rss / 2 ** 20,
      generatorCores: (generatorAfter.cpuSeconds - generatorBefore.cpuSeconds) / elapsed,
      generatorLagP99: lag.getValueAtPercentile(99) / 1000,
      ackP50: acks.totalCount ? acks.getValueAtPercentile(50) / 1000 : Number.NaN,
      ackP99: acks.totalCount ? acks.getValueAtPercentile(99) / 1000 : Number.NaN,
    };
    histogram.destroy();
    lag.destroy();
    acks.destroy();
    return result;
  } finally {
    await generator.all(() => ({ op: 'closeAll' }));
    await away?.remove();
  }
}

/** A persistent session subscribed to `filter` (QoS 1) that has gone away: the broker queues every message for it. */
async function leaveSessionAway(url: string, filter: string): Promise<{ remove(): Promise<void> }> {
  const clientId = `bench-away-${process.pid}-${++planCounter}`;
  const session = await connectClient(url, { clientId, clean: false });
  await session.subscribeAsync(filter, { qos: 1 });
  await new Promise<void>((resolve) => session.end(false, {}, () => resolve()));
  return {
    // Connecting with clean = 1 discards the session and its queue.
    async remove() {
      const clean = await connectClient(url, { clientId, clean: true });
      await new Promise<void>((resolve) => clean.end(false, {}, () => resolve()));
    },
  };
}

const COLUMNS: Column[] = [
  { header: 'broker CPU per delivered message (µs)', digits: 1 },
  { header: 'broker CPU (cores busy)', digits: 2 },
  { header: 'latency p50 (ms)', digits: 2 },
  { header: 'p99 (ms)', digits: 1 },
  { header: 'max (ms)', digits: 0 },
  { header: 'delivered (%)', digits: 1, noRatio: true },
  { header: 'broker RSS, peak (MB)', digits: 0 },
  { header: 'generator sent late by, p99 (ms)', digits: 1, noRatio: true },
];

/** Runs `cases` on every broker, `rounds` times interleaved, and prints a table per case and a summary. */
export async function messagingScenario(options: { fleet: Fleet; cases: MessageCase[]; rounds: number; seconds: number; brokerCpu?: string; workers: number }) {
  const { cases, rounds, seconds } = options;
  const brokers = contenders(options.fleet, options.brokerCpu);
  const results = new Map(cases.map((c) => [c.id, new Map<string, number[][]>()]));
  const notes = new Map(cases.map((c) => [c.id, new Map<string, string[]>()]));
  const note = (c: MessageCase, broker: string, text: string) => {
    const byBroker = notes.get(c.id)!;
    byBroker.set(broker, [...(byBroker.get(broker) ?? []), text]);
  };
  const generator = await Generator.start(options.workers);
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const contender of brokers) {
        let broker = await contender.start();
        try {
          for (const c of cases) {
            try {
              const r = await runCase(broker, generator, c, seconds);
              const row = [r.cpuMicrosPerMessage, r.brokerCores, r.p50, r.p99, r.max, r.deliveredShare, r.rssMB, r.generatorLagP99];
              results.get(c.id)!.set(contender.name, [...(results.get(c.id)!.get(contender.name) ?? []), row]);
              console.error(
                `  round ${round}: ${contender.name}, ${c.id}: ${fmt(r.cpuMicrosPerMessage)} µs/msg, p99 ${fmt(r.p99)} ms, ${fmt(r.deliveredShare)} % delivered, generator ${fmt(r.generatorCores, 2)} cores, sent late by ${fmt(r.generatorLagP99)} ms (p99)`,
              );
              if (r.deliveredShare < 99.9) note(c, contender.name, `some runs delivered < 100 %`);
              // Latency that starts in the generator is not the broker's: say so where it happens.
              if (r.generatorLagP99 > 50) note(c, contender.name, 'generator sent late in some runs');
            } catch (error) {
              console.error(`  round ${round}: ${contender.name}, ${c.id} failed: ${(error as Error).message.split('\n')[0]}`);
              note(c, contender.name, 'a run failed');
            }
            if (!broker.alive()) {
              reportDeath(contender.name, broker, `${c.id}, round ${round}`);
              note(c, contender.name, `**broker died in round ${round}**`);
              await broker.stop();
              broker = await contender.start();
            }
          }
        } finally {
          await broker.stop();
        }
      }
    }
  } finally {
    await generator.close();
  }
  const names = brokers.map((b) => b.name);
  for (const c of cases) {
    comparisonTable(
      c.title,
      COLUMNS,
      results.get(c.id)!,
      names,
      notes.get(c.id),
      `${fmt(DELIVERIES_PER_SECOND, 0)} deliveries/s for ${seconds} s, open loop; latency from each message's due time to its arrival; median of ${rounds} rounds.`,
    );
  }
  // The same first column of every case, side by side.
  const cpu = (c: MessageCase, name: string) => median((results.get(c.id)!.get(name) ?? []).map((row) => row[0]!));
  table(
    `Summary: broker CPU per delivered message (µs), ${fmt(DELIVERIES_PER_SECOND, 0)} deliveries/s, median of ${rounds} rounds`,
    ['case', ...names, 'Gatehouse ÷ Mosquitto', 'Gatehouse ÷ bare Aedes'],
    cases.map((c) => [
      c.id,
      ...names.map((name) => fmt(cpu(c, name))),
      names.includes(MOSQUITTO_NAME) ? `${fmt(cpu(c, GATEHOUSE) / cpu(c, MOSQUITTO_NAME), 2)}×` : '—',
      `${fmt(cpu(c, GATEHOUSE) / cpu(c, BARE_AEDES), 2)}×`,
    ]),
  );
}
