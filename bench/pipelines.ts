/**
 * `npm run bench -- pipelines`: what forwarding costs and how fast it goes,
 * on the default install (embedded database), to an HTTP endpoint in this
 * process on core 0 (the broker on core 1):
 *
 * - QoS 1 publishes acknowledged per second, closed loop, with no pipeline and
 *   with `bench/fwd/#` mapped to a webhook (the outbox written before each
 *   PUBACK, by group commit), and the broker's CPU per message;
 * - messages forwarded per second, one request per message and batched (JSON
 *   arrays of up to 100 messages or 50 ms);
 * - an unrelated publisher/subscriber pair's round-trip p99 while a pipeline's
 *   endpoint answers every request 503 (a 5xx storm, QoS 1 publishes of the
 *   mapped topic going on at a fixed rate), beside the same without a pipeline.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { openDatabase, schema } from '../src/db';
import { createPipeline } from '../src/domain/pipelines/pipelines';
import { seedDatabase, startGatehouse, type RunningBroker } from './lib/brokers';
import { fmt, median, reportDeath, table } from './lib/contenders';
import { newHistogram } from './lib/histogram';
import { connectClient } from './lib/load';
import { usage } from './lib/proc';

const SECRET_KEY = 'bench-secret-key-0123456789';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Endpoint {
  url: string;
  /** Messages received (array elements count one each). */
  messages: number;
  lastAt: number;
  status: number;
  close(): Promise<void>;
}

async function startEndpoint(): Promise<Endpoint> {
  const endpoint: Endpoint = { url: '', messages: 0, lastAt: 0, status: 200, close: async () => {} };
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      if (endpoint.status < 300) {
        endpoint.messages += body.startsWith('[') ? (JSON.parse(body) as unknown[]).length : 1;
        endpoint.lastAt = performance.now();
      }
      res.writeHead(endpoint.status);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  endpoint.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/in`;
  endpoint.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return endpoint;
}

type Layout = { name: string; pipeline: null | { batch: boolean }; databaseUrl?: string };

async function startWith(template: string, layout: Layout, endpoint: Endpoint, brokerCpu: string | undefined): Promise<{ broker: RunningBroker; dir: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-pipelines-'));
  if (!layout.databaseUrl) cpSync(template, dir, { recursive: true });
  const database = await openDatabase(layout.databaseUrl ? { kind: 'postgres', url: layout.databaseUrl } : { kind: 'pglite', dataDir: dir });
  // Each start begins with an empty outbox and at most the layout's pipeline.
  await database.db.delete(schema.pipelines);
  if (layout.pipeline) {
    await createPipeline(
      database.db,
      {
        name: 'bench',
        kind: 'webhook',
        enabled: 'on',
        url: endpoint.url,
        mappings: [{ topicFilter: 'bench/fwd/#' }],
        ...(layout.pipeline.batch ? { batchMode: 'json', batchMaxMessages: '100', batchMaxWaitMs: '50' } : {}),
      },
      SECRET_KEY,
    );
  }
  await database.close();
  const broker = await startGatehouse({ DATA_DIR: dir, DATABASE_URL: layout.databaseUrl ?? '', SECRET_KEY, PIPELINES_ALLOW_PRIVATE_NETWORKS: '1', PIPELINES_RETRY_MAX_MS: '2000' }, brokerCpu);
  return { broker, dir };
}

/** Closed loop: `publishers` keep `window` QoS 1 publishes each unacknowledged on bench/fwd/…, for `seconds`. */
async function publishLoop(url: string, publishers: number, window: number, seconds: number): Promise<{ acked: number; clients: MqttClient[] }> {
  const clients = await Promise.all(Array.from({ length: publishers }, () => connectClient(url)));
  let acked = 0;
  let running = true;
  const payload = Buffer.from(JSON.stringify({ temp: 21.5, humidity: 40, note: 'x'.repeat(16) }));
  const loops = clients.map(
    (client, i) =>
      new Promise<void>((resolve) => {
        let inFlight = 0;
        let n = 0;
        const pump = () => {
          while (running && inFlight < window) {
            inFlight++;
            client.publish(`bench/fwd/${i}/${n++ % 10}`, payload, { qos: 1 }, () => {
              inFlight--;
              if (running) {
                acked++;
                setImmediate(pump);
              } else if (inFlight === 0) resolve();
            });
          }
        };
        pump();
      }),
  );
  await sleep(seconds * 1000);
  running = false;
  await Promise.race([Promise.all(loops), sleep(5000)]);
  return { acked, clients };
}

export async function pipelinesScenario(options: { rounds: number; seconds: number; brokerCpu: string | undefined; databaseUrl: string }) {
  const template = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-pipelines-template-'));
  await seedDatabase({ dataDir: template });
  const endpoint = await startEndpoint();
  const pg = options.databaseUrl;
  const layouts: Layout[] = [
    { name: 'embedded: no pipeline', pipeline: null },
    { name: 'embedded: webhook, one request per message', pipeline: { batch: false } },
    { name: 'embedded: webhook, batched (JSON, 100 messages or 50 ms)', pipeline: { batch: true } },
    { name: 'PostgreSQL: no pipeline', pipeline: null, databaseUrl: pg },
    { name: 'PostgreSQL: webhook, one request per message', pipeline: { batch: false }, databaseUrl: pg },
    { name: 'PostgreSQL: webhook, batched (JSON, 100 messages or 50 ms)', pipeline: { batch: true }, databaseUrl: pg },
  ];
  const acked = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  const forwarded = new Map<string, number[]>();
  try {
    for (let round = 0; round < options.rounds; round++) {
      for (const layout of layouts) {
        const { broker, dir } = await startWith(template, layout, endpoint, options.brokerCpu);
        try {
          endpoint.status = 200;
          endpoint.messages = 0;
          const before = usage(broker.pids());
          const started = performance.now();
          const result = await publishLoop(broker.mqttUrl, 4, 20, options.seconds);
          const after = usage(broker.pids());
          if (layout.pipeline) {
            // Until everything acknowledged has reached the endpoint (or 60 s).
            const deadline = performance.now() + 60_000;
            while (endpoint.messages < result.acked && performance.now() < deadline) await sleep(20);
            forwarded.set(layout.name, [...(forwarded.get(layout.name) ?? []), endpoint.messages / ((endpoint.lastAt - started) / 1000)]);
          }
          for (const client of result.clients) client.end(true);
          acked.set(layout.name, [...(acked.get(layout.name) ?? []), result.acked / options.seconds]);
          cpu.set(layout.name, [...(cpu.get(layout.name) ?? []), ((after.cpuSeconds - before.cpuSeconds) * 1e6) / Math.max(1, result.acked)]);
        } finally {
          if (!broker.alive()) reportDeath(`Gatehouse (${layout.name})`, broker, 'the pipelines scenario');
          await broker.stop();
          rmSync(dir, { recursive: true, force: true });
        }
      }
    }
    const base = (layout: Layout) => median(acked.get(layout.databaseUrl ? 'PostgreSQL: no pipeline' : 'embedded: no pipeline')!);
    table(
      `Pipelines: QoS 1 publishes acknowledged per second (4 publishers, 20 in flight each, ~60 B JSON, 10 topics each), median of ${options.rounds} rounds of ${options.seconds} s; the broker's state in LevelDB, the outbox in the database named`,
      ['layout', 'acknowledged msg/s', '÷ same database, no pipeline', 'broker CPU per message (µs)', 'forwarded msg/s (until the outbox is empty)'],
      layouts.map((layout) => {
        const value = median(acked.get(layout.name)!);
        return [
          layout.name,
          fmt(value, 0),
          `${fmt(value / base(layout), 2)}×`,
          fmt(median(cpu.get(layout.name)!), 0),
          layout.pipeline ? fmt(median(forwarded.get(layout.name)!), 0) : '—',
        ];
      }),
    );
    await stormRound(template, endpoint, options);
  } finally {
    await endpoint.close();
    rmSync(template, { recursive: true, force: true });
  }
}

