import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAuditEvents } from '../src/domain/audit';
import { listPipelines } from '../src/domain/pipelines/pipelines';
import { signIn, type SignedInApp } from './support/admin';
import { certificateFactory } from './support/certs';
import { startTestGatehouse } from './support/gatehouse';
import { htmx, postForm } from './support/http';
import { startReceiver, type Receiver } from './support/receiver';

const SECRET_KEY = 'a-secret-key-for-the-tests';

type Gatehouse = Awaited<ReturnType<typeof startTestGatehouse>>;

describe('the pipelines console', () => {
  let gatehouse: Gatehouse;
  let admin: SignedInApp;
  let receiver: Receiver;

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite', { SECRET_KEY, PIPELINES_ALLOW_PRIVATE_NETWORKS: '1' });
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
    expect(await listPipelines(gatehouse.database.db, SECRET_KEY)).toHaveLength(0);
  });

  it('creates a webhook pipeline, shows its signing secret once, lists it and audits it without secrets', async () => {
    const response = await postForm(admin, '/pipelines', fields());
    expect(response.status).toBe(201);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const html = await response.text();
    const secret = /whsec_[A-Za-z0-9+/=]+/.exec(html)?.[0];
    expect(secret).toBeDefined();
    const [pipeline] = await listPipelines(gatehouse.database.db, SECRET_KEY);
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
    const [pipeline] = await listPipelines(gatehouse.database.db, SECRET_KEY);
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
      const pipeline = (await listPipelines(gatehouse.database.db, SECRET_KEY)).find((p) => p.name === 'over mTLS')!;
      expect(pipeline.settings).toMatchObject({ webhook: { auth: 'certificate', caPem: ca.cert.trim() } });
      const edit = await (await admin.request(`/pipelines/${pipeline.id}/edit`)).text();
      expect(edit).toContain(ca.cert.split('\n')[1]!);
      expect(edit).not.toContain(keyBody);
    } finally {
      certs.remove();
    }
  });

  it('offers "Finish the rotation" after a rotation, and finishing it drops the previous secret', async () => {
    const hooks = await startReceiver();
    try {
      const rotating = (extra: Array<[string, string]> = []) =>
        fields(extra).map(([k, v]) => [k, k === 'name' ? 'rotating' : k === 'url' ? `${hooks.url}/hook` : k === 'mapping-filter' ? 'meters/#' : v] as [string, string]);
      const created = await (await postForm(admin, '/pipelines', rotating())).text();
      const previous = /whsec_[A-Za-z0-9+/=]+/.exec(created)![0];
      const pipeline = (await listPipelines(gatehouse.database.db, SECRET_KEY)).find((p) => p.name === 'rotating')!;
      const finish = 'Finish the rotation (drop the old secret)';
      expect(await (await admin.request(`/pipelines/${pipeline.id}`)).text()).not.toContain(finish);

      const rotated = await postForm(admin, `/pipelines/${pipeline.id}/rotate-secret`, {});
      expect(rotated.status).toBe(200);
      const answer = await rotated.text();
      const fresh = /whsec_[A-Za-z0-9+/=]+/.exec(answer)![0];
      expect(fresh).not.toBe(previous);
      expect(answer).toContain(finish);
      expect(await (await admin.request(`/pipelines/${pipeline.id}`)).text()).toContain(finish);
      const publish = (topic: string) =>
        gatehouse.pipelines.onPublishAccepted({ topic, payload: Buffer.from('1'), qos: 1, retain: false }, { clientRowId: 1, username: 'u', mqttClientId: 'c', groups: [] });
      await publish('meters/1');
      const [during] = await hooks.waitFor(1);
      for (const secret of [fresh, previous]) expect(new Webhook(secret).verify(during!.body, during!.headers as Record<string, string>)).toEqual({ t: 'meters/1' });

      const finished = await postForm(admin, `/pipelines/${pipeline.id}/finish-rotation`, {});
      expect(finished.status).toBe(303);
      const page = await (await admin.request(finished.headers.get('location')!)).text();
      expect(page).toContain('Rotation finished');
      expect(page).not.toContain(finish);
      await publish('meters/2');
      const after = (await hooks.waitFor(2))[1]!;
      expect(new Webhook(fresh).verify(after.body, after.headers as Record<string, string>)).toEqual({ t: 'meters/2' });
      expect(() => new Webhook(previous).verify(after.body, after.headers as Record<string, string>)).toThrow();
    } finally {
      await hooks.close();
    }
  });

  it('labels an MQTT bridge password not stored when a username is set without one beside a stored client key', async () => {
    const certs = certificateFactory();
    try {
      const client = certs.client(certs.ca('bridge-ca'), 'bridge-client');
      const bridge = (password: string): Array<[string, string]> => [
        ['name', 'bridge'],
        ['enabled', 'on'],
        ['kind', 'mqtt'],
        ['mqttUrl', 'mqtts://broker.example:8883'],
        ['mqttUsername', 'relay'],
        ['mqttPassword', password],
        ['mqttClientCert', client.cert],
        ['mqttClientKey', client.key],
        ['remoteTopic', '{{topic}}'],
        ['mqttQos', '1'],
        ['mqttRetain', 'keep'],
        ['mqttProtocolVersion', '4'],
        ['mapping-filter', 'bridged/#'],
        ['mapping-narrow-by', 'any'],
        ['mapping-narrow-value', ''],
      ];
      const created = await postForm(admin, '/pipelines', bridge(''));
      expect(created.status).toBe(303);
      const pipeline = (await listPipelines(gatehouse.database.db, SECRET_KEY)).find((p) => p.name === 'bridge')!;
      const hints = async () => {
        const edit = await (await admin.request(`/pipelines/${pipeline.id}/edit`)).text();
        return { password: /id="mqttPassword-hint">([^<]*)</.exec(edit)?.[1], key: /id="mqttClientKey-hint">([^<]*)</.exec(edit)?.[1] };
      };
      expect(await hints()).toEqual({ password: 'Stored encrypted; never shown again.', key: 'Stored (encrypted). Leave empty to keep it.' });
      const withPassword = bridge('the-bridge-password').map(([k, v]) => [k, k === 'mqttClientKey' ? '' : v] as [string, string]);
      expect((await postForm(admin, `/pipelines/${pipeline.id}`, [...withPassword, ['version', String(pipeline.version)]])).status).toBe(303);
      expect(await hints()).toEqual({ password: 'Stored (encrypted). Leave empty to keep it.', key: 'Stored (encrypted). Leave empty to keep it.' });
    } finally {
      certs.remove();
    }
  });
});
