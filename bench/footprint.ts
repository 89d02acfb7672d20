/**
 * Memory and start-up, each contender beside the others in one run:
 *   - what the start commands leave running (the whole process tree) once idle,
 *     and how long until the console first answers: embedded database on a new
 *     DATA_DIR, embedded on existing data, PostgreSQL;
 *   - resident memory per idle MQTT connection at 1,000 / 5,000 / 10,000 for
 *     Gatehouse, bare Aedes (no hooks, LevelDB as Gatehouse ships it) and
 *     Mosquitto, all authenticating.
 * `node --import tsx bench/footprint.ts [startup|connections]` runs it (or one
 * table) alone. BENCH_ROUNDS (default 3) sets the rounds of the start-up table,
 * FOOTPRINT_IDLE_SECONDS (default 5) how long a process idles before its
 * memory is read.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { MqttClient } from 'mqtt';
import { BENCH_USER, seedDatabase } from './lib/brokers';
import { connectClient } from './lib/load';
import { processTree, usage } from './lib/proc';
import { freePort, startPostgres, type Service } from './lib/services';

const root = fileURLToPath(new URL('..', import.meta.url));
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const idleMs = Number(process.env.FOOTPRINT_IDLE_SECONDS ?? 5) * 1000;
const connectionSteps = [1000, 5000, 10_000];
const MB = 1024 * 1024;

/** The README's command, and `npm start` (which leaves npm as the parent). */
const startCommands = [
  { name: '`node dist/bin/main.js` (README, systemd)', argv: ['node', 'dist/bin/main.js'] },
  { name: '`npm start`', argv: ['npm', 'start'] },
];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const fmt = (n: number, digits = 1) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function table(title: string, header: string[], rows: string[][]) {
  console.log(`\n### ${title}\n`);
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => ' --- ').join('|')}|`);
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
}

/** The hard limit on open files, which a child's shell may raise its soft limit to. */
function fileLimit(): number {
  const hard = execFileSync('/bin/sh', ['-c', 'ulimit -Hn']).toString().trim();
  return hard === 'unlimited' ? 1_048_576 : Number(hard);
}

interface Spawned {
  child: ChildProcess;
  output: () => string;
  /** Every process of the tree, the root included. */
  pids: () => number[];
  stop(): Promise<void>;
}

/**
 * Starts `argv` in a process group of its own, through a shell that raises
 * the open-files limit first, pinned to `cpu` when given. The shell execs the
 * command: it is not part of the tree.
 */
function spawnGroup(argv: string[], env: Record<string, string>, cpu?: string): Spawned {
  const pinned = cpu ? ['taskset', '-c', cpu, ...argv] : argv;
  const child = spawn('/bin/sh', ['-c', `ulimit -n ${Math.min(fileLimit(), 65_536)} 2>/dev/null; exec "$@"`, 'sh', ...pinned], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    output: () => output,
    pids: () => (child.exitCode === null ? processTree(child.pid!) : []),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        // npm forwards nothing to a grandchild it left behind: signal the whole group.
        const signal = (name: NodeJS.Signals) => {
          try {
            process.kill(-child.pid!, name);
          } catch {
            // already gone
          }
        };
        signal('SIGTERM');
        const timer = setTimeout(() => signal('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
        // The rest of the group (npm's child) may outlive its parent briefly.
        await sleep(200);
        signal('SIGKILL');
      }
    },
  };
}

/** Runs `start`; when it fails, stops what was spawned and removes `dir` before rethrowing. */
async function orCleanUp<T>(spawned: Spawned, dir: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (error) {
    await spawned.stop();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

async function waitFor(spawned: Spawned, pattern: RegExp, what: string, timeoutMs = 120_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const match = pattern.exec(spawned.output());
    if (match) return match;
    if (spawned.child.exitCode !== null) break;
    await sleep(20);
  }
  throw new Error(`${what} did not start:\n${spawned.output()}`);
}

interface StartResult {
  firstAnswerMs: number;
  idleRss: number;
  /** Largest resident total of the tree while starting, children that ran and ended included. */
  peakRss: number;
  processes: string[];
}

function processNames(pids: number[]): string[] {
  return pids.map((pid) => {
    try {
      return execFileSync('ps', ['-o', 'comm=', '-p', String(pid)]).toString().trim();
    } catch {
      return '?';
    }
  });
}

/**
 * Starts Gatehouse with `argv`, polls its console until anything answers, lets
 * it idle, and reads the resident memory of every process it left running.
 */
async function measureStart(argv: string[], env: Record<string, string>): Promise<StartResult> {
  const port = await freePort();
  const started = performance.now();
  const spawned = spawnGroup(argv, { HOST: '127.0.0.1', PORT: String(port), MQTT_PORT: '0', REDIS_URL: '', ...env });
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, usage(spawned.pids()).rssBytes)), 100);
  try {
    let firstAnswerMs: number | undefined;
    const deadline = Date.now() + 120_000;
    while (firstAnswerMs === undefined) {
      if (spawned.child.exitCode !== null || Date.now() > deadline) throw new Error(`Gatehouse did not answer:\n${spawned.output()}`);
      try {
        await fetch(`http://127.0.0.1:${port}/`, { redirect: 'manual' });
        firstAnswerMs = performance.now() - started;
      } catch {
        await sleep(10);
      }
    }
    await sleep(idleMs);
    const pids = spawned.pids();
    const idleRss = usage(pids).rssBytes;
    return { firstAnswerMs, idleRss, peakRss: Math.max(peakRss, idleRss), processes: processNames(pids) };
  } finally {
    clearInterval(sampler);
    await spawned.stop();
  }
}

