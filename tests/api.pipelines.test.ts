import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema, type OpenDatabase } from '../src/db';
import { createApiToken } from '../src/domain/apiTokens';
import { listAuditEvents } from '../src/domain/audit';
import { deadLetterCount } from '../src/domain/pipelines/outbox';
import { listPipelines } from '../src/domain/pipelines/pipelines';
import { createPipelineService, type PipelineService } from '../src/pipelines/service';
import { createApp } from '../src/web/app';
import { signIn } from './support/admin';
import { certificateFactory, type Issued } from './support/certs';
import { createTestDatabase, drivers } from './support/db';
import { postForm } from './support/http';
import { startReceiver, type Receiver } from './support/receiver';

const SECRET_KEY = 'a-secret-key-for-the-api-tests';
const BEARER = 'the-bearer-token-api-7731';
const SIGNING = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
const NETWORK = 'tago-network-token-5521';
const AUTHORIZATION = 'tago-authorization-token-9913';
const BRIDGE_PASSWORD = 'bridge-password-4409';
const SECRETS = [BEARER, SIGNING, NETWORK, AUTHORIZATION, BRIDGE_PASSWORD];
const who = { clientRowId: 1, username: 'sensor-user', mqttClientId: 'sensor-1', groups: ['sensors'] };
const message = (topic: string, payload: string) => ({ topic, payload: Buffer.from(payload), qos: 1 as const, retain: false });

type App = ReturnType<typeof createApp>;
type Init = { method?: string; body?: unknown; headers?: Record<string, string> };
type OpenApiDocument = { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>>; components: unknown };

/** Waits for `check` to hold, looking again after each short pause (an event the code under test does not announce). */
async function until(check: () => Promise<boolean> | boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`never: ${what}`);
}

