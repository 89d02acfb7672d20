/**
 * The access model with a large fleet: Gatehouse on PostgreSQL holding every
 * client in memory (src/domain/access/model.ts). One start with
 * BENCH_MODEL_CLIENTS clients (default 1,000,000) beside one with only the
 * clients CONNECT is measured with (1,000), each pinned to the broker's core:
 *   - start to MQTT listening, and the model's own first read (its gauge);
 *   - the credentials' bytes as the model counts them, and the resident
 *     memory the large start holds beyond the small one, per client;
 *   - a CONNECT's latency (mqtt.js, one at a time, CONNACK timed), the first
 *     of each of the 1,000 (its password verified: generated passwords, HMAC)
 *     and again (cached), with the fleet loaded and without.
 * And across two nodes on that PostgreSQL: how long after a change commits the
 * other node's model holds it (`changes`): a client inserted by this process,
 * node B's gauge of clients polled until it counts it.
 */
import { sql } from 'drizzle-orm';
import mqtt from 'mqtt';
import { openDatabase, schema, type OpenDatabase } from '../src/db';
import { createGroup } from '../src/domain/groups';
import { replaceGroupRules } from '../src/domain/groupRules';
import { generatePassword, hashGeneratedPassword } from '../src/domain/password';
import { startGatehouse, type RunningBroker } from './lib/brokers';
import { fmt, table } from './lib/contenders';
import { usage } from './lib/proc';
import { createServerDatabase } from './lib/services';

const METRICS_TOKEN = 'bench-metrics-token-of-the-model';
const PROBES = 1000;
const MB = 1024 * 1024;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

interface Probe {
  username: string;
  password: string;
}

/** A database of its own on the server, migrated; dropped by `drop`. */
async function freshDatabase(serverUrl: string): Promise<{ url: string; database: OpenDatabase; drop(): Promise<void> }> {
  const { url, drop } = await createServerDatabase(serverUrl, 'gatehouse_bench_model');
  return { url, database: await openDatabase({ kind: 'postgres', url }), drop };
}

/**
 * `PROBES` clients with generated passwords (stored as the console stores
 * them) in a group that may publish under probe/, and `filler` more with
 * usernames and hashes of the same shape made in SQL (their passwords are
 * never tried: what they cost is memory and the first read).
 */
async function fill(database: OpenDatabase, filler: number): Promise<Probe[]> {
  const probes = Array.from({ length: PROBES }, (_, i) => ({ username: `probe-${String(i).padStart(6, '0')}`, password: generatePassword() }));
  for (let i = 0; i < probes.length; i += 500) {
    await database.db
      .insert(schema.clients)
      .values(probes.slice(i, i + 500).map((p) => ({ name: `Probe ${p.username}`, username: p.username, passwordHash: hashGeneratedPassword(p.password) })));
  }
  const group = await createGroup(database.db, { name: 'Probes', permissions: [{ effect: 'allow', action: 'publish', topic: 'probe/%u/#' }] });
  await replaceGroupRules(database.db, [{ matchBy: 'client_id', value: 'probe-*', groups: [String(group.id)] }], undefined);
  // Names and usernames like the console bench's ("Lyon Pump 004217", "pump-1f3a9c2e07b4-4217"),
  // a fast hash of the generated format's length each; 100,000 rows a statement.
  for (let from = 1; from <= filler; from += 100_000) {
    const to = Math.min(filler, from + 99_999);
    await database.db.execute(sql`
      insert into clients (name, username, password_hash)
      select
        (array['Berlin','Lyon','Porto','Oslo','Turin','Ghent','Krakow','Leeds','Bilbao','Graz'])[1 + i % 10]
          || ' ' || (array['Boiler','Door sensor','Meter','Thermostat','Camera','Gateway','Pump','Valve'])[1 + (i / 10) % 8]
          || ' ' || lpad(i::text, 7, '0'),
        (array['boiler','door','meter','thermostat','camera','gateway','pump','valve'])[1 + (i / 10) % 8]
          || '-' || substr(md5(i::text), 1, 12) || '-' || i,
        '$gh-hmac-sha256$' || substr(replace(encode(decode(md5('s' || i), 'hex'), 'base64'), '=', ''), 1, 22)
          || '$' || substr(replace(encode(sha256(i::text::bytea), 'base64'), '=', ''), 1, 43)
      from generate_series(${from}::int, ${to}::int) as i`);
  }
  await database.db.execute(sql`vacuum analyze clients`);
  return probes;
}

