/**
 * Connect storms, broker on one core. Cold: a fleet of devices, each with
 * its own credentials, none of which the broker has verified, connects at
 * once. Warm: all of them disconnect and connect again (every credential
 * verified once already). Meanwhile an unrelated publisher/subscriber pair
 * (already connected) exchanges QoS 1 messages at a fixed rate, and its p99
 * latency is what the rest of the fleet would feel during the storm.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { usage } from './lib/proc';
import { BENCH_USER } from './lib/user';
import { comparisonTable, contenders, fmt, BARE_AEDES, GATEHOUSE, GATEHOUSE_TYPED, MOSQUITTO_NAME, median, reportDeath, type Column } from './lib/contenders';
import type { Fleet } from './lib/fleet';
import { Generator } from './lib/generator';
import type { StormCredential, StormResult } from './lib/worker';

/** CONNECTs in flight across the generator: a fleet reconnecting as fast as the broker lets it. */
const IN_FLIGHT = 200;
const PROBE_RATE = 100;

export interface Phase {
  seconds: number;
  connected: number;
  refused: number;
  failed: number;
  cpuMillisPerConnect: number;
  p99: number;
  max: number;
  generatorCores: number;
  /** When it ran, on CLOCK_MONOTONIC in µs (the clock of a `.cpuprofile`): `bench/cpu-profile.ts --window`. */
  window: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One storm: `credentials` (or the devices the last storm let in) connect, over MQTT `protocolVersion` (3.1.1 by default). */
export async function stormPhase(
  generator: Generator,
  url: string,
  pids: () => number[],
  credentials: StormCredential[] | 'again',
  timeoutMs: number,
  protocolVersion: 4 | 5 = 4,
): Promise<Phase> {
  const stormWorkers = generator.size - 1;
  const share = credentials === 'again' ? 0 : Math.ceil(credentials.length / stormWorkers);
  await generator.stats(true); // the probe's latencies from here on
  const before = usage(pids());
  const generatorBefore = usage(generator.pids());
  const started = performance.now();
  const startedUs = process.hrtime.bigint() / 1000n;
  const parts = await generator.all<StormResult>((i) =>
    i === 0
      ? undefined
      : {
          op: 'storm',
          url,
          credentials: credentials === 'again' ? 'again' : credentials.slice((i - 1) * share, i * share),
          inFlight: Math.ceil(IN_FLIGHT / stormWorkers),
          timeoutMs,
          protocolVersion,
        },
  );
  const elapsed = (performance.now() - started) / 1000;
  const window = `${startedUs}:${process.hrtime.bigint() / 1000n}`;
  const after = usage(pids());
  const generatorAfter = usage(generator.pids());
  const { histogram } = await generator.stats(true);
  const connected = parts.reduce((sum, p) => sum + p.connected, 0);
  const phase: Phase = {
    // The storm is over when its last device is in: the slowest worker's last CONNACK.
    seconds: Math.max(...parts.map((p) => p.elapsedMs)) / 1000,
    connected,
    refused: parts.reduce((sum, p) => sum + Object.values(p.refused).reduce((a, b) => a + b, 0), 0),
    failed: parts.reduce((sum, p) => sum + p.failed, 0),
    cpuMillisPerConnect: ((after.cpuSeconds - before.cpuSeconds) * 1000) / Math.max(1, connected),
    p99: histogram.getValueAtPercentile(99) / 1000,
    max: histogram.maxValue / 1000,
    generatorCores: (generatorAfter.cpuSeconds - generatorBefore.cpuSeconds) / elapsed,
    window,
  };
  histogram.destroy();
  const codes = parts.flatMap((p) => Object.entries(p.refused)).reduce<Record<string, number>>((all, [code, n]) => ({ ...all, [code]: (all[code] ?? 0) + n }), {});
  if (Object.keys(codes).length) console.error(`    refused attempts by CONNACK code: ${JSON.stringify(codes)}`);
  return phase;
}

/**
 * One Argon2id verify at Gatehouse's parameters on the broker's core
 * (bench/argon2-floor.ts, in a process of its own pinned there), in
 * milliseconds: its median wall time, and the CPU time it took. A
 * typed-password storm cannot beat one verify per device on that core; on a
 * shared machine the wall time includes waiting for the core, the CPU time
 * does not, so a storm's CPU per connect is compared with the latter.
 */
function argon2Verify(brokerCpu: string | undefined): { wallMs: number; cpuMs: number } {
  const script = fileURLToPath(new URL('./argon2-floor.ts', import.meta.url));
  const argv = [process.execPath, '--import', 'tsx', script];
  const out = execFileSync(brokerCpu ? 'taskset' : argv[0]!, brokerCpu ? ['-c', brokerCpu, ...argv] : argv.slice(1), {
    encoding: 'utf8',
    env: { ...process.env, UV_THREADPOOL_SIZE: '1' },
  });
  const match = /verify ms ([\d.]+) cpu ms ([\d.]+)/.exec(out);
  if (!match) throw new Error(`bench/argon2-floor.ts printed ${JSON.stringify(out)}`);
  return { wallMs: Number(match[1]), cpuMs: Number(match[2]) };
}

export async function stormScenario(options: { fleet: Fleet; rounds: number; brokerCpu?: string; workers: number; timeoutSeconds: number }) {
  const { fleet, rounds } = options;
  const credentials: StormCredential[] = fleet.users.map((u) => ({ username: u.username, password: u.password, clientId: u.username }));
  const brokers = contenders(fleet, options.brokerCpu, { typed: true });
  // The typed-password storm is measured against one core's Argon2id floor, measured in the same run, before the storms and after them.
  const verifies: Array<{ wallMs: number; cpuMs: number }> = [];
  if (fleet.typedTemplate) verifies.push(argon2Verify(options.brokerCpu));
  const floorSeconds = () => (median(verifies.map((v) => v.wallMs)) * credentials.length) / 1000;
  const verifyCpuMs = () => median(verifies.map((v) => v.cpuMs));
  // It runs until every device is in, up to 3× that floor, whatever the time limit of the others.
  const timeoutFor = (name: string) => (name === GATEHOUSE_TYPED ? Math.max(options.timeoutSeconds, Math.ceil(3 * floorSeconds())) : options.timeoutSeconds);
  const cold = new Map<string, number[][]>();
  const warm = new Map<string, number[][]>();
  const notes = new Map<string, string[]>();
  const note = (name: string, text: string) => notes.set(name, [...(notes.get(name) ?? []), text]);
  const warmNotes = new Map<string, string[]>();
  const warmNote = (name: string, text: string) => warmNotes.set(name, [...(warmNotes.get(name) ?? []), text]);
  const generator = await Generator.start(Math.max(2, options.workers));
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const contender of brokers) {
        const broker = await contender.start();
        try {
          // The unrelated pair, in a worker of its own (worker 0), connected before the storm.
          const probeTopic = `bench/probe-${process.pid}-${round}/x`;
          await generator.workers[0]!.request({
            op: 'connect',
            url: broker.mqttUrl,
            clients: [{ key: 'probe-sub', clientId: `probe-sub-${round}`, ...BENCH_USER, clean: true, subscribe: { filter: probeTopic, qos: 1 } }],
          });
          await generator.workers[0]!.request({ op: 'connect', url: broker.mqttUrl, clients: [{ key: 'probe-pub', clientId: `probe-pub-${round}`, ...BENCH_USER, clean: true }] });
          const probing = generator.workers[0]!.request({
            op: 'publish',
            startNs: process.hrtime.bigint() + 100_000_000n,
            seconds: 3600,
            publishers: [{ key: 'probe-pub', topic: probeTopic, rate: PROBE_RATE, qos: 1, payloadBytes: 64 }].map((p) => ({ ...p, qos: 1 as const, phase: 0 })),
          });
          await sleep(1000);
          const rows: Array<{ map: Map<string, number[][]>; phase: Phase }> = [];
          const timeoutMs = timeoutFor(contender.name) * 1000;
          const first = await stormPhase(generator, broker.mqttUrl, broker.pids, credentials, timeoutMs);
          rows.push({ map: cold, phase: first });
          console.error(
            `  round ${round}: ${contender.name}, cold: ${first.connected} connected in ${fmt(first.seconds)} s, ${first.refused} refused, ${first.failed} failed, pair p99 ${fmt(first.p99)} ms, generator ${fmt(first.generatorCores, 2)} cores, window ${first.window}, pid ${broker.pid}`,
          );
          if (first.connected < credentials.length) {
            note(contender.name, `stopped after ${timeoutFor(contender.name)} s`);
            warmNote(contender.name, `only the ${fmt(first.connected, 0)} the cold storm let in`);
          }
          if (broker.alive()) {
            await generator.all((i) => (i === 0 ? undefined : { op: 'stormClose' }));
            // Let the broker finish the disconnects before everyone comes back.
            await sleep(2000);
            // Only the devices the cold storm let in: every one of them verified once.
            const second = await stormPhase(generator, broker.mqttUrl, broker.pids, 'again', timeoutMs);
            rows.push({ map: warm, phase: second });
            console.error(
              `  round ${round}: ${contender.name}, warm: ${second.connected} connected in ${fmt(second.seconds, 2)} s, pair p99 ${fmt(second.p99)} ms, generator ${fmt(second.generatorCores, 2)} cores, window ${second.window}`,
            );
            if (second.connected < first.connected) warmNote(contender.name, `${fmt(second.connected, 0)} of ${fmt(first.connected, 0)} in ${timeoutFor(contender.name)} s`);
          }
          // A broker that died mid-storm measured nothing: no row from it.
          for (const { map, phase } of broker.alive() ? rows : []) {
            map.set(contender.name, [
              ...(map.get(contender.name) ?? []),
              [
                phase.connected,
                phase.seconds,
                phase.connected / phase.seconds,
                // Cut off by the time limit: how long all of them would take at the rate reached.
                ...(map === cold ? [(credentials.length * phase.seconds) / Math.max(1, phase.connected)] : []),
                phase.refused,
                phase.cpuMillisPerConnect,
                phase.p99,
                phase.max,
                phase.generatorCores,
              ],
            ]);
          }
          await generator.workers[0]!.request({ op: 'stopPublishing' });
          await probing.catch(() => {});
          if (!broker.alive()) {
            reportDeath(contender.name, broker, `the connect storm, round ${round}`);
            note(contender.name, `**broker died in round ${round}**`);
          }
        } catch (error) {
          console.error(`  round ${round}: ${contender.name}: storm failed: ${(error as Error).message.split('\n')[0]}`);
          note(contender.name, 'a run failed');
          if (!broker.alive()) reportDeath(contender.name, broker, `the connect storm, round ${round}`);
        } finally {
          await generator.all((i) => ({ op: i === 0 ? 'closeAll' : 'stormClose' })).catch(() => {});
          await broker.stop();
        }
      }
    }
  } finally {
    await generator.close();
  }
  if (fleet.typedTemplate) verifies.push(argon2Verify(options.brokerCpu));
  const names = brokers.map((b) => b.name);
  const columns = (cold: boolean): Column[] => [
    { header: 'devices connected', digits: 0, noRatio: true },
    { header: 'until the last CONNACK (s)', digits: 2 },
    { header: 'connects/s', digits: 0 },
    ...(cold ? [{ header: `all ${fmt(credentials.length, 0)} in (s; projected at that rate when stopped)`, digits: 1 }] : []),
    { header: 'refused attempts (retried)', digits: 0, noRatio: true },
    { header: 'broker CPU per connect (ms)', digits: 3 },
    { header: 'pair p99 during the storm (ms)', digits: 1 },
    { header: 'pair max (ms)', digits: 0 },
    { header: 'generator CPU (cores busy)', digits: 2, noRatio: true },
  ];
  const how =
    `${IN_FLIGHT} CONNECTs in flight, each accepted connection kept open; a refused one retried after 1–2 s; ` +
    `a storm is stopped after ${options.timeoutSeconds} s (typed passwords: ${timeoutFor(GATEHOUSE_TYPED)} s); the pair sends ${PROBE_RATE} QoS 1 msg/s (64 B); median of ${rounds} round${rounds === 1 ? '' : 's'}.`;
  comparisonTable(
    `Cold connect storm: ${fmt(credentials.length, 0)} devices, each with its own credentials, none verified yet; broker on one core`,
    columns(true),
    cold,
    names,
    notes,
    how,
  );
  comparisonTable(
    'Warm reconnect storm: the devices the cold storm let in disconnect and all connect again',
    columns(false),
    warm,
    names,
    warmNotes,
    how,
  );
  const coldSeconds = (name: string) => median((cold.get(name) ?? []).map((row) => row[3]!));
  const warmRate = (name: string) => median((warm.get(name) ?? []).map((row) => row[2]!));
  const coldCpu = (name: string) => median((cold.get(name) ?? []).map((row) => row[5]!));
  const warmCpu = (name: string) => median((warm.get(name) ?? []).map((row) => row[4]!));
  console.log('\nAgainst the targets (issue: cold generated ≤ 2× Mosquitto, cold typed ≤ 1.25× the floor, warm ≥ 1.0× Mosquitto):\n');
  console.log(`- cold, generated secrets: ${fmt(coldSeconds(GATEHOUSE), 1)} s against Mosquitto's ${fmt(coldSeconds(MOSQUITTO_NAME), 1)} s: ${fmt(coldSeconds(GATEHOUSE) / coldSeconds(MOSQUITTO_NAME), 2)}×`);
  if (fleet.typedTemplate) {
    console.log(
      `- cold, typed passwords: ${fmt(coldSeconds(GATEHOUSE_TYPED), 1)} s against one core's Argon2id floor of ${fmt(floorSeconds(), 1)} s ` +
        `(${fmt(credentials.length, 0)} verifies at ${verifies.map((v) => fmt(v.wallMs, 1)).join(' and ')} ms, before and after the storms): ${fmt(coldSeconds(GATEHOUSE_TYPED) / floorSeconds(), 2)}×; ` +
        `by CPU, ${fmt(coldCpu(GATEHOUSE_TYPED), 2)} ms of the broker per connect against ${fmt(verifyCpuMs(), 2)} ms per verify (${verifies.map((v) => fmt(v.cpuMs, 2)).join(' and ')}): ${fmt(coldCpu(GATEHOUSE_TYPED) / verifyCpuMs(), 2)}×`,
    );
  }
  console.log(
    `- warm: ${fmt(warmRate(GATEHOUSE), 0)} connects/s against Mosquitto's ${fmt(warmRate(MOSQUITTO_NAME), 0)}: ${fmt(warmRate(GATEHOUSE) / warmRate(MOSQUITTO_NAME), 2)}×; ` +
      `broker CPU per connect ${fmt(warmCpu(GATEHOUSE), 3)} ms, bare Aedes ${fmt(warmCpu(BARE_AEDES), 3)} ms (${fmt(warmCpu(GATEHOUSE) / warmCpu(BARE_AEDES), 2)}×)`,
  );
}
