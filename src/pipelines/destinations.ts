import { createHash, createHmac } from 'node:crypto';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { type IClientOptions, MqttClient } from 'mqtt';
import buildTlsStream from 'mqtt/lib/connect/tls';
import { streamBuilder as buildWsStream } from 'mqtt/lib/connect/ws';
import { Agent, request } from 'undici';
import type { OutboxRow } from '../domain/pipelines/outbox';
import type { MqttBridgeSettings, RunnablePipeline, TagoioSettings, WebhookSettings } from '../domain/pipelines/pipelines';
import { defaultMessageBody, parseTemplate, renderTemplate, type Template, type TemplateMessage } from '../domain/pipelines/templates';
import { topicNameProblem } from '../domain/topics';
import { checkLiteralHost, guardedLookup } from './network';

/** What one attempt at forwarding some rows came to. */
export interface SendOutcome {
  ok: boolean;
  /** HTTP status (or an MQTT reason code), null for a network error. */
  status: number | null;
  /** Worth trying again: 408, 429, 5xx, a network error or timeout. */
  retry: boolean;
  /** The endpoint's Retry-After, in ms. */
  retryAfterMs?: number;
  /** The start of the answer, or the error. */
  answer: string;
}

/** What a test send shows: what was sent, and the answer. */
export interface TestOutcome extends SendOutcome {
  request: string;
}

export interface Destination {
  /** Batches: how many rows (and bytes) one send takes at most; null: one row per send. */
  readonly batch: { maxMessages: number; maxBytes: number; maxWaitMs: number } | null;
  send(rows: OutboxRow[]): Promise<SendOutcome>;
  /** Renders and sends one message as the delivery would, and says what was sent. */
  test(row: OutboxRow): Promise<TestOutcome>;
  close(): Promise<void>;
}

export interface DestinationOptions {
  allowPrivateNetworks: boolean;
  /** The server certificate and key of the Certificates page (a webhook's "from the store" client certificate). */
  storedCertificate?: () => Promise<{ certPem: string; keyPem: string } | null>;
  /** `host:port` pairs this node's MQTT listeners answer on: a bridge to one of them would loop. */
  ownMqttAddresses?: () => string[];
  /** A name for this node in the bridge's user property (loop prevention). */
  nodeId: string;
}

const ANSWER_SNIPPET = 512;

export function createDestination(pipeline: RunnablePipeline, options: DestinationOptions): Destination {
  switch (pipeline.settings.kind) {
    case 'webhook':
      return webhookDestination(pipeline, pipeline.settings.webhook, options);
    case 'tagoio':
      return tagoioDestination(pipeline, pipeline.settings.tagoio, options);
    case 'mqtt':
      return mqttDestination(pipeline, pipeline.settings.mqtt, options);
  }
}

export function templateMessage(row: OutboxRow): TemplateMessage {
  return {
    messageId: row.messageId,
    topic: row.topic,
    payload: row.payload,
    qos: row.qos,
    retain: row.retain,
    clientId: row.mqttClientId,
    username: row.username,
    receivedAt: row.receivedAt,
  };
}

/** An HTTP status as an outcome: 2xx only is success; 408, 429 and 5xx are worth retrying. */
export function outcomeOfStatus(status: number, answer: string, retryAfter?: string | string[]): SendOutcome {
  const ok = status >= 200 && status < 300;
  const retry = !ok && (status === 408 || status === 429 || status >= 500);
  return { ok, status, retry, retryAfterMs: retry ? parseRetryAfter(retryAfter) : undefined, answer };
}

/** Retry-After as seconds or an HTTP date, in ms; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return undefined;
  if (/^\s*\d+\s*$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

function networkOutcome(error: unknown): SendOutcome {
  const e = error as Error & { code?: string; cause?: Error & { code?: string } };
  const code = e.code ?? e.cause?.code;
  // A refused internal address is a setting to change, not an outage to wait out.
  if (code === 'EBLOCKED') return { ok: false, status: null, retry: false, answer: e.cause?.message ?? e.message };
  return { ok: false, status: null, retry: true, answer: `${code ? `${code}: ` : ''}${e.message}`.slice(0, ANSWER_SNIPPET) };
}

/** What a connection to the endpoint presents and trusts: a client certificate (mTLS), CA certificates instead of the system's. */
interface TlsChoices {
  cert?: string;
  key?: string;
  ca?: string;
}