describe.each(drivers)('the pipelines API on %s', (driver) => {
  let database: OpenDatabase;
  let receiver: Receiver;
  let service: PipelineService;
  let app: App;
  let writer: string;
  let reader: string;
  let groupsOnly: string;
  let document: OpenApiDocument;
  const certs = certificateFactory();
  let ca: Issued;
  let bridgeCert: Issued;
  const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
  const compiled = new Map<string, ValidateFunction>();
  /** Every answer's text, to check that no secret was ever in one. */
  const answers: string[] = [];

  const send = async (token: string, path: string, init: Init = {}, via: App = app) => {
    const res = await via.request(`/api/v1${path}`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${token}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
    answers.push(await res.clone().text());
    return res;
  };

  /** The answer's body, checked against the schema the document gives for this operation and status. */
  async function documented(res: Response, method: string, path: string) {
    const type = res.headers.get('content-type')!.split(';')[0]!;
    const key = `${method} ${path} ${res.status} ${type}`;
    let validate = compiled.get(key);
    if (!validate) {
      const content = document.paths[path]?.[method]?.responses[String(res.status)]?.content?.[type];
      expect(content, `${key} is documented`).toBeDefined();
      validate = ajv.compile({ ...(content!.schema as object), components: document.components });
      compiled.set(key, validate);
    }
    const body = await res.json();
    expect(validate(body) ? [] : validate.errors, key).toEqual([]);
    return body;
  }

  beforeAll(async () => {
    database = await createTestDatabase(driver);
    receiver = await startReceiver();
    service = createPipelineService({
      db: database.db,
      secretKey: SECRET_KEY,
      destination: { allowPrivateNetworks: true, nodeId: 'api-test' },
      options: { pollMs: 30, janitorMs: 100, retryBaseMs: 40, retryMaxMs: 200 },
    });
    await service.reload();
    await service.start();
    app = createApp({ db: database.db, log: () => {}, pipelines: { service, secretKey: SECRET_KEY } });
    writer = (await createApiToken(database.db, { name: 'forwarding script', preset: 'custom', scopes: { pipelines: 'write' } })).secret;
    reader = (await createApiToken(database.db, { name: 'dashboard', preset: 'viewer' })).secret;
    groupsOnly = (await createApiToken(database.db, { name: 'groups only', preset: 'custom', scopes: { groups: 'write' } })).secret;
    document = await (await app.request('/api/v1/openapi.json')).json();
    ca = certs.ca('API pipelines CA');
    bridgeCert = certs.client(ca, 'bridge-client');
    // The private key's body, which no answer may hold.
    SECRETS.push(bridgeCert.key.split('\n')[1]!);
  });
  afterAll(async () => {
    certs.remove();
    await service?.close();
    await receiver?.close();
    await database?.close();
  });

  const webhook = (extra: Record<string, unknown> = {}) => ({
    name: 'to the lab',
    description: 'readings',
    destination: {
      kind: 'webhook',
      url: `${receiver.url}/hook`,
      auth: 'bearer',
      bearerToken: BEARER,
      signingSecret: SIGNING,
      headers: [{ name: 'X-Site', value: 'lab' }],
      bodyTemplate: '{"t": {{topic | json}}, "v": {{payload.json.v}}}',
      ...extra,
    },
    mappings: [{ topicFilter: 'sensors/#' }],
  });

  it('documents every pipelines operation with its scope', () => {
    const operations = Object.entries(document.paths)
      .filter(([path]) => path.startsWith('/pipelines'))
      .flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`));
    expect(operations.sort()).toEqual(
      [
        'GET /pipelines',
        'POST /pipelines',
        'GET /pipelines/{id}',
        'PUT /pipelines/{id}',
        'DELETE /pipelines/{id}',
        'GET /pipelines/{id}/mappings',
        'PUT /pipelines/{id}/mappings',
        'POST /pipelines/{id}/pause',
        'POST /pipelines/{id}/resume',
        'GET /pipelines/{id}/state',
        'POST /pipelines/{id}/test',
        'POST /pipelines/{id}/signing-secrets',
        'DELETE /pipelines/{id}/signing-secrets/previous',
        'GET /pipelines/{id}/dead-letters',
        'POST /pipelines/{id}/dead-letters/replay',
        'POST /pipelines/{id}/dead-letters/{letter}/replay',
        'DELETE /pipelines/{id}/dead-letters',
      ].sort(),
    );
    const scopes = Object.values(document.paths['/pipelines']!).map((op) => (op as unknown as { security: Array<{ bearerToken: string[] }> }).security[0]!.bearerToken);
    expect(scopes).toEqual([['pipelines:read'], ['pipelines:write']]);
  });

  it('refuses a token without the pipelines scope, and a read-only token any change', async () => {
    const none = await send(groupsOnly, '/pipelines');
    expect(none.status).toBe(403);
    expect((await documented(none, 'get', '/pipelines')).detail).toContain('pipelines:read');
    const readOnly = await send(reader, '/pipelines', { method: 'POST', body: webhook() });
    expect(readOnly.status).toBe(403);
    expect((await documented(readOnly, 'post', '/pipelines')).detail).toContain('pipelines:write');
    expect(await listPipelines(database.db, SECRET_KEY)).toHaveLength(0);
    const list = await send(reader, '/pipelines');
    expect(list.status).toBe(200);
    expect(await documented(list, 'get', '/pipelines')).toEqual({ items: [], total: 0, page: 1, pageCount: 1 });
  });

  it('offers the pipelines scope on the API tokens page, and a token made there with it may read and change pipelines', async () => {
    const admin = await signIn(app, database.db);
    const form = await (await admin.request('/tokens/new')).text();
    expect(form).toContain('Pipelines and mappings');
    expect(form).toContain('name="scope-pipelines"');
    const made = await postForm(admin, '/tokens', { name: 'pipelines from the page', preset: 'custom', 'scope-pipelines': 'write', expiresInDays: '1', allowedAddresses: '' });
    expect(made.status).toBe(201);
    const secret = /value="(gat_[A-Za-z0-9_-]{43})"/.exec(await made.text())![1]!;
    expect(await (await admin.request('/tokens')).text()).toContain('pipelines read-write');
    expect((await send(secret, '/pipelines')).status).toBe(200);
    expect((await send(secret, '/clients')).status).toBe(403);
    const invalid = await send(secret, '/pipelines', { method: 'POST', body: { name: '', destination: { kind: 'tagoio' } } });
    expect(invalid.status).toBe(422);
  });

  it('refuses what the console refuses, naming each field where the body has it, and saves nothing', async () => {
    const unknown = await send(writer, '/pipelines', { method: 'POST', body: webhook({ bodyTemplate: '{"t": {{tpoic}}}' }) });
    expect(unknown.status).toBe(422);
    const problem = await documented(unknown, 'post', '/pipelines');
    expect(problem.errors).toEqual([{ field: 'destination.bodyTemplate', pointer: '#/destination/bodyTemplate', detail: expect.stringContaining('{{tpoic}} is not a variable') }]);
    const several = await send(writer, '/pipelines', {
      method: 'POST',
      body: { ...webhook({ url: 'ftp://example.com/x', batch: { maxMessages: 5000 } }), mappings: [{ topicFilter: 'a/#/b' }] },
    });
    expect(several.status).toBe(422);
    const fields = (await documented(several, 'post', '/pipelines')).errors.map((e: { field: string; pointer: string }) => `${e.field} ${e.pointer}`);
    expect(fields).toEqual(
      expect.arrayContaining(['destination.url #/destination/url', 'destination.batch.maxMessages #/destination/batch/maxMessages', 'mappings.0.topicFilter #/mappings/0/topicFilter']),
    );
    const badSecret = await send(writer, '/pipelines', { method: 'POST', body: webhook({ signingSecret: 'whsec_short' }) });
    expect((await badSecret.json()).errors).toEqual([expect.objectContaining({ field: 'destination.signingSecret' })]);
    const bridge = await send(writer, '/pipelines', { method: 'POST', body: { name: 'bridge', destination: { kind: 'mqtt', url: 'http://broker.example', remoteTopic: 'x/{{nope}}' } } });
    expect(bridge.status).toBe(422);
    expect((await bridge.json()).errors.map((e: { field: string }) => e.field).sort()).toEqual(['destination.remoteTopic', 'destination.url']);
    // The API's own bounds, before the domain: a header that would split into two.
    const split = await send(writer, '/pipelines', { method: 'POST', body: webhook({ headers: [{ name: 'X-A', value: 'a\r\nAuthorization: Bearer x' }] }) });
    expect(split.status).toBe(422);
    expect((await split.json()).errors[0].field).toBe('destination.headers.0.value');
    expect(await listPipelines(database.db, SECRET_KEY)).toHaveLength(0);
  });

  let id: number;

  it('creates a webhook pipeline that every message of its mappings reaches at once, signed, with its secrets never answered', async () => {
    const created = await send(writer, '/pipelines', { method: 'POST', body: webhook(), headers: { 'idempotency-key': 'lab-hook-1' } });
    expect(created.status).toBe(201);
    const body = await documented(created, 'post', '/pipelines');
    id = body.id;
    expect(created.headers.get('location')).toBe(`/api/v1/pipelines/${id}`);
    expect(created.headers.get('etag')).toBe(`"v${body.version}"`);
    expect(body).toMatchObject({
      name: 'to the lab',
      enabled: true,
      destination: { kind: 'webhook', method: 'POST', url: `${receiver.url}/hook`, auth: 'bearer', headers: [{ name: 'X-Site', value: 'lab' }] },
      secrets: { bearerToken: 'set', basicPassword: 'not set', clientKey: 'not set', signingSecret: 'set' },
      signingSecrets: 1,
      maxOutboxMb: 256,
      maxAgeHours: 24,
      overflow: 'drop_oldest',
      mappings: [{ topicFilter: 'sensors/#', narrowBy: 'any', narrowValue: '' }],
    });
    // A retry with the same key answers the same pipeline, and the key's row keeps no secret in clear.
    const again = await send(writer, '/pipelines', { method: 'POST', body: webhook(), headers: { 'idempotency-key': 'lab-hook-1' } });
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await again.json()).id).toBe(id);
    const kept = JSON.stringify(await database.db.select().from(schema.apiIdempotencyKeys));
    for (const secret of [BEARER, SIGNING]) expect(kept).not.toContain(secret);
    expect((await send(writer, '/pipelines', { method: 'POST', body: webhook({ bearerToken: 'another-token' }), headers: { 'idempotency-key': 'lab-hook-1' } })).status).toBe(422);

    // Applied at once: a message published now reaches the endpoint, with the token and the signature given.
    await service.onPublishAccepted(message('sensors/lab/1', '{"v": 21.5}'), who);
    const [request] = await receiver.waitFor(1);
    expect(request!.headers.authorization).toBe(`Bearer ${BEARER}`);
    expect(request!.headers['x-site']).toBe('lab');
    expect(new Webhook(SIGNING).verify(request!.body, request!.headers as Record<string, string>)).toEqual({ t: 'sensors/lab/1', v: 21.5 });

    // Read back, listed, audited with the token's name: never a secret.
    const read = await send(reader, `/pipelines/${id}`);
    expect((await documented(read, 'get', '/pipelines/{id}')).secrets.bearerToken).toBe('set');
    const list = await documented(await send(reader, '/pipelines'), 'get', '/pipelines');
    expect(list.items).toEqual([expect.objectContaining({ id, state: 'healthy', deadLetters: 0 })]);
    const audit = await listAuditEvents(database.db, { kind: 'pipeline.created' });
    expect(audit.events).toHaveLength(1);
    expect(audit.events[0]).toMatchObject({ actor: 'forwarding script', details: { via: 'API token' } });
    for (const secret of SECRETS) expect(JSON.stringify(audit.events)).not.toContain(secret);
  });

  it('replaces a pipeline under If-Match, keeping the secrets left out, and its mappings alone', async () => {
    const read = await send(writer, `/pipelines/${id}`);
    const etag = read.headers.get('etag')!;
    const { bearerToken: _, signingSecret: __, ...destination } = webhook().destination;
    const renamed = await send(writer, `/pipelines/${id}`, { method: 'PUT', headers: { 'if-match': etag }, body: { ...webhook(), name: 'to the lab (east)', destination } });
    expect(renamed.status).toBe(200);
    const saved = await documented(renamed, 'put', '/pipelines/{id}');
    expect(saved).toMatchObject({ name: 'to the lab (east)', secrets: { bearerToken: 'set', signingSecret: 'set' }, signingSecrets: 1 });
    expect(renamed.headers.get('etag')).toBe(`"v${saved.version}"`);
    const stale = await send(writer, `/pipelines/${id}`, { method: 'PUT', headers: { 'if-match': etag }, body: { ...webhook(), name: 'lost update', destination } });
    expect(stale.status).toBe(412);
    await documented(stale, 'put', '/pipelines/{id}');
    // A webhook keeps its signing secret: a new one is a rotation.
    const secretAgain = await send(writer, `/pipelines/${id}`, { method: 'PUT', body: { ...webhook(), destination: { ...destination, signingSecret: SIGNING } } });
    expect(secretAgain.status).toBe(422);
    expect((await secretAgain.json()).errors[0].field).toBe('destination.signingSecret');

    const mappings = await send(reader, `/pipelines/${id}/mappings`);
    expect(await documented(mappings, 'get', '/pipelines/{id}/mappings')).toEqual({ mappings: [{ topicFilter: 'sensors/#', narrowBy: 'any', narrowValue: '' }] });
    const mappingsTag = mappings.headers.get('etag')!;
    const bad = await send(writer, `/pipelines/${id}/mappings`, { method: 'PUT', body: { mappings: [{ topicFilter: 'ok/#' }, { topicFilter: 'x', narrowBy: 'group' }] } });
    expect(bad.status).toBe(422);
    expect((await documented(bad, 'put', '/pipelines/{id}/mappings')).errors.map((e: { pointer: string }) => e.pointer)).toEqual(['#/mappings/1/narrowValue']);
    const replaced = await send(writer, `/pipelines/${id}/mappings`, {
      method: 'PUT',
      headers: { 'if-match': mappingsTag },
      body: { mappings: [{ topicFilter: 'meters/+/power' }, { topicFilter: 'sensors/#', narrowBy: 'username', narrowValue: 'sensor-user' }] },
    });
    expect(replaced.status).toBe(200);
    expect((await documented(replaced, 'put', '/pipelines/{id}/mappings')).mappings).toHaveLength(2);
    expect((await send(writer, `/pipelines/${id}/mappings`, { method: 'PUT', headers: { 'if-match': mappingsTag }, body: { mappings: [] } })).status).toBe(412);
    const changes = await listAuditEvents(database.db, { kind: 'pipeline.updated', actor: 'forwarding script' });
    expect(changes.events.length).toBe(2);

    // Applied at once, with the kept token: a topic mapped only now is forwarded, another publisher's sensors are not.
    await service.onPublishAccepted(message('sensors/lab/2', '{"v": 1}'), { ...who, username: 'someone-else' });
    await service.onPublishAccepted(message('meters/m1/power', '{"v": 7}'), who);
    const requests = await receiver.waitFor(2);
    expect(requests.map((r) => JSON.parse(r.body).t)).toEqual(['sensors/lab/1', 'meters/m1/power']);
    expect(requests[1]!.headers.authorization).toBe(`Bearer ${BEARER}`);
  });

  it('pauses and resumes, with the state and figures the console shows', async () => {
    // The endpoint has both messages; the counter follows once the outbox rows are marked done.
    await until(() => service.figuresOf(id)?.delivered === 2, 'both deliveries counted');
    const paused = await send(writer, `/pipelines/${id}/pause`, { method: 'POST' });
    expect((await documented(paused, 'post', '/pipelines/{id}/pause')).enabled).toBe(false);
    const state = await documented(await send(reader, `/pipelines/${id}/state`), 'get', '/pipelines/{id}/state');
    expect(state).toMatchObject({ state: 'paused', matched: 2, delivered: 2, failed: 0, deadLetters: 0 });
    expect(state.dropped).toEqual({ overflow_oldest: 0, overflow_newest: 0, refused: 0, expired: 0, write_failed: 0 });
    expect(state.latency.count).toBe(2);
    const resumed = await send(writer, `/pipelines/${id}/resume`, { method: 'POST' });
    expect((await documented(resumed, 'post', '/pipelines/{id}/resume')).enabled).toBe(true);
    expect((await (await send(reader, `/pipelines/${id}/state`)).json()).state).toBe('healthy');
    expect((await listAuditEvents(database.db, { kind: 'pipeline.updated', actor: 'forwarding script' })).events.map((e) => e.details.enabled)).toEqual(
      expect.arrayContaining([false, true]),
    );
  });

  it('lists dead letters with their last answer, replays one or all, and purges them', async () => {
    receiver.answer = () => ({ status: 400, body: 'no such sensor' });
    await service.onPublishAccepted(message('meters/m1/power', '{"v": 8}'), who);
    await service.onPublishAccepted(message('meters/m2/power', '{"v": 9}'), who);
    await until(async () => (await deadLetterCount(database.db, id)) === 2, 'two dead letters');
    const page = await documented(await send(reader, `/pipelines/${id}/dead-letters`), 'get', '/pipelines/{id}/dead-letters');
    expect(page).toMatchObject({ total: 2, page: 1, pageCount: 1 });
    // Two topics go out side by side: which failed first is not fixed.
    const letters = Object.fromEntries(page.items.map((letter: { topic: string }) => [letter.topic, letter]));
    expect(letters['meters/m2/power']).toMatchObject({ lastStatus: 400, lastError: expect.stringContaining('no such sensor'), clientId: 'sensor-1' });
    expect((await documented(await send(reader, `/pipelines/${id}/state`), 'get', '/pipelines/{id}/state')).deadLetters).toBe(2);

    receiver.answer = () => ({ status: 200, body: 'ok' });
    const one = await send(writer, `/pipelines/${id}/dead-letters/${letters['meters/m1/power'].id}/replay`, { method: 'POST' });
    expect(await documented(one, 'post', '/pipelines/{id}/dead-letters/{letter}/replay')).toEqual({ replayed: 1 });
    await receiver.waitFor(3);
    expect(JSON.parse(receiver.accepted()[2]!.body).t).toBe('meters/m1/power');
    const gone = await send(writer, `/pipelines/${id}/dead-letters/${letters['meters/m1/power'].id}/replay`, { method: 'POST' });
    expect(gone.status).toBe(404);
    await documented(gone, 'post', '/pipelines/{id}/dead-letters/{letter}/replay');
    const all = await send(writer, `/pipelines/${id}/dead-letters/replay`, { method: 'POST' });
    expect(await documented(all, 'post', '/pipelines/{id}/dead-letters/replay')).toEqual({ replayed: 1 });
    await receiver.waitFor(4);

    receiver.answer = () => ({ status: 410, body: 'gone' });
    await service.onPublishAccepted(message('meters/m3/power', '{"v": 10}'), who);
    await until(async () => (await deadLetterCount(database.db, id)) === 1, 'one dead letter');
    const purged = await send(writer, `/pipelines/${id}/dead-letters`, { method: 'DELETE' });
    expect(await documented(purged, 'delete', '/pipelines/{id}/dead-letters')).toEqual({ purged: 1 });
    expect(await deadLetterCount(database.db, id)).toBe(0);
    receiver.answer = () => ({ status: 200, body: 'ok' });
    const kinds = (await listAuditEvents(database.db, { actor: 'forwarding script' })).events.map((e) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining(['pipeline.dead_letters_replayed', 'pipeline.dead_letters_purged']));
  });

  it('rotates the signing secret to one given, signs with both, then drops the previous one', async () => {
    const fresh = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;
    expect((await send(writer, `/pipelines/${id}/signing-secrets`, { method: 'POST', body: { secret: 'whsec_!!' } })).status).toBe(422);
    const rotated = await send(writer, `/pipelines/${id}/signing-secrets`, { method: 'POST', body: { secret: fresh } });
    const body = await documented(rotated, 'post', '/pipelines/{id}/signing-secrets');
    expect(body.signingSecrets).toBe(2);
    expect(JSON.stringify(body)).not.toContain(fresh);
    const before = receiver.accepted().length;
    await service.onPublishAccepted(message('meters/m4/power', '{"v": 11}'), who);
    const request = (await receiver.waitFor(before + 1))[before]!;
    for (const secret of [fresh, SIGNING]) expect(new Webhook(secret).verify(request.body, request.headers as Record<string, string>)).toMatchObject({ t: 'meters/m4/power' });
    const finished = await send(writer, `/pipelines/${id}/signing-secrets/previous`, { method: 'DELETE' });
    expect((await documented(finished, 'delete', '/pipelines/{id}/signing-secrets/previous')).signingSecrets).toBe(1);
    await service.onPublishAccepted(message('meters/m5/power', '{"v": 12}'), who);
    const next = (await receiver.waitFor(before + 2))[before + 1]!;
    expect(new Webhook(fresh).verify(next.body, next.headers as Record<string, string>)).toMatchObject({ t: 'meters/m5/power' });
    expect(() => new Webhook(SIGNING).verify(next.body, next.headers as Record<string, string>)).toThrow();
  });

  it('says which TagoIO and bridge secrets are set, exactly', async () => {
    const tago = await send(writer, '/pipelines', {
      method: 'POST',
      body: { name: 'tago', enabled: false, destination: { kind: 'tagoio', networkToken: NETWORK, authorizationToken: AUTHORIZATION }, mappings: [{ topicFilter: 'tago/#' }] },
    });
    expect(tago.status).toBe(201);
    expect(await documented(tago, 'post', '/pipelines')).toMatchObject({
      enabled: false,
      destination: { kind: 'tagoio', apiUrl: 'https://api.tago.io' },
      secrets: { networkToken: 'set', authorizationToken: 'set' },
      signingSecrets: 0,
    });
    const bridge = await send(writer, '/pipelines', {
      method: 'POST',
      body: {
        name: 'bridge',
        enabled: false,
        destination: {
          kind: 'mqtt',
          url: 'mqtts://broker.example:8883',
          username: 'relay',
          failover: ['mqtts://b2.example:8883'],
          qos: 2,
          ca: ca.cert,
          clientCertificate: bridgeCert.cert,
          clientKey: bridgeCert.key,
        },
      },
    });
    const created = await documented(bridge, 'post', '/pipelines');
    // A username without a password beside a sealed key: the password is not set (read from the sealed secrets, not guessed from the username).
    expect(created).toMatchObject({
      destination: { kind: 'mqtt', username: 'relay', failover: ['mqtts://b2.example:8883'], qos: 2, clientCertificate: bridgeCert.cert.trim(), ca: ca.cert.trim() },
      secrets: { password: 'not set', clientKey: 'set' },
    });
    const withPassword = await send(writer, `/pipelines/${created.id}`, {
      method: 'PUT',
      body: { name: 'bridge', destination: { kind: 'mqtt', url: 'mqtts://broker.example:8883', username: 'relay', password: BRIDGE_PASSWORD, clientCertificate: bridgeCert.cert } },
    });
    expect(await documented(withPassword, 'put', '/pipelines/{id}')).toMatchObject({ enabled: false, secrets: { password: 'set', clientKey: 'set' } });
    // A webhook's CA to trust, checked when saved as the console checks it.
    const notCa = await send(writer, '/pipelines', { method: 'POST', body: { ...webhook({ ca: 'not a certificate' }), name: 'private CA' } });
    expect(notCa.status).toBe(422);
    expect((await notCa.json()).errors).toEqual([expect.objectContaining({ field: 'destination.ca', pointer: '#/destination/ca' })]);
    const privateCa = await send(writer, '/pipelines', { method: 'POST', body: { ...webhook({ ca: ca.cert, signingSecret: undefined }), name: 'private CA', enabled: false } });
    expect((await documented(privateCa, 'post', '/pipelines')).destination.ca).toBe(ca.cert.trim());
  });

  it('tests a pipeline through the SSRF guard: a loopback endpoint is refused unless private networks are allowed', async () => {
    const guarded = createPipelineService({ db: database.db, secretKey: SECRET_KEY, destination: { allowPrivateNetworks: false, nodeId: 'guarded' } });
    try {
      const guardedApp = createApp({ db: database.db, log: () => {}, pipelines: { service: guarded, secretKey: SECRET_KEY } });
      const created = await send(writer, '/pipelines', { method: 'POST', body: { ...webhook({ url: `${receiver.url}/ssrf` }), name: 'guarded', enabled: false, mappings: [{ topicFilter: 'ssrf/#' }] } }, guardedApp);
      const pipeline = await created.json();
      const none = await send(writer, `/pipelines/${pipeline.id}/test`, { method: 'POST' }, guardedApp);
      expect(none.status).toBe(409);
      expect((await documented(none, 'post', '/pipelines/{id}/test')).detail).toContain('No message has reached this pipeline yet');
      await guarded.reload();
      await guarded.onPublishAccepted(message('ssrf/1', '{"v": 1}'), who);
      const refused = await send(writer, `/pipelines/${pipeline.id}/test`, { method: 'POST' }, guardedApp);
      expect(refused.status).toBe(200);
      expect(await documented(refused, 'post', '/pipelines/{id}/test')).toMatchObject({ ok: false, status: null, answer: expect.stringContaining('internal address') });
      expect(receiver.received.some((r) => r.url === '/ssrf')).toBe(false);
      // The same pipeline tested on the node that allows private networks reaches the endpoint.
      const allowed = await send(writer, `/pipelines/${pipeline.id}/test`, { method: 'POST' });
      expect(await documented(allowed, 'post', '/pipelines/{id}/test')).toMatchObject({ ok: true, status: 200 });
      expect(receiver.received.filter((r) => r.url === '/ssrf')).toHaveLength(1);
    } finally {
      await guarded.close();
    }
  });

  it('deletes under If-Match, and a deleted pipeline is gone everywhere', async () => {
    const stale = await send(writer, `/pipelines/${id}`, { method: 'DELETE', headers: { 'if-match': '"v1"' } });
    expect(stale.status).toBe(412);
    await documented(stale, 'delete', '/pipelines/{id}');
    const etag = (await send(writer, `/pipelines/${id}`)).headers.get('etag')!;
    const deleted = await send(writer, `/pipelines/${id}`, { method: 'DELETE', headers: { 'if-match': etag } });
    expect((await documented(deleted, 'delete', '/pipelines/{id}')).deleted).toMatchObject({ id, name: 'to the lab (east)' });
    for (const path of [`/pipelines/${id}`, `/pipelines/${id}/state`, `/pipelines/${id}/dead-letters`, `/pipelines/${id}/mappings`]) {
      const res = await send(reader, path);
      expect(res.status, path).toBe(404);
      await documented(res, 'get', path.replace(String(id), '{id}'));
    }
    expect((await listAuditEvents(database.db, { kind: 'pipeline.deleted' })).events[0]).toMatchObject({ actor: 'forwarding script' });
  });

  it('never answered a secret', () => {
    expect(answers.length).toBeGreaterThan(20);
    for (const secret of SECRETS) expect(answers.filter((text) => text.includes(secret))).toEqual([]);
  });
});
