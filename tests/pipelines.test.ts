import { sql } from 'drizzle-orm';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, schema, type OpenDatabase } from '../src/db';
import { listAuditEvents } from '../src/domain/audit';
import { ValidationError } from '../src/domain/errors';
import { listDeadLetters, OutboxFullError, replayDeadLetters } from '../src/domain/pipelines/outbox';
import { createPipeline, getPipeline, type PipelineInput } from '../src/domain/pipelines/pipelines';
import { createPipelineService, type PipelineService } from '../src/pipelines/service';
import { createPostgresTestDatabase, createTestDatabase, drivers } from './support/db';
import { startReceiver, type Receiver } from './support/receiver';

const SECRET_KEY = 'a-secret-key-for-the-tests';
const who = { clientRowId: 1, username: 'sensor-user', mqttClientId: 'sensor-1', groups: ['sensors'] };
const message = (topic: string, payload: string, qos: 0 | 1 | 2 = 1) => ({ topic, payload: Buffer.from(payload), qos, retain: false });

function webhook(receiver: Receiver, extra: PipelineInput = {}): PipelineInput {
  return { name: 'hook', kind: 'webhook', enabled: 'on', url: `${receiver.url}/in`, mappings: [{ topicFilter: 'sensors/#' }], ...extra };
}