/** One pooled HTTP client per pipeline: keep-alive connections, timeouts, the SSRF guard and the pipeline's TLS choices. */
function httpAgent(timeoutMs: number, allowPrivate: boolean, tls: TlsChoices = {}) {
  return new Agent({
    connections: 16,
    keepAliveTimeout: 30_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    connect: { timeout: Math.min(timeoutMs, 10_000), lookup: guardedLookup(allowPrivate) as never, ...tls },
  });
}

/** `keepAnswer`: the start of a 2xx answer is kept too (Test shows it); deliveries drop it unread. */
async function post(agent: Agent, allowPrivate: boolean, url: string, method: string, headers: Record<string, string>, body: string, timeoutMs: number, keepAnswer = false): Promise<SendOutcome> {
  try {
    // Literals only: names go through the agent's guarded lookup.
    checkLiteralHost(new URL(url).hostname, allowPrivate);
  } catch (error) {
    return networkOutcome(error);
  }
  const deadline = Date.now() + timeoutMs + 1000;
  try {
    // No AbortSignal per request (a timer and listeners each): undici's header and body timeouts
    // bound each wait, and the answer is read only up to the deadline below.
    const response = await request(url, { dispatcher: agent, method: method as 'POST', headers, body });
    if (!keepAnswer && response.statusCode >= 200 && response.statusCode < 300) {
      // Success: the answer is not kept; read (up to 64 KB) so the connection can be reused.
      await response.body.dump({ limit: 64 * 1024 }).catch(() => {});
      return { ok: true, status: response.statusCode, retry: false, answer: '' };
    }
    let answer = '';
    let size = 0;
    for await (const chunk of response.body) {
      if (size < ANSWER_SNIPPET) answer += (chunk as Buffer).toString('utf8', 0, Math.min((chunk as Buffer).length, ANSWER_SNIPPET - size));
      size += (chunk as Buffer).length;
      if (size > 64 * 1024 || Date.now() > deadline) {
        response.body.destroy();
        break;
      }
    }
    return outcomeOfStatus(response.statusCode, answer, response.headers['retry-after']);
  } catch (error) {
    return networkOutcome(error);
  }
}

/**
 * Standard Webhooks signature: HMAC-SHA256 of `id.timestamp.body` under each
 * secret (the bytes after `whsec_`, base64-decoded), `v1,<base64>` each,
 * separated by spaces.
 */
export function signWebhook(secrets: readonly string[], id: string, timestampS: number, body: string): string {
  return signWithKeys(secrets.map(signingKey), id, timestampS, body);
}

/** The key of a `whsec_…` secret. */
function signingKey(secret: string): Buffer {
  return Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64');
}

function signWithKeys(keys: readonly Buffer[], id: string, timestampS: number, body: string): string {
  return keys.map((key) => `v1,${createHmac('sha256', key).update(`${id}.${timestampS}.${body}`).digest('base64')}`).join(' ');
}

