import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { asc, eq } from 'drizzle-orm';
import { schema, type OpenDatabase } from '../src/db';
import { createClient } from '../src/domain/clients';
import { loadOverview, loadSeries, recordSample, type NodeSample } from '../src/domain/overview';
import { createSampler } from '../src/sampler';
import type { Gatehouse } from '../src/server';
import { createApp } from '../src/web/app';
import { signIn, type SignedInApp } from './support/admin';
import { grantGroup } from './support/acl';
import { createTestDatabase, drivers } from './support/db';
import { startTestGatehouse } from './support/gatehouse';
import { htmx } from './support/http';
import { textOf } from './support/html';
import { brokerUrl, connect, endClient, nextMessage, subscribeCodes, tryConnect } from './support/mqtt';

/** The number shown in the overview's stat `id` (tags and thousands separators removed). */
function stat(html: string, id: string): string {
  const match = new RegExp(`id="stat-${id}"[\\s\\S]*?<strong class="stat-value">([\\s\\S]*?)</strong>`).exec(html);
  if (!match) throw new Error(`no stat ${id} in the page`);
  return match[1]!.replace(/<[^>]+>/g, '').replace(/,/g, '').trim();
}

/** The history table's rows: bucket start and each column's raw value. */
function historyRows(html: string): Array<{ t: number; values: number[] }> {
  return [...html.matchAll(/<tr data-t="(\d+)">([\s\S]*?)<\/tr>/g)].map((row) => ({
    t: Number(row[1]),
    values: [...row[2]!.matchAll(/data-value="([^"]+)"/g)].map((m) => Number(m[1])),
  }));
}

const nothing = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, authFailures: 0, refusals: 0 };

function sample(nodeId: string, at: Date, fields: Partial<NodeSample> = {}): NodeSample {
  return { nodeId, at, seconds: 60, connections: 0, ...nothing, ...fields };
}

