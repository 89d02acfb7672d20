/**
 * What acknowledging once stored costs: the headline QoS 1 fan-in (100
 * publishers × 50 msg/s → 1 subscriber, 64 B) on bare Aedes as Gatehouse
 * ships it (every patch, PUBACK once the message is stored: patch 008)
 * beside the same Aedes with patch 008 taken out (PUBACK first, then the
 * store: Aedes' own order), on LevelDB (writes coalesced, as Gatehouse
 * stores them) and on Redis (the store and bus of several nodes). Each case
 * once with a clean subscriber only, and once with a persistent session on
 * the same filter that is away, so every message is also written to its
 * queue before (or after) the PUBACK. Broker CPU per delivered message,
 * delivery latency, and the PUBACK's latency at the publisher.
 */
import { Redis } from 'ioredis';
import { aedesWithoutAcknowledgedOnceStored, startBareAedes, type RunningBroker } from './lib/brokers';
import { fmt, median, reportDeath, table } from './lib/contenders';
import type { Fleet } from './lib/fleet';
import { Generator } from './lib/generator';
import { CASES, DELIVERIES_PER_SECOND, runCase, type MessageCase } from './messaging';

const FANIN = CASES.find((c) => c.id === 'fanin-qos1-64')!;
const ACK_CASES: MessageCase[] = [
  { ...FANIN, id: 'fanin-qos1-64-clean', title: 'clean subscriber' },
  { ...FANIN, id: 'fanin-qos1-64-away', title: 'and a persistent session away', awaySession: true },
];

const COLUMNS = ['broker CPU per delivered message (µs)', 'delivery p99 (ms)', 'PUBACK p50 (ms)', 'PUBACK p99 (ms)', 'delivered (%)', 'generator sent late by, p99 (ms)'];

export async function acknowledgedScenario(options: { fleet: Fleet; redisUrl: string; rounds: number; seconds: number; brokerCpu?: string; workers: number }) {
  const { rounds, seconds, brokerCpu, redisUrl } = options;
  const without008 = aedesWithoutAcknowledgedOnceStored();
  const users = options.fleet.aedesUsersFile;
  const flushRedis = async () => {
    const redis = new Redis(redisUrl);
    await redis.flushall();
    redis.disconnect();
  };
  const contenders: Array<{ name: string; store: 'LevelDB' | 'Redis'; order: 'once stored' | 'first'; start(): Promise<RunningBroker> }> = [
    { name: 'LevelDB, PUBACK once stored (patch 008)', store: 'LevelDB', order: 'once stored', start: () => startBareAedes('level', brokerCpu, users) },
    { name: 'LevelDB, PUBACK first (without 008)', store: 'LevelDB', order: 'first', start: () => startBareAedes('level', brokerCpu, users, { aedesDir: without008 }) },
    {
      name: 'Redis, PUBACK once stored (patch 008)',
      store: 'Redis',
      order: 'once stored',
      start: async () => (await flushRedis(), startBareAedes('redis', brokerCpu, users, { redisUrl })),
    },
    {
      name: 'Redis, PUBACK first (without 008)',
      store: 'Redis',
      order: 'first',
      start: async () => (await flushRedis(), startBareAedes('redis', brokerCpu, users, { redisUrl, aedesDir: without008 })),
    },
  ];
  const results = new Map<string, number[][]>();
  const key = (contender: string, c: MessageCase) => `${contender} / ${c.id}`;
  const generator = await Generator.start(options.workers);
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const contender of contenders) {
        const broker = await contender.start();
        try {
          for (const c of ACK_CASES) {
            try {
              const r = await runCase(broker, generator, c, seconds);
              const row = [r.cpuMicrosPerMessage, r.p99, r.ackP50, r.ackP99, r.deliveredShare, r.generatorLagP99];
              results.set(key(contender.name, c), [...(results.get(key(contender.name, c)) ?? []), row]);
              console.error(
                `  round ${round}: ${contender.name}, ${c.title}: ${fmt(r.cpuMicrosPerMessage)} µs/msg, delivery p99 ${fmt(r.p99)} ms, PUBACK p99 ${fmt(r.ackP99)} ms, ${fmt(r.deliveredShare)} % delivered`,
              );
            } catch (error) {
              console.error(`  round ${round}: ${contender.name}, ${c.title} failed: ${(error as Error).message.split('\n')[0]}`);
            }
          }
          if (!broker.alive()) reportDeath(contender.name, broker, `the acknowledged scenario, round ${round}`);
        } finally {
          await broker.stop();
        }
      }
    }
  } finally {
    await generator.close();
  }
  const cell = (contender: string, c: MessageCase, column: number) => median((results.get(key(contender, c)) ?? []).map((row) => row[column]!));
  table(
    `Acknowledged once stored: QoS 1 fan-in, 64 B, ${fmt(DELIVERIES_PER_SECOND, 0)} msg/s, bare Aedes 2.0.0-beta.1 with and without patch 008`,
    ['broker', 'subscribers', ...COLUMNS],
    contenders.flatMap((contender) =>
      ACK_CASES.map((c) => [contender.name, c.title, ...COLUMNS.map((_, column) => fmt(cell(contender.name, c, column), column === 0 || column === 4 ? 1 : 2))]),
    ),
    `${seconds} s runs, open loop, median of ${rounds} rounds; latencies from each message's due time (delivery: to its arrival at the subscriber; PUBACK: to its PUBACK at the publisher).`,
  );
  const ratio = (store: string, c: MessageCase, column: number) => {
    const stored = contenders.find((x) => x.store === store && x.order === 'once stored')!.name;
    const first = contenders.find((x) => x.store === store && x.order === 'first')!.name;
    return `${fmt(cell(stored, c, column) / cell(first, c, column), 2)}×`;
  };
  table(
    'PUBACK once stored ÷ PUBACK first',
    ['store', 'subscribers', 'broker CPU per message', 'delivery p99', 'PUBACK p99'],
    (['LevelDB', 'Redis'] as const).flatMap((store) => ACK_CASES.map((c) => [store, c.title, ratio(store, c, 0), ratio(store, c, 1), ratio(store, c, 3)])),
  );
}