function webhookDestination(pipeline: RunnablePipeline, settings: WebhookSettings, options: DestinationOptions): Destination {
  const template: Template | null = settings.bodyTemplate ? parseTemplate(settings.bodyTemplate) : null;
  const secrets = pipeline.secrets;
  const signingKeys = (secrets.signingSecrets ?? []).map(signingKey);
  let agent: Promise<Agent> | undefined;
  const agentOf = () =>
    (agent ??= (async () => {
      const tls: TlsChoices = settings.caPem ? { ca: settings.caPem } : {};
      if (settings.auth === 'certificate') {
        if (settings.certSource === 'store') {
          const stored = await options.storedCertificate?.();
          if (stored) Object.assign(tls, { cert: stored.certPem, key: stored.keyPem });
        } else if (secrets.clientKeyPem) {
          Object.assign(tls, { cert: settings.clientCertPem, key: secrets.clientKeyPem });
        }
      }
      return httpAgent(settings.timeoutMs, options.allowPrivateNetworks, tls);
    })());
  const batching = settings.batch.mode !== 'off';

  function render(row: OutboxRow): string {
    const message = templateMessage(row);
    return template ? renderTemplate(template, message) : JSON.stringify(defaultMessageBody(message));
  }

  function build(rows: OutboxRow[]): { body: string; headers: Record<string, string> } {
    const parts = rows.map(render);
    const body = !batching ? parts[0]! : settings.batch.mode === 'json' ? `[${parts.join(',')}]` : `${parts.join('\n')}\n`;
    // One message: its id. A batch: an id derived from its messages', the same for the same batch.
    const id = rows.length === 1 && !batching ? rows[0]!.messageId : `batch_${createHash('sha256').update(rows.map((r) => r.messageId).join(',')).digest('hex').slice(0, 32)}`;
    const timestamp = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = {};
    for (const [name, value] of settings.headers) headers[name.toLowerCase()] = value;
    headers['content-type'] ??= settings.batch.mode === 'ndjson' ? 'application/x-ndjson' : 'application/json';
    headers['user-agent'] ??= 'Gatehouse';
    headers['webhook-id'] = id;
    headers['webhook-timestamp'] = String(timestamp);
    headers['idempotency-key'] = id;
    if (signingKeys.length) headers['webhook-signature'] = signWithKeys(signingKeys, id, timestamp, body);
    if (settings.auth === 'bearer' && secrets.bearerToken) headers.authorization = `Bearer ${secrets.bearerToken}`;
    if (settings.auth === 'basic' && secrets.basicPassword !== undefined) {
      headers.authorization = `Basic ${Buffer.from(`${settings.basicUsername}:${secrets.basicPassword}`).toString('base64')}`;
    }
    return { body, headers };
  }

  return {
    batch: batching ? { maxMessages: settings.batch.maxMessages, maxBytes: settings.batch.maxBytes, maxWaitMs: settings.batch.maxWaitMs } : null,
    async send(rows) {
      const { body, headers } = build(rows);
      return post(await agentOf(), options.allowPrivateNetworks, settings.url, settings.method, headers, body, settings.timeoutMs);
    },
    async test(row) {
      const { body, headers } = build([row]);
      const outcome = await post(await agentOf(), options.allowPrivateNetworks, settings.url, settings.method, headers, body, settings.timeoutMs, true);
      return { ...outcome, request: `${settings.method} ${settings.url}\n${headers['content-type']}\n\n${body.slice(0, 4000)}` };
    },
    async close() {
      if (agent) await (await agent).close().catch(() => {});
    },
  };
}

/**
 * TagoIO, as TagoDeploy's broker pipeline and TagoIO's MQTT relay send it:
 * POST `{API URL}/integration/network/data?authorization_token=…` with the
 * network token in `Authorization`, and a JSON array of one data point:
 * `variable` "payload", `value` the payload as text (upper-case hex when it is
 * not UTF-8), `metadata` the topic and QoS.
 */
export function tagoioRequest(settings: TagoioSettings, secrets: { networkToken?: string; authorizationToken?: string }, row: OutboxRow): { url: string; headers: Record<string, string>; body: string } {
  const text = row.payload.toString('utf8');
  const value = Buffer.from(text, 'utf8').equals(row.payload) ? text : row.payload.toString('hex').toUpperCase();
  return {
    url: `${settings.apiUrl}/integration/network/data?authorization_token=${encodeURIComponent(secrets.authorizationToken ?? '')}`,
    headers: { authorization: secrets.networkToken ?? '', 'content-type': 'application/json' },
    body: JSON.stringify([{ variable: 'payload', value, metadata: { topic: row.topic, qos: row.qos } }]),
  };
}