/** An unrelated pair's round trips (QoS 1, one a time, every 10 ms) while `load` runs. */
async function pairP99(url: string, seconds: number): Promise<{ p50: number; p99: number; max: number; count: number }> {
  const subscriber = await connectClient(url);
  await subscriber.subscribeAsync('bench/pair/rtt', { qos: 1 });
  const publisher = await connectClient(url);
  const histogram = newHistogram();
  subscriber.on('message', (_topic, payload) => histogram.recordValue(Math.max(1, Math.round((performance.now() - Number(payload.toString())) * 1000))));
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    publisher.publish('bench/pair/rtt', String(performance.now()), { qos: 1 });
    await sleep(10);
  }
  await sleep(500);
  const result = { p50: histogram.getValueAtPercentile(50) / 1000, p99: histogram.getValueAtPercentile(99) / 1000, max: histogram.maxValue / 1000, count: histogram.totalCount };
  subscriber.end(true);
  publisher.end(true);
  return result;
}

async function stormRound(template: string, endpoint: Endpoint, options: { rounds: number; seconds: number; brokerCpu: string | undefined; databaseUrl: string }) {
  const rows: string[][] = [];
  const results = new Map<string, Array<{ p50: number; p99: number; max: number }>>();
  const layouts: Array<Layout & { status: number }> = [
    { name: 'embedded: no pipeline', pipeline: null, status: 200 },
    { name: 'embedded: a pipeline whose endpoint answers 503 to everything', pipeline: { batch: false }, status: 503 },
    { name: 'PostgreSQL: no pipeline', pipeline: null, status: 200, databaseUrl: options.databaseUrl },
    { name: 'PostgreSQL: a pipeline whose endpoint answers 503 to everything', pipeline: { batch: false }, status: 503, databaseUrl: options.databaseUrl },
  ];
  for (let round = 0; round < options.rounds; round++) {
    for (const layout of layouts) {
      const { broker, dir } = await startWith(template, layout, endpoint, options.brokerCpu);
      try {
        endpoint.status = layout.status;
        // Mapped traffic at 500 msg/s meanwhile: every one written to the outbox, every attempt refused.
        const load = await connectClient(broker.mqttUrl);
        let loading = true;
        const loader = (async () => {
          let n = 0;
          while (loading) {
            for (let i = 0; i < 5; i++) load.publish(`bench/fwd/storm/${n++ % 20}`, 'x', { qos: 1 });
            await sleep(10);
          }
        })();
        await sleep(1000);
        const measured = await pairP99(broker.mqttUrl, Math.max(5, options.seconds * 2));
        loading = false;
        await loader;
        load.end(true);
        results.set(layout.name, [...(results.get(layout.name) ?? []), measured]);
      } finally {
        if (!broker.alive()) reportDeath(`Gatehouse (${layout.name})`, broker, 'the pipelines storm');
        await broker.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  for (const layout of layouts) {
    const list = results.get(layout.name)!;
    rows.push([layout.name, fmt(median(list.map((r) => r.p50)), 2), fmt(median(list.map((r) => r.p99)), 2), fmt(median(list.map((r) => r.max)), 1)]);
  }
  endpoint.status = 200;
  table(
    `Pipelines: an unrelated pair's QoS 1 round trip (ms) while 500 msg/s of a mapped topic go on, median of ${options.rounds} rounds`,
    ['layout', 'p50', 'p99', 'max'],
    rows,
  );
}
