import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken } from '../src/domain/apiTokens';
import { listAuditEvents } from '../src/domain/audit';
import { createTestDatabase, drivers } from './support/db';
import { certificateFactory } from './support/certs';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect } from './support/mqtt';
import { createApp } from '../src/web/app';
import type { OpenDatabase } from '../src/db';
import { createFailureTracker } from '../src/domain/passwordGate';

type Send = (path: string, init?: { method?: string; body?: unknown; headers?: Record<string, string>; token?: string }) => Promise<Response>;

function sender(request: (path: string, init: RequestInit) => Promise<Response>, defaultToken: string): Send {
  return (path, init = {}) => {
    const headers: Record<string, string> = { ...(init.headers ?? {}) };
    const token = init.token ?? defaultToken;
    if (token) headers.authorization = `Bearer ${token}`;
    if (init.body !== undefined) headers['content-type'] ??= 'application/json';
    return request(`/api/v1${path}`, { method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : typeof init.body === 'string' ? init.body : JSON.stringify(init.body) });
  };
}

/** Every operation of the document, as `METHOD /path` (path with {params}). */
function operationsOf(document: { paths: Record<string, Record<string, unknown>> }): string[] {
  return Object.entries(document.paths).flatMap(([path, item]) =>
    ['get', 'post', 'put', 'patch', 'delete'].filter((m) => item[m]).map((m) => `${m.toUpperCase()} ${path}`),
  );
}

/** The scope an operation documents (`clients:write`), or null for "any token". */
function scopeOf(document: { paths: Record<string, Record<string, { security?: Array<Record<string, string[]>> }>> }, operation: string): string | null {
  const [method, path] = operation.split(' ');
  const security = document.paths[path!]![method!.toLowerCase()]!.security ?? [];
  return security.flatMap((s) => Object.values(s).flat())[0] ?? null;
}

