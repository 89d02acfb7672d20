import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { Database } from '../../db';
import { ConflictError, ValidationError, type FieldErrors } from '../../domain/errors';
import { DROP_REASONS, deadLetterCount, deadLetterCounts, listDeadLetters, purgeDeadLetters, replayDeadLetters, type DeadLetter } from '../../domain/pipelines/outbox';
import {
  createPipeline,
  deletePipeline,
  finishSigningSecretRotation,
  getPipeline,
  listPipelines,
  MAX_HEADERS,
  MAX_MAPPINGS_PER_PIPELINE,
  replacePipelineMappings,
  rotateSigningSecret,
  setPipelineEnabled,
  updatePipeline,
  type Pipeline,
  type PipelineInput,
  type PipelineSecrets,
} from '../../domain/pipelines/pipelines';
import type { PipelineFigures } from '../../pipelines/service';
import type { PipelineControl } from '../pipelines';
import { requireScope, type ApiEnv } from './auth';
import { dateTime, expectedVersion, idempotencyHeader, idempotent, idParam, ifMatchHeader, scope, versionTag, type Api } from './common';
import { ApiProblem, problems } from './problems';

/*
 * `/pipelines`: the console's pipelines as JSON, through the same domain
 * functions (validation, sealed secrets, audit rows) and applied the same way
 * (this node reads them again at once, the others on the change they hear).
 * Secrets are write-only: an answer says which are set, never what they are.
 */

const NO_PIPELINE = 'There is no pipeline with this id (it may have been deleted).';

// ---------------------------------------------------------------------------
// Schemas

const noLineBreak = (v: string) => !/[\r\n\u0000]/.test(v);
const writeOnly = (what: string) =>
  z
    .string()
    .max(16_384)
    .optional()
    .openapi({ writeOnly: true, description: `${what}. Write-only: never answered; left out or empty keeps the stored one.` });

const headerSchema = z.object({
  name: z.string().max(100).refine(noLineBreak, 'A header name is one line.'),
  value: z.string().max(4000).refine(noLineBreak, 'A header value is one line.'),
});

const batchSchema = z.object({
  mode: z.enum(['off', 'json', 'ndjson']).openapi({ description: 'off: one request per message; json: a JSON array; ndjson: one JSON document a line.' }),
  maxMessages: z.number().int().openapi({ description: '1 to 1000.' }),
  maxWaitMs: z.number().int().openapi({ description: '0 to 60000.' }),
  maxBytes: z.number().int().openapi({ description: '1024 to 16777216.' }),
});

const webhookFields = {
  kind: z.literal('webhook'),
  method: z.enum(['POST', 'PUT', 'PATCH']),
  url: z.string().max(2000).openapi({ description: 'http:// or https://; private and loopback addresses are refused when connecting unless PIPELINES_ALLOW_PRIVATE_NETWORKS=1.' }),
  headers: z.array(headerSchema).max(MAX_HEADERS),
  auth: z.enum(['none', 'bearer', 'basic', 'certificate']),
  basicUsername: z.string().max(200),
  certSource: z.enum(['upload', 'store']).openapi({ description: 'Certificate authentication: the certificate given here, or the server certificate of the Certificates page.' }),
  clientCertificate: z.string().max(64 * 1024).openapi({ description: 'PEM (a certificate is public).' }),
  ca: z.string().max(64 * 1024).openapi({ description: 'CA certificates (PEM) the endpoint’s certificate is checked against instead of the system’s (a private CA); empty: the system’s.' }),
  bodyTemplate: z.string().max(16_384).openapi({ description: 'Empty: one JSON object per message. An unknown {{variable}} is refused.' }),
  batch: batchSchema,
  timeoutMs: z.number().int().openapi({ description: '100 to 120000.' }),
};
const tagoioFields = {
  kind: z.literal('tagoio'),
  apiUrl: z.string().max(2000).openapi({ description: 'Default https://api.tago.io.' }),
};
const mqttFields = {
  kind: z.literal('mqtt'),
  url: z.string().max(2000).openapi({ description: 'mqtt://, mqtts://, ws:// or wss://.' }),
  failover: z.array(z.string().max(2000).refine(noLineBreak, 'One address an item.')).max(20),
  username: z.string().max(200),
  clientId: z.string().max(128),
  ca: z.string().max(64 * 1024).openapi({ description: 'PEM.' }),
  clientCertificate: z.string().max(64 * 1024).openapi({ description: 'PEM.' }),
  remoteTopic: z.string().max(1000).openapi({ description: 'A template; default {{topic}}.' }),
  qos: z.union([z.literal(0), z.literal(1), z.literal(2)]),
  retain: z.enum(['keep', 'always', 'never']),
  protocolVersion: z.union([z.literal(4), z.literal(5)]),
};