describe.each(drivers)('the overview with a broker (%s)', (driver) => {
  let gatehouse: Gatehouse;
  let app: SignedInApp;

  beforeAll(async () => {
    gatehouse = await startTestGatehouse(driver);
    app = await signIn(gatehouse.app, gatehouse.database.db);
    const db = gatehouse.database.db;
    await createClient(db, { name: 'Boiler', username: 'boiler', password: 'boiler-password' });
    await createClient(db, { name: 'Pump', username: 'pump', password: 'pump-password' });
    await createClient(db, { name: 'Fan', username: 'fan', password: 'fan-password' });
    await grantGroup(db, {
      name: 'Boilers',
      permissions: [
        ['allow', 'publish', 'boiler/#'],
        ['allow', 'subscribe', 'boiler/#'],
      ],
      usernames: ['boiler'],
    });
  });
  afterAll(async () => {
    await gatehouse?.close();
  });

  it('is the page after sign-in, and shows clients, groups, connections, messages and refusals without JavaScript', async () => {
    const device = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'boiler', password: 'boiler-password', clientId: 'boiler-1' });
    try {
      expect(await subscribeCodes(device, { 'boiler/temperature': { qos: 1 }, 'pump/#': { qos: 0 } })).toEqual({ 'boiler/temperature': 1, 'pump/#': 128 });
      for (let i = 0; i < 5; i++) {
        const received = nextMessage(device, 'boiler/temperature');
        await device.publishAsync('boiler/temperature', `2${i}`, { qos: 1 });
        await received;
      }
      await device.publishAsync('pump/speed', 'refused', { qos: 1 });
      expect(await tryConnect(brokerUrl(gatehouse, 'tcp'), { username: 'boiler', password: 'wrong-password' })).toMatchObject({ ok: false, code: 4 });

      // Before any sample: what this node counted so far already shows.
      const early = await app.request('/');
      expect(early.status).toBe(200);
      const earlyHtml = await early.text();
      expect(earlyHtml).toContain('<title>Overview · Gatehouse</title>');
      expect(earlyHtml).not.toContain('<script>'); // no inline script
      expect(stat(earlyHtml, 'clients')).toBe('3');
      expect(stat(earlyHtml, 'groups')).toBe('1');
      expect(stat(earlyHtml, 'connections')).toBe('1');
      expect(stat(earlyHtml, 'refusals')).toBe('2'); // the subscription and the publish
      expect(stat(earlyHtml, 'auth-failures')).toBe('1');
      expect(stat(earlyHtml, 'messages-in')).toBe('—');
      expect(earlyHtml).toContain('id="history-empty"');

      await gatehouse.sampler.tick();
      const rows = await gatehouse.database.db.select().from(schema.metricSamples);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ nodeId: gatehouse.broker.aedes.id, connections: 1, messagesIn: 6, messagesOut: 5, authFailures: 1, refusals: 2 });
      expect(rows[0]!.bytesIn).toBe(5 * 2 + 'refused'.length);

      const html = await (await app.request('/')).text();
      // Counted once: in the sample now, not also as unsampled.
      expect(stat(html, 'refusals')).toBe('2');
      expect(stat(html, 'auth-failures')).toBe('1');
      expect(stat(html, 'connections')).toBe('1');
      const seconds = rows[0]!.seconds;
      expect(stat(html, 'messages-in')).toBe(`${new Intl.NumberFormat('en', { maximumFractionDigits: 2 }).format(6 / seconds)}/s`);
      expect(stat(html, 'messages-out')).not.toBe('—');
      // The history table holds the sample's minute, and the charts' place.
      const history = historyRows(html);
      expect(history).toHaveLength(1);
      expect(history[0]!.values).toEqual([1, 6 / seconds, 5 / seconds, 1, 2]);
      expect(html).toContain('data-chart="messages"');
      expect(html).toContain('src="/static/uPlot.iife.min.js"');
    } finally {
      await endClient(device);
    }
    // The connection closed: the live count follows at once.
    await expect.poll(async () => stat(await (await app.request('/')).text(), 'connections')).toBe('0');
  });

  it('lists the clients whose CONNECT was refused, with their attempts, and counts the usernames no client has', async () => {
    const url = brokerUrl(gatehouse, 'tcp');
    for (let i = 0; i < 2; i++) expect(await tryConnect(url, { username: 'pump', password: 'not-the-pump-password' })).toMatchObject({ ok: false, code: 4 });
    expect(await tryConnect(url, { username: 'ghost', password: 'whatever' })).toMatchObject({ ok: false, code: 4 });
    expect(await tryConnect(url, { username: 'phantom', password: 'whatever' })).toMatchObject({ ok: false, code: 4 });
    // Connected without a group: not refused at CONNECT, so not in the list.
    await endClient(await connect(url, { username: 'fan', password: 'fan-password', clientId: 'fan-1' }));
    await gatehouse.audit.flush();

    const html = await (await app.request('/')).text();
    const list = /<article id="refused-connects"[\s\S]*?<\/article>/.exec(html)?.[0] ?? '';
    const items = [...list.matchAll(/<li>([\s\S]*?)<\/li>/g)].map((m) => textOf(m[1]!));
    expect(items).toEqual(
      expect.arrayContaining([expect.stringMatching(/^Pump 2 wrong password, last \d{4}-\d\d-\d\d \d\d:\d\d UTC refusals$/), expect.stringMatching(/^Boiler 1 wrong password, last /)]),
    );
    expect(items).toHaveLength(2);
    expect(list).not.toContain('Fan');
    const pump = await gatehouse.database.db.select().from(schema.clients).where(eq(schema.clients.username, 'pump'));
    expect(list).toContain(`<a href="/clients/${pump[0]!.id}" class="truncate" title="Pump">Pump</a>`);
    expect(list).toContain('href="/audit?view=refusals&amp;kind=mqtt.auth_failed&amp;actor=pump"');
    expect(textOf(/<p id="refused-unknown">([\s\S]*?)<\/p>/.exec(list)?.[1] ?? '')).toBe('2 usernames no client has: 2 attempts. All refused CONNECTs');
  });

  it('refreshes the numbers as an htmx fragment, and the history per range', async () => {
    const counts = await app.request('/overview/counts', { headers: htmx });
    const fragment = await counts.text();
    expect(fragment).toMatch(/^<section id="overview-counts"/);
    expect(fragment).toContain('hx-trigger="every 30s"');
    // A failed refresh (database unavailable: 503) swaps nothing, whatever the error page's headers ask.
    expect(fragment).toContain('hx-status:5xx="swap:none"');
    const history = await app.request('/?range=7d', { headers: htmx });
    const historyHtml = await history.text();
    expect(historyHtml).toMatch(/^<section id="overview-history"/);
    expect(historyHtml).toMatch(/<a href="\/\?range=7d"[^>]*aria-current="page"/);
    expect(historyHtml).toContain('Last 7 days');
  });

  it('shows the last hour for a range it does not know', async () => {
    const html = await (await app.request('/?range=%3Cscript%3E')).text();
    expect(html).toMatch(/<a href="\/\?range=1h"[^>]*aria-current="page"/);
    expect(html).not.toContain('<script>');
  });

  it('serves uPlot and the overview script from this server', async () => {
    for (const file of ['uPlot.iife.min.js', 'uPlot.min.css', 'overview.js', 'try-it.js', 'mqtt.min.js']) {
      const response = await app.request(`/static/${file}`);
      expect(response.status, file).toBe(200);
    }
  });
});

