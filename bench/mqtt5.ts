/**
 * What MQTT 5.0 costs beside MQTT 3.1.1. `mqtt5`: the messaging cases (bench/messaging.ts)
 * on Gatehouse as shipped, each run once with every client speaking 3.1.1 and
 * once with every client speaking 5.0, on the same broker start, the order of
 * the two swapped every round. Broker CPU per delivered message and delivery
 * latency, and 5.0 ÷ 3.1.1 for each (the target: within 1.1×).
 * `mqtt5connect`: the warm reconnect storm of bench/storm.ts (the fleet, every
 * credential verified once by a cold storm first) in each version on the same
 * broker start, in the order 3.1.1, 5.0, 5.0, 3.1.1 (the next round 5.0 first):
 * connects per second and broker CPU per connect.
 */
import { startGatehouse } from './lib/brokers';
import { fmt, median, reportDeath, table } from './lib/contenders';
import type { Fleet } from './lib/fleet';
import { Generator } from './lib/generator';
import { CASES, DELIVERIES_PER_SECOND, runCase, type MessageCase } from './messaging';
import { stormPhase } from './storm';

const VERSIONS = [
  { protocolVersion: 4, name: '3.1.1' },
  { protocolVersion: 5, name: '5.0' },
] as const;

const COLUMNS = [
  { header: 'broker CPU per delivered message (µs)', digits: 1 },
  { header: 'latency p50 (ms)', digits: 2 },
  { header: 'p99 (ms)', digits: 1 },
  { header: 'delivered (%)', digits: 1 },
  { header: 'generator sent late by, p99 (ms)', digits: 1 },
];