describe.each(drivers)('pipelines on %s', (driver) => {
  let database: OpenDatabase;
  let receiver: Receiver;
  const services: PipelineService[] = [];

  function service(options: { allowPrivate?: boolean } = {}) {
    const created = createPipelineService({
      db: database.db,
      secretKey: SECRET_KEY,
      destination: { allowPrivateNetworks: options.allowPrivate ?? true, nodeId: `node-${services.length}` },
      options: { pollMs: 30, janitorMs: 100, retryBaseMs: 40, retryMaxMs: 200, leaseMs: 30_000 },
    });
    services.push(created);
    return created;
  }

  async function started(options: { allowPrivate?: boolean } = {}) {
    const created = service(options);
    await created.reload();
    created.start();
    return created;
  }

  beforeAll(async () => {
    database = await createTestDatabase(driver);
  });
  afterAll(async () => {
    await database.close();
  });
  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.close()));
    await receiver?.close();
    await database.db.execute(sql`delete from pipelines`);
  });

  it('refuses an unknown template variable when the pipeline is saved, and keeps secrets sealed and out of the audit trail', async () => {
    receiver = await startReceiver();
    await expect(createPipeline(database.db, webhook(receiver, { bodyTemplate: '{"t": {{topic | json}}, "x": {{temperature}}}' }), SECRET_KEY)).rejects.toSatisfy(
      (error: unknown) => error instanceof ValidationError && /temperature/.test(error.fieldErrors.bodyTemplate ?? ''),
    );
    const { pipeline, signingSecret } = await createPipeline(database.db, webhook(receiver, { auth: 'bearer', bearerToken: 'tok-very-secret-123' }), SECRET_KEY, { username: 'admin' });
    expect(signingSecret).toMatch(/^whsec_/);
    const [row] = await database.db.select({ sealed: schema.pipelines.secretsSealed }).from(schema.pipelines);
    const sealed = row!.sealed!;
    expect(sealed).toMatch(/^v1:/);
    expect(sealed).not.toContain('tok-very-secret-123');
    const audit = await listAuditEvents(database.db, { kind: 'pipeline.created' });
    expect(JSON.stringify(audit.events)).not.toContain('tok-very-secret-123');
    expect(JSON.stringify(audit.events)).not.toContain(signingSecret!);
    expect((await getPipeline(database.db, pipeline.id, SECRET_KEY))!.storedSecrets).toContain('bearerToken');
  });

  it('forwards a mapped message signed per Standard Webhooks, with a stable id, and nothing unmapped', async () => {
    receiver = await startReceiver();
    const { signingSecret } = await createPipeline(
      database.db,
      webhook(receiver, { bodyTemplate: '{"topic": {{topic | json}}, "temp": {{payload.json.temp}}, "by": "{{client.username}}"}', auth: 'bearer', bearerToken: 'tok-1' }),
      SECRET_KEY,
    );
    const pipelines = await started();
    await pipelines.onPublishAccepted(message('sensors/a/temp', '{"temp": 21.5}'), who);
    expect(pipelines.onPublishAccepted(message('other/topic', 'x'), who)).toBeUndefined();
    const [request] = await receiver.waitFor(1);
    expect(JSON.parse(request!.body)).toEqual({ topic: 'sensors/a/temp', temp: 21.5, by: 'sensor-user' });
    expect(request!.headers.authorization).toBe('Bearer tok-1');
    expect(request!.headers['idempotency-key']).toBe(request!.headers['webhook-id']);
    // The receiving side verifies the signature with the Standard Webhooks library.
    const verified = new Webhook(signingSecret!).verify(request!.body, request!.headers as Record<string, string>);
    expect(verified).toEqual({ topic: 'sensors/a/temp', temp: 21.5, by: 'sensor-user' });
    expect(() => new Webhook(`whsec_${Buffer.alloc(32, 1).toString('base64')}`).verify(request!.body, request!.headers as Record<string, string>)).toThrow();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(receiver.received).toHaveLength(1);
  });

  it('keeps every message while the endpoint answers 503, then delivers them all in order per topic, each id once', async () => {
    receiver = await startReceiver();
    let down = true;
    receiver.answer = () => (down ? { status: 503, body: 'maintenance', headers: { 'retry-after': '0' } } : { status: 204 });
    await createPipeline(database.db, webhook(receiver), SECRET_KEY);
    const pipelines = await started();
    const sent: Array<Promise<void> | void> = [];
    for (let i = 0; i < 30; i++) sent.push(pipelines.onPublishAccepted(message(`sensors/${i % 3}`, String(i)), who));
    await Promise.all(sent);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(receiver.received.length).toBeGreaterThan(0);
    expect(receiver.accepted()).toHaveLength(0);
    const figures = pipelines.figures()[0]!;
    expect(figures.retried).toBeGreaterThan(0);
    down = false;
    const accepted = await receiver.waitFor(30, 30_000);
    const bodies = accepted.map((r) => JSON.parse(r.body) as { topic: string; payload: string; id: string; timestamp: string });
    expect(new Set(bodies.map((b) => b.id)).size).toBe(30);
    for (const body of bodies) expect(Math.abs(Date.parse(body.timestamp) - Date.now())).toBeLessThan(60_000);
    for (const topic of ['sensors/0', 'sensors/1', 'sensors/2']) {
      const order = bodies.filter((b) => b.topic === topic).map((b) => Number(b.payload));
      expect(order).toEqual([...order].sort((a, b) => a - b));
      expect(order).toHaveLength(10);
    }
  });

  it('holds back the later messages of a topic while its earlier one waits for a retry, and lets other topics through', async () => {
    receiver = await startReceiver();
    let refusals = 0;
    // The first message of topic a is answered 503 three times; everything else is taken at once.
    receiver.answer = (request) => (JSON.parse(request.body).payload === 'a0' && refusals++ < 3 ? { status: 503 } : { status: 200 });
    await createPipeline(database.db, webhook(receiver), SECRET_KEY);
    const pipelines = await started();
    await Promise.all(['a0', 'a1', 'a2', 'b0', 'b1'].map((payload) => pipelines.onPublishAccepted(message(`sensors/${payload[0]}`, payload), who)));
    const accepted = await receiver.waitFor(5, 20_000);
    const payloads = accepted.map((r) => (JSON.parse(r.body) as { payload: string }).payload);
    expect(payloads.filter((p) => p.startsWith('a'))).toEqual(['a0', 'a1', 'a2']);
    // Topic b did not wait for a's retries.
    expect(payloads.indexOf('b1')).toBeLessThan(payloads.indexOf('a0'));
    expect(refusals).toBeGreaterThanOrEqual(3);
  });

  it('moves a message the endpoint refuses for good (4xx) to the dead letters with its status and answer, and replays it', async () => {
    receiver = await startReceiver();
    let refuse = true;
    receiver.answer = () => (refuse ? { status: 422, body: 'field temp missing' } : { status: 200 });
    const { pipeline } = await createPipeline(database.db, webhook(receiver), SECRET_KEY);
    const pipelines = await started();
    await pipelines.onPublishAccepted(message('sensors/x', 'bad'), who);
    await expect.poll(async () => (await listDeadLetters(database.db, pipeline.id)).total, { timeout: 10_000 }).toBe(1);
    const [letter] = (await listDeadLetters(database.db, pipeline.id)).letters;
    expect(letter!.lastStatus).toBe(422);
    expect(letter!.lastError).toContain('field temp missing');
    expect(receiver.received).toHaveLength(1);
    refuse = false;
    expect(await replayDeadLetters(database.db, pipeline.id, letter!.id)).toBe(1);
    const [replayed] = await receiver.waitFor(1);
    expect((JSON.parse(replayed!.body) as { id: string }).id).toBe(letter!.messageId);
    expect((await listDeadLetters(database.db, pipeline.id)).total).toBe(0);
  });

  it('refuses private and loopback addresses unless allowed', async () => {
    receiver = await startReceiver();
    const { pipeline } = await createPipeline(database.db, webhook(receiver), SECRET_KEY);
    const pipelines = await started({ allowPrivate: false });
    await pipelines.onPublishAccepted(message('sensors/x', 'hello'), who);
    await expect.poll(async () => (await listDeadLetters(database.db, pipeline.id)).total, { timeout: 10_000 }).toBe(1);
    expect((await listDeadLetters(database.db, pipeline.id)).letters[0]!.lastError).toMatch(/internal address/);
    expect(receiver.received).toHaveLength(0);
  });

  it('refuses a QoS 1 publish when the outbox of a "refuse" pipeline is full, and counts drops of "drop newest"', async () => {
    receiver = await startReceiver();
    receiver.answer = () => ({ status: 503 });
    await createPipeline(database.db, webhook(receiver, { name: 'refusing', overflow: 'refuse', maxOutboxMb: '1', mappings: [{ topicFilter: 'big/refuse' }] }), SECRET_KEY);
    await createPipeline(database.db, webhook(receiver, { name: 'dropping', overflow: 'drop_newest', maxOutboxMb: '1', mappings: [{ topicFilter: 'big/drop' }] }), SECRET_KEY);
    const pipelines = await started();
    // The limit is judged on an estimate (measured, plus what was written since), which errs on the full side.
    const big = 'x'.repeat(200 * 1024);
    let accepted = 0;
    let refusal: unknown;
    for (let i = 0; i < 10 && !refusal; i++) {
      try {
        await pipelines.onPublishAccepted(message('big/refuse', big), who);
        accepted++;
      } catch (error) {
        refusal = error;
      }
    }
    expect(refusal).toBeInstanceOf(OutboxFullError);
    expect(refusal).toMatchObject({ reasonCode: 0x97 });
    expect(accepted).toBeGreaterThanOrEqual(2);
    expect(accepted).toBeLessThanOrEqual(5);
    let written = 0;
    for (let i = 0; i < 10; i++) if (pipelines.onPublishAccepted(message('big/drop', big), who)) written++;
    await pipelines.flush();
    expect(written).toBeGreaterThanOrEqual(2);
    expect(written).toBeLessThanOrEqual(5);
    const dropped = pipelines.figures().map((f) => f.dropped);
    expect(dropped.some((d) => d.refused === 1)).toBe(true);
    expect(dropped.some((d) => d.overflow_newest === 10 - written)).toBe(true);
  });

  it('sends TagoIO exactly what TagoDeploy sends: network token, authorization token, one data point', async () => {
    receiver = await startReceiver();
    await createPipeline(
      database.db,
      { name: 'tago', kind: 'tagoio', enabled: 'on', tagoApiUrl: receiver.url, networkToken: 'net-token-1', authorizationToken: 'auth token/2', mappings: [{ topicFilter: 'sensors/#' }] },
      SECRET_KEY,
    );
    const pipelines = await started();
    await pipelines.onPublishAccepted(message('sensors/t', '{"temp":1}', 1), who);
    await pipelines.onPublishAccepted({ topic: 'sensors/bin', payload: Buffer.from([0xff, 0x00, 0x10]), qos: 0, retain: false }, who);
    const requests = await receiver.waitFor(2);
    for (const request of requests) {
      expect(request.method).toBe('POST');
      const url = new URL(request.url, receiver.url);
      expect(url.pathname).toBe('/integration/network/data');
      expect(url.searchParams.get('authorization_token')).toBe('auth token/2');
      expect(request.headers.authorization).toBe('net-token-1');
      expect(request.headers['content-type']).toBe('application/json');
    }
    const bodies = requests.map((r) => JSON.parse(r.body) as unknown[]);
    expect(bodies).toContainEqual([{ variable: 'payload', value: '{"temp":1}', metadata: { topic: 'sensors/t', qos: 1 } }]);
    expect(bodies).toContainEqual([{ variable: 'payload', value: 'FF0010', metadata: { topic: 'sensors/bin', qos: 0 } }]);
  });

  it('batches messages into one JSON array or NDJSON request', async () => {
    receiver = await startReceiver();
    await createPipeline(database.db, webhook(receiver, { batchMode: 'ndjson', batchMaxMessages: '10', batchMaxWaitMs: '5000' }), SECRET_KEY);
    const pipelines = await started();
    await Promise.all(Array.from({ length: 10 }, (_, i) => pipelines.onPublishAccepted(message('sensors/b', String(i)), who)));
    const [request] = await receiver.waitFor(1);
    expect(request!.headers['content-type']).toBe('application/x-ndjson');
    const lines = request!.body.trim().split('\n').map((line) => JSON.parse(line) as { payload: string });
    expect(lines.map((l) => l.payload)).toEqual(Array.from({ length: 10 }, (_, i) => String(i)));
    expect(receiver.received).toHaveLength(1);
  });
});

