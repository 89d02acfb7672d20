import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAuditEvents } from '../src/domain/audit';
import { listPipelines } from '../src/domain/pipelines/pipelines';
import { signIn, type SignedInApp } from './support/admin';
import { certificateFactory } from './support/certs';
import { startTestGatehouse } from './support/gatehouse';
import { htmx, postForm } from './support/http';
import { startReceiver, type Receiver } from './support/receiver';

type Gatehouse = Awaited<ReturnType<typeof startTestGatehouse>>;

describe('the pipelines console', () => {
  let gatehouse: Gatehouse;
  let admin: SignedInApp;
  let receiver: Receiver;

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite', { SECRET_KEY: 'a-secret-key-for-the-tests', PIPELINES_ALLOW_PRIVATE_NETWORKS: '1' });
    admin = await signIn(gatehouse.app, gatehouse.database.db);
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await gatehouse?.close();
    await receiver?.close();
  });

  const fields = (extra: Array<[string, string]> = []): Array<[string, string]> => [
    ['name', 'to the lab'],
    ['enabled', 'on'],
    ['kind', 'webhook'],
    ['method', 'POST'],
    ['url', `${receiver.url}/hook`],
    ['auth', 'bearer'],
    ['bearerToken', 'the-bearer-token-42'],
    ['bodyTemplate', '{"t": {{topic | json}}}'],
    ['mapping-filter', 'sensors/#'],
    ['mapping-narrow-by', 'any'],
    ['mapping-narrow-value', ''],
    ...extra,
  ];

  it('refuses an unknown variable and keeps what was typed, without echoing the secret', async () => {
    const response = await postForm(admin, '/pipelines', fields().map(([k, v]) => (k === 'bodyTemplate' ? [k, '{"t": {{tpoic}}}'] : [k, v])) as Array<[string, string]>);
    expect(response.status).toBe(422);
    const html = await response.text();
    expect(html).toContain('{{tpoic}} is not a variable');
    expect(html).toContain('value="to the lab"');
    expect(html).not.toContain('the-bearer-token-42');
    expect(await listPipelines(gatehouse.database.db)).toHaveLength(0);
  });

  it('creates a webhook pipeline, shows its signing secret once, lists it and audits it without secrets', async () => {
    const response = await postForm(admin, '/pipelines', fields());
    expect(response.status).toBe(201);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const html = await response.text();
    const secret = /whsec_[A-Za-z0-9+/=]+/.exec(html)?.[0];
    expect(secret).toBeDefined();
    const [pipeline] = await listPipelines(gatehouse.database.db);
    const page = await (await admin.request(`/pipelines/${pipeline!.id}`)).text();
    expect(page).not.toContain(secret!);
    const edit = await (await admin.request(`/pipelines/${pipeline!.id}/edit`)).text();
    expect(edit).not.toContain('the-bearer-token-42');
    expect(edit).toContain('Stored (encrypted). Leave empty to keep it.');
    const list = await (await admin.request('/pipelines')).text();
    expect(list).toContain('to the lab');
    expect(list).toContain('sensors/#');
    const audit = await listAuditEvents(gatehouse.database.db, { kind: 'pipeline.created' });
    expect(audit.events).toHaveLength(1);
    expect(JSON.stringify(audit.events)).not.toContain('the-bearer-token-42');
  });

  it('keeps a stored secret when the edit leaves it empty, and the Test button sends a recent real message once', async () => {
    const [pipeline] = await listPipelines(gatehouse.database.db);
    const saved = await postForm(admin, `/pipelines/${pipeline!.id}`, fields([['version', String(pipeline!.version)]]).map(([k, v]) => [k, k === 'bearerToken' ? '' : v]) as Array<[string, string]>);
    expect(saved.status).toBe(303);
    const noMessage = await (await postForm(admin, `/pipelines/${pipeline!.id}/test`, {}, htmx)).text();
    expect(noMessage).toContain('No message has reached this pipeline yet');
    await gatehouse.pipelines.onPublishAccepted({ topic: 'sensors/lab/1', payload: Buffer.from('20.5'), qos: 1, retain: false }, { clientRowId: 1, username: 'u', mqttClientId: 'c', groups: [] });
    await receiver.waitFor(1);
    const tested = await (await postForm(admin, `/pipelines/${pipeline!.id}/test`, {}, htmx)).text();
    expect(tested).toContain('Accepted');
    expect(tested).toContain('{&quot;t&quot;: &quot;sensors/lab/1&quot;}');
    await receiver.waitFor(2);
    expect(receiver.received).toHaveLength(2);
    for (const request of receiver.received) expect(request.headers.authorization).toBe('Bearer the-bearer-token-42');
  });

  it('takes a client certificate and a CA to trust for a webhook: a bad CA is named and what was typed kept, the key never shown again', async () => {
    const certs = certificateFactory();
    try {
      const ca = certs.ca('endpoint-ca');
      const client = certs.client(certs.ca('clients-ca'), 'lab-client');
      const keyBody = client.key.split('\n')[1]!;
      const mtls = (webhookCa: string) =>
        fields().map(([k, v]) => [k, k === 'auth' ? 'certificate' : k === 'name' ? 'over mTLS' : v] as [string, string]).concat([
          ['certSource', 'upload'],
          ['clientCert', client.cert],
          ['clientKey', client.key],
          ['webhookCa', webhookCa],
        ]);
      const refused = await postForm(admin, '/pipelines', mtls('-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----'));
      expect(refused.status).toBe(422);
      const form = await refused.text();
      expect(form).toContain('Paste the CA certificate (PEM)');
      expect(form).toContain('not base64');
      expect(form).toContain(client.cert.split('\n')[1]!);
      expect(form).not.toContain(keyBody);

      expect((await postForm(admin, '/pipelines', mtls(ca.cert))).status).toBe(201);
      const pipeline = (await listPipelines(gatehouse.database.db)).find((p) => p.name === 'over mTLS')!;
      expect(pipeline.settings).toMatchObject({ webhook: { auth: 'certificate', caPem: ca.cert.trim() } });
      const edit = await (await admin.request(`/pipelines/${pipeline.id}/edit`)).text();
      expect(edit).toContain(ca.cert.split('\n')[1]!);
      expect(edit).not.toContain(keyBody);
    } finally {
      certs.remove();
    }
  });
});