function consoleUrl(broker: RunningBroker): string {
  const match = /console\s+(http:\/\/\S+?)\/?\s/.exec(broker.output());
  if (!match) throw new Error(`no console address in Gatehouse's output:\n${broker.output().slice(-2000)}`);
  return match[1]!;
}

async function gauges(base: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
  const values: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^(gatehouse_access_model_\w+) (\S+)$/.exec(line);
    if (match) values[match[1]!] = Number(match[2]);
  }
  return values;
}

/** Milliseconds from CONNECT sent to CONNACK, for each probe in turn. */
async function connectTimes(url: string, probes: Probe[]): Promise<number[]> {
  const times: number[] = [];
  for (const probe of probes) {
    const started = performance.now();
    const client = await new Promise<mqtt.MqttClient>((resolve, reject) => {
      const c = mqtt.connect(url, { username: probe.username, password: probe.password, clientId: probe.username, reconnectPeriod: 0, connectTimeout: 30_000 });
      c.once('connect', () => resolve(c));
      c.once('error', reject);
    });
    times.push(performance.now() - started);
    await client.endAsync();
  }
  return times.sort((a, b) => a - b);
}

interface Start {
  clients: number;
  startSeconds: number;
  loadSeconds: number;
  credentialBytes: number;
  rssBytes: number;
  cold: number[];
  warm: number[];
}

async function measureStart(serverUrl: string, filler: number, brokerCpu: string | undefined): Promise<Start> {
  const { url, database, drop } = await freshDatabase(serverUrl);
  try {
    const filled = performance.now();
    const probes = await fill(database, filler);
    await database.close();
    console.error(`  ${fmt(filler + PROBES, 0)} clients written in ${fmt((performance.now() - filled) / 1000)} s`);
    const started = performance.now();
    const broker = await startGatehouse({ DATABASE_URL: url, METRICS_TOKEN }, brokerCpu);
    try {
      const startSeconds = (performance.now() - started) / 1000;
      const base = consoleUrl(broker);
      // Idle a while: what the first read left behind is collected, as it would be on a node that runs.
      await sleep(8000);
      const rssBytes = usage(broker.pids()).rssBytes;
      const model = await gauges(base);
      if (model.gatehouse_access_model_current !== 1) throw new Error(`the access model is not current: ${JSON.stringify(model)}`);
      const cold = await connectTimes(broker.mqttUrl, probes);
      const warm = await connectTimes(broker.mqttUrl, probes);
      const start: Start = {
        clients: model.gatehouse_access_model_clients!,
        startSeconds,
        loadSeconds: model.gatehouse_access_model_load_seconds!,
        credentialBytes: model.gatehouse_access_model_credential_bytes!,
        rssBytes,
        cold,
        warm,
      };
      console.error(
        `  ${fmt(start.clients, 0)} clients: started in ${fmt(startSeconds, 2)} s (model read in ${fmt(start.loadSeconds, 2)} s), ${fmt(rssBytes / MB)} MB resident, ` +
          `CONNECT p50/p99 ${fmt(quantile(cold, 0.5), 2)}/${fmt(quantile(cold, 0.99), 2)} ms cold, ${fmt(quantile(warm, 0.5), 2)}/${fmt(quantile(warm, 0.99), 2)} ms warm`,
      );
      return start;
    } finally {
      await broker.stop();
    }
  } finally {
    await drop();
  }
}