const destinationSchema = z
  .discriminatedUnion('kind', [z.object(webhookFields).openapi('WebhookDestination'), z.object(tagoioFields).openapi('TagoioDestination'), z.object(mqttFields).openapi('MqttDestination')])
  .openapi('PipelineDestination');

const mappingSchema = z
  .object({
    topicFilter: z.string().max(65_535),
    narrowBy: z.enum(['any', 'client', 'username', 'group']).openapi({ description: 'Who the mapping applies to: anyone, an MQTT client id (`*` allowed), a username or a Gatehouse group.' }),
    narrowValue: z.string().max(200),
  })
  .openapi('PipelineMapping');

const mappingInput = z.object({
  topicFilter: z.string().max(65_535),
  narrowBy: z.enum(['any', 'client', 'username', 'group']).optional().openapi({ description: 'Default any.' }),
  narrowValue: z.string().max(200).optional(),
});

const stateSchema = z.enum(['healthy', 'degraded', 'failing', 'paused']);

const pipelineSchema = z
  .object({
    id: z.number().int(),
    name: z.string(),
    description: z.string(),
    enabled: z.boolean().openapi({ description: 'False: paused (messages are kept, none is sent).' }),
    destination: destinationSchema,
    secrets: z.record(z.string(), z.enum(['set', 'not set'])).openapi({
      description:
        'Which of the destination’s secrets are stored, never their values. Webhook: bearerToken, basicPassword, clientKey, signingSecret; TagoIO: networkToken, authorizationToken; MQTT: password, clientKey.',
    }),
    signingSecrets: z.number().int().openapi({ description: 'Webhook: signing secrets in use (2 during a rotation: requests carry both signatures).' }),
    maxOutboxMb: z.number().int(),
    maxAgeHours: z.number().int(),
    overflow: z.enum(['drop_oldest', 'drop_newest', 'refuse']),
    mappings: z.array(mappingSchema),
    version: z.number().int().openapi({ description: 'Changes on every edit; the ETag is "v<version>".' }),
    createdAt: dateTime,
    updatedAt: dateTime,
  })
  .openapi('Pipeline');

const pipelineBody = z
  .object({
    name: z.string().max(200),
    description: z.string().max(500).optional(),
    enabled: z.boolean().optional().openapi({ description: 'Default true on create; left out on a replace, kept as it is.' }),
    destination: z
      .discriminatedUnion('kind', [
        z
          .object(webhookFields)
          .partial()
          .required({ kind: true, url: true })
          .extend({
            batch: batchSchema.partial().optional(),
            bearerToken: writeOnly('auth bearer: the token'),
            basicPassword: writeOnly('auth basic: the password'),
            clientKey: writeOnly('auth certificate (upload): the private key, PEM, unencrypted'),
            signingSecret: writeOnly(
              'The signing secret (`whsec_` and base64 of 24 to 64 random bytes) when the webhook gets its first one; left out, one is generated, and the API never shows it: bring your own to verify signatures, or rotate with POST /pipelines/{id}/signing-secrets',
            ),
          })
          .openapi('WebhookDestinationInput'),
        z
          .object(tagoioFields)
          .partial()
          .required({ kind: true })
          .extend({
            networkToken: writeOnly('The network token'),
            authorizationToken: writeOnly('The authorization token'),
          })
          .openapi('TagoioDestinationInput'),
        z
          .object(mqttFields)
          .partial()
          .required({ kind: true, url: true })
          .extend({
            password: writeOnly('The password of username'),
            clientKey: writeOnly('The private key of clientCertificate, PEM, unencrypted'),
          })
          .openapi('MqttDestinationInput'),
      ])
      .openapi('PipelineDestinationInput'),
    maxOutboxMb: z.number().int().optional().openapi({ description: 'Default 256.' }),
    maxAgeHours: z.number().int().optional().openapi({ description: 'Default 24.' }),
    overflow: z.enum(['drop_oldest', 'drop_newest', 'refuse']).optional().openapi({ description: 'When the outbox is full; default drop_oldest.' }),
    mappings: z.array(mappingInput).max(MAX_MAPPINGS_PER_PIPELINE).optional(),
  })
  .openapi('PipelineInput', { description: 'The whole pipeline: a replace sets every field (a field left out takes its default), except secrets left out (kept) and enabled.' });

type PipelineBody = z.infer<typeof pipelineBody>;

