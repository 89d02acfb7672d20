/**
 * The console with a large fleet: 100,000 clients, 10 concurrent requests per
 * URL with autocannon, on the embedded database and on PostgreSQL
 * (BENCH_DATABASE_URL; skipped with a notice when unset). Runs alone with
 * `node --import tsx bench/console.ts`; BENCH_SECONDS (default 10) and
 * BENCH_CLIENTS (default 100000) change its size. BENCH_BEFORE=DIR (a
 * checkout of an earlier commit with its own node_modules, e.g. `git archive`
 * of it beside a link to this one's) measures that build too, on the same
 * data, just before this one: a before/after in one run.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { openDatabase, type OpenDatabase } from '../src/db';
import { createAdministrator } from '../src/domain/administrators';
import { hashPassword } from '../src/domain/password';
import { nodeArgv } from './lib/brokers';
import { createSession } from '../src/domain/sessions';
import { SESSION_COOKIE } from '../src/web/session';
import { processTree, usage } from './lib/proc';
import { createServerDatabase } from './lib/services';

interface AutocannonResult {
  latency: { p50: number; p99: number };
  requests: { average: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}
type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
  headers?: Record<string, string>;
}) => Promise<AutocannonResult>;
// autocannon ships no types of its own.
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

export interface ConsoleScenarioOptions {
  /** PostgreSQL server to measure on (a database of its own is created and dropped); unset: embedded only. */
  databaseUrl?: string;
  clients?: number;
  seconds?: number;
  connections?: number;
  /** Another checkout to measure first on the same data (rows labelled "before"/"after"). */
  before?: string;
}

interface Row {
  database: string;
  what: string;
  url: string;
  p50: number;
  p99: number;
  rps: number;
  /** The server's CPU (its process tree, user + system) per request answered. */
  cpuMs: number;
}

const root = fileURLToPath(new URL('..', import.meta.url));
const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

// One statement: names like "Lyon Pump 004217" (ten sites, eight kinds, so
// the name order is not the id order; each site is a tenth of the list, in
// one stretch of it), usernames like "pump-1f3a9c2e07b4". Every row gets the
// same Argon2id hash, computed once: hashing 100,000 passwords would take
// half an hour, and the console never verifies them.
async function fillClients(database: OpenDatabase, count: number) {
  const hash = await hashPassword('bench-client-password');
  await database.db.execute(sql`
    insert into clients (name, username, password_hash)
    select
      (array['Berlin','Lyon','Porto','Oslo','Turin','Ghent','Krakow','Leeds','Bilbao','Graz'])[1 + i % 10]
        || ' ' || (array['Boiler','Door sensor','Meter','Thermostat','Camera','Gateway','Pump','Valve'])[1 + (i / 10) % 8]
        || ' ' || lpad(i::text, 6, '0'),
      lower((array['boiler','door','meter','thermostat','camera','gateway','pump','valve'])[1 + (i / 10) % 8])
        || '-' || substr(md5(i::text), 1, 12),
      ${hash}
    from generate_series(1, ${count}) as i`);
}

// Signed in as the console's own sign-in would leave it: a session row and its cookie.
export async function signedInCookie(database: OpenDatabase): Promise<string> {
  const administrator = await createAdministrator(database.db, { username: 'bench-admin', password: 'bench-admin-password' });
  const session = await createSession(database.db, administrator.id);
  return `${SESSION_COOKIE}=${session.token}`;
}

let pinned: { server: string[]; pinSelf(): void } | undefined;

// With two cores or more and taskset: Gatehouse on core 1, this process (and
// so autocannon) on core 0, as `npm run bench` pins brokers and its load.
function pinning(): { server: string[]; pinSelf(): void } {
  if (pinned) return pinned;
  pinned = { server: [], pinSelf() {} };
  if (cpus().length < 2) return pinned;
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
  } catch {
    console.warn('taskset is not available: autocannon and Gatehouse share the cores');
    return pinned;
  }
  pinned = { server: ['taskset', '-c', '1'], pinSelf: () => execFileSync('taskset', ['-pc', '0', String(process.pid)], { stdio: 'ignore' }) };
  return pinned;
}