describe.each(drivers)('the API through app.request() on %s', (driver) => {
  let database: OpenDatabase;
  let api: Send;
  let viewer: string;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
    const app = createApp({ db: database.db, log: () => {} });
    const editor = await createApiToken(database.db, { name: 'provisioning script', preset: 'custom', scopes: { clients: 'write', groups: 'write' } });
    viewer = (await createApiToken(database.db, { name: 'dashboard', preset: 'viewer' })).secret;
    api = sender(async (path, init) => app.request(path, init), editor.secret);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('lets a script with a scoped token create a client, give it a group and read the access check', async () => {
    const client = await api('/clients', { method: 'POST', body: { name: 'Boiler 7', username: 'boiler-7', generatePassword: true } });
    expect(client.status).toBe(201);
    const created = await client.json();
    expect(created.password).toMatch(/^.{24}$/);
    expect(client.headers.get('location')).toBe(`/api/v1/clients/${created.id}`);
    const group = await api('/groups', {
      method: 'POST',
      body: { name: 'boilers', permissions: [{ effect: 'allow', action: 'publish', topic: 'boilers/%c/#' }, { effect: 'deny', action: 'publish', topic: 'boilers/+/firmware' }] },
    });
    expect(group.status).toBe(201);
    const { id: groupId } = await group.json();
    const rules = await api('/group-rules');
    const { revision } = await rules.json();
    expect(rules.headers.get('etag')).toBe(`"${revision}"`);
    const saved = await api('/group-rules', { method: 'PUT', headers: { 'if-match': `"${revision}"` }, body: { rules: [{ matchBy: 'client', value: 'boiler-7', groups: [groupId] }] } });
    expect(saved.status).toBe(200);
    const allowed = await (await api(`/clients/${created.id}/access?clientId=b7&action=publish&topic=boilers/b7/temp`)).json();
    expect(allowed.decision).toMatchObject({ allowed: true, reason: 'allowed', decidedBy: { group: 'boilers', effect: 'allow', topic: 'boilers/%c/#', filter: 'boilers/b7/#' } });
    const denied = await (await api(`/clients/${created.id}/access?clientId=b7&action=publish&topic=boilers/b7/firmware`)).json();
    expect(denied.decision).toMatchObject({ allowed: false, reason: 'denied', decidedBy: { effect: 'deny', topic: 'boilers/+/firmware' } });
    // Audited with the token's name as actor.
    const events = await listAuditEvents(database.db, { actor: 'provisioning script' });
    expect(events.events.map((e) => e.kind)).toEqual(expect.arrayContaining(['client.created', 'group.created', 'group_rules.saved']));
    expect(events.events.find((e) => e.kind === 'client.created')!.details).toMatchObject({ via: 'API token' });
  });

  it('answers bad input with problem details naming each field', async () => {
    const res = await api('/clients', { method: 'POST', body: { name: '', username: 'has space', password: 'short' } });
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const problem = await res.json();
    expect(problem).toMatchObject({ type: 'about:blank', title: 'Unprocessable Content', status: 422 });
    const fields = problem.errors.map((e: { field: string }) => e.field);
    expect(fields).toEqual(expect.arrayContaining(['name', 'username']));
    expect(problem.errors.find((e: { field: string }) => e.field === 'username').pointer).toBe('#/username');
    const domain = await api('/clients', { method: 'POST', body: { name: 'ok', username: 'ok-user', password: 'short' } });
    expect((await domain.json()).errors).toEqual([{ field: 'password', pointer: '#/password', detail: 'Use at least 8 characters.' }]);
    const rule = await api('/group-rules', { method: 'PUT', body: { rules: [{ matchBy: 'client', value: 'nobody-has-this', groups: [1] }] } });
    expect(rule.status).toBe(422);
    expect((await rule.json()).errors[0]).toMatchObject({ field: 'rules.0.value', pointer: '#/rules/0/value', detail: 'No client has this username.' });
    const taken = await api('/clients', { method: 'POST', body: { name: 'again', username: 'boiler-7', password: 'long-enough' } });
    expect(taken.status).toBe(409);
    const malformed = await api('/clients', { method: 'POST', body: undefined, headers: { 'content-type': 'application/json' } });
    expect([400, 422]).toContain(malformed.status);
  });

  it('refuses a change based on a stale ETag with 412, and changes nothing', async () => {
    const created = await (await api('/clients', { method: 'POST', body: { name: 'Valve', username: 'valve-1', password: 'valve-password' } })).json();
    const read = await api(`/clients/${created.id}`);
    const etag = read.headers.get('etag')!;
    expect(etag).toBe(`"v${created.version}"`);
    const first = await api(`/clients/${created.id}`, { method: 'PATCH', headers: { 'if-match': etag }, body: { name: 'Valve (north)' } });
    expect(first.status).toBe(200);
    expect(first.headers.get('etag')).toBe(`"v${created.version + 1}"`);
    const stale = await api(`/clients/${created.id}`, { method: 'PATCH', headers: { 'if-match': etag }, body: { name: 'Valve (south)' } });
    expect(stale.status).toBe(412);
    expect((await (await api(`/clients/${created.id}`)).json()).name).toBe('Valve (north)');
    const group = await (await api('/groups', { method: 'POST', body: { name: 'valves' } })).json();
    const staleGroup = await api(`/groups/${group.id}`, { method: 'PUT', headers: { 'if-match': '"v99"' }, body: { name: 'valves-2' } });
    expect(staleGroup.status).toBe(412);
    const staleRules = await api('/group-rules', { method: 'PUT', headers: { 'if-match': '"not-the-revision"' }, body: { rules: [] } });
    expect(staleRules.status).toBe(412);
    expect((await (await api('/group-rules')).json()).rules.length).toBeGreaterThan(0);
  });

  it('creates once per Idempotency-Key, and refuses the key with another body', async () => {
    const body = { name: 'Pump', username: 'pump-1', password: 'pump-password' };
    const first = await api('/clients', { method: 'POST', headers: { 'idempotency-key': 'pump-1-create' }, body });
    const again = await api('/clients', { method: 'POST', headers: { 'idempotency-key': 'pump-1-create' }, body });
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await again.json()).id).toBe((await first.json()).id);
    const other = await api('/clients', { method: 'POST', headers: { 'idempotency-key': 'pump-1-create' }, body: { ...body, username: 'pump-2' } });
    expect(other.status).toBe(422);
    // A refusal is kept too: the retry gets the same 409, not a second attempt.
    const conflict = await api('/clients', { method: 'POST', headers: { 'idempotency-key': 'dup' }, body });
    const conflictAgain = await api('/clients', { method: 'POST', headers: { 'idempotency-key': 'dup' }, body });
    expect([conflict.status, conflictAgain.status]).toEqual([409, 409]);
    expect(conflictAgain.headers.get('idempotent-replayed')).toBe('true');
  });

  it('pages clients by key, as the console does', async () => {
    // Generated passwords: the subject is paging, and 55 typed ones would be 55 Argon2id hashes.
    for (let i = 0; i < 55; i++) expect((await api('/clients', { method: 'POST', body: { name: `Meter ${String(i).padStart(2, '0')}`, username: `meter-${i}`, generatePassword: true } })).status).toBe(201);
    const first = await (await api('/clients?q=meter')).json();
    expect(first.items).toHaveLength(50);
    expect(first.total).toBe(55);
    const second = await (await api(`/clients?q=meter&after=${encodeURIComponent(first.next)}`)).json();
    expect(second.items.map((c: { name: string }) => c.name)).toEqual(['Meter 50', 'Meter 51', 'Meter 52', 'Meter 53', 'Meter 54']);
    expect(second.next).toBeNull();
    const back = await (await api(`/clients?q=meter&before=${encodeURIComponent(second.previous)}`)).json();
    expect(back.items[0].name).toBe('Meter 00');
    expect((await api('/clients?after=garbage')).status).toBe(422);
  });

  it('never lets a read-only token write', async () => {
    const res = await api('/groups', { method: 'POST', body: { name: 'nope' }, token: viewer });
    expect(res.status).toBe(403);
  });
});