const figuresSchema = z
  .object({
    state: stateSchema,
    reason: z.string().nullable().openapi({ description: 'Why it is failing or degraded.' }),
    matched: z.number().int(),
    delivered: z.number().int(),
    retried: z.number().int(),
    failed: z.number().int().openapi({ description: 'Messages that became dead letters.' }),
    dropped: z.record(z.enum(DROP_REASONS as [string, ...string[]]), z.number().int()),
    queueRows: z.number().int().openapi({ description: 'Messages waiting, on every node.' }),
    queueBytes: z.number().int(),
    queueAgeS: z.number().openapi({ description: 'Age of the oldest message waiting, in seconds.' }),
    deadLetters: z.number().int(),
    latency: z.object({ buckets: z.array(z.number()), counts: z.array(z.number().int()), sum: z.number(), count: z.number().int() }).openapi({
      description: 'Accepted → delivered, in seconds: bucket upper bounds and cumulative counts (Prometheus style).',
    }),
    history: z.array(z.object({ at: z.number().int(), delivered: z.number().int(), failed: z.number().int() })).openapi({ description: 'The last hour, a minute an entry (`at`: ms since the epoch).' }),
    lastError: z.string().nullable(),
  })
  .openapi('PipelineState', { description: 'The pipeline page’s figures: counters of the node that answers, since it started; what waits, across every node.' });

const deadLetterSchema = z
  .object({
    id: z.number().int(),
    messageId: z.string(),
    topic: z.string(),
    payloadPreview: z.string().openapi({ description: 'The first 200 bytes, as UTF-8.' }),
    payloadBytes: z.number().int(),
    qos: z.number().int(),
    username: z.string().nullable(),
    clientId: z.string().nullable(),
    receivedAt: dateTime,
    failedAt: dateTime,
    attempts: z.number().int(),
    lastStatus: z.number().int().nullable().openapi({ description: 'The last HTTP status (or MQTT reason code); null: a network error.' }),
    lastError: z.string().nullable().openapi({ description: 'The start of the last answer, or the error.' }),
  })
  .openapi('DeadLetter');

const letterParams = idParam.extend({
  letter: z
    .string()
    .regex(/^[1-9][0-9]{0,15}$/, 'A positive integer.')
    .transform(Number)
    .refine((n) => Number.isSafeInteger(n), 'Too large.')
    .openapi({ param: { name: 'letter', in: 'path' }, example: '3' }),
});

// ---------------------------------------------------------------------------
// Between the API's shape and the domain's

/** A domain field (the console form's name) → where it is in the API's body. */
const FIELD_PATHS: Record<string, string> = {
  kind: 'destination.kind',
  method: 'destination.method',
  url: 'destination.url',
  headers: 'destination.headers',
  auth: 'destination.auth',
  bearerToken: 'destination.bearerToken',
  basicUsername: 'destination.basicUsername',
  basicPassword: 'destination.basicPassword',
  certSource: 'destination.certSource',
  clientCert: 'destination.clientCertificate',
  clientKey: 'destination.clientKey',
  webhookCa: 'destination.ca',
  bodyTemplate: 'destination.bodyTemplate',
  batchMode: 'destination.batch.mode',
  batchMaxMessages: 'destination.batch.maxMessages',
  batchMaxWaitMs: 'destination.batch.maxWaitMs',
  batchMaxBytes: 'destination.batch.maxBytes',
  timeoutMs: 'destination.timeoutMs',
  signingSecret: 'destination.signingSecret',
  tagoApiUrl: 'destination.apiUrl',
  networkToken: 'destination.networkToken',
  authorizationToken: 'destination.authorizationToken',
  mqttUrl: 'destination.url',
  mqttFailover: 'destination.failover',
  mqttUsername: 'destination.username',
  mqttPassword: 'destination.password',
  mqttClientId: 'destination.clientId',
  mqttCa: 'destination.ca',
  mqttClientCert: 'destination.clientCertificate',
  mqttClientKey: 'destination.clientKey',
  remoteTopic: 'destination.remoteTopic',
  mqttQos: 'destination.qos',
  mqttRetain: 'destination.retain',
  mqttProtocolVersion: 'destination.protocolVersion',
};

/** The domain's errors, keyed by where the API's body has the field. */
function inApiTerms(error: unknown): never {
  if (error instanceof ValidationError) {
    const errors: FieldErrors = {};
    for (const [field, message] of Object.entries(error.fieldErrors)) errors[FIELD_PATHS[field] ?? field] ??= message;
    throw new ValidationError(errors);
  }
  if (error instanceof ConflictError && error.field !== 'form') throw new ConflictError(FIELD_PATHS[error.field] ?? error.field, error.message);
  throw error;
}

const text = (value: string | number | undefined) => (value === undefined ? '' : String(value));