function tagoioDestination(pipeline: RunnablePipeline, settings: TagoioSettings, options: DestinationOptions): Destination {
  const agent = httpAgent(10_000, options.allowPrivateNetworks);
  const sendOne = (row: OutboxRow, keepAnswer = false) => {
    const { url, headers, body } = tagoioRequest(settings, pipeline.secrets, row);
    return { outcome: post(agent, options.allowPrivateNetworks, url, 'POST', headers, body, 10_000, keepAnswer), url, body };
  };
  return {
    batch: null,
    send: (rows) => sendOne(rows[0]!).outcome,
    async test(row) {
      const { outcome, body } = sendOne(row, true);
      return { ...(await outcome), request: `POST ${settings.apiUrl}/integration/network/data?authorization_token=…\n\n${body.slice(0, 4000)}` };
    },
    close: () => agent.close().catch(() => {}),
  };
}

/**
 * mqtt.js' stream for each connection attempt, with the SSRF guard's lookup on
 * every one: mqtt.js' own TCP stream takes no \`lookup\`, so a name checked
 * once at start was resolved again by every reconnect, and a DNS answer that
 * changed meanwhile (rebinding) reached an internal address. The addresses
 * (the first, then the failover ones) are taken in turn, each with its own
 * scheme and, over WebSocket, its own path: a connection that drops or fails
 * goes on to the next address, and after the last to the first again.
 */
function guardedStreamBuilder(addresses: URL[], options: IClientOptions, allowPrivate: () => boolean) {
  const defaultPort = { mqtt: 1883, mqtts: 8883, ws: 80, wss: 443 } as const;
  const servers = addresses.map((url) => {
    const protocol = url.protocol.replace(':', '') as keyof typeof defaultPort;
    return { host: url.hostname, port: Number(url.port) || defaultPort[protocol], protocol, path: url.pathname || '/' };
  });
  let next = 0;
  return (client: MqttClient) => {
    const server = servers[next % servers.length]!;
    next++;
    const host = server.host.replace(/^\[|\]$/g, '');
    const lookup = guardedLookup(allowPrivate());
    try {
      // An IP literal is never looked up: judged here, at each attempt too.
      checkLiteralHost(host, allowPrivate());
    } catch (error) {
      // As a connection that failed: mqtt.js reports it and tries again later.
      const refused = new Duplex({ read() {}, write(_chunk, _encoding, done) { done(); } });
      process.nextTick(() => refused.destroy(error as Error));
      return refused;
    }
    const opts = { ...options, host, hostname: host, port: server.port, protocol: server.protocol, lookup } as IClientOptions & { lookup: typeof lookup };
    if (server.protocol === 'mqtt') return net.createConnection({ host, port: server.port, lookup: lookup as never });
    if (server.protocol === 'mqtts') return buildTlsStream(client, opts);
    // mqtt.js writes the hostname into the URL as it is: an IPv6 literal needs its brackets there.
    const hostname = net.isIPv6(host) ? `[${host}]` : host;
    return buildWsStream(client, { ...opts, hostname, path: server.path, wsOptions: { ...(opts.wsOptions ?? {}), lookup } as never });
  };
}

/** The MQTT 5 user property a bridge puts on what it forwards; a Gatehouse seeing it back knows the message went round. */
export const BRIDGE_HOP_PROPERTY = 'gatehouse-forwarded-by';