describe('every documented route, over HTTP and through app.request()', () => {
  it('is valid OpenAPI 3.1, and each operation answers its scope and refuses others', { timeout: 180_000 }, async () => {
    const certs = certificateFactory();
    const gatehouse = await startTestGatehouse('pglite', { SECRET_KEY: 'api-test-secret-key-0123456789', MQTTS_PORT: '0', HTTPS_PORT: '0' });
    try {
      const db = gatehouse.database.db;
      const full = (await createApiToken(db, { name: 'full', preset: 'administrator' })).secret;
      const viewer = (await createApiToken(db, { name: 'viewer', preset: 'viewer' })).secret;
      const nothing = (await createApiToken(db, { name: 'connections-read', preset: 'custom', scopes: { connections: 'read' } })).secret;
      const base = `http://127.0.0.1:${gatehouse.httpPort}`;
      const document = await (await fetch(`${base}/api/v1/openapi.json`)).json();
      const validator = new Validator();
      const result = await validator.validate(document);
      expect(result.errors ?? []).toEqual([]);
      expect(result.valid).toBe(true);
      expect(document.openapi).toBe('3.1.0');

      const ca = certs.ca('API CA');
      const server = certs.server(ca, 'api-server');
      // Requests without a token, on an app whose failure counts never lock: every route must refuse them.
      const unlocked = createApp({ db, log: () => {}, apiTokenFailures: createFailureTracker({ threshold: 1_000_000, maxBackoffMs: 1, now: Date.now }) });

      for (const via of ['http', 'app'] as const) {
        const request = async (path: string, init: RequestInit) => (via === 'http' ? fetch(`${base}${path}`, init) : gatehouse.app.request(path, init));
        const api = sender(request, full);
        const suffix = `${via}-${Date.now()}`;
        const state: Record<string, string> = {};
        // One example per operation, in an order where each finds what it needs.
        const steps: Array<[string, () => Promise<Response>, number]> = [
          ['POST /clients', () => api('/clients', { method: 'POST', body: { name: `Device ${suffix}`, username: `device-${suffix}`, password: 'device-password' } }), 201],
          ['GET /clients', () => api('/clients'), 200],
          ['GET /clients/{id}', () => api(`/clients/${state.client}`), 200],
          ['PATCH /clients/{id}', () => api(`/clients/${state.client}`, { method: 'PATCH', body: { name: `Device ${suffix} renamed` } }), 200],
          ['POST /groups', () => api('/groups', { method: 'POST', body: { name: `group-${suffix}`, permissions: [{ effect: 'allow', action: 'subscribe', topic: 'x/#' }] } }), 201],
          ['GET /groups', () => api('/groups'), 200],
          ['GET /groups/{id}', () => api(`/groups/${state.group}`), 200],
          ['PUT /groups/{id}', () => api(`/groups/${state.group}`, { method: 'PUT', body: { name: `group-${suffix}`, permissions: [{ effect: 'allow', action: 'subscribe', topic: 'y/#' }] } }), 200],
          ['GET /group-rules', () => api('/group-rules'), 200],
          ['PUT /group-rules', () => api('/group-rules', { method: 'PUT', body: { rules: [{ matchBy: 'client', value: `device-${suffix}`, groups: [Number(state.group)] }] } }), 200],
          ['GET /clients/{id}/access', () => api(`/clients/${state.client}/access?clientId=d1&action=subscribe&topic=y/1`), 200],
          ['GET /clients/{id}/sessions', () => api(`/clients/${state.client}/sessions`), 200],
          ['GET /connections', () => api('/connections'), 200],
          ['DELETE /connections/{session}', () => api(`/connections/${state.session}`, { method: 'DELETE' }), 200],
          ['POST /clients/{id}/disconnect', () => api(`/clients/${state.client}/disconnect`, { method: 'POST' }), 200],
          ['POST /groups/{id}/disconnect', () => api(`/groups/${state.group}/disconnect`, { method: 'POST' }), 200],
          ['GET /overview', () => api('/overview'), 200],
          ['GET /certificates', () => api('/certificates'), 200],
          ['PUT /certificates', () => api('/certificates', { method: 'PUT', body: { ca: ca.cert, cert: server.cert, key: server.key } }), 200],
          ['POST /certificates/{action}', () => api('/certificates/enable', { method: 'POST' }), 200],
          ['GET /audit', () => api('/audit?kind=client.created'), 200],
          ['GET /audit.csv', () => api('/audit.csv'), 200],
          ['GET /export', () => api('/export'), 200],
          ['GET /export/clients.csv', () => api('/export/clients.csv'), 200],
          ['POST /import', () => api('/import?format=csv', { method: 'POST', headers: { 'content-type': 'text/csv' }, body: `username,password\nimported-${suffix},imported-secret\n` }), 200],
          ['POST /pipelines', () => api('/pipelines', { method: 'POST', body: pipelineBody(`pipeline-${suffix}`) }), 201],
          ['GET /pipelines', () => api('/pipelines'), 200],
          ['GET /pipelines/{id}', () => api(`/pipelines/${state.pipeline}`), 200],
          ['PUT /pipelines/{id}', () => api(`/pipelines/${state.pipeline}`, { method: 'PUT', body: pipelineBody(`pipeline-${suffix}`) }), 200],
          ['GET /pipelines/{id}/mappings', () => api(`/pipelines/${state.pipeline}/mappings`), 200],
          ['PUT /pipelines/{id}/mappings', () => api(`/pipelines/${state.pipeline}/mappings`, { method: 'PUT', body: { mappings: [{ topicFilter: 'api/#' }] } }), 200],
          ['POST /pipelines/{id}/pause', () => api(`/pipelines/${state.pipeline}/pause`, { method: 'POST' }), 200],
          ['POST /pipelines/{id}/resume', () => api(`/pipelines/${state.pipeline}/resume`, { method: 'POST' }), 200],
          ['GET /pipelines/{id}/state', () => api(`/pipelines/${state.pipeline}/state`), 200],
          // Nothing has reached it yet: the answer says so.
          ['POST /pipelines/{id}/test', () => api(`/pipelines/${state.pipeline}/test`, { method: 'POST' }), 409],
          ['POST /pipelines/{id}/signing-secrets', () => api(`/pipelines/${state.pipeline}/signing-secrets`, { method: 'POST', body: { secret: `whsec_${Buffer.alloc(32, 3).toString('base64')}` } }), 200],
          ['DELETE /pipelines/{id}/signing-secrets/previous', () => api(`/pipelines/${state.pipeline}/signing-secrets/previous`, { method: 'DELETE' }), 200],
          ['GET /pipelines/{id}/dead-letters', () => api(`/pipelines/${state.pipeline}/dead-letters`), 200],
          ['POST /pipelines/{id}/dead-letters/replay', () => api(`/pipelines/${state.pipeline}/dead-letters/replay`, { method: 'POST' }), 200],
          ['POST /pipelines/{id}/dead-letters/{letter}/replay', () => api(`/pipelines/${state.pipeline}/dead-letters/1/replay`, { method: 'POST' }), 404],
          ['DELETE /pipelines/{id}/dead-letters', () => api(`/pipelines/${state.pipeline}/dead-letters`, { method: 'DELETE' }), 200],
          ['DELETE /pipelines/{id}', () => api(`/pipelines/${state.pipeline}`, { method: 'DELETE' }), 200],
          ['DELETE /groups/{id}', () => api(`/groups/${state.group}`, { method: 'DELETE' }), 200],
          ['DELETE /clients/{id}', () => api(`/clients/${state.client}`, { method: 'DELETE' }), 200],
        ];
        expect(steps.map(([operation]) => operation).sort()).toEqual(operationsOf(document).sort());
        for (const [operation, run, expected] of steps) {
          const scope = scopeOf(document, operation);
          if (scope?.endsWith(':write')) {
            expect((await sender(request, viewer)(...argsOf(operation, state))).status, `${via} ${operation} with a read-only token`).toBe(403);
          }
          if (scope && !scope.startsWith('connections:read')) {
            expect((await sender(request, nothing)(...argsOf(operation, state))).status, `${via} ${operation} without its scope`).toBe(403);
          }
          const anonymous = sender(async (path, init) => unlocked.request(path, init), '');
          expect((await anonymous(...argsOf(operation, state))).status, `${operation} without a token`).toBe(401);
          if (operation === 'DELETE /connections/{session}') {
            // A real device, so that there is a session to list and end.
            const mqtt = await connect(brokerUrl(gatehouse, 'tcp'), { username: `device-${suffix}`, password: 'device-password', clientId: `d-${suffix}`, reconnectPeriod: 0 });
            const page = await (await api('/connections')).json();
            state.session = page.items.find((s: { mqttClientId: string }) => s.mqttClientId === `d-${suffix}`).id;
            const closed = new Promise<void>((resolve) => mqtt.once('close', () => resolve()));
            const res = await run();
            expect(res.status, `${via} ${operation}`).toBe(expected);
            await closed;
            continue;
          }
          const res = await run();
          expect(res.status, `${via} ${operation}: ${res.status === expected ? '' : await res.clone().text()}`).toBe(expected);
          if (operation === 'POST /clients') state.client = String((await res.json()).id);
          if (operation === 'POST /groups') state.group = String((await res.json()).id);
          if (operation === 'POST /pipelines') state.pipeline = String((await res.json()).id);
          if (operation === 'POST /import') expect((await res.json()).counts.create).toBe(1);
          if (operation === 'GET /audit.csv') expect(await res.text()).toMatch(/^time,kind,actor,subject,address,count,details\r\n/);
          if (operation === 'POST /certificates/{action}') expect((await res.json()).source).toBe('console');
        }
      }
    } finally {
      await gatehouse.close();
      certs.remove();
    }
  });
});