export function startConsole(env: Record<string, string>, cwd = root): Promise<{ child: ChildProcess; base: string }> {
  // BENCH_NODE_ARGS, as for the brokers: e.g. `--cpu-prof --cpu-prof-dir=DIR`.
  const [command, ...args] = [...pinning().server, ...nodeArgv(['src/main.ts'])];
  const child = spawn(command!, args, {
    cwd,
    env: { ...process.env, HOST: '127.0.0.1', PORT: '0', MQTT_PORT: '0', DATABASE_URL: '', REDIS_URL: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`Gatehouse did not start:\n${output}`)), 120_000);
    const onData = (chunk: Buffer) => {
      output += chunk;
      const match = /console\s+(http:\/\/\S+?)\/?\s/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, base: match[1]! });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Gatehouse exited (${code}):\n${output}`));
    });
  });
}

export async function stopConsole(child: ChildProcess) {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

// What an operator's browser asks for.
async function consoleUrls(base: string, cookie: string, clients: number) {
  const headers = { cookie };
  const deepPage = Math.max(2, Math.floor(clients / 50));
  const legacy = `/clients?page=${deepPage}`;
  // The deep page as an operator reaches it: the Next link of the page before.
  const before = await (await fetch(`${base}/clients?page=${deepPage - 1}`, { headers })).text();
  const next = /<a href="([^"]+)"[^>]*>Next<\/a>/.exec(before)?.[1]?.replaceAll('&amp;', '&');
  const urls = [
    { what: 'first page', path: '/clients' },
    { what: `page ${fmt(deepPage)} (50 a page), by its Next link`, path: next ?? legacy },
    { what: 'search, a few matches ("4217")', path: '/clients?q=4217' },
    { what: 'search, 1 in 10 matches ("lyon")', path: '/clients?q=lyon' },
  ];
  if (next && next !== legacy) urls.push({ what: `page ${fmt(deepPage)} as an old link`, path: legacy });
  // A wrong page (an error, a sign-in form) must not be measured as a fast one.
  for (const url of urls) {
    const res = await fetch(base + url.path, { headers, redirect: 'manual' });
    const body = await res.text();
    if (res.status !== 200 || !body.includes('<table')) throw new Error(`${url.path} answered ${res.status}:\n${body.slice(0, 500)}`);
  }
  return urls;
}

type Settings = Required<Omit<ConsoleScenarioOptions, 'databaseUrl' | 'before'>> & { before?: string };

async function measure(database: string, base: string, cookie: string, options: Settings, serverPid: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const url of await consoleUrls(base, cookie, options.clients)) {
    const target = { url: base + url.path, connections: options.connections, headers: { cookie } };
    await autocannon({ ...target, duration: 2 }); // warm-up: JIT, caches
    const before = usage(processTree(serverPid)).cpuSeconds;
    const result = await autocannon({ ...target, duration: options.seconds });
    const cpuSeconds = usage(processTree(serverPid)).cpuSeconds - before;
    if (result.errors || result.timeouts) console.warn(`  ${url.path}: ${result.errors} errors, ${result.timeouts} timeouts`);
    if (result.non2xx) console.warn(`  ${url.path}: ${result.non2xx} answers were not 2xx`);
    rows.push({ database, what: url.what, url: url.path, p50: result.latency.p50, p99: result.latency.p99, rps: result.requests.average, cpuMs: (cpuSeconds * 1000) / Math.max(1, result.requests.average * options.seconds) });
  }
  return rows;
}

async function onDatabase(
  label: string,
  open: (dataDir: string) => Promise<{ database: OpenDatabase; env: Record<string, string>; cleanup(): Promise<void> }>,
  options: Settings,
): Promise<Row[]> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-console-'));
  const { database, env, cleanup } = await open(dataDir);
  let closed = false;
  try {
    const started = performance.now();
    await fillClients(database, options.clients);
    if (database.driver === 'postgres') {
      // A server's autovacuum analyses a table this size within a minute;
      // doing it now measures that steady state, not the minute before it.
      await database.db.execute(sql`vacuum analyze clients`);
    }
    const cookie = await signedInCookie(database);
    console.log(`${label}: ${fmt(options.clients)} clients inserted in ${fmt((performance.now() - started) / 1000, 1)} s`);
    await database.close();
    closed = true;
    const builds = options.before ? [{ name: `${label}, before`, cwd: options.before }, { name: `${label}, after`, cwd: root }] : [{ name: label, cwd: root }];
    const rows: Row[] = [];
    for (const build of builds) {
      const { child, base } = await startConsole({ DATA_DIR: dataDir, ...env }, build.cwd);
      try {
        rows.push(...(await measure(build.name, base, cookie, options, child.pid!)));
      } finally {
        await stopConsole(child);
      }
    }
    return rows;
  } finally {
    if (!closed) await database.close();
    await cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Prints the console's latency under load with a large fleet, as markdown tables. */
export async function consoleScenario(options: ConsoleScenarioOptions = {}): Promise<Row[]> {
  pinning().pinSelf();
  const settings = {
    clients: options.clients ?? 100_000,
    seconds: options.seconds ?? 10,
    connections: options.connections ?? 10,
    before: options.before,
  };
  const rows: Row[] = [];
  rows.push(
    ...(await onDatabase(
      'embedded (PGlite)',
      // The console opens the same directory once the filler has closed it.
      async (dataDir) => ({ database: await openDatabase({ kind: 'pglite', dataDir }), env: {}, async cleanup() {} }),
      settings,
    )),
  );
  if (options.databaseUrl) {
    const serverUrl = options.databaseUrl;
    rows.push(
      ...(await onDatabase(
        'PostgreSQL',
        async () => {
          const { url, drop } = await createServerDatabase(serverUrl, 'gatehouse_bench_console');
          const database = await openDatabase({ kind: 'postgres', url });
          return { database, env: { DATABASE_URL: url }, cleanup: drop };
        },
        settings,
      )),
    );
  } else {
    console.warn('\nPostgreSQL skipped: set BENCH_DATABASE_URL=postgres://… (a role that may create databases) to measure it too.');
  }

  console.log(`\n### The console with ${fmt(settings.clients)} clients\n`);
  const cores = pinning().server.length ? ', autocannon and Gatehouse each on a core of its own' : '';
  console.log(`${settings.connections} concurrent requests per URL for ${settings.seconds} s (after 2 s of warm-up)${cores}; latency in ms.\n`);
  if (settings.before) console.log(`"before": the checkout in ${settings.before}; "after": this one; each on the same data, one after the other.\n`);
  console.log('| database | request | URL | p50 | p99 | requests/s | server CPU per request (ms) |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const row of rows) {
    console.log(`| ${row.database} | ${row.what} | \`${row.url}\` | ${fmt(row.p50)} | ${fmt(row.p99)} | ${fmt(row.rps)} | ${fmt(row.cpuMs, 1)} |`);
  }
  return rows;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  consoleScenario({
    databaseUrl: process.env.BENCH_DATABASE_URL,
    clients: process.env.BENCH_CLIENTS ? Number(process.env.BENCH_CLIENTS) : undefined,
    seconds: process.env.BENCH_SECONDS ? Number(process.env.BENCH_SECONDS) : undefined,
    before: process.env.BENCH_BEFORE,
  }).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
