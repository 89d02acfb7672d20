/**
 * `npm run bench [-- SCENARIO...]`: brokers side by side in one run, rounds
 * interleaved, broker CPU and memory read from /proc. Scenarios:
 *   persistence  broker CPU per QoS 1 message, memory vs LevelDB persistence
 *   nodes        QoS 1 messages per second across 1 and 2 nodes on Redis
 * Set BENCH_ROUNDS (default 3), BENCH_SECONDS (default 10).
 */
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { Redis } from 'ioredis';
import { seedDatabase, startBareAedes, startGatehouse, type RunningBroker } from './lib/brokers';
import { fixedRate, throughput } from './lib/load';
import { processTree } from './lib/proc';
import { startPostgres, startRedis, type Service } from './lib/services';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const brokerCpu = cpus().length > 1 ? '1' : undefined;

// The load generator on core 0, brokers on core 1: they never compete.
if (brokerCpu) {
  try {
    execFileSync('taskset', ['-pc', '0', String(process.pid)], { stdio: 'ignore' });
  } catch {
    console.warn('taskset is not available: generator and brokers share the cores');
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const fmt = (n: number, digits = 1) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function table(title: string, header: string[], rows: string[][]) {
  console.log(`\n### ${title}\n`);
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => ' --- ').join('|')}|`);
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
}

async function withBroker<T>(start: () => Promise<RunningBroker>, work: (broker: RunningBroker) => Promise<T>): Promise<T> {
  const broker = await start();
  try {
    return await work(broker);
  } finally {
    await broker.stop();
  }
}

async function persistenceScenario(postgres: Service) {
  const rate = 2000;
  const contenders: Array<{ name: string; start: () => Promise<RunningBroker> }> = [
    { name: 'bare Aedes, in memory', start: () => startBareAedes('memory', brokerCpu) },
    { name: 'bare Aedes, LevelDB, a write per operation', start: () => startBareAedes('level-plain', brokerCpu) },
    { name: 'bare Aedes, LevelDB as Gatehouse ships it', start: () => startBareAedes('level', brokerCpu) },
    { name: 'Gatehouse (ACL on, LevelDB)', start: () => startGatehouse({ DATABASE_URL: postgres.url }, brokerCpu) },
  ];
  const columns = ['fixed rate, clean subscriber (µs)', 'fixed rate, persistent subscriber (µs)', 'saturated, persistent subscribers (msg/s)', 'saturated (µs)'];
  const results = new Map<string, number[][]>();
  for (let round = 1; round <= rounds; round++) {
    for (const contender of contenders) {
      await withBroker(contender.start, async (broker) => {
        const row: number[] = [];
        for (const persistentSubscriber of [false, true]) {
          const result = await fixedRate({
            url: broker.mqttUrl,
            brokerPids: () => processTree(broker.pid),
            rate,
            seconds,
            qos: 1,
            payloadBytes: 64,
            persistentSubscriber,
          });
          if (result.delivered < result.sent) console.warn(`  ${contender.name}: ${result.sent - result.delivered} of ${result.sent} not delivered`);
          row.push(result.cpuMicrosPerMessage);
        }
        const saturated = await throughput({
          pairs: Array.from({ length: 4 }, () => ({ publishUrl: broker.mqttUrl, subscribeUrl: broker.mqttUrl })),
          brokerPids: () => processTree(broker.pid),
          seconds,
          window: 20,
          payloadBytes: 64,
          persistentSubscribers: true,
        });
        row.push(saturated.deliveredPerSecond, (saturated.cpuSeconds * 1e6) / Math.max(1, saturated.delivered));
        results.set(contender.name, [...(results.get(contender.name) ?? []), row]);
        console.error(`  round ${round}: ${contender.name}: ${row.map((v) => fmt(v)).join(' / ')}`);
      });
    }
  }
  const medianOf = (name: string, column: number) => median(results.get(name)!.map((row) => row[column]!));
  const base = contenders[0]!.name;
  table(
    `Broker CPU per delivered QoS 1 message (64 B): at ${rate} msg/s for ${seconds} s, and saturated by 4 publishers with 20 in flight each; median of ${rounds} rounds`,
    ['broker', ...columns.flatMap((c) => [c, '÷ in memory'])],
    contenders.map((contender) => [
      contender.name,
      ...columns.flatMap((_, column) => {
        const value = medianOf(contender.name, column);
        return [fmt(value, column === 2 ? 0 : 1), `${fmt(value / medianOf(base, column), 2)}×`];
      }),
    ]),
  );
}

async function nodesScenario(postgres: Service, redis: Service) {
  const pairs = 8;
  const layouts = [
    { name: '1 node, LevelDB (no Redis)', nodes: 1, redis: false },
    { name: '1 node on Redis', nodes: 1, redis: true },
    { name: '2 nodes on Redis', nodes: 2, redis: true },
  ];
  const results = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  for (let round = 1; round <= rounds; round++) {
    for (const layout of layouts) {
      const flush = new Redis(redis.url);
      await flush.flushall();
      flush.disconnect();
      const env = { DATABASE_URL: postgres.url, ...(layout.redis ? { REDIS_URL: redis.url } : {}) };
      const nodes: RunningBroker[] = [];
      try {
        for (let i = 0; i < layout.nodes; i++) nodes.push(await startGatehouse(env));
        // With two nodes every message crosses: published on one, received on the other.
        const result = await throughput({
          pairs: Array.from({ length: pairs }, (_, i) => ({
            publishUrl: nodes[i % nodes.length]!.mqttUrl,
            subscribeUrl: nodes[(i + 1) % nodes.length]!.mqttUrl,
          })),
          brokerPids: () => [...nodes.flatMap((node) => processTree(node.pid)), ...(layout.redis && redis.pid ? [redis.pid] : [])],
          seconds,
          window: 20,
          payloadBytes: 64,
        });
        results.set(layout.name, [...(results.get(layout.name) ?? []), result.deliveredPerSecond]);
        cpu.set(layout.name, [...(cpu.get(layout.name) ?? []), result.cpuSeconds / seconds]);
        console.error(`  round ${round}: ${layout.name}: ${fmt(result.deliveredPerSecond, 0)} msg/s`);
      } finally {
        for (const node of nodes) await node.stop();
      }
    }
  }
  const one = median(results.get(layouts[1]!.name)!);
  table(
    `QoS 1 messages delivered per second, ${pairs} publisher/subscriber pairs (20 in flight each), 64 B, median of ${rounds} rounds of ${seconds} s`,
    ['layout', 'msg/s', '÷ 1 node on Redis', 'broker + Redis CPU (cores busy)'],
    layouts.map((layout) => {
      const value = median(results.get(layout.name)!);
      return [layout.name, fmt(value, 0), `${fmt(value / one, 2)}×`, fmt(median(cpu.get(layout.name)!), 2)];
    }),
  );
}

const scenarios = process.argv.slice(2).length ? process.argv.slice(2) : ['persistence', 'nodes'];
const started = Date.now();
console.log(`# Gatehouse benchmark, ${new Date().toISOString().slice(0, 10)}: ${cpus().length} cores, ${cpus()[0]?.model.trim()}, Node ${process.version}`);
const postgres = await startPostgres();
const redis = await startRedis();
try {
  await seedDatabase({ databaseUrl: postgres.url });
  for (const scenario of scenarios) {
    console.error(`\n== ${scenario}`);
    if (scenario === 'persistence') await persistenceScenario(postgres);
    else if (scenario === 'nodes') await nodesScenario(postgres, redis);
    else throw new Error(`unknown scenario ${scenario} (persistence, nodes)`);
  }
} finally {
  redis.stop();
  postgres.stop();
}
console.log(`\n_Run took ${Math.round((Date.now() - started) / 1000)} s._`);
process.exit(0);