/** A request shape that reaches the operation's handler (its scope check) with any token. */
function argsOf(operation: string, state: Record<string, string>): [string, { method: string; body?: unknown }] {
  const [method, path] = operation.split(' ') as [string, string];
  const filled = path
    .replace('{id}', path.startsWith('/groups') ? (state.group ?? '1') : path.startsWith('/pipelines') ? (state.pipeline ?? '1') : (state.client ?? '1'))
    .replace('{letter}', '1')
    .replace('{session}', state.session ?? 'node.1')
    .replace('{action}', 'disable')
    .replace(/^\/import$/, '/import?format=csv');
  const bodies: Record<string, unknown> = {
    'POST /clients': { name: 'x', username: 'x-user', password: 'x-password' },
    'PATCH /clients/{id}': { name: 'x' },
    'POST /groups': { name: 'x-group' },
    'PUT /groups/{id}': { name: 'x-group' },
    'PUT /group-rules': { rules: [] },
    'PUT /certificates': { ca: 'x' },
    'POST /import': { format: 'x' },
    'POST /pipelines': pipelineBody('x-pipeline'),
    'PUT /pipelines/{id}': pipelineBody('x-pipeline'),
    'PUT /pipelines/{id}/mappings': { mappings: [] },
    'POST /pipelines/{id}/signing-secrets': { secret: 'x' },
  };
  return [filled, { method, body: bodies[operation] }];
}

/** A webhook pipeline to an address nothing is sent to (no message is published in these tests). */
function pipelineBody(name: string) {
  return { name, destination: { kind: 'webhook', url: 'https://hooks.example/in', auth: 'bearer', bearerToken: 'a-bearer-token' }, mappings: [{ topicFilter: 'api/#' }] };
}