/** The body as the console's form gives it to the domain (secrets left out: '', kept). */
function inputOf(body: PipelineBody, enabled: boolean, version?: string): PipelineInput {
  const d = body.destination;
  const common: PipelineInput = {
    version,
    name: body.name,
    description: body.description ?? '',
    enabled: enabled ? 'on' : 'off',
    kind: d.kind,
    maxOutboxMb: text(body.maxOutboxMb),
    maxAgeHours: text(body.maxAgeHours),
    overflow: body.overflow ?? '',
    mappings: (body.mappings ?? []).map((m) => ({ topicFilter: m.topicFilter, narrowBy: m.narrowBy ?? 'any', narrowValue: m.narrowValue ?? '' })),
  };
  if (d.kind === 'webhook') {
    return {
      ...common,
      method: d.method ?? '',
      url: d.url,
      headers: (d.headers ?? []).map((h) => `${h.name}: ${h.value}`).join('\n'),
      auth: d.auth ?? '',
      bearerToken: d.bearerToken ?? '',
      basicUsername: d.basicUsername ?? '',
      basicPassword: d.basicPassword ?? '',
      certSource: d.certSource ?? '',
      clientCert: d.clientCertificate ?? '',
      clientKey: d.clientKey ?? '',
      webhookCa: d.ca ?? '',
      bodyTemplate: d.bodyTemplate ?? '',
      batchMode: d.batch?.mode ?? '',
      batchMaxMessages: text(d.batch?.maxMessages),
      batchMaxWaitMs: text(d.batch?.maxWaitMs),
      batchMaxBytes: text(d.batch?.maxBytes),
      timeoutMs: text(d.timeoutMs),
      signingSecret: d.signingSecret ?? '',
    };
  }
  if (d.kind === 'tagoio') return { ...common, tagoApiUrl: d.apiUrl ?? '', networkToken: d.networkToken ?? '', authorizationToken: d.authorizationToken ?? '' };
  return {
    ...common,
    mqttUrl: d.url,
    mqttFailover: (d.failover ?? []).join('\n'),
    mqttUsername: d.username ?? '',
    mqttPassword: d.password ?? '',
    mqttClientId: d.clientId ?? '',
    mqttCa: d.ca ?? '',
    mqttClientCert: d.clientCertificate ?? '',
    mqttClientKey: d.clientKey ?? '',
    remoteTopic: d.remoteTopic ?? '',
    mqttQos: text(d.qos),
    mqttRetain: d.retain ?? '',
    mqttProtocolVersion: text(d.protocolVersion),
  };
}

/** The secret fields of a body, apart: an Idempotency-Key keeps them only as Argon2id (see `idempotent`). */
const SECRET_FIELDS = ['bearerToken', 'basicPassword', 'clientKey', 'signingSecret', 'networkToken', 'authorizationToken', 'password'] as const;
function withSecretsApart(body: PipelineBody): Record<string, unknown> {
  const destination: Record<string, unknown> = { ...body.destination };
  const secrets: Record<string, unknown> = {};
  for (const field of SECRET_FIELDS) {
    if (destination[field] !== undefined) secrets[field] = destination[field];
    delete destination[field];
  }
  // `password` is what `idempotent` keeps as Argon2id only, and compares by verifying.
  return { ...body, destination, ...(Object.keys(secrets).length ? { password: JSON.stringify(secrets) } : {}) };
}

/** The API's secret names of a kind, and the stored secret each reads. */
const SECRETS_OF: Record<Pipeline['kind'], Array<[string, keyof PipelineSecrets]>> = {
  webhook: [
    ['bearerToken', 'bearerToken'],
    ['basicPassword', 'basicPassword'],
    ['clientKey', 'clientKeyPem'],
    ['signingSecret', 'signingSecrets'],
  ],
  tagoio: [
    ['networkToken', 'networkToken'],
    ['authorizationToken', 'authorizationToken'],
  ],
  mqtt: [
    ['password', 'mqttPassword'],
    ['clientKey', 'clientKeyPem'],
  ],
};

function destinationOf(pipeline: Pipeline) {
  const settings = pipeline.settings;
  if (settings.kind === 'webhook') {
    const w = settings.webhook;
    return {
      kind: 'webhook' as const,
      method: w.method,
      url: w.url,
      headers: w.headers.map(([name, value]) => ({ name, value })),
      auth: w.auth,
      basicUsername: w.basicUsername,
      certSource: w.certSource,
      clientCertificate: w.clientCertPem,
      ca: w.caPem ?? '',
      bodyTemplate: w.bodyTemplate,
      batch: { mode: w.batch.mode, maxMessages: w.batch.maxMessages, maxWaitMs: w.batch.maxWaitMs, maxBytes: w.batch.maxBytes },
      timeoutMs: w.timeoutMs,
    };
  }
  if (settings.kind === 'tagoio') return { kind: 'tagoio' as const, apiUrl: settings.tagoio.apiUrl };
  const m = settings.mqtt;
  return {
    kind: 'mqtt' as const,
    url: m.url,
    failover: m.failover,
    username: m.username,
    clientId: m.clientId,
    ca: m.caPem,
    clientCertificate: m.clientCertPem,
    remoteTopic: m.remoteTopic,
    qos: m.qos,
    retain: m.retain,
    protocolVersion: m.protocolVersion,
  };
}

/** Which secrets are stored, by name: the domain opens them with SECRET_KEY when it can, else tells them from the settings (only their names leave it). */
function isStored(pipeline: Pipeline, stored: keyof PipelineSecrets): boolean {
  return stored === 'signingSecrets' ? pipeline.signingSecretCount > 0 : pipeline.storedSecrets.includes(stored);
}

