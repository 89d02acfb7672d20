import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../src/config';
import { eq } from 'drizzle-orm';
import { schema } from '../src/db';
import { startGatehouse, type Gatehouse } from '../src/server';
import { signIn, type SignedInApp } from './support/admin';
import { createPostgresTestDatabase, drivers } from './support/db';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, tryConnect } from './support/mqtt';
import { startRelay } from './support/relay';

describe.runIf(drivers.includes('postgres'))('the console while PostgreSQL is unreachable', { timeout: 120_000 }, () => {
  let database: { url: string; drop(): Promise<void> };
  let relay: Awaited<ReturnType<typeof startRelay>>;
  let dataDir: string;
  let gatehouse: Gatehouse;
  let operator: SignedInApp;
  const logs: string[] = [];

  beforeAll(async () => {
    database = await createPostgresTestDatabase();
    relay = await startRelay(new URL(database.url));
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-outage-'));
    gatehouse = await startGatehouse({
      config: configSchema.parse({ PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATABASE_URL: relay.url, DATA_DIR: dataDir }),
      log: (line) => logs.push(line),
    });
    operator = await signIn(gatehouse.app, gatehouse.database.db);
  });
  afterAll(async () => {
    await gatehouse?.close();
    await relay?.close();
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('answers 503 with Retry-After on every page, /login too, saves nothing, and recovers by itself', async () => {
    expect((await operator.request('/clients')).status).toBe(200);
    await relay.cut();

    for (const page of ['/', '/clients', '/groups', '/group-rules', '/administrators', '/clients/new']) {
      const response = await operator.request(page);
      expect(response.status, page).toBe(503);
      expect(response.headers.get('retry-after'), page).toBe('5');
      expect(await response.text(), page).toContain('The database is unavailable');
    }
    const login = await gatehouse.app.request('/login');
    expect(login.status).toBe(503);
    const signInPost = await gatehouse.app.request('/login', {
      method: 'POST',
      headers: { origin: 'http://localhost', 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ username: 'someone', password: 'some-password' }),
    });
    expect(signInPost.status).toBe(503);
    const create = await operator.request('/clients', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ name: 'During outage', username: 'during-outage', password: 'during-outage-password' }),
    });
    expect(create.status).toBe(503);
    // htmx requests get the page in <main>, not in the row that asked.
    const fragment = await operator.request('/clients', { headers: { 'hx-request': 'true' } });
    expect(fragment.status).toBe(503);
    expect(fragment.headers.get('hx-retarget')).toBe('main');
    // An unknown device is refused as always (what CONNECT knows is in memory); the broker stays up.
    expect(await tryConnect(brokerUrl(gatehouse, 'tcp'), { username: 'nobody', password: 'nobody-password' })).toMatchObject({ ok: false, code: 4 });
    expect(logs.filter((line) => line.includes('the database is unavailable'))).toHaveLength(1);
    expect(logs.join('\n')).not.toContain('failed: ');

    await relay.restore();
    await expect.poll(async () => (await operator.request('/clients')).status, { timeout: 30_000, interval: 250 }).toBe(200);
    const saved = await gatehouse.database.db.select().from(schema.clients).where(eq(schema.clients.username, 'during-outage'));
    expect(saved).toEqual([]);
  });
});

describe('the console when the embedded database fails', () => {
  it('answers 503 with Retry-After instead of 500', async () => {
    const gatehouse = await startTestGatehouse('pglite');
    try {
      const operator = await signIn(gatehouse.app, gatehouse.database.db);
      expect((await operator.request('/clients')).status).toBe(200);
      // What an I/O error leaves: a database that answers nothing.
      await gatehouse.database.close();
      const response = await operator.request('/clients');
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toBe('5');
    } finally {
      await gatehouse.close().catch(() => {});
    }
  });
});
