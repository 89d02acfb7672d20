import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDatabase, schema } from '../../src/db';
import { createClient } from '../../src/domain/clients';
import { createGroup } from '../../src/domain/groups';
import { replaceGroupRules } from '../../src/domain/groupRules';
import { atExit, killGroup, trackGroup } from './cleanup';
import { processTree } from './proc';
import { freePort } from './services';
import { BENCH_USER } from './user';

export { BENCH_USER } from './user';

const root = fileURLToPath(new URL('../..', import.meta.url));
export const MOSQUITTO = '/usr/sbin/mosquitto';

export interface RunningBroker {
  /** The process the broker runs in (its process group's leader). */
  pid: number;
  mqttUrl: string;
  /** Every process of the broker's tree, for /proc accounting. */
  pids(): number[];
  /** False once the broker's process has exited, whatever the reason. */
  alive(): boolean;
  /** The last lines the broker printed, to show when it died. */
  output(): string;
  stop(): Promise<void>;
}

const OUTPUT_KEPT = 20_000;

/**
 * Starts `argv` in a process group of its own (so stopping it takes whatever it
 * started too, and Ctrl-C of the benchmark is handled by the benchmark, which
 * kills the group), pinned to `cpus` when given.
 */
function spawnGroup(argv: string[], env: Record<string, string>, cpus?: string, cwd = root): { child: ChildProcess; output: () => string } {
  const [command, ...rest] = cpus ? ['taskset', '-c', cpus, ...argv] : argv;
  const child = spawn(command!, rest, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const forget = trackGroup(child.pid!);
  child.once('exit', forget);
  let output = '';
  const keep = (chunk: Buffer) => {
    output += chunk;
    if (output.length > OUTPUT_KEPT * 2) output = output.slice(-OUTPUT_KEPT);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return { child, output: () => output };
}

function waitFor(spawned: { child: ChildProcess; output: () => string }, pattern: RegExp, what: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = () => {
      const match = pattern.exec(spawned.output());
      if (match) return resolve(match);
      if (spawned.child.exitCode !== null || spawned.child.signalCode !== null) {
        return reject(new Error(`${what} exited (${spawned.child.exitCode ?? spawned.child.signalCode}):\n${spawned.output().slice(-4000)}`));
      }
      if (Date.now() - started > 120_000) return reject(new Error(`${what} did not start:\n${spawned.output().slice(-4000)}`));
      setTimeout(check, 20);
    };
    check();
  });
}

