import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../src/domain/clients';
import { generatedPasswordToken, generatePassword } from '../src/domain/password';
import type { Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient, nextMessage, tryConnect } from './support/mqtt';

const TOKEN = 'metrics-token-for-the-tests';

/** One sample of `name` with exactly `labels`, from Prometheus text. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

describe('health probes and metrics', () => {
  let gatehouse: Gatehouse;
  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite', { METRICS_TOKEN: TOKEN });
    await createClient(gatehouse.database.db, { name: 'Meter', username: 'meter', password: 'meter-password' });
    await grantGroup(gatehouse.database.db, {
      name: 'Meters',
      permissions: [
        ['allow', 'publish', 'meters/#'],
        ['allow', 'subscribe', 'meters/#'],
      ],
      usernames: ['meter'],
    });
  });
  afterAll(async () => {
    await gatehouse?.close();
  });

  const scrape = async () => {
    const response = await gatehouse.app.request('/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    return response.text();
  };

  it('answers /healthz and /readyz without signing in', async () => {
    const health = await gatehouse.app.request('/healthz');
    expect(health.status).toBe(200);
    const ready = await gatehouse.app.request('/readyz');
    expect(ready.status).toBe(200);
    expect(await ready.text()).toBe('ready');
  });

  it('refuses /metrics without the bearer token, or with another', async () => {
    expect((await gatehouse.app.request('/metrics')).status).toBe(401);
    // As long as the right one, differing in its last character: the comparison decides, not the length.
    const wrong = `${TOKEN.slice(0, -1)}${TOKEN.endsWith('x') ? 'y' : 'x'}`;
    expect(wrong).toHaveLength(TOKEN.length);
    expect((await gatehouse.app.request('/metrics', { headers: { authorization: `Bearer ${wrong}` } })).status).toBe(401);
    expect((await gatehouse.app.request('/metrics', { headers: { authorization: TOKEN } })).status).toBe(401);
  });

  it('counts a refused CONNECT, messages in and out, refusals and connections by transport', async () => {
    const before = await scrape();
    const refusedBefore = sample(before, 'gatehouse_mqtt_connects_total', 'result="bad_credentials"') ?? 0;
    expect(await tryConnect(brokerUrl(gatehouse, 'tcp'), { username: 'meter', password: 'wrong-password' })).toMatchObject({ ok: false, code: 4 });

    const subscriber = await connect(brokerUrl(gatehouse, 'ws'), { username: 'meter', password: 'meter-password', clientId: 'metered-sub' });
    const publisher = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'meter', password: 'meter-password', clientId: 'metered-pub' });
    try {
      await subscriber.subscribeAsync('meters/reading', { qos: 1 });
      const received = nextMessage(subscriber, 'meters/reading');
      await publisher.publishAsync('meters/reading', '12345', { qos: 1 });
      await received;
      await publisher.publishAsync('elsewhere/x', 'refused', { qos: 1 });

      const after = await scrape();
      expect(sample(after, 'gatehouse_mqtt_connects_total', 'result="bad_credentials"')).toBe(refusedBefore + 1);
      expect(sample(after, 'gatehouse_mqtt_connects_total', 'result="accepted"')).toBeGreaterThanOrEqual(2);
      expect(sample(after, 'gatehouse_mqtt_received_messages_total', 'qos="1"')).toBeGreaterThanOrEqual(2);
      expect(sample(after, 'gatehouse_mqtt_sent_messages_total', 'qos="1"')).toBeGreaterThanOrEqual(1);
      expect(sample(after, 'gatehouse_mqtt_sent_payload_bytes_total')).toBeGreaterThanOrEqual(5);
      expect(sample(after, 'gatehouse_mqtt_refused_total', 'action="publish"')).toBeGreaterThanOrEqual(1);
      expect(sample(after, 'gatehouse_mqtt_connections', 'transport="tcp"')).toBeGreaterThanOrEqual(1);
      expect(sample(after, 'gatehouse_mqtt_connections', 'transport="ws"')).toBeGreaterThanOrEqual(1);
      expect(sample(after, 'gatehouse_password_verifies_total')).toBeGreaterThanOrEqual(2);
      expect(sample(after, 'nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0);
      expect(sample(after, 'process_resident_memory_bytes')).toBeGreaterThan(0);
      // Never a client id, username or topic as a label.
      expect(after).not.toMatch(/metered-|meters\/reading|username=/);
    } finally {
      await endClient(subscriber);
      await endClient(publisher);
    }
  });

  it('reports the access model: clients held, their bytes, how long it took to read, whether it is current', async () => {
    const before = await scrape();
    expect(sample(before, 'gatehouse_access_model_current')).toBe(1);
    expect(sample(before, 'gatehouse_access_model_load_seconds')).toBe(gatehouse.accessModel.stats().loadMs / 1000);
    const clients = sample(before, 'gatehouse_access_model_clients')!;
    const bytes = sample(before, 'gatehouse_access_model_credential_bytes')!;
    expect(clients).toBe(gatehouse.accessModel.stats().clients);
    expect(bytes).toBeGreaterThan(0);
    // Generated passwords (typed ones would be 20 Argon2id hashes): the model counts their bytes all the same.
    for (let i = 0; i < 20; i++) {
      const secret = generatePassword();
      await createClient(gatehouse.database.db, { name: `Gauge ${i}`, username: `gauge-${i}`, password: secret, password_generated: generatedPasswordToken(secret) });
    }
    await gatehouse.accessModel.settled();
    const after = await scrape();
    expect(sample(after, 'gatehouse_access_model_clients')).toBe(clients + 20);
    expect(sample(after, 'gatehouse_access_model_credential_bytes')).toBe(gatehouse.accessModel.stats().credentialBytes);
  });

  it('turns /readyz to 503 naming the database when it stops answering', async () => {
    const own = await startTestGatehouse('pglite');
    try {
      await own.database.close();
      const ready = await own.app.request('/readyz');
      expect(ready.status).toBe(503);
      expect(await ready.text()).toBe('not ready: database');
    } finally {
      await own.close().catch(() => {});
    }
  });

  it('answers /metrics with 404 when no METRICS_TOKEN is set', async () => {
    const own = await startTestGatehouse('pglite');
    try {
      expect((await own.app.request('/metrics', { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(404);
    } finally {
      await own.close();
    }
  });
});