function toApiPipeline(pipeline: Pipeline) {
  return {
    id: pipeline.id,
    name: pipeline.name,
    description: pipeline.description,
    enabled: pipeline.enabled,
    destination: destinationOf(pipeline),
    secrets: Object.fromEntries(SECRETS_OF[pipeline.kind].map(([name, stored]) => [name, isStored(pipeline, stored) ? ('set' as const) : ('not set' as const)])),
    signingSecrets: pipeline.kind === 'webhook' ? pipeline.signingSecretCount : 0,
    maxOutboxMb: Math.round(pipeline.maxOutboxBytes / 1024 / 1024),
    maxAgeHours: Math.round(pipeline.maxAgeSeconds / 3600),
    overflow: pipeline.overflow,
    mappings: pipeline.mappings.map((m) => ({ topicFilter: m.topicFilter, narrowBy: m.narrowBy, narrowValue: m.narrowValue })),
    version: pipeline.version,
    createdAt: pipeline.createdAt.toISOString(),
    updatedAt: pipeline.updatedAt.toISOString(),
  };
}

/** The pipeline as stored, or 404. */
async function existing(db: Database, id: number, secretKey: string | undefined): Promise<Pipeline> {
  const pipeline = await getPipeline(db, id, secretKey);
  if (!pipeline) throw new ApiProblem(404, NO_PIPELINE);
  return pipeline;
}

/** A webhook as stored: 404 when there is none, 409 for another kind (only a webhook signs). */
async function existingWebhook(db: Database, id: number, secretKey: string | undefined): Promise<Pipeline> {
  const pipeline = await existing(db, id, secretKey);
  if (pipeline.kind !== 'webhook') throw new ApiProblem(409, 'Only a webhook signs its requests.');
  return pipeline;
}

/** The pipeline as answered, its version as the ETag. */
function answer(c: Context<ApiEnv>, pipeline: Pipeline) {
  c.header('ETag', versionTag(pipeline.version));
  return toApiPipeline(pipeline);
}

async function readOne(c: Context<ApiEnv>, control: PipelineControl | undefined, id: number) {
  return answer(c, await existing(c.var.db, id, control?.secretKey));
}

/** `If-Match`'s version as a number; none (absent or `*`): undefined. */
function ifMatchVersion(c: Context<ApiEnv>): number | undefined {
  const version = expectedVersion(c.req.header('if-match'));
  return version === undefined ? undefined : Number(version);
}

/** The pipeline page's figures: this node's counters (none yet: zeros), what waits on every node, the dead letters. */
function figuresOf(pipeline: Pipeline, figures: PipelineFigures | null, deadLetters: number) {
  const none = Object.fromEntries(DROP_REASONS.map((reason) => [reason, 0]));
  return {
    state: figures?.state ?? (pipeline.enabled ? ('healthy' as const) : ('paused' as const)),
    reason: figures?.reason ?? null,
    matched: figures?.matched ?? 0,
    delivered: figures?.delivered ?? 0,
    retried: figures?.retried ?? 0,
    failed: figures?.failed ?? 0,
    dropped: figures ? { ...none, ...figures.dropped } : none,
    queueRows: figures?.queueRows ?? 0,
    queueBytes: figures?.queueBytes ?? 0,
    queueAgeS: figures?.queueAgeS ?? 0,
    deadLetters,
    latency: figures?.latency ?? { buckets: [], counts: [], sum: 0, count: 0 },
    history: figures?.history ?? [],
    lastError: figures?.lastError ?? null,
  };
}

function toApiLetter({ mqttClientId, receivedAt, failedAt, ...letter }: DeadLetter) {
  return { ...letter, clientId: mqttClientId, receivedAt: receivedAt.toISOString(), failedAt: failedAt.toISOString() };
}

const PAGE_SIZE = 50;
const pipelineResponse = (description: string) => ({ description, content: { 'application/json': { schema: pipelineSchema } } });
const json = <T extends z.ZodType>(description: string, schema: T) => ({ description, content: { 'application/json': { schema } } });

// ---------------------------------------------------------------------------
// Routes