async function startupTable(postgres: Service | undefined) {
  const setups: Array<{ name: string; target: string; env: () => Record<string, string>; fresh: boolean }> = [];
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-footprint-'));
    dirs.push(dir);
    return dir;
  };
  setups.push({ name: 'embedded, first start (new DATA_DIR)', target: '≤ 200 MB', env: () => ({ DATA_DIR: tempDir(), DATABASE_URL: '' }), fresh: true });
  const existing = tempDir();
  setups.push({ name: 'embedded, restart (existing DATA_DIR)', target: '≤ 200 MB, ≤ 1.5 s', env: () => ({ DATA_DIR: existing, DATABASE_URL: '' }), fresh: false });
  if (postgres) {
    const stateDir = tempDir();
    setups.push({ name: 'PostgreSQL (migrated database)', target: '≤ 120 MB', env: () => ({ DATA_DIR: stateDir, DATABASE_URL: postgres.url }), fresh: false });
  }
  try {
    // The databases the restarts open: created (and migrated) once, beforehand.
    for (const setup of setups.filter((s) => !s.fresh)) await measureStart(['node', 'dist/bin/main.js'], { ...setup.env() });
    const results = new Map<string, StartResult[]>();
    for (let round = 1; round <= rounds; round++) {
      for (const setup of setups) {
        for (const command of startCommands) {
          const key = `${setup.name}\u0000${command.name}`;
          const result = await measureStart(command.argv, setup.env());
          results.set(key, [...(results.get(key) ?? []), result]);
          console.error(`  round ${round}: ${setup.name}, ${command.name}: ${fmt(result.firstAnswerMs / 1000, 2)} s, ${fmt(result.idleRss / MB)} MB idle`);
        }
      }
    }
    const rows: string[][] = [];
    for (const setup of setups) {
      for (const command of startCommands) {
        const runs = results.get(`${setup.name}\u0000${command.name}`)!;
        rows.push([
          setup.name,
          command.name,
          runs[0]!.processes.join(' → '),
          fmt(median(runs.map((r) => r.firstAnswerMs)) / 1000, 2),
          fmt(median(runs.map((r) => r.idleRss)) / MB),
          fmt(Math.max(...runs.map((r) => r.peakRss)) / MB),
          setup.target,
        ]);
      }
    }
    table(
      `Start-up and idle memory (median of ${rounds}; idle = ${idleMs / 1000} s after the first answer)`,
      ['setup', 'start command', 'processes left running', 'start to first HTTP answer (s)', 'idle RSS, all processes (MB)', 'peak RSS while starting (MB)', 'target'],
      rows,
    );
  } finally {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

interface Broker {
  pids(): number[];
  mqttUrl: string;
  stop(): Promise<void>;
}

const brokerCpu = cpus().length > 1 ? '1' : undefined;
const generatorCpu = cpus().length > 1 ? '0' : undefined;

async function startGatehouseBroker(): Promise<Broker> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-footprint-'));
  await seedDatabase({ dataDir: dir });
  const mqttPort = await freePort();
  const spawned = spawnGroup(
    ['node', 'dist/bin/main.js'],
    { HOST: '127.0.0.1', PORT: '0', MQTT_PORT: String(mqttPort), DATA_DIR: dir, DATABASE_URL: '', REDIS_URL: '' },
    brokerCpu,
  );
  await orCleanUp(spawned, dir, () => waitFor(spawned, /MQTT over TCP\s+mqtt:\/\/[^:]+:(\d+)/, 'Gatehouse'));
  return {
    pids: spawned.pids,
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    async stop() {
      await spawned.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startBareAedesBroker(): Promise<Broker> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-footprint-aedes-'));
  const spawned = spawnGroup(['node', '--import', 'tsx', 'bench/aedes-server.ts'], { BENCH_PERSISTENCE: 'level', BENCH_DIR: path.join(dir, 'level') }, brokerCpu);
  const match = await orCleanUp(spawned, dir, () => waitFor(spawned, /port (\d+)/, 'bare Aedes'));
  return {
    pids: spawned.pids,
    mqttUrl: `mqtt://127.0.0.1:${match[1]}`,
    async stop() {
      await spawned.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startMosquitto(): Promise<Broker> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-footprint-mosquitto-'));
  const port = await freePort();
  const passwords = path.join(dir, 'passwd');
  execFileSync('mosquitto_passwd', ['-c', '-b', passwords, BENCH_USER.username, BENCH_USER.password]);
  writeFileSync(
    path.join(dir, 'mosquitto.conf'),
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous false',
      `password_file ${passwords}`,
      'max_connections -1',
      'persistence false',
      // Run as whoever runs the benchmark, so it can read its own password file.
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      'log_dest stdout',
      'log_type error',
      'log_type warning',
      'log_type notice',
      '',
    ].join('\n'),
  );
  const spawned = spawnGroup(['/usr/sbin/mosquitto', '-c', path.join(dir, 'mosquitto.conf')], {}, brokerCpu);
  // Its log to a pipe is buffered: it is up once a client gets in.
  await orCleanUp(spawned, dir, async () => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        const probe = await connectClient(`mqtt://127.0.0.1:${port}`);
        await new Promise<void>((resolve) => probe.end(false, {}, () => resolve()));
        return;
      } catch (error) {
        if (spawned.child.exitCode !== null || Date.now() > deadline) throw new Error(`Mosquitto did not start (${(error as Error).message}):\n${spawned.output()}`);
        await sleep(50);
      }
    }
  });
  return {
    pids: spawned.pids,
    mqttUrl: `mqtt://127.0.0.1:${port}`,
    async stop() {
      await spawned.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A process of its own that holds idle connections (so this one's file limit
 * and memory stay out of it): each line `N` on its stdin opens N more, then it
 * answers `held TOTAL`.
 */
async function holdConnections(url: string, lines: AsyncIterable<string>, write: (line: string) => void) {
  const clients: MqttClient[] = [];
  for await (const line of lines) {
    const more = Number(line.trim());
    let next = 0;
    const worker = async () => {
      while (next < more) {
        next++;
        clients.push(await connectClient(url, { keepalive: 60 }));
      }
    };
    // 50 CONNECTs in flight: fast, without turning it into a storm.
    await Promise.all(Array.from({ length: 50 }, worker));
    write(`held ${clients.length}`);
  }
}

async function perConnection(broker: Broker, steps: number[]) {
  await sleep(3000);
  const idle = usage(broker.pids()).rssBytes;
  // What the first connections cost once (compiled code, an Argon2id verify's
  // 19 MB, caches) is not a cost per connection: 500 connect and leave first.
  const warmup = spawnGroup(['node', '--import', 'tsx', 'bench/footprint.ts', '--hold', broker.mqttUrl], {}, generatorCpu);
  try {
    warmup.child.stdin!.write('500\n');
    await waitFor(warmup, /held 500\b/, 'warm-up connections', 120_000);
  } finally {
    await warmup.stop();
  }
  await sleep(5000);
  const baseline = usage(broker.pids()).rssBytes;
  const holder = spawnGroup(['node', '--import', 'tsx', 'bench/footprint.ts', '--hold', broker.mqttUrl], {}, generatorCpu);
  const growth: number[] = [];
  try {
    let held = 0;
    for (const step of steps) {
      holder.child.stdin!.write(`${step - held}\n`);
      const match = await waitFor(holder, new RegExp(`held ${step}\\b`), `${step} connections`, 300_000);
      held = Number(match[0].split(' ')[1]);
      // Let the broker finish what the connects left (timers, garbage) before reading.
      await sleep(5000);
      growth.push((usage(broker.pids()).rssBytes - baseline) / step);
    }
  } finally {
    await holder.stop();
  }
  return { idle, growth };
}

async function connectionsTable() {
  const hard = fileLimit();
  const steps = connectionSteps.filter((n) => n + 200 <= hard);
  if (steps.length < connectionSteps.length) console.warn(`  the open-files hard limit is ${hard}: measuring up to ${steps.at(-1) ?? 0} connections`);
  const contenders: Array<{ name: string; start: () => Promise<Broker> }> = [
    { name: 'Gatehouse (ACL on, LevelDB, embedded database)', start: startGatehouseBroker },
    { name: 'bare Aedes (no hooks, LevelDB)', start: startBareAedesBroker },
    { name: 'Mosquitto (password file)', start: startMosquitto },
  ];
  const results = new Map<string, { idle: number; growth: number[] }>();
  for (const contender of contenders) {
    const broker = await contender.start();
    try {
      results.set(contender.name, await perConnection(broker, steps));
      console.error(`  ${contender.name}: ${results.get(contender.name)!.growth.map((g) => fmt(g / 1024)).join(' / ')} KB per connection`);
    } finally {
      await broker.stop();
    }
  }
  const aedes = results.get(contenders[1]!.name)!;
  const mosquitto = results.get(contenders[2]!.name)!;
  const last = steps.length - 1;
  table(
    'Memory per idle MQTT connection (RSS growth of the broker ÷ connections, after 500 connected and left; all authenticate)',
    [
      'broker',
      'idle RSS (MB)',
      ...steps.map((n) => `${n.toLocaleString('en-US')} connections (KB each)`),
      `÷ bare Aedes (${steps[last]!.toLocaleString('en-US')})`,
      `÷ Mosquitto (${steps[last]!.toLocaleString('en-US')})`,
    ],
    contenders.map(({ name }) => {
      const result = results.get(name)!;
      return [
        name,
        fmt(result.idle / MB),
        ...result.growth.map((g) => fmt(g / 1024)),
        `${fmt(result.growth[last]! / aedes.growth[last]!, 2)}×`,
        `${fmt(result.growth[last]! / mosquitto.growth[last]!, 0)}×`,
      ];
    }),
  );
}

/**
 * Prints the start-up and per-connection tables (or only those named in
 * `parts`), measuring what `npm run build` makes of the code now.
 */
export async function footprintScenario(parts: Array<'startup' | 'connections'> = ['startup', 'connections']): Promise<void> {
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
  if (parts.includes('startup')) {
    let postgres: Service | undefined;
    try {
      postgres = await startPostgres();
    } catch (error) {
      console.warn(`  no PostgreSQL rows: ${(error as Error).message}`);
    }
    try {
      await startupTable(postgres);
    } finally {
      postgres?.stop();
    }
  }
  if (parts.includes('connections')) await connectionsTable();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const hold = process.argv.indexOf('--hold');
  if (hold > 0) {
    await holdConnections(process.argv[hold + 1]!, createInterface({ input: process.stdin }), (line) => console.log(line));
    // stdin closed: the benchmark is done with these connections.
    process.exit(0);
  } else {
    const parts = process.argv.slice(2).filter((part): part is 'startup' | 'connections' => part === 'startup' || part === 'connections');
    await footprintScenario(parts.length ? parts : undefined);
  }
}