function mqttDestination(pipeline: RunnablePipeline, settings: MqttBridgeSettings, options: DestinationOptions): Destination {
  const topicTemplate = parseTemplate(settings.remoteTopic);
  const timeoutMs = 10_000;
  let client: MqttClient | undefined;
  let blocked: string | undefined;
  /** Why the last connection attempt failed (a refused address, a refused CONNECT…), until one succeeds. */
  let connectError: string | undefined;
  let starting: Promise<void> | undefined;

  async function start() {
    const urls = [settings.url, ...settings.failover];
    // Loop prevention and a first SSRF check, so a refused address is said at once; every
    // connection (each reconnect, each failover address) resolves its name through the guard again.
    for (const address of urls) {
      const url = new URL(address);
      const port = url.port || { 'mqtt:': '1883', 'mqtts:': '8883', 'ws:': '80', 'wss:': '443' }[url.protocol] || '';
      if ((options.ownMqttAddresses?.() ?? []).some((own) => own === `${url.hostname}:${port}`)) {
        blocked = `${address} is this Gatehouse's own MQTT listener: forwarding there would loop`;
        return;
      }
      try {
        checkLiteralHost(url.hostname, options.allowPrivateNetworks);
        if (!/^\[|^\d+\.\d+\.\d+\.\d+$/.test(url.hostname)) {
          await new Promise<void>((resolve, reject) =>
            guardedLookup(options.allowPrivateNetworks)(url.hostname, {}, (error) => (error ? reject(error) : resolve())),
          );
        }
      } catch (error) {
        if ((error as { code?: string }).code === 'EBLOCKED') {
          blocked = (error as Error).message;
          return;
        }
        // A name that does not resolve now may later: mqtt.js keeps trying.
      }
    }
    const connectOptions: IClientOptions = {
      clientId: settings.clientId || `gatehouse-bridge-${pipeline.id}-${options.nodeId}`.slice(0, 128),
      username: settings.username || undefined,
      password: pipeline.secrets.mqttPassword,
      protocolVersion: settings.protocolVersion,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: timeoutMs,
      // Nothing is queued while offline: the outbox is the queue.
      queueQoSZero: false,
      ca: settings.caPem || undefined,
      cert: settings.clientCertPem || undefined,
      key: settings.clientCertPem ? pipeline.secrets.clientKeyPem : undefined,
    };
    const addresses = [settings.url, ...settings.failover].map((address) => new URL(address));
    client = new MqttClient(guardedStreamBuilder(addresses, connectOptions, () => options.allowPrivateNetworks), connectOptions);
    client.on('error', (error) => {
      connectError = error.message;
    });
    client.on('connect', () => {
      connectError = undefined;
    });
  }

  async function publish(row: OutboxRow): Promise<SendOutcome> {
    starting ??= start();
    await starting;
    if (blocked) return { ok: false, status: null, retry: false, answer: blocked };
    const topic = renderTemplate(topicTemplate, templateMessage(row));
    const problem = topicNameProblem(topic);
    if (problem) return { ok: false, status: null, retry: false, answer: `remote topic ${JSON.stringify(topic.slice(0, 200))}: ${problem}` };
    const live = client!;
    if (!live.connected) return { ok: false, status: null, retry: true, answer: `not connected to the remote broker${connectError ? `: ${connectError}` : ''}` };
    const retain = settings.retain === 'keep' ? row.retain : settings.retain === 'always';
    const properties = settings.protocolVersion === 5 ? { userProperties: { [BRIDGE_HOP_PROPERTY]: options.nodeId } } : undefined;
    return new Promise<SendOutcome>((resolve) => {
      const timer = setTimeout(() => resolve({ ok: false, status: null, retry: true, answer: `no acknowledgement within ${timeoutMs} ms` }), timeoutMs);
      live.publish(topic, row.payload, { qos: settings.qos, retain, properties }, (error, packet) => {
        clearTimeout(timer);
        const code = (packet as { reasonCode?: number } | undefined)?.reasonCode;
        if (error) resolve({ ok: false, status: code ?? null, retry: code === undefined || code < 0x80 || code === 0x97, answer: error.message });
        else if (code !== undefined && code >= 0x80) resolve({ ok: false, status: code, retry: code === 0x97, answer: `reason code 0x${code.toString(16)}` });
        else resolve({ ok: true, status: 0, retry: false, answer: '' });
      });
    });
  }

  return {
    batch: null,
    send: (rows) => publish(rows[0]!),
    async test(row) {
      const outcome = await publish(row);
      return { ...outcome, request: `PUBLISH ${renderTemplate(topicTemplate, templateMessage(row))} (QoS ${settings.qos}) to ${settings.url}\n\n${row.payload.subarray(0, 4000).toString('utf8')}` };
    },
    async close() {
      await starting?.catch(() => {});
      if (client) await new Promise<void>((resolve) => client!.end(true, {}, () => resolve()));
    },
  };
}