export function registerPipelineRoutes(api: Api, deps: { log: (message: string) => void; pipelines?: PipelineControl }) {
  const control = deps.pipelines;
  const secretKey = () => control?.secretKey;
  /** What the console does after a change: this node reads the pipelines again now (the others hear the change). */
  const applied = () => control?.service.reload();
  /** After a change whose domain function answers no secrets: applied, then the pipeline read as answered. */
  const appliedThenRead = async (c: Context<ApiEnv>, id: number) => {
    await applied();
    return readOne(c, control, id);
  };

  api.openapi(
    createRoute({
      method: 'get',
      path: '/pipelines',
      tags: ['Pipelines'],
      summary: 'List pipelines by name (50 a page), with their mappings, state and what waits',
      security: scope('pipelines', 'read'),
      request: {
        query: z.object({
          q: z.string().max(200).optional().openapi({ description: 'Text found, in any case, in the name.' }),
          page: z.string().regex(/^[1-9][0-9]{0,5}$/).optional().openapi({ description: 'The page number, from 1.' }),
        }),
      },
      responses: {
        200: json(
          'A page of pipelines.',
          z
            .object({
              items: z.array(pipelineSchema.extend({ state: stateSchema, queueRows: z.number().int(), deadLetters: z.number().int() })),
              total: z.number().int(),
              page: z.number().int(),
              pageCount: z.number().int(),
            })
            .openapi('PipelinePage'),
        ),
        ...problems(401, 403, 422, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'read');
      const query = c.req.valid('query');
      const needle = (query.q ?? '').toLowerCase();
      const all = (await listPipelines(c.var.db, secretKey())).filter((pipeline) => pipeline.name.toLowerCase().includes(needle));
      const pageCount = Math.max(1, Math.ceil(all.length / PAGE_SIZE));
      const page = Math.min(query.page ? Number(query.page) : 1, pageCount);
      const shown = all.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE);
      const deadLetters = await deadLetterCounts(c.var.db, shown.map((pipeline) => pipeline.id));
      const items = shown.map((pipeline) => {
        const figures = figuresOf(pipeline, control?.service.figuresOf(pipeline.id) ?? null, deadLetters.get(pipeline.id) ?? 0);
        return { ...toApiPipeline(pipeline), state: figures.state, queueRows: figures.queueRows, deadLetters: figures.deadLetters };
      });
      return c.json({ items, total: all.length, page, pageCount }, 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'post',
      path: '/pipelines',
      tags: ['Pipelines'],
      summary: 'Create a pipeline with its destination and mappings',
      description:
        'Validated as the console validates it (an unknown template variable is refused). Secrets are sealed under SECRET_KEY (needed) and never answered. Every node applies it at once.',
      security: scope('pipelines', 'write'),
      request: { headers: idempotencyHeader, body: { required: true, content: { 'application/json': { schema: pipelineBody } } } },
      responses: { 201: pipelineResponse('Created; `Location` names it.'), ...problems(401, 403, 409, 415, 422, 429) },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'write');
      const body = c.req.valid('json');
      return idempotent(c, withSecretsApart(body), deps.log, async () => {
        const created = await createPipeline(c.var.db, inputOf(body, body.enabled ?? true), secretKey(), c.var.actor).catch(inApiTerms);
        await applied();
        return { body: answer(c, created.pipeline), location: `/api/v1/pipelines/${created.pipeline.id}` };
      }) as never;
    },
  );

  api.openapi(
    createRoute({
      method: 'get',
      path: '/pipelines/{id}',
      tags: ['Pipelines'],
      summary: 'Read a pipeline (which secrets are set, never their values)',
      security: scope('pipelines', 'read'),
      request: { params: idParam },
      responses: { 200: pipelineResponse('The pipeline; `ETag` is its version.'), ...problems(401, 403, 404, 429) },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'read');
      return c.json(await readOne(c, control, c.req.valid('param').id), 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'put',
      path: '/pipelines/{id}',
      tags: ['Pipelines'],
      summary: 'Replace a pipeline’s settings and mappings (secrets left out are kept)',
      security: scope('pipelines', 'write'),
      request: { params: idParam, headers: ifMatchHeader, body: { required: true, content: { 'application/json': { schema: pipelineBody } } } },
      responses: { 200: pipelineResponse('As saved.'), ...problems(401, 403, 404, 409, 412, 415, 422, 429) },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'write');
      const { id } = c.req.valid('param');
      const version = expectedVersion(c.req.header('if-match'));
      const body = c.req.valid('json');
      const current = await existing(c.var.db, id, secretKey());
      const saved = await updatePipeline(c.var.db, id, inputOf(body, body.enabled ?? current.enabled, version), secretKey(), c.var.actor).catch(inApiTerms);
      if (!saved) throw new ApiProblem(404, NO_PIPELINE);
      await applied();
      return c.json(answer(c, saved), 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'delete',
      path: '/pipelines/{id}',
      tags: ['Pipelines'],
      summary: 'Delete a pipeline with its mappings, its waiting messages and its dead letters',
      security: scope('pipelines', 'write'),
      request: { params: idParam, headers: ifMatchHeader },
      responses: {
        200: json('Deleted.', z.object({ deleted: pipelineSchema.pick({ id: true, name: true, version: true }) }).openapi('DeletedPipeline')),
        ...problems(401, 403, 404, 412, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'write');
      const deleted = await deletePipeline(c.var.db, c.req.valid('param').id, c.var.actor, ifMatchVersion(c));
      if (!deleted) throw new ApiProblem(404, NO_PIPELINE);
      await applied();
      return c.json({ deleted: { id: deleted.id, name: deleted.name, version: deleted.version } }, 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'get',
      path: '/pipelines/{id}/mappings',
      tags: ['Pipelines'],
      summary: 'A pipeline’s topic mappings, in order',
      security: scope('pipelines', 'read'),
      request: { params: idParam },
      responses: { 200: json('The mappings; `ETag` is the pipeline’s version.', z.object({ mappings: z.array(mappingSchema) }).openapi('PipelineMappings')), ...problems(401, 403, 404, 429) },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'read');
      const pipeline = await readOne(c, control, c.req.valid('param').id);
      return c.json({ mappings: pipeline.mappings }, 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'put',
      path: '/pipelines/{id}/mappings',
      tags: ['Pipelines'],
      summary: 'Replace a pipeline’s topic mappings, all or none (its destination and secrets as they are)',
      description: 'Send `If-Match` with the pipeline’s ETag: a pipeline changed meanwhile answers 412 and nothing is saved. Every node applies them at once.',
      security: scope('pipelines', 'write'),
      request: {
        params: idParam,
        headers: ifMatchHeader,
        body: { required: true, content: { 'application/json': { schema: z.object({ mappings: z.array(mappingInput).max(MAX_MAPPINGS_PER_PIPELINE) }).openapi('PipelineMappingsInput') } } },
      },
      responses: { 200: json('As saved.', z.object({ mappings: z.array(mappingSchema) })), ...problems(401, 403, 404, 412, 415, 422, 429) },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'write');
      const { id } = c.req.valid('param');
      const saved = await replacePipelineMappings(c.var.db, id, c.req.valid('json').mappings, ifMatchVersion(c), c.var.actor);
      if (!saved) throw new ApiProblem(404, NO_PIPELINE);
      await applied();
      c.header('ETag', versionTag(saved.version));
      return c.json({ mappings: saved.mappings }, 200);
    },
  );

  for (const [action, enabled] of [
    ['pause', false],
    ['resume', true],
  ] as const) {
    api.openapi(
      createRoute({
        method: 'post',
        path: `/pipelines/{id}/${action}`,
        tags: ['Pipelines'],
        summary: enabled ? 'Resume delivery' : 'Pause delivery (messages keep arriving in the outbox, within its limits; none is sent)',
        security: scope('pipelines', 'write'),
        request: { params: idParam },
        responses: { 200: pipelineResponse('The pipeline now.'), ...problems(401, 403, 404, 429) },
      }),
      async (c) => {
        requireScope(c, 'pipelines', 'write');
        const { id } = c.req.valid('param');
        if (!(await setPipelineEnabled(c.var.db, id, enabled, c.var.actor))) throw new ApiProblem(404, NO_PIPELINE);
        return c.json(await appliedThenRead(c, id), 200);
      },
    );
  }

  api.openapi(
    createRoute({
      method: 'get',
      path: '/pipelines/{id}/state',
      tags: ['Pipelines'],
      summary: 'State and figures: the pipeline page’s counters, queue, latency histogram and last hour',
      security: scope('pipelines', 'read'),
      request: { params: idParam },
      responses: { 200: json('Figures now.', figuresSchema), ...problems(401, 403, 404, 429) },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'read');
      const { id } = c.req.valid('param');
      const found = await existing(c.var.db, id, secretKey());
      return c.json(figuresOf(found, control?.service.figuresOf(id) ?? null, await deadLetterCount(c.var.db, id)), 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'post',
      path: '/pipelines/{id}/test',
      tags: ['Pipelines'],
      summary: 'Render the most recent message the pipeline matched and send it once (not through the outbox), as the console’s Test',
      description: 'Goes through the same outbound client as delivery: the SSRF guard refuses private and loopback addresses unless PIPELINES_ALLOW_PRIVATE_NETWORKS=1.',
      security: scope('pipelines', 'write'),
      request: { params: idParam },
      responses: {
        200: json(
          'What was sent and what the endpoint answered.',
          z
            .object({
              ok: z.boolean().openapi({ description: 'A 2xx answer.' }),
              status: z.number().int().nullable().openapi({ description: 'HTTP status (or MQTT reason code); null: a network error.' }),
              retry: z.boolean().openapi({ description: 'Delivery would retry it (408, 429, 5xx, a network error).' }),
              answer: z.string(),
              request: z.string().openapi({ description: 'What was sent (secrets elided).' }),
            })
            .openapi('PipelineTest'),
        ),
        ...problems(401, 403, 404, 409, 429, 503),
      },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'write');
      const { id } = c.req.valid('param');
      await existing(c.var.db, id, secretKey());
      if (!control) throw new ApiProblem(503, 'Pipelines do not run in this process.');
      const test = await control.service.test(id);
      if ('error' in test) throw new ApiProblem(409, test.error);
      return c.json({ ok: test.ok, status: test.status, retry: test.retry, answer: test.answer, request: test.request }, 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'post',
      path: '/pipelines/{id}/signing-secrets',
      tags: ['Pipelines'],
      summary: 'Rotate a webhook’s signing secret to the one given: requests carry both signatures until the previous one is dropped',
      security: scope('pipelines', 'write'),
      request: {
        params: idParam,
        body: {
          required: true,
          content: {
            'application/json': {
              schema: z
                .object({ secret: z.string().max(200).openapi({ writeOnly: true, description: '`whsec_` and base64 of 24 to 64 random bytes. Never answered.' }) })
                .openapi('SigningSecretInput'),
            },
          },
        },
      },
      responses: { 200: pipelineResponse('The pipeline now (`signingSecrets`: 2).'), ...problems(401, 403, 404, 409, 415, 422, 429) },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'write');
      const { id } = c.req.valid('param');
      const { secret } = c.req.valid('json');
      await existingWebhook(c.var.db, id, secretKey());
      if (!(await rotateSigningSecret(c.var.db, id, secretKey(), c.var.actor, secret.trim()))) throw new ApiProblem(404, NO_PIPELINE);
      return c.json(await appliedThenRead(c, id), 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'delete',
      path: '/pipelines/{id}/signing-secrets/previous',
      tags: ['Pipelines'],
      summary: 'Finish a rotation: drop the previous signing secret (requests carry one signature again)',
      security: scope('pipelines', 'write'),
      request: { params: idParam },
      responses: { 200: pipelineResponse('The pipeline now.'), ...problems(401, 403, 404, 409, 429) },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'write');
      const { id } = c.req.valid('param');
      await existingWebhook(c.var.db, id, secretKey());
      if (!(await finishSigningSecretRotation(c.var.db, id, secretKey(), c.var.actor))) throw new ApiProblem(409, 'Set SECRET_KEY to the value the secrets were saved with.');
      return c.json(await appliedThenRead(c, id), 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'get',
      path: '/pipelines/{id}/dead-letters',
      tags: ['Pipelines'],
      summary: 'A pipeline’s dead letters, newest first (50 a page): each with its last status and the start of the answer',
      security: scope('pipelines', 'read'),
      request: { params: idParam, query: z.object({ page: z.string().regex(/^[1-9][0-9]{0,5}$/).optional().openapi({ description: 'The page number, from 1.' }) }) },
      responses: {
        200: json(
          'A page of dead letters.',
          z.object({ items: z.array(deadLetterSchema), total: z.number().int(), page: z.number().int(), pageCount: z.number().int() }).openapi('DeadLetterPage'),
        ),
        ...problems(401, 403, 404, 422, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'read');
      const { id } = c.req.valid('param');
      await existing(c.var.db, id, secretKey());
      const page = c.req.valid('query').page;
      const result = await listDeadLetters(c.var.db, id, page ? Number(page) : 1);
      return c.json({ items: result.letters.map(toApiLetter), total: result.total, page: result.page, pageCount: result.pageCount }, 200);
    },
  );

  const replayed = json('How many messages went back to the end of the queue (same message ids).', z.object({ replayed: z.number().int() }).openapi('Replayed'));

  api.openapi(
    createRoute({
      method: 'post',
      path: '/pipelines/{id}/dead-letters/replay',
      tags: ['Pipelines'],
      summary: 'Replay every dead letter of the pipeline',
      security: scope('pipelines', 'write'),
      request: { params: idParam },
      responses: { 200: replayed, ...problems(401, 403, 404, 429) },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'write');
      const { id } = c.req.valid('param');
      await existing(c.var.db, id, secretKey());
      return c.json({ replayed: await replayDeadLetters(c.var.db, id, 'all', c.var.actor) }, 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'post',
      path: '/pipelines/{id}/dead-letters/{letter}/replay',
      tags: ['Pipelines'],
      summary: 'Replay one dead letter',
      security: scope('pipelines', 'write'),
      request: { params: letterParams },
      responses: { 200: replayed, ...problems(401, 403, 404, 429) },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'write');
      const { id, letter } = c.req.valid('param');
      const count = await replayDeadLetters(c.var.db, id, letter, c.var.actor);
      if (count === 0) throw new ApiProblem(404, 'This pipeline has no such dead letter (it may have been replayed or purged).');
      return c.json({ replayed: count }, 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'delete',
      path: '/pipelines/{id}/dead-letters',
      tags: ['Pipelines'],
      summary: 'Purge every dead letter of the pipeline',
      security: scope('pipelines', 'write'),
      request: { params: idParam },
      responses: { 200: json('How many were purged.', z.object({ purged: z.number().int() }).openapi('Purged')), ...problems(401, 403, 404, 429) },
    }),
    async (c) => {
      requireScope(c, 'pipelines', 'write');
      const { id } = c.req.valid('param');
      await existing(c.var.db, id, secretKey());
      return c.json({ purged: await purgeDeadLetters(c.var.db, id, c.var.actor) }, 200);
    },
  );
}
