import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDatabase } from '../../src/db';
import { createClient } from '../../src/domain/clients';
import { createGroup } from '../../src/domain/groups';
import { replaceGroupRules } from '../../src/domain/groupRules';

export const BENCH_USER = { username: 'bench', password: 'bench-password-0123456789' };

export interface RunningBroker {
  pid: number;
  mqttUrl: string;
  stop(): Promise<void>;
}

/** Runs `args` under node (with tsx), pinned to `cpus` when taskset exists. */
function spawnNode(args: string[], env: Record<string, string>, cpus?: string): ChildProcess {
  const node = [process.execPath, '--import', 'tsx', ...args];
  const [command, ...rest] = cpus ? ['taskset', '-c', cpus, ...node] : node;
  return spawn(command!, rest, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

function waitFor(child: ChildProcess, pattern: RegExp, what: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk;
      const match = pattern.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}):\n${output}`)));
  });
}

function stopper(child: ChildProcess, cleanup: () => void) {
  return async () => {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    cleanup();
  };
}

/** Bare Aedes with no hooks, its persistence in memory or in LevelDB. */
export async function startBareAedes(persistence: 'memory' | 'level' | 'level-plain', cpus?: string): Promise<RunningBroker> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-aedes-'));
  const child = spawnNode(['bench/aedes-server.ts'], { BENCH_PERSISTENCE: persistence, BENCH_DIR: path.join(dir, 'level') }, cpus);
  const match = await waitFor(child, /port (\d+)/, 'bare Aedes');
  return { pid: child.pid!, mqttUrl: `mqtt://127.0.0.1:${match[1]}`, stop: stopper(child, () => rmSync(dir, { recursive: true, force: true })) };
}

/**
 * Fills a database with what the benchmark connects as: the bench client and
 * a group that lets it publish and subscribe under `bench/`, beside a few
 * groups with deny rows, as a real install has.
 */
export async function seedDatabase(target: { databaseUrl?: string; dataDir?: string }) {
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
    await replaceGroupRules(database.db, groups.map((group) => ({ matchBy: 'client', value: BENCH_USER.username, groups: [String(group.id)] })), undefined);
  } finally {
    await database.close();
  }
}

/** Gatehouse as shipped, one process; `env` chooses its databases. */
export async function startGatehouse(env: Record<string, string>, cpus?: string): Promise<RunningBroker> {
  const ownDir = env.DATA_DIR ? undefined : mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-node-'));
  const child = spawnNode(['src/main.ts'], { HOST: '127.0.0.1', PORT: '0', MQTT_PORT: '0', DATA_DIR: ownDir ?? '', DATABASE_URL: '', REDIS_URL: '', ...env }, cpus);
  const match = await waitFor(child, /MQTT over TCP\s+mqtt:\/\/[^:]+:(\d+)/, 'Gatehouse');
  return {
    pid: child.pid!,
    mqttUrl: `mqtt://127.0.0.1:${match[1]}`,
    stop: stopper(child, () => ownDir && rmSync(ownDir, { recursive: true, force: true })),
  };
}
