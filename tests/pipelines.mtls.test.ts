import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { schema, type OpenDatabase } from '../src/db';
import { listAuditEvents } from '../src/domain/audit';
import { ValidationError } from '../src/domain/errors';
import { listDeadLetters } from '../src/domain/pipelines/outbox';
import { createPipeline, getPipeline, updatePipeline, type PipelineInput } from '../src/domain/pipelines/pipelines';
import { createPipelineService, type PipelineService } from '../src/pipelines/service';
import { certificateFactory, type CertificateFactory, type Issued } from './support/certs';
import { createTestDatabase } from './support/db';

const SECRET_KEY = 'a-secret-key-for-the-tests';
const who = { clientRowId: 1, username: 'sensor-user', mqttClientId: 'sensor-1', groups: [] };
const message = (payload: string) => ({ topic: 'sensors/t', payload: Buffer.from(payload), qos: 1 as const, retain: false });

/** An HTTPS endpoint (certificate of a private CA, for localhost) that accepts only client certificates its `clients` CA signed. */
async function startMtlsEndpoint(server: Issued, clients: Issued) {
  const received: Array<{ body: string; peer: string }> = [];
  const endpoint = https.createServer({ cert: server.cert, key: server.key, ca: clients.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({ body: Buffer.concat(chunks).toString('utf8'), peer: String((req.socket as TLSSocket).getPeerCertificate().subject?.CN ?? '') });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', () => resolve()));
  const port = (endpoint.address() as AddressInfo).port;
  return {
    url: `https://localhost:${port}/in`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        endpoint.closeAllConnections();
        endpoint.close(() => resolve());
      }),
  };
}

