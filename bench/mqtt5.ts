/**
 * What MQTT 5.0 costs beside MQTT 3.1.1: the messaging cases (bench/messaging.ts)
 * on Gatehouse as shipped, each run once with every client speaking 3.1.1 and
 * once with every client speaking 5.0, on the same broker start, the order of
 * the two swapped every round. Broker CPU per delivered message and delivery
 * latency, and 5.0 ÷ 3.1.1 for each (the target: within 1.1×).
 */
import { startGatehouse } from './lib/brokers';
import { fmt, median, reportDeath, table } from './lib/contenders';
import type { Fleet } from './lib/fleet';
import { Generator } from './lib/generator';
import { CASES, DELIVERIES_PER_SECOND, runCase, type MessageCase } from './messaging';

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
