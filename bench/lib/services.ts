import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { atExit } from './cleanup';

/** A database of its own on the PostgreSQL server at `serverUrl`, named `prefix` and a random suffix; `drop` removes it. */
export async function createServerDatabase(serverUrl: string, prefix: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${name}"`).finally(() => admin.end());
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const dropper = postgres(serverUrl, { max: 1, onnotice: () => {} });
      await dropper.unsafe(`drop database if exists "${name}" with (force)`).finally(() => dropper.end());
    },
  };
}

/** A free TCP port on the loopback interface. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

export interface Service {
  url: string;
  pid?: number;
  stop(): void;
}

/** BENCH_DATABASE_URL, or a throw-away PostgreSQL cluster (Debian's package). */
export async function startPostgres(): Promise<Service> {
  if (process.env.BENCH_DATABASE_URL) return { url: process.env.BENCH_DATABASE_URL, stop() {} };
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort() : [];
  const bin = versions.length ? `/usr/lib/postgresql/${versions.at(-1)}/bin` : '';
  if (!bin) throw new Error('PostgreSQL is not installed (apt-get install postgresql), or set BENCH_DATABASE_URL');
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-pg-'));
  const port = await freePort();
  const asPostgres = process.getuid?.() === 0;
  const run = (command: string) =>
    asPostgres ? execFileSync('su', ['postgres', '-s', '/bin/sh', '-c', command], { stdio: 'pipe' }) : execFileSync('/bin/sh', ['-c', command], { stdio: 'pipe' });
  if (asPostgres) execFileSync('chown', ['postgres:postgres', dir]);
  run(`${bin}/initdb -D '${dir}' -U postgres --auth=trust -E UTF8`);
  run(`${bin}/pg_ctl -D '${dir}' -o '-p ${port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=on' -l '${dir}/log' -w start`);
  const stop = () => {
    forget();
    spawnSync('/bin/sh', ['-c', asPostgres ? `su postgres -s /bin/sh -c "${bin}/pg_ctl -D '${dir}' -m immediate stop"` : `${bin}/pg_ctl -D '${dir}' -m immediate stop`]);
    rmSync(dir, { recursive: true, force: true });
  };
  const forget = atExit(stop);
  execFileSync('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-qc', 'create database gatehouse_bench'], { stdio: 'pipe' });
  return { url: `postgres://postgres@127.0.0.1:${port}/gatehouse_bench`, stop };
}

/** BENCH_REDIS_URL, or a throw-away redis-server (Debian's package). */
export async function startRedis(): Promise<Service> {
  if (process.env.BENCH_REDIS_URL) return { url: process.env.BENCH_REDIS_URL, stop() {} };
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-redis-'));
  execFileSync('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
    '--daemonize', 'yes', '--pidfile', `${dir}/redis.pid`, '--logfile', `${dir}/redis.log`,
  ]);
  for (let i = 0; i < 50 && !existsSync(`${dir}/redis.pid`); i++) await new Promise((r) => setTimeout(r, 100));
  const pid = Number(execFileSync('cat', [`${dir}/redis.pid`]).toString().trim());
  const stop = () => {
    forget();
    spawnSync('redis-cli', ['-p', String(port), 'shutdown', 'nosave']);
    rmSync(dir, { recursive: true, force: true });
  };
  const forget = atExit(stop);
  return { url: `redis://127.0.0.1:${port}`, pid, stop };
}