/** Memory, start and CONNECT with `clients` clients beside 1,000. */
export async function modelScenario(options: { databaseUrl: string; clients: number; brokerCpu?: string }) {
  const small = await measureStart(options.databaseUrl, 0, options.brokerCpu);
  const large = await measureStart(options.databaseUrl, options.clients - PROBES, options.brokerCpu);
  const perClient = (large.rssBytes - small.rssBytes) / (large.clients - small.clients);
  table(
    `The access model with ${fmt(large.clients, 0)} clients (PostgreSQL; Gatehouse on one core)`,
    ['clients', 'start to MQTT listening (s)', 'model read at start (s)', 'credentials in memory (MB; bytes a client)', 'resident memory after 8 s idle (MB)', 'CONNECT, first (p50 / p99 ms)', 'CONNECT, again (p50 / p99 ms)'],
    [small, large].map((s) => [
      fmt(s.clients, 0),
      fmt(s.startSeconds, 2),
      fmt(s.loadSeconds, 2),
      `${fmt(s.credentialBytes / MB)} (${fmt(s.credentialBytes / s.clients, 0)})`,
      fmt(s.rssBytes / MB),
      `${fmt(quantile(s.cold, 0.5), 2)} / ${fmt(quantile(s.cold, 0.99), 2)}`,
      `${fmt(quantile(s.warm, 0.5), 2)} / ${fmt(quantile(s.warm, 0.99), 2)}`,
    ]),
    `Each start on a database of its own; CONNECT timed by mqtt.js for ${fmt(PROBES, 0)} clients with generated passwords, one at a time, first each one's first CONNECT (a verify), then again (its verify cached).`,
  );
  console.log(
    `\nResident memory the ${fmt(large.clients, 0)}-client start holds beyond the ${fmt(small.clients, 0)}-client one: ${fmt((large.rssBytes - small.rssBytes) / MB)} MB, ` +
      `${fmt(perClient, 0)} bytes a client (budget: 300; the credentials alone ${fmt(large.credentialBytes / large.clients, 0)}).`,
  );
}

/**
 * Two nodes on one PostgreSQL: `changes` clients inserted one at a time by
 * this process (as another node's console would commit them), each timed
 * from its commit to node B's model counting it (its gauge, polled).
 */
export async function changesScenario(options: { databaseUrl: string; changes: number; brokerCpu?: string }) {
  const { url, database, drop } = await freshDatabase(options.databaseUrl);
  const nodes: RunningBroker[] = [];
  try {
    await fill(database, 0);
    // Both nodes share the broker's core: what they do with a change is on it.
    for (let i = 0; i < 2; i++) nodes.push(await startGatehouse({ DATABASE_URL: url, METRICS_TOKEN }, options.brokerCpu));
    const base = consoleUrl(nodes[1]!);
    const times: number[] = [];
    let count = (await gauges(base)).gatehouse_access_model_clients!;
    for (let i = 0; i < options.changes; i++) {
      await database.db.insert(schema.clients).values({ name: `Change ${i}`, username: `change-${i}`, passwordHash: hashGeneratedPassword(generatePassword()) });
      const committed = performance.now();
      for (;;) {
        const now = (await gauges(base)).gatehouse_access_model_clients!;
        if (now > count) {
          count = now;
          break;
        }
        if (performance.now() - committed > 10_000) throw new Error(`node B did not apply change ${i} within 10 s`);
      }
      times.push(performance.now() - committed);
      // Changes a few milliseconds apart, not back to back: each one's own latency.
      await sleep(20);
    }
    times.sort((a, b) => a - b);
    table(
      `A change committed, until another node's model holds it: ${options.changes} clients inserted one at a time, two nodes on PostgreSQL`,
      ['p50 (ms)', 'p99 (ms)', 'max (ms)', 'target'],
      [[fmt(quantile(times, 0.5), 1), fmt(quantile(times, 0.99), 1), fmt(times.at(-1)!, 1), 'p99 ≤ 100 ms']],
      'Each insert committed by the bench (as another node would), then node B polled over HTTP for its `gatehouse_access_model_clients` gauge until it counts one more (a poll costs about a millisecond of B’s core, so the figures are upper bounds).',
    );
  } finally {
    for (const node of nodes) await node.stop();
    await database.close();
    await drop();
  }
}