describe.runIf(drivers.includes('postgres'))('two nodes on one PostgreSQL outbox', () => {
  it('share the work and forward each message once', async () => {
    const created = await createPostgresTestDatabase();
    const nodes = [await openDatabase({ kind: 'postgres', url: created.url, maxConnections: 4 }), await openDatabase({ kind: 'postgres', url: created.url, maxConnections: 4 })];
    const receiver = await startReceiver();
    // A slow endpoint: each node's claims stay busy, so the other finds work too.
    receiver.answer = () => ({ status: 200 });
    const services = nodes.map((node, i) =>
      createPipelineService({
        db: node.db,
        secretKey: SECRET_KEY,
        destination: { allowPrivateNetworks: true, nodeId: `node-${i}` },
        options: { pollMs: 20, janitorMs: 200, claimLimit: 8, concurrency: 2 },
      }),
    );
    try {
      await createPipeline(nodes[0]!.db, webhook(receiver), SECRET_KEY);
      for (const s of services) {
        await s.reload();
        s.start();
      }
      const writes: Array<Promise<void> | void> = [];
      for (let i = 0; i < 300; i++) writes.push(services[i % 2]!.onPublishAccepted(message(`sensors/${i % 20}`, String(i)), who));
      await Promise.all(writes);
      const accepted = await receiver.waitFor(300, 60_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const ids = receiver.received.map((r) => (JSON.parse(r.body) as { id: string }).id);
      expect(ids).toHaveLength(300);
      expect(new Set(ids).size).toBe(300);
      expect(accepted).toHaveLength(300);
      const delivered = services.map((s) => s.figures()[0]!.delivered);
      expect(delivered[0]! + delivered[1]!).toBe(300);
      expect(Math.min(...delivered)).toBeGreaterThan(0);
      // Order per topic holds across the two nodes.
      for (let t = 0; t < 20; t++) {
        const order = receiver.received.map((r) => JSON.parse(r.body) as { topic: string; payload: string }).filter((b) => b.topic === `sensors/${t}`).map((b) => Number(b.payload));
        expect(order).toEqual([...order].sort((a, b) => a - b));
      }
    } finally {
      await Promise.all(services.map((s) => s.close()));
      await receiver.close();
      for (const node of nodes) await node.close();
      await created.drop();
    }
  });
});