export async function mqtt5Scenario(options: { fleet: Fleet; rounds: number; seconds: number; brokerCpu?: string; workers: number }) {
  const { rounds, seconds, brokerCpu, fleet } = options;
  const results = new Map<string, number[][]>();
  const key = (c: MessageCase, version: string) => `${c.id} / ${version}`;
  const generator = await Generator.start(options.workers);
  try {
    for (let round = 1; round <= rounds; round++) {
      const broker = await startGatehouse({}, { template: fleet.gatehouseTemplate, cpus: brokerCpu });
      try {
        // The version measured first swaps every round: neither always gets the fresher broker.
        const order = round % 2 === 1 ? VERSIONS : [...VERSIONS].reverse();
        for (const c of CASES) {
          for (const version of order) {
            try {
              const r = await runCase(broker, generator, { ...c, protocolVersion: version.protocolVersion }, seconds);
              const row = [r.cpuMicrosPerMessage, r.p50, r.p99, r.deliveredShare, r.generatorLagP99];
              results.set(key(c, version.name), [...(results.get(key(c, version.name)) ?? []), row]);
              console.error(
                `  round ${round}: MQTT ${version.name}, ${c.id}: ${fmt(r.cpuMicrosPerMessage)} µs/msg, p99 ${fmt(r.p99)} ms, ${fmt(r.deliveredShare)} % delivered, sent late by ${fmt(r.generatorLagP99)} ms (p99)`,
              );
            } catch (error) {
              console.error(`  round ${round}: MQTT ${version.name}, ${c.id} failed: ${(error as Error).message.split('\n')[0]}`);
            }
          }
        }
        if (!broker.alive()) reportDeath('Gatehouse', broker, `the mqtt5 scenario, round ${round}`);
      } finally {
        await broker.stop();
      }
    }
  } finally {
    await generator.close();
  }
  const cell = (c: MessageCase, version: string, column: number) => median((results.get(key(c, version)) ?? []).map((row) => row[column]!));
  table(
    `MQTT 5.0 beside MQTT 3.1.1: Gatehouse as shipped (ACL on, LevelDB, embedded database), every client of a run speaking one version`,
    ['case', 'protocol', ...COLUMNS.map((column) => column.header)],
    CASES.flatMap((c) => VERSIONS.map((version) => [c.id, version.name, ...COLUMNS.map((column, i) => fmt(cell(c, version.name, i), column.digits))])),
    `${fmt(DELIVERIES_PER_SECOND, 0)} deliveries/s for ${seconds} s, open loop, both versions on the same broker start (order swapped every round); latency from each message's due time to its arrival; median of ${rounds} rounds.`,
  );
  const ratio = (c: MessageCase, column: number) => {
    const value = cell(c, '5.0', column) / cell(c, '3.1.1', column);
    return Number.isFinite(value) ? `${fmt(value, 2)}×` : '—';
  };
  table('MQTT 5.0 ÷ MQTT 3.1.1 (target: within 1.1×)', ['case', 'broker CPU per delivered message', 'latency p50', 'p99'], CASES.map((c) => [c.id, ratio(c, 0), ratio(c, 1), ratio(c, 2)]));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function mqtt5ConnectScenario(options: { fleet: Fleet; rounds: number; brokerCpu?: string; workers: number; timeoutSeconds: number }) {
  const { fleet, rounds, brokerCpu } = options;
  const credentials = fleet.users.map((u) => ({ username: u.username, password: u.password, clientId: u.username }));
  const timeoutMs = options.timeoutSeconds * 1000;
  // Per version: [connects/s, broker CPU per connect (ms)] of each warm storm.
  const results = new Map<string, number[][]>();
  // 5.0 ÷ 3.1.1 of each two storms measured one after the other: [connects/s, CPU per connect].
  const pairRatios: number[][] = [];
  const generator = await Generator.start(Math.max(2, options.workers));
  try {
    for (let round = 1; round <= rounds; round++) {
      const broker = await startGatehouse({}, { template: fleet.gatehouseTemplate, cpus: brokerCpu });
      try {
        const closeAll = async () => {
          await generator.all((i) => (i === 0 ? undefined : { op: 'stormClose' }));
          // Let the broker finish the disconnects before everyone comes back.
          await sleep(2000);
        };
        const cold = await stormPhase(generator, broker.mqttUrl, broker.pids, credentials, timeoutMs);
        console.error(`  round ${round}: cold (3.1.1, every credential verified once): ${cold.connected} connected in ${fmt(cold.seconds)} s`);
        await closeAll();
        // Each version measured first and last once a round; the next round starts with the other.
        const pair = round % 2 === 1 ? VERSIONS : [...VERSIONS].reverse();
        const measured = new Map<string, number[]>();
        for (const version of [...pair, ...[...pair].reverse()]) {
          const warm = await stormPhase(generator, broker.mqttUrl, broker.pids, 'again', timeoutMs, version.protocolVersion);
          const rate = warm.connected / warm.seconds;
          results.set(version.name, [...(results.get(version.name) ?? []), [rate, warm.cpuMillisPerConnect]]);
          measured.set(version.name, [rate, warm.cpuMillisPerConnect]);
          if (measured.size === 2) {
            const [five, old] = [measured.get('5.0')!, measured.get('3.1.1')!];
            pairRatios.push([five[0]! / old[0]!, five[1]! / old[1]!]);
            measured.clear();
          }
          console.error(
            `  round ${round}: MQTT ${version.name}, warm: ${warm.connected} connected in ${fmt(warm.seconds, 2)} s (${fmt(rate, 0)}/s), ${warm.refused} refused, ${warm.failed} failed, broker CPU ${fmt(warm.cpuMillisPerConnect, 3)} ms per connect`,
          );
          await closeAll();
        }
        if (!broker.alive()) reportDeath('Gatehouse', broker, `the mqtt5connect scenario, round ${round}`);
      } finally {
        await generator.all((i) => (i === 0 ? undefined : { op: 'stormClose' })).catch(() => {});
        await broker.stop();
      }
    }
  } finally {
    await generator.close();
  }
  const cell = (version: string, column: number) => median((results.get(version) ?? []).map((row) => row[column]!));
  table(
    `Warm reconnect storm, MQTT 5.0 beside MQTT 3.1.1: ${fmt(credentials.length, 0)} devices, Gatehouse as shipped on one core`,
    ['protocol', 'connects/s', 'broker CPU per connect (ms)', 'storms'],
    VERSIONS.map((version) => [version.name, fmt(cell(version.name, 0), 0), fmt(cell(version.name, 1), 3), String(results.get(version.name)?.length ?? 0)]),
    `Both versions on the same broker start, after one cold storm; per round 3.1.1, 5.0, 5.0, 3.1.1 or the reverse; median of every warm storm of ${rounds} round${rounds === 1 ? '' : 's'}.`,
  );
  // The storm measured second of two tends to cost differently from the first: each pair swaps, and their ratios' geometric mean cancels that.
  const geometricMean = (values: number[]) => Math.exp(values.reduce((sum, v) => sum + Math.log(v), 0) / Math.max(1, values.length));
  const ratio = (column: number) =>
    `${fmt(geometricMean(pairRatios.map((r) => r[column]!)), 2)}× (${pairRatios.map((r) => `${fmt(r[column]!, 2)}×`).join(', ')})`;
  table(
    'MQTT 5.0 ÷ MQTT 3.1.1, warm reconnect storm: geometric mean of the ratios of each two storms measured one after the other (each ratio)',
    ['connects/s', 'broker CPU per connect'],
    [[ratio(0), ratio(1)]],
  );
}