describe.each(drivers)('overview samples (%s)', (driver) => {
  let database: OpenDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
  });
  afterEach(async () => {
    await database.db.delete(schema.metricSamples);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('writes what the counters gained since the last sample, and deletes samples older than the retention', async () => {
    const db = database.db;
    let totals = { ...nothing };
    let connections = 3;
    const sampler = createSampler({ db, nodeId: 'node-a', connections: () => connections, totals: async () => totals, retentionDays: 2 });
    const now = Date.now();
    await recordSample(db, sample('node-old', new Date(now - 3 * 86_400_000), { messagesIn: 99 }));
    await recordSample(db, sample('node-old', new Date(now - 86_400_000), { messagesIn: 7 }));

    totals = { ...totals, messagesIn: 10, messagesOut: 4, refusals: 1 };
    await sampler.tick(new Date(now));
    expect((await sampler.local()).unsampled).toEqual(nothing);
    totals = { ...totals, messagesIn: 25, authFailures: 2 };
    connections = 5;
    expect((await sampler.local()).unsampled).toMatchObject({ messagesIn: 15, authFailures: 2 });
    await sampler.tick(new Date(now + 60_000));

    const rows = await db.select().from(schema.metricSamples).orderBy(asc(schema.metricSamples.at));
    expect(rows.map((r) => [r.nodeId, r.messagesIn, r.messagesOut, r.authFailures, r.refusals, r.connections])).toEqual([
      ['node-old', 7, 0, 0, 0, 0],
      ['node-a', 10, 4, 0, 1, 3],
      ['node-a', 15, 0, 2, 0, 5],
    ]);
    expect(rows[2]!.seconds).toBe(60);
  });

  it('writes samples on its own timer once started, until stopped', async () => {
    const db = database.db;
    const sampler = createSampler({ db, nodeId: 'timed', connections: () => 1, totals: async () => nothing, retentionDays: 90, intervalMs: 200 });
    sampler.start();
    try {
      await expect.poll(async () => (await db.select().from(schema.metricSamples)).length, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    } finally {
      await sampler.stop();
    }
    const written = (await db.select().from(schema.metricSamples)).length;
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect((await db.select().from(schema.metricSamples)).length).toBe(written);
  });

  it('sums the nodes minute by minute and buckets them to 15 minutes for a day, an hour for a week', async () => {
    const db = database.db;
    const hour = 3_600_000;
    // Round to an hour so the buckets are known: 14:00, 14:15, …
    const now = new Date(Math.floor(Date.now() / hour) * hour + 50 * 60_000);
    const at = (minutesAgo: number) => new Date(now.getTime() - minutesAgo * 60_000);
    for (const [node, minutesAgo, connections, messagesIn, refusals] of [
      ['a', 2, 10, 600, 1],
      ['b', 2, 5, 300, 0],
      ['a', 1, 12, 1200, 2],
      ['b', 1, 4, 0, 0],
      ['a', 20, 7, 60, 5],
      ['a', 3 * 60, 1, 6, 0], // three hours ago: in the day, not the hour
      ['a', 3 * 24 * 60, 2, 0, 4], // three days ago: in the week only
    ] as const) {
      await recordSample(db, sample(node, at(minutesAgo), { connections, messagesIn, refusals }));
    }

    const lastHour = await loadSeries(db, '1h', now);
    expect(lastHour.map((p) => [p.t * 1000, p.connections, p.messagesInPerSecond, p.refusals])).toEqual([
      [at(20).getTime() - (at(20).getTime() % 60_000), 7, 1, 5],
      [at(2).getTime() - (at(2).getTime() % 60_000), 15, 15, 1],
      [at(1).getTime() - (at(1).getTime() % 60_000), 16, 20, 2],
    ]);

    const day = await loadSeries(db, '24h', now);
    const quarter = 15 * 60_000;
    const bucketOf = (d: Date) => Math.floor(d.getTime() / quarter) * quarter;
    expect(day.map((p) => [p.t * 1000, p.connections, p.messagesInPerSecond, p.refusals])).toEqual([
      [bucketOf(at(180)), 1, 0.1, 0],
      [bucketOf(at(20)), 7, 1, 5],
      // Two minutes in the 14:45 bucket: (900 + 1200) messages over 120 s; the most connections at once: 16.
      [bucketOf(at(2)), 16, 17.5, 3],
    ]);
    expect(day.every((p) => p.t % 900 === 0)).toBe(true);

    const week = await loadSeries(db, '7d', now);
    expect(week.every((p) => p.t % 3600 === 0)).toBe(true);
    expect(week[0]).toMatchObject({ t: Math.floor(at(3 * 24 * 60).getTime() / hour) * 3600, refusals: 4 });
    expect(week.at(-1)).toMatchObject({ t: Math.floor(now.getTime() / hour) * 3600, connections: 16, refusals: 8 });
  });

  it('sums the latest fresh sample of every node with this node, leaving out nodes gone quiet', async () => {
    const db = database.db;
    const now = new Date();
    const ago = (seconds: number) => new Date(now.getTime() - seconds * 1000);
    await recordSample(db, sample('this', ago(30), { connections: 100, messagesIn: 600, refusals: 1 }));
    await recordSample(db, sample('other', ago(90), { connections: 2, messagesIn: 60 }));
    await recordSample(db, sample('other', ago(30), { connections: 4, messagesIn: 120, messagesOut: 30, authFailures: 3 }));
    await recordSample(db, sample('stopped', ago(600), { connections: 50, messagesIn: 6000, refusals: 2 }));
    await recordSample(db, sample('long-gone', ago(2 * 3600), { refusals: 1000 }));

    const local = { nodeId: 'this', connections: 7, unsampled: { ...nothing, authFailures: 1, refusals: 10 } };
    const overview = await loadOverview(db, { now, local });
    expect(overview).toMatchObject({
      nodes: 2,
      connections: 7 + 4, // this node live, the other's latest; not the stopped one
      messagesInPerSecond: 10 + 2,
      messagesOutPerSecond: 0.5,
      authFailuresLastHour: 3 + 1,
      refusalsLastHour: 1 + 2 + 10,
    });
    const withoutBroker = await loadOverview(db, { now });
    expect(withoutBroker).toMatchObject({ nodes: 2, connections: 104 });
  });

  it('renders the chart rows from the samples in the console without a broker', async () => {
    const app = await signIn(createApp({ db: database.db, log: () => {} }), database.db);
    const now = Date.now();
    await recordSample(database.db, sample('a', new Date(now - 60_000), { connections: 3, messagesIn: 120, messagesOut: 60, authFailures: 1, refusals: 4 }));
    const html = await (await app.request('/?range=24h')).text();
    const rows = historyRows(html);
    expect(rows).toEqual([{ t: Math.floor((now - 60_000) / 900_000) * 900, values: [3, 2, 1, 1, 4] }]);
    expect(stat(html, 'connections')).toBe('3');
  });
});
