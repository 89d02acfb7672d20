import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65535);
/** A listener's port, or `off` for no such listener. */
const portOrOff = z.union([z.literal('off').transform(() => 'off' as const), port]);
const positiveInt = z.coerce.number().int().positive();
const flag = z
  .enum(['0', '1', 'true', 'false', ''])
  .default('0')
  .transform((v) => v === '1' || v === 'true');
const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v === '' ? undefined : v));

/**
 * Every setting Gatehouse reads from the environment. Broker limits are chosen
 * on purpose (see README, "Broker limits"): Aedes' own defaults let one stalled
 * subscriber block delivery for everyone.
 */
export const configSchema = z
  .object({
    /** Console and MQTT over WebSocket, in clear; `off`: not served in clear. */
    PORT: portOrOff.default(3000),
    /** MQTT over TCP, in clear; `off`: not served in clear. */
    MQTT_PORT: portOrOff.default(1883),
    /** MQTT over TLS, once TLS is enabled (files or console). */
    MQTTS_PORT: port.default(8883),
    /** Console and MQTT over secure WebSocket (`wss://…/mqtt`), once TLS is enabled. */
    HTTPS_PORT: port.default(3443),
    /** PEM files of the server certificate (with its chain), its private key, and the CA that signs client certificates. They win over the console's uploads; SIGHUP reads them again. */
    TLS_CERT_FILE: optionalText,
    TLS_KEY_FILE: optionalText,
    TLS_CA_FILE: optionalText,
    /** Encrypts secrets kept in the database (a private key uploaded in the console). */
    SECRET_KEY: optionalText.pipe(z.string().min(16, 'use at least 16 characters').optional()),
    HOST: z.string().min(1).default('0.0.0.0'),
    DATABASE_URL: optionalText.pipe(
      z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'must start with postgres:// or postgresql://')
        .optional(),
    ),
    DATA_DIR: z.string().min(1).default('./data'),
    /** Several nodes: message bus and broker state in Redis (needs DATABASE_URL). */
    REDIS_URL: optionalText.pipe(
      z
        .string()
        .regex(/^rediss?:\/\//, 'must start with redis:// or rediss://')
        .optional(),
    ),
    /**
     * How often a node tells the others it is alive (Aedes' heartbeat). The wills
     * of a node that died are published by the others 3 to 7 heartbeats later.
     */
    NODE_HEARTBEAT_MS: positiveInt.min(100).default(10_000),
    /** How often the last seen times of ended sessions are written (one UPDATE per batch). */
    LAST_SEEN_FLUSH_MS: positiveInt.min(100).default(5000),
    ADMIN_USERNAME: optionalText,
    ADMIN_PASSWORD: optionalText,
    TRUST_PROXY: flag,
    /** Bearer token for /metrics; unset: /metrics answers 404. */
    METRICS_TOKEN: optionalText.pipe(z.string().min(16, 'use at least 16 characters').optional()),
    /** Audit events and the overview's samples older than this many days are deleted (hourly, and at start). */
    AUDIT_RETENTION_DAYS: positiveInt.max(36_500).default(90),
    /** A subscriber whose socket stays full this long is disconnected. */
    MQTT_DRAIN_TIMEOUT_MS: positiveInt.default(5000),
    /** Deliveries in flight through the broker's message bus at once. */
    MQTT_CONCURRENCY: positiveInt.default(1000),
    /** Time a new connection has to send CONNECT. */
    MQTT_CONNECT_TIMEOUT_MS: positiveInt.default(10000),
    /**
     * Largest keepalive (seconds) a client may ask for; 0 = no limit. Aedes then
     * also refuses keepalive 0, with the non-3.1.1 CONNACK code 6, so the default
     * leaves it off; TCP keepalive finds dead peers instead.
     */
    MQTT_KEEPALIVE_LIMIT_S: z.coerce.number().int().min(0).default(0),
    /** Longest accepted MQTT client id. */
    MQTT_MAX_CLIENT_ID_LENGTH: positiveInt.default(128),
    /** QoS 1/2 messages queued per client while it is connecting. */
    MQTT_QUEUE_LIMIT: positiveInt.default(100),
    /** Largest accepted MQTT packet, in bytes. */
    MQTT_MAX_PACKET_BYTES: positiveInt.default(1024 * 1024),
    /** Open MQTT connections (TCP and WebSocket together). */
    MQTT_MAX_CONNECTIONS: positiveInt.default(10000),
    /** Subscriptions one session may hold; more filters are refused (0x80). */
    MQTT_MAX_SUBSCRIPTIONS: positiveInt.default(1000),
    /** Longest subscription filter, in bytes; a longer one is refused (0x80). */
    MQTT_MAX_FILTER_BYTES: positiveInt.max(65_535).default(1024),
    /** Bytes of subscription filters one session may hold in all; beyond, filters are refused (0x80). */
    MQTT_MAX_SESSION_FILTER_BYTES: positiveInt.default(256 * 1024),
    /** Connections from one address that have not completed CONNECT; more are closed on arrival. */
    MQTT_MAX_PENDING_PER_ADDRESS: positiveInt.default(256),
    /** PUBLISH packets one connection may send per second (beyond, it is slowed down); 0 = no limit. */
    MQTT_MAX_PUBLISH_RATE: z.coerce.number().int().min(0).default(0),
    /** The longest MQTT 5 Session Expiry Interval a device may ask for, in seconds (longer requests are cut to it). */
    MQTT_MAX_SESSION_EXPIRY_S: positiveInt.max(0xfffffffe).default(7 * 24 * 3600),
    /**
     * Pipelines may connect to private, loopback and link-local addresses
     * (an endpoint on this machine or the local network). Off by default: a
     * console user could otherwise reach internal services (SSRF).
     */
    PIPELINES_ALLOW_PRIVATE_NETWORKS: flag,
    /** Longest wait between two attempts to forward a message (back-off doubles up to it). */
    PIPELINES_RETRY_MAX_MS: positiveInt.min(100).default(300_000),
    /** Bytes buffered for one subscriber before its QoS 0 messages are dropped. */
    MQTT_MAX_BUFFERED_BYTES: positiveInt.default(1024 * 1024),
  })
  .refine((config) => Boolean(config.TLS_CERT_FILE) === Boolean(config.TLS_KEY_FILE), {
    path: ['TLS_KEY_FILE'],
    message: 'TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither',
  })
  .refine((config) => !config.TLS_CA_FILE || config.TLS_CERT_FILE, {
    path: ['TLS_CA_FILE'],
    message: 'needs TLS_CERT_FILE and TLS_KEY_FILE too',
  })
  .refine((config) => !config.REDIS_URL || config.DATABASE_URL, {
    path: ['REDIS_URL'],
    message: 'several nodes need PostgreSQL: set DATABASE_URL too (the embedded database serves one process)',
  });

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {}

/** Parses the environment once; a bad value names its variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const result = configSchema.safeParse(env);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => `  ${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return result.data;
}