/** Resolves once `condition()` holds, looking again after each short pause. */
async function until(condition: () => boolean | Promise<boolean>, what: string) {
  const giveUp = Date.now() + 20_000;
  while (!(await condition())) {
    if (Date.now() > giveUp) throw new Error(`still not: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('a webhook over mutual TLS', () => {
  let database: OpenDatabase;
  let certs: CertificateFactory;
  let endpointCa: Issued;
  let clientsCa: Issued;
  let gatehouseClient: Issued;
  let stranger: Issued;
  let endpoint: Awaited<ReturnType<typeof startMtlsEndpoint>>;
  const services: PipelineService[] = [];

  async function started(storedCertificate?: Issued) {
    const service = createPipelineService({
      db: database.db,
      secretKey: SECRET_KEY,
      destination: {
        allowPrivateNetworks: true,
        nodeId: 'node-mtls',
        storedCertificate: async () => (storedCertificate ? { certPem: storedCertificate.cert, keyPem: storedCertificate.key } : null),
      },
      options: { pollMs: 30, janitorMs: 100, retryBaseMs: 40, retryMaxMs: 200, leaseMs: 30_000 },
    });
    services.push(service);
    await service.reload();
    await service.start();
    return service;
  }

  const hook = (extra: PipelineInput): PipelineInput => ({ name: 'mtls', kind: 'webhook', enabled: 'on', url: endpoint.url, mappings: [{ topicFilter: 'sensors/#' }], ...extra });

  /** Forwarding `payload` fails and is retried (network errors are retried), not delivered and not dead-lettered. */
  async function refusedAndRetried(service: PipelineService, pipelineId: number, payload: string) {
    await service.onPublishAccepted(message(payload), who);
    await until(() => (service.figuresOf(pipelineId)?.retried ?? 0) >= 2, 'retried twice');
    expect(endpoint.received).toEqual([]);
    expect(await listDeadLetters(database.db, pipelineId)).toMatchObject({ total: 0 });
    return service.figuresOf(pipelineId)!.lastError ?? '';
  }

  beforeAll(async () => {
    certs = certificateFactory();
    endpointCa = certs.ca('endpoint-ca');
    clientsCa = certs.ca('clients-ca');
    gatehouseClient = certs.client(clientsCa, 'gatehouse-client');
    stranger = certs.client(certs.ca('other-ca'), 'stranger');
    endpoint = await startMtlsEndpoint(certs.server(endpointCa, 'localhost'), clientsCa);
    database = await createTestDatabase('pglite');
  });
  afterAll(async () => {
    await endpoint?.close();
    await database?.close();
    certs?.remove();
  });
  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.close()));
    endpoint.received.length = 0;
    await database.db.execute(sql`delete from pipelines`);
  });

  it('delivers with the pasted client certificate, trusting the endpoint through the CA given; the key is sealed and never shown', async () => {
    const { pipeline } = await createPipeline(
      database.db,
      hook({ auth: 'certificate', certSource: 'upload', clientCert: gatehouseClient.cert, clientKey: gatehouseClient.key, webhookCa: endpointCa.cert }),
      SECRET_KEY,
      { username: 'admin' },
    );
    const service = await started();
    await service.onPublishAccepted(message('over mTLS'), who);
    await until(() => endpoint.received.length === 1, 'delivered');
    expect(endpoint.received[0]).toMatchObject({ peer: 'gatehouse-client' });
    expect(JSON.parse(endpoint.received[0]!.body)).toMatchObject({ topic: 'sensors/t', payload: 'over mTLS' });

    const keyBody = gatehouseClient.key.split('\n')[1]!;
    const [row] = await database.db.select().from(schema.pipelines);
    expect(JSON.stringify(row)).not.toContain(keyBody);
    const shown = (await getPipeline(database.db, pipeline.id, SECRET_KEY))!;
    expect(JSON.stringify(shown)).not.toContain(keyBody);
    expect(shown.storedSecrets).toContain('clientKeyPem');
    expect(shown.settings).toMatchObject({ webhook: { caPem: endpointCa.cert.trim() } });
    expect(JSON.stringify((await listAuditEvents(database.db, { kind: 'pipeline.created' })).events)).not.toContain(keyBody);
  });

  it('is refused without a client certificate, or with one the endpoint does not trust: retried, then delivered once the right one is given', async () => {
    const { pipeline } = await createPipeline(database.db, hook({ auth: 'none', webhookCa: endpointCa.cert }), SECRET_KEY);
    const service = await started();
    await refusedAndRetried(service, pipeline.id, 'held back');

    const withStranger = await updatePipeline(database.db, pipeline.id, hook({ auth: 'certificate', clientCert: stranger.cert, clientKey: stranger.key, webhookCa: endpointCa.cert }), SECRET_KEY);
    await service.reload();
    const retried = service.figuresOf(pipeline.id)!.retried;
    await until(() => service.figuresOf(pipeline.id)!.retried > retried + 1, 'retried with the untrusted certificate');
    expect(endpoint.received).toEqual([]);

    // The key stored with the stranger's certificate does not belong to this one: the form says so.
    await expect(updatePipeline(database.db, pipeline.id, hook({ auth: 'certificate', clientCert: gatehouseClient.cert, webhookCa: endpointCa.cert }), SECRET_KEY)).rejects.toSatisfy(
      (error: unknown) => error instanceof ValidationError && /does not belong/.test(error.fieldErrors.clientKey ?? ''),
    );
    await updatePipeline(
      database.db,
      pipeline.id,
      hook({ version: withStranger!.version, auth: 'certificate', clientCert: gatehouseClient.cert, clientKey: gatehouseClient.key, webhookCa: endpointCa.cert }),
      SECRET_KEY,
    );
    await service.reload();
    await until(() => endpoint.received.length === 1, 'delivered with the right certificate');
    expect(endpoint.received[0]).toMatchObject({ peer: 'gatehouse-client' });
    expect(JSON.parse(endpoint.received[0]!.body)).toMatchObject({ payload: 'held back' });
  });

  it('does not trust the endpoint of a private CA unless that CA is given', async () => {
    const { pipeline } = await createPipeline(database.db, hook({ auth: 'certificate', clientCert: gatehouseClient.cert, clientKey: gatehouseClient.key }), SECRET_KEY);
    const service = await started();
    expect(await refusedAndRetried(service, pipeline.id, 'untrusted endpoint')).toMatch(/certificate/i);
    const current = (await getPipeline(database.db, pipeline.id, SECRET_KEY))!;
    // The key is kept from what is stored (an empty field keeps it).
    await updatePipeline(database.db, pipeline.id, hook({ version: current.version, auth: 'certificate', clientCert: gatehouseClient.cert, webhookCa: endpointCa.cert }), SECRET_KEY);
    await service.reload();
    await until(() => endpoint.received.length === 1, 'delivered once the CA is trusted');
  });

  it('uses the certificate of the Certificates page when chosen', async () => {
    await createPipeline(database.db, hook({ auth: 'certificate', certSource: 'store', webhookCa: endpointCa.cert }), SECRET_KEY);
    const service = await started(gatehouseClient);
    await service.onPublishAccepted(message('from the store'), who);
    await until(() => endpoint.received.length === 1, 'delivered');
    expect(endpoint.received[0]).toMatchObject({ peer: 'gatehouse-client' });
  });

  it('refuses a CA or a client certificate that is not PEM, and a key that does not belong to the certificate, naming the field', async () => {
    const refusal = (input: PipelineInput) =>
      createPipeline(database.db, hook(input), SECRET_KEY).then(
        () => ({}) as Record<string, string>,
        (error: unknown) => (error instanceof ValidationError ? error.fieldErrors : { thrown: String(error) }),
      );
    expect(await refusal({ webhookCa: 'not a certificate' })).toMatchObject({ webhookCa: expect.stringMatching(/PEM/) });
    expect(await refusal({ webhookCa: gatehouseClient.key })).toMatchObject({ webhookCa: expect.stringMatching(/PEM/) });
    expect(await refusal({ auth: 'certificate', clientCert: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----', clientKey: gatehouseClient.key })).toMatchObject({
      clientCert: expect.stringMatching(/PEM/),
    });
    expect(await refusal({ auth: 'certificate', clientCert: gatehouseClient.cert, clientKey: stranger.key })).toMatchObject({ clientKey: expect.stringMatching(/does not belong/) });
    expect(await refusal({ auth: 'certificate', clientCert: gatehouseClient.cert, clientKey: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----' })).toMatchObject({
      clientKey: expect.stringMatching(/private key/),
    });
  });
});
