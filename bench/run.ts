/**
 * `npm run bench [-- SCENARIO...]`: brokers side by side in one run, rounds
 * interleaved, broker CPU and memory read from /proc. Scenarios:
 *   fanin        QoS 0/1 fan-in at 5,000 msg/s (the headline: broker CPU per QoS 1 message)
 *   pairs        QoS 1 point-to-point pairs, 1 KB
 *   fanout       QoS 0 fan-out to 50 subscribers, 1 KB
 *   storm        cold and warm connect storms of 5,000 devices, with a pair's p99 meanwhile
 *   acknowledged what PUBACK once stored (patch 008) costs beside PUBACK first: QoS 1 fan-in, LevelDB and Redis (bench/acknowledged.ts)
 *   mqtt5        the messaging cases with MQTT 5.0 clients beside MQTT 3.1.1 clients, on Gatehouse (bench/mqtt5.ts)
 *   mqtt5connect the warm reconnect storm with MQTT 5.0 beside MQTT 3.1.1, on one Gatehouse start (bench/mqtt5.ts)
 *   persistence  broker CPU per QoS 1 message, memory vs LevelDB persistence
 *   nodes        QoS 1 messages per second across 1 and 2 nodes on Redis
 *   footprint    idle memory, memory per connection, start-up time (bench/footprint.ts)
 *   console      the console with 100,000 clients (bench/console.ts)
 *   model        the access model with 1,000,000 clients: start, memory, CONNECT (bench/model.ts)
 *   changes      a change committed, until another node's access model holds it (bench/model.ts)
 *   import       importing 100,000 clients from the console, dry run and real (bench/import.ts)
 *   pipelines    QoS 1 with and without a pipeline, forwarded msg/s with and without batching, a 5xx storm (bench/pipelines.ts)
 * Set BENCH_ROUNDS (default 3), BENCH_SECONDS (default 2) to lengthen it; the
 * others are in bench/README.md.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, setPriority } from 'node:os';
import { Redis } from 'ioredis';
import { seedDatabase, startBareAedes, startGatehouse, type RunningBroker } from './lib/brokers';
import { cleanupNow, installCleanup } from './lib/cleanup';
import { deaths, reportDeath } from './lib/contenders';
import { prepareFleet } from './lib/fleet';
import { fixedRate, throughput } from './lib/load';
import { processTree } from './lib/proc';
import { startPostgres, startRedis, type Service } from './lib/services';
import { CASES, messagingScenario } from './messaging';
import { stormScenario } from './storm';

installCleanup();

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const seconds = Number(process.env.BENCH_SECONDS ?? 2);
const workers = Number(process.env.BENCH_WORKERS ?? 4);
const stormClients = Number(process.env.BENCH_STORM_CLIENTS ?? 5000);
// One round: Gatehouse's cold storm alone runs up to the time limit, and the whole run must fit 15 minutes.
const stormRounds = Number(process.env.BENCH_STORM_ROUNDS ?? 1);
// The target is every device in within 60 s: a storm still running then has missed it.
const stormTimeout = Number(process.env.BENCH_STORM_TIMEOUT ?? 60);
// footprint.ts lets each start idle 8 s before reading its memory; 3 s keeps the whole run within 15 minutes.
process.env.FOOTPRINT_IDLE_SECONDS ??= '3';

// On a machine shared with other work, BENCH_NICE=-10 (as root) gives the
// broker and the generator precedence; children inherit it. Off by default:
// it slows everyone else's jobs down.
if (process.env.BENCH_NICE) setPriority(process.pid, Number(process.env.BENCH_NICE));
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

async function withBroker<T>(name: string, start: () => Promise<RunningBroker>, work: (broker: RunningBroker) => Promise<T>): Promise<T> {
  const broker = await start();
  try {
    return await work(broker);
  } finally {
    if (!broker.alive()) reportDeath(name, broker, 'the persistence scenario');
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
      await withBroker(contender.name, contender.start, async (broker) => {
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
        for (const [i, node] of nodes.entries()) {
          if (!node.alive()) reportDeath(`${layout.name}, node ${i + 1}`, node, 'the nodes scenario');
          await node.stop();
        }
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

const ALL = ['fanin', 'pairs', 'fanout', 'storm', 'acknowledged', 'mqtt5', 'mqtt5connect', 'persistence', 'nodes', 'footprint', 'console', 'import', 'pipelines', 'model', 'changes'];
const MESSAGING = ['fanin', 'pairs', 'fanout'];
const asked = process.argv.slice(2).length ? process.argv.slice(2) : ALL;
const unknown = asked.filter((name) => !ALL.includes(name));
if (unknown.length) {
  console.error(`unknown scenario ${unknown.join(', ')} (${ALL.join(', ')})`);
  process.exit(2);
}
// In the order of ALL, whatever order they were asked in; the messaging shapes share broker starts.
const scenarios = ALL.filter((name) => asked.includes(name));

const started = Date.now();
const cpu = cpus()[0]?.model.trim();
console.log(`# Gatehouse benchmark, ${new Date().toISOString().slice(0, 10)}: ${cpus().length} cores, ${cpu}, Node ${process.version}`);
console.log(`\n_Scenarios: ${scenarios.join(', ')}; BENCH_ROUNDS=${rounds}, BENCH_SECONDS=${seconds}._`);
let postgres: Service | undefined;
let redis: Service | undefined;
let failed = false;
let phaseStarted = Date.now();
/** Marks the start of a scenario on stderr, with how long the one before took. */
const phase = (name: string) => {
  const now = Date.now();
  console.error(`\n== ${name}   (${Math.round((now - started) / 1000)} s into the run, the previous step took ${Math.round((now - phaseStarted) / 1000)} s)`);
  phaseStarted = now;
};
try {
  if (scenarios.some((s) => MESSAGING.includes(s) || s === 'storm' || s === 'acknowledged' || s === 'mqtt5' || s === 'mqtt5connect')) {
    phase('preparing the fleet (users for every broker)');
    // The typed-password storm's Argon2id hashes take a minute or two to make: BENCH_STORM_TYPED=0 leaves it out.
    const storms = scenarios.includes('storm') || scenarios.includes('mqtt5connect');
    const fleet = await prepareFleet(storms ? stormClients : 0, { typed: scenarios.includes('storm') && process.env.BENCH_STORM_TYPED !== '0' });
    const cases = CASES.filter((c) => scenarios.includes(c.shape));
    if (cases.length) {
      phase([...new Set(cases.map((c) => c.shape))].join(', '));
      await messagingScenario({ fleet, cases, rounds, seconds, brokerCpu, workers });
    }
    if (scenarios.includes('storm')) {
      phase('storm');
      await stormScenario({ fleet, rounds: stormRounds, brokerCpu, workers, timeoutSeconds: stormTimeout });
    }
    if (scenarios.includes('acknowledged')) {
      phase('acknowledged');
      redis ??= await startRedis();
      const { acknowledgedScenario } = await import('./acknowledged');
      await acknowledgedScenario({ fleet, redisUrl: redis.url, rounds, seconds, brokerCpu, workers });
    }
    if (scenarios.includes('mqtt5')) {
      phase('mqtt5');
      const { mqtt5Scenario } = await import('./mqtt5');
      await mqtt5Scenario({ fleet, rounds, seconds, brokerCpu, workers });
    }
    if (scenarios.includes('mqtt5connect')) {
      phase('mqtt5connect');
      const { mqtt5ConnectScenario } = await import('./mqtt5');
      await mqtt5ConnectScenario({ fleet, rounds, brokerCpu, workers, timeoutSeconds: stormTimeout });
    }
  }
  if (scenarios.includes('persistence') || scenarios.includes('nodes')) {
    postgres = await startPostgres();
    redis ??= await startRedis();
    await seedDatabase({ databaseUrl: postgres.url });
    if (scenarios.includes('persistence')) {
      phase('persistence');
      await persistenceScenario(postgres);
    }
    if (scenarios.includes('nodes')) {
      phase('nodes');
      await nodesScenario(postgres, redis);
    }
  }
  if (scenarios.includes('footprint')) {
    phase('footprint');
    const { footprintScenario } = await import('./footprint');
    await footprintScenario();
  }
  if (scenarios.includes('pipelines')) {
    phase('pipelines');
    postgres ??= await startPostgres();
    await seedDatabase({ databaseUrl: postgres.url }).catch(() => {});
    const { pipelinesScenario } = await import('./pipelines');
    await pipelinesScenario({ rounds, seconds, brokerCpu, databaseUrl: postgres.url });
  }
  if (scenarios.includes('console')) {
    phase('console');
    postgres ??= await startPostgres();
    const { consoleScenario } = await import('./console');
    await consoleScenario({ databaseUrl: postgres.url, seconds, before: process.env.BENCH_BEFORE });
  }
  if (scenarios.includes('model') || scenarios.includes('changes')) {
    postgres ??= await startPostgres();
    const { changesScenario, modelScenario } = await import('./model');
    if (scenarios.includes('model')) {
      phase('model');
      await modelScenario({ databaseUrl: postgres.url, clients: Number(process.env.BENCH_MODEL_CLIENTS ?? 1_000_000), brokerCpu });
    }
    if (scenarios.includes('changes')) {
      phase('changes');
      await changesScenario({ databaseUrl: postgres.url, changes: Number(process.env.BENCH_CHANGES ?? 200), brokerCpu });
    }
  }
  if (scenarios.includes('import')) {
    phase('import');
    const { importScenario } = await import('./import');
    await importScenario();
  }
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  redis?.stop();
  postgres?.stop();
}
// Nothing the run started may outlive it: a process still under this one is reported, then killed.
// (tsx's own esbuild service is this process's helper, and exited workers not yet reaped are no longer running.)
const left = processTree(process.pid).filter((pid) => {
  if (pid === process.pid) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z' && !cmdline.includes('esbuild\u0000--service');
  } catch {
    return false;
  }
});
if (left.length) {
  let names = '';
  try {
    names = execFileSync('ps', ['-o', 'pid=,args=', '-p', left.join(',')]).toString();
  } catch {}
  console.error(`\nprocesses left behind, killed now:\n${names}`);
  for (const pid of left) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
}
cleanupNow();
phase('end');
// No scenario may end with a dead broker: the run says whether one did.
console.log(deaths.length ? `\n**Brokers that died:** ${deaths.join('; ')}.` : '\n_No broker died during the run._');
console.log(`\n_Run took ${Math.round((Date.now() - started) / 1000)} s._`);
process.exit(failed || deaths.length ? 1 : 0);