/** Resolves once a TCP connection to `port` succeeds (some brokers log before they listen). */
async function waitForPort(port: number, what: string) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = netConnect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} does not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function running(spawned: { child: ChildProcess; output: () => string }, mqttUrl: string, cleanup: () => void): RunningBroker {
  const { child } = spawned;
  const forgetCleanup = atExit(cleanup);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const isAlive = () => child.exitCode === null && child.signalCode === null;
  return {
    pid: child.pid!,
    mqttUrl,
    pids: () => (isAlive() ? processTree(child.pid!) : []),
    alive: isAlive,
    output: spawned.output,
    async stop() {
      if (isAlive()) {
        killGroup(child.pid!, 'SIGTERM');
        const timer = setTimeout(() => killGroup(child.pid!, 'SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      // Whatever the leader left in its group goes too.
      killGroup(child.pid!, 'SIGKILL');
      forgetCleanup();
      cleanup();
    },
  };
}

/**
 * Runs `args` under node with tsx. `BENCH_NODE_ARGS` adds node options to
 * every broker started (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`, which
 * NODE_OPTIONS does not allow); a profile is written when the broker stops.
 */
export function nodeArgv(args: string[]): string[] {
  const extra = process.env.BENCH_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [];
  return [process.execPath, ...extra, '--import', 'tsx', ...args];
}

/**
 * Bare Aedes with no hooks but a cheap password check, its persistence in
 * memory or in LevelDB. `usersFile`: more `username:password` lines it accepts.
 */
export async function startBareAedes(
  persistence: 'memory' | 'level' | 'level-plain' | 'redis',
  cpus?: string,
  usersFile?: string,
  options: { redisUrl?: string; aedesDir?: string } = {},
): Promise<RunningBroker> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-aedes-'));
  const spawned = spawnGroup(
    nodeArgv(['bench/aedes-server.ts']),
    {
      BENCH_PERSISTENCE: persistence,
      BENCH_DIR: path.join(dir, 'level'),
      ...(usersFile ? { BENCH_USERS_FILE: usersFile } : {}),
      ...(options.redisUrl ? { BENCH_REDIS_URL: options.redisUrl } : {}),
      ...(options.aedesDir ? { BENCH_AEDES_DIR: options.aedesDir } : {}),
    },
    cpus,
  );
  const match = await waitFor(spawned, /port (\d+)/, 'bare Aedes');
  return running(spawned, `mqtt://127.0.0.1:${match[1]}`, () => rmSync(dir, { recursive: true, force: true }));
}

/** The patch that makes Aedes send PUBACK only once a QoS 1 message is stored. */
export const ACKNOWLEDGED_ONCE_STORED_PATCH = 'patches/aedes+2.0.0-beta.1+008+acknowledged-once-stored.patch';

/**
 * A copy of the installed Aedes (every patch of patches/ applied) with patch
 * 008 taken out again, so PUBACK goes out before the message is stored, as
 * Aedes itself does; its directory, for `startBareAedes`. It lives under
 * node_modules/.cache, so it loads the same dependencies as the installed one.
 */
export function aedesWithoutAcknowledgedOnceStored(): string {
  const home = path.join(root, 'node_modules', '.cache', 'gatehouse-bench', 'aedes-without-008', 'node_modules', 'aedes');
  rmSync(home, { recursive: true, force: true });
  cpSync(path.join(root, 'node_modules', 'aedes'), home, { recursive: true });
  execFileSync('patch', ['--reverse', '--strip=3', '--silent', `--directory=${home}`, `--input=${path.join(root, ACKNOWLEDGED_ONCE_STORED_PATCH)}`]);
  const publish = readFileSync(path.join(home, 'lib', 'handlers', 'publish.js'), 'utf8');
  if (publish.includes('acknowledged once stored')) throw new Error(`${home}: patch 008 is still in place`);
  return home;
}

/** A device of the storm's fleet: its own username, password and client id. */
export interface FleetUser {
  username: string;
  password: string;
  passwordHash: string;
}

/**
 * Fills a database with what the benchmark connects as: the bench client and
 * a group that lets it publish and subscribe under `bench/`, beside a few
 * groups with deny rows, as a real install has. `fleet` adds devices (rows with
 * their own generated passwords, stored as the console stores those) and a rule by client id pattern that gives them a
 * site's group, so their CONNECT resolves groups as a real device's does.
 */
export async function seedDatabase(target: { databaseUrl?: string; dataDir?: string }, fleet: FleetUser[] = []) {
  const database = await openDatabase(target.databaseUrl ? { kind: 'postgres', url: target.databaseUrl } : { kind: 'pglite', dataDir: target.dataDir! });
  try {
    await createClient(database.db, { name: 'Bench', ...BENCH_USER });
    const groups = [];
    groups.push(
      await createGroup(database.db, {
        name: 'Bench',
        permissions: [
          { effect: 'allow', action: 'publish', topic: 'bench/#' },
          { effect: 'allow', action: 'subscribe', topic: 'bench/#' },
          { effect: 'deny', action: 'publish', topic: 'bench/+/forbidden' },
          { effect: 'deny', action: 'subscribe', topic: 'bench/secret/#' },
        ],
      }),
    );
    for (let i = 0; i < 5; i++) {
      groups.push(
        await createGroup(database.db, {
          name: `Site ${i}`,
          permissions: [
            { effect: 'allow', action: 'publish', topic: `site/${i}/%c/#` },
            { effect: 'allow', action: 'subscribe', topic: `site/${i}/+/status` },
            { effect: 'deny', action: 'subscribe', topic: `site/${i}/+/private` },
          ],
        }),
      );
    }
    // Hashes were made beforehand, one per device: inserting them is all that is left.
    for (let i = 0; i < fleet.length; i += 500) {
      await database.db
        .insert(schema.clients)
        .values(fleet.slice(i, i + 500).map((user) => ({ name: `Storm device ${user.username}`, username: user.username, passwordHash: user.passwordHash })));
    }
    await replaceGroupRules(
      database.db,
      [
        ...groups.map((group) => ({ matchBy: 'client', value: BENCH_USER.username, groups: [String(group.id)] })),
        ...(fleet.length ? [{ matchBy: 'client_id', value: 'storm-*', groups: [String(groups[1]!.id)] }] : []),
      ],
      undefined,
    );
  } finally {
    await database.close();
  }
}

export interface GatehouseOptions {
  /** A DATA_DIR made by seedDatabase, copied for this start (each start gets a database of its own). */
  template?: string;
  cpus?: string;
  /** Another checkout of Gatehouse to run instead of this one (a before/after comparison); it needs its own node_modules. */
  root?: string;
}

/**
 * Gatehouse as shipped, one process; `env` chooses its databases (default:
 * the embedded one in a DATA_DIR of its own, with its LevelDB broker store).
 */
export async function startGatehouse(env: Record<string, string>, cpusOrOptions?: string | GatehouseOptions): Promise<RunningBroker> {
  const options = typeof cpusOrOptions === 'string' ? { cpus: cpusOrOptions } : (cpusOrOptions ?? {});
  const ownDir = env.DATA_DIR ? undefined : mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-node-'));
  if (ownDir && options.template) cpSync(options.template, ownDir, { recursive: true });
  const spawned = spawnGroup(
    nodeArgv(['src/main.ts']),
    { HOST: '127.0.0.1', PORT: '0', MQTT_PORT: '0', DATA_DIR: ownDir ?? '', DATABASE_URL: '', REDIS_URL: '', ...env },
    options.cpus,
    options.root,
  );
  const cleanup = () => ownDir && rmSync(ownDir, { recursive: true, force: true });
  try {
    const match = await waitFor(spawned, /MQTT over TCP\s+mqtt:\/\/[^:]+:(\d+)/, 'Gatehouse');
    return running(spawned, `mqtt://127.0.0.1:${match[1]}`, cleanup);
  } catch (error) {
    killGroup(spawned.child.pid!);
    cleanup();
    throw error;
  }
}

export const mosquittoInstalled = () => existsSync(MOSQUITTO);

/**
 * A Mosquitto password file for the bench user and `fleet`: written in plain
 * text and hashed in place by `mosquitto_passwd -U` (one process, where `-b`
 * would take one per user), in Mosquitto's default PBKDF2-SHA512 format.
 */
export function mosquittoPasswordFile(dir: string, fleet: Array<{ username: string; password: string }>): string {
  const file = path.join(dir, 'mosquitto-passwd');
  writeFileSync(file, [BENCH_USER, ...fleet].map((user) => `${user.username}:${user.password}\n`).join(''), { mode: 0o600 });
  execFileSync('/usr/bin/mosquitto_passwd', ['-U', file], { stdio: 'pipe' });
  return file;
}

/**
 * Mosquitto from Debian's package, authentication on (no anonymous clients,
 * `passwordFile`), with persistence on as Debian's own configuration has it:
 * Mosquitto keeps its state in memory and writes a snapshot every 30 minutes
 * and at exit, so it costs nothing per message (and promises less than
 * Gatehouse's store, which writes each QoS 1 message before acknowledging it).
 */
export async function startMosquitto(passwordFile: string, cpus?: string): Promise<RunningBroker> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-mosquitto-'));
  const port = await freePort();
  const config = path.join(dir, 'mosquitto.conf');
  writeFileSync(
    config,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous false',
      `password_file ${passwordFile}`,
      'persistence true',
      `persistence_location ${dir}/`,
      'max_connections -1',
      // Gatehouse and bare Aedes set TCP_NODELAY on every connection; Mosquitto does only when told.
      'set_tcp_nodelay true',
      // Aedes sends QoS 1 to a subscriber with no in-flight limit; Mosquitto's
      // default of 20 made a busy subscriber's messages overflow its queue
      // (1,000) and be dropped here: the same rule (none) for both.
      'max_inflight_messages 0',
      // As root, Mosquitto would switch to the `mosquitto` user, which cannot read our files.
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      'log_dest stdout',
      'log_type error',
      'log_type warning',
      'connection_messages false',
      '',
    ].join('\n'),
  );
  const spawned = spawnGroup([MOSQUITTO, '-c', config], {}, cpus);
  try {
    await waitForPort(port, 'Mosquitto');
  } catch (error) {
    killGroup(spawned.child.pid!);
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(error as Error).message}\n${spawned.output()}`);
  }
  return running(spawned, `mqtt://127.0.0.1:${port}`, () => rmSync(dir, { recursive: true, force: true }));
}
