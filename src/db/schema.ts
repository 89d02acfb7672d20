import { sql } from 'drizzle-orm';
import {
  boolean,
  bigint,
  check,
  customType,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  smallint,
  uniqueIndex,
} from 'drizzle-orm/pg-core';

const createdAt = () => timestamp('created_at', { withTimezone: true }).notNull().defaultNow();
const updatedAt = () => timestamp('updated_at', { withTimezone: true }).notNull().defaultNow();

/** Credentials devices use. `auth_type` leaves room for certificates. */
export const clients = pgTable(
  'clients',
  {
    id: integer('id').primaryKey().generatedAlwaysAsIdentity(),
    name: text('name').notNull(),
    authType: text('auth_type', { enum: ['password', 'certificate', 'certificate_password'] }).notNull().default('password'),
    username: text('username').notNull(),
    /** Certificate clients: no password is kept, and this holds no hash (empty). */
    passwordHash: text('password_hash').notNull(),
    /** Certificate clients: SHA-256 of their client certificate, `AB:CD:…` (upper case, colons). */
    certFingerprint: text('cert_fingerprint'),
    /** Bumped on every edit: a cached credential with an older version is stale. */
    version: integer('version').notNull().default(1),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    /**
     * When a session of this client last ended (null: never seen). Written in
     * batches, never per CONNECT; not among the columns whose change the
     * access triggers announce (migration 0003), so it forgets no cache.
     */
    lastSeenAt: timestamp('last_seen_at', { withTimezone: true }),
    /**
     * The MQTT client id of the session that ended at `lastSeenAt` (written
     * with it; not announced by the access triggers either). Try it starts
     * from it, so `%c` permission rows match as they do for the device.
     */
    lastClientId: text('last_client_id'),
  },
  // The console lists clients by (lower(name), id) and pages by that key.
  // Searching uses a trigram index on name and username that migration 0005
  // creates where pg_trgm is available (it is not declared here: drizzle-kit
  // cannot make an index depend on an extension being installable).
  (t) => [
    uniqueIndex('clients_username_key').on(t.username),
    uniqueIndex('clients_cert_fingerprint_key').on(t.certFingerprint),
    check(
      'clients_auth_type_check',
      sql`(${t.authType} = 'password' and ${t.certFingerprint} is null) or (${t.authType} in ('certificate', 'certificate_password') and ${t.certFingerprint} is not null)`,
    ),
    index('clients_name_id_idx').on(sql`lower(${t.name})`, t.id),
  ],
);

/**
 * How many clients there are: one row, kept by triggers on `clients`
 * (migration 0005), so the console shows the total without counting a large
 * table on every page.
 */
export const clientTotals = pgTable(
  'client_totals',
  {
    id: integer('id').primaryKey(),
    total: integer('total').notNull(),
  },
  (t) => [check('client_totals_one_row', sql`${t.id} = 1`)],
);

/** Operators who may sign in to the console. */
export const administrators = pgTable(
  'administrators',
  {
    id: integer('id').primaryKey().generatedAlwaysAsIdentity(),
    username: text('username').notNull(),
    passwordHash: text('password_hash').notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex('administrators_username_key').on(t.username)],
);

/** Console sessions; only the SHA-256 of the token is stored. */
export const adminSessions = pgTable(
  'admin_sessions',
  {
    tokenHash: text('token_hash').primaryKey(),
    administratorId: integer('administrator_id')
      .notNull()
      .references(() => administrators.id, { onDelete: 'cascade' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('admin_sessions_administrator_idx').on(t.administratorId)],
);

/** A named bundle of topic permissions. */
export const groups = pgTable(
  'groups',
  {
    id: integer('id').primaryKey().generatedAlwaysAsIdentity(),
    name: text('name').notNull(),
    description: text('description').notNull().default(''),
    /** Bumped on every edit: a form loaded with an older version is stale. */
    version: integer('version').notNull().default(1),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex('groups_name_key').on(t.name)],
);

/** One ordered permission row of a group. */
export const groupPermissions = pgTable(
  'group_permissions',
  {
    id: integer('id').primaryKey().generatedAlwaysAsIdentity(),
    groupId: integer('group_id')
      .notNull()
      .references(() => groups.id, { onDelete: 'cascade' }),
    position: integer('position').notNull(),
    effect: text('effect', { enum: ['allow', 'deny'] }).notNull(),
    action: text('action', { enum: ['publish', 'subscribe'] }).notNull(),
    topic: text('topic').notNull(),
  },
  (t) => [
    index('group_permissions_group_idx').on(t.groupId, t.position),
    check('group_permissions_effect_check', sql`${t.effect} in ('allow', 'deny')`),
    check('group_permissions_action_check', sql`${t.action} in ('publish', 'subscribe')`),
  ],
);

/**
 * Which clients join which groups. `match_by = 'client'` names a client row;
 * `match_by = 'client_id'` matches the MQTT client id exactly or with `*`;
 * `match_by = 'certificate'` matches connections that authenticated with the
 * client certificate whose SHA-256 fingerprint is `value`.
 */
export const groupRules = pgTable(
  'group_rules',
  {
    id: integer('id').primaryKey().generatedAlwaysAsIdentity(),
    position: integer('position').notNull(),
    matchBy: text('match_by', { enum: ['client', 'client_id', 'certificate'] }).notNull(),
    clientId: integer('client_id').references(() => clients.id, { onDelete: 'cascade' }),
    value: text('value').notNull().default(''),
    createdAt: createdAt(),
  },
  (t) => [
    index('group_rules_client_idx').on(t.clientId),
    check('group_rules_match_by_check', sql`${t.matchBy} in ('client', 'client_id', 'certificate')`),
    // A rule by client names exactly one client; a rule by client id names none.
    // Deleting the client deletes its rules (the cascade above): a rule whose
    // only target is gone would match nothing. The deletion is written to
    // group_rule_changes so the operator sees it.
    check(
      'group_rules_target_check',
      sql`(${t.matchBy} = 'client' and ${t.clientId} is not null) or (${t.matchBy} in ('client_id', 'certificate') and ${t.clientId} is null)`,
    ),
  ],
);

export const groupRuleGroups = pgTable(
  'group_rule_groups',
  {
    ruleId: integer('rule_id')
      .notNull()
      .references(() => groupRules.id, { onDelete: 'cascade' }),
    groupId: integer('group_id')
      .notNull()
      .references(() => groups.id, { onDelete: 'cascade' }),
  },
  (t) => [primaryKey({ columns: [t.ruleId, t.groupId] }), index('group_rule_groups_group_idx').on(t.groupId)],
);

/**
 * What deleting a client or a group did to the group rules, shown on the
 * group-rules page until an operator dismisses it.
 */
export const groupRuleChanges = pgTable(
  'group_rule_changes',
  {
    id: integer('id').primaryKey().generatedAlwaysAsIdentity(),
    /** One sentence: what was deleted. */
    summary: text('summary').notNull(),
    /** One line per rule changed or removed. */
    details: text('details').array().notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('group_rule_changes_created_idx').on(t.createdAt)],
);

/**
 * The TLS material uploaded in the console and whether it is used: one row.
 * The private key is sealed (AES-256-GCM under a key derived from SECRET_KEY,
 * see domain/certificates.ts) and never leaves the server again.
 */
export const tlsSettings = pgTable(
  'tls_settings',
  {
    id: integer('id').primaryKey(),
    caPem: text('ca_pem'),
    certPem: text('cert_pem'),
    keySealed: text('key_sealed'),
    enabled: boolean('enabled').notNull().default(false),
    requireClientCert: boolean('require_client_cert').notNull().default(false),
    updatedAt: updatedAt(),
  },
  (t) => [check('tls_settings_one_row', sql`${t.id} = 1`)],
);

/**
 * The overview's history: one row a minute per node (Aedes' broker id), what
 * happened on that node since its previous row. Written by the sampler
 * (src/sampler.ts), deleted after AUDIT_RETENTION_DAYS.
 */
export const metricSamples = pgTable(
  'metric_samples',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    nodeId: text('node_id').notNull(),
    at: timestamp('at', { withTimezone: true }).notNull(),
    /** Seconds since the node's previous row (its first: since the node started). */
    seconds: integer('seconds').notNull(),
    /** Open MQTT connections when the row was written. */
    connections: integer('connections').notNull(),
    messagesIn: bigint('messages_in', { mode: 'number' }).notNull(),
    messagesOut: bigint('messages_out', { mode: 'number' }).notNull(),
    bytesIn: bigint('bytes_in', { mode: 'number' }).notNull(),
    bytesOut: bigint('bytes_out', { mode: 'number' }).notNull(),
    /** CONNECTs refused (bad or missing credentials, throttled, bad client id, database down). */
    authFailures: integer('auth_failures').notNull(),
    /** Publishes and subscriptions refused by the permissions. */
    refusals: integer('refusals').notNull(),
  },
  (t) => [index('metric_samples_at_idx').on(t.at), index('metric_samples_node_at_idx').on(t.nodeId, t.at)],
);

/**
 * The audit trail: console changes (with before and after, never a secret),
 * sign-ins, and what the broker refused. MQTT authentication failures are one
 * row per username, address, reason and minute, with `count`; everything else
 * has `count` 1. `at` is kept to the millisecond, so a page's last row is an
 * exact cursor for the next one. Rows older than AUDIT_RETENTION_DAYS go.
 */
export const auditEvents = pgTable(
  'audit_events',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    at: timestamp('at', { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    kind: text('kind').notNull(),
    /** Who acted: an administrator, a username tried; null when unknown. */
    actor: text('actor'),
    /** What was acted on: a client, a group, a topic… */
    subject: text('subject'),
    details: jsonb('details').$type<Record<string, unknown>>().notNull().default({}),
    address: text('address'),
    count: integer('count').notNull().default(1),
  },
  (t) => [
    // Newest first (read backwards), and the retention delete.
    index('audit_events_at_idx').on(t.at, t.id),
    index('audit_events_kind_at_idx').on(t.kind, t.at, t.id),
    index('audit_events_actor_at_idx').on(t.actor, t.at, t.id),
    // One row per minute for each failing username, address and reason (an
    // MQTT 5 device's apart, with the reason code it was sent): a flush adds
    // its count to the row another flush (or node) started.
    uniqueIndex('audit_events_auth_failure_key')
      .on(t.kind, sql`coalesce(${t.actor}, '')`, sql`coalesce(${t.address}, '')`, t.at, sql`(${t.details} ->> 'reason')`, sql`coalesce(${t.details} ->> 'reasonCode', '')`)
      .where(sql`${t.kind} = 'mqtt.auth_failed'`),
  ],
);

/**
 * API tokens (`/tokens`, used as `Authorization: Bearer gat_…` on `/api/v1`).
 * A token is 256 random bits, so a fast hash is right: only its SHA-256 is
 * kept, found by `prefix` (the first characters of its random part, unique)
 * and compared in constant time. Revoking deletes the row: every node reads
 * it per request, so a revoked token is refused at once everywhere.
 */
export const apiTokens = pgTable(
  'api_tokens',
  {
    id: integer('id').primaryKey().generatedAlwaysAsIdentity(),
    name: text('name').notNull(),
    prefix: text('prefix').notNull(),
    /** SHA-256 of the whole token, hex. */
    digest: text('digest').notNull(),
    /** Its last 4 characters, to tell tokens apart in the list. */
    last4: text('last4').notNull(),
    /** Resource → 'read' | 'write' (absent: none). */
    scopes: jsonb('scopes').$type<Record<string, 'read' | 'write'>>().notNull(),
    /** IP addresses and CIDR ranges it may be used from; empty: anywhere. */
    allowedAddresses: text('allowed_addresses').array().notNull().default(sql`'{}'::text[]`),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    createdBy: text('created_by'),
    createdAt: createdAt(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    lastUsedAddress: text('last_used_address'),
  },
  (t) => [uniqueIndex('api_tokens_name_key').on(t.name), uniqueIndex('api_tokens_prefix_key').on(t.prefix)],
);

/**
 * `Idempotency-Key` of the API's creates: the answer given to the first
 * request with a key is given again to a retry with the same key and body
 * (per token, kept 24 hours). `status` is null while the first is running.
 */
export const apiIdempotencyKeys = pgTable(
  'api_idempotency_keys',
  {
    tokenId: integer('token_id')
      .notNull()
      .references(() => apiTokens.id, { onDelete: 'cascade' }),
    key: text('key').notNull(),
    /** SHA-256 of the method, path and body: the same key with another request is refused. */
    requestHash: text('request_hash').notNull(),
    status: integer('status'),
    response: jsonb('response').$type<unknown>(),
    location: text('location'),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.tokenId, t.key] }), index('api_idempotency_keys_created_idx').on(t.createdAt)],
);

/** Raw bytes (a message's payload). postgres.js reads a Buffer, PGlite a Uint8Array: both become a Buffer. */
const bytea = customType<{ data: Buffer; driverData: Buffer | Uint8Array }>({
  dataType: () => 'bytea',
  toDriver: (value) => value,
  fromDriver: (value) => (Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)),
});

/**
 * Where device messages are forwarded: a webhook, TagoIO's API or another
 * MQTT broker. `settings` holds what the console shows again; the secrets
 * (tokens, passwords, a client key, signing secrets) are one JSON object
 * sealed under SECRET_KEY (see domain/certificates.ts) and never shown again.
 * Changes are announced on the access-change channel (migration 0013), so
 * every node applies them at once.
 */
export const pipelines = pgTable(
  'pipelines',
  {
    id: integer('id').primaryKey().generatedAlwaysAsIdentity(),
    name: text('name').notNull(),
    description: text('description').notNull().default(''),
    enabled: boolean('enabled').notNull().default(true),
    kind: text('kind', { enum: ['webhook', 'tagoio', 'mqtt'] }).notNull(),
    settings: jsonb('settings').$type<Record<string, unknown>>().notNull().default({}),
    secretsSealed: text('secrets_sealed'),
    /** Outbox limits: past them, `overflow` decides. */
    maxOutboxBytes: bigint('max_outbox_bytes', { mode: 'number' }).notNull(),
    maxAgeSeconds: integer('max_age_seconds').notNull(),
    overflow: text('overflow', { enum: ['drop_oldest', 'drop_newest', 'refuse'] }).notNull(),
    version: integer('version').notNull().default(1),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('pipelines_name_key').on(t.name),
    check('pipelines_kind_check', sql`${t.kind} in ('webhook', 'tagoio', 'mqtt')`),
    check('pipelines_overflow_check', sql`${t.overflow} in ('drop_oldest', 'drop_newest', 'refuse')`),
  ],
);

/**
 * Topic filter → pipeline, many to many, optionally narrowed to one client
 * (row id in `narrow_value`), one username or one group name.
 */
export const pipelineMappings = pgTable(
  'pipeline_mappings',
  {
    id: integer('id').primaryKey().generatedAlwaysAsIdentity(),
    pipelineId: integer('pipeline_id')
      .notNull()
      .references(() => pipelines.id, { onDelete: 'cascade' }),
    position: integer('position').notNull(),
    topicFilter: text('topic_filter').notNull(),
    narrowBy: text('narrow_by', { enum: ['any', 'client', 'username', 'group'] }).notNull().default('any'),
    narrowValue: text('narrow_value').notNull().default(''),
  },
  (t) => [
    index('pipeline_mappings_pipeline_idx').on(t.pipelineId, t.position),
    check('pipeline_mappings_narrow_by_check', sql`${t.narrowBy} in ('any', 'client', 'username', 'group')`),
  ],
);

/**
 * Messages accepted and not yet forwarded, one row per message and pipeline,
 * written before the device's PUBACK/PUBREC (see domain/pipelines/outbox.ts).
 * `id` orders them; `not_before` holds a row back: claimed by a node (its
 * lease) or waiting for its next attempt. A row whose `not_before` is in the
 * future also holds back the later rows of its `order_key`.
 */
export const pipelineOutbox = pgTable(
  'pipeline_outbox',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    pipelineId: integer('pipeline_id')
      .notNull()
      .references(() => pipelines.id, { onDelete: 'cascade' }),
    /** Stable across attempts, nodes and restarts: the idempotency key the endpoint sees. */
    messageId: text('message_id').notNull(),
    orderKey: text('order_key').notNull(),
    topic: text('topic').notNull(),
    payload: bytea('payload').notNull(),
    qos: smallint('qos').notNull(),
    retain: boolean('retain').notNull(),
    clientRowId: integer('client_row_id'),
    username: text('username'),
    mqttClientId: text('mqtt_client_id'),
    receivedAt: timestamp('received_at', { withTimezone: true, precision: 3 }).notNull(),
    attempts: integer('attempts').notNull().default(0),
    notBefore: timestamp('not_before', { withTimezone: true, precision: 3 }),
    lastStatus: integer('last_status'),
    lastError: text('last_error'),
    bytes: integer('bytes').notNull(),
  },
  (t) => [
    index('pipeline_outbox_pipeline_idx').on(t.pipelineId, t.id),
    // Small: only rows claimed or waiting for a retry.
    index('pipeline_outbox_held_idx').on(t.pipelineId, t.orderKey, t.id).where(sql`${t.notBefore} is not null`),
  ],
);

/** Messages a pipeline failed to forward for good (a 4xx other than 408/429), kept to be replayed or purged. */
export const pipelineDeadLetters = pgTable(
  'pipeline_dead_letters',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    pipelineId: integer('pipeline_id')
      .notNull()
      .references(() => pipelines.id, { onDelete: 'cascade' }),
    messageId: text('message_id').notNull(),
    orderKey: text('order_key').notNull(),
    topic: text('topic').notNull(),
    payload: bytea('payload').notNull(),
    qos: smallint('qos').notNull(),
    retain: boolean('retain').notNull(),
    clientRowId: integer('client_row_id'),
    username: text('username'),
    mqttClientId: text('mqtt_client_id'),
    receivedAt: timestamp('received_at', { withTimezone: true, precision: 3 }).notNull(),
    failedAt: timestamp('failed_at', { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    attempts: integer('attempts').notNull(),
    lastStatus: integer('last_status'),
    /** The start of the endpoint's answer, or the error. */
    lastError: text('last_error'),
  },
  (t) => [index('pipeline_dead_letters_pipeline_idx').on(t.pipelineId, t.id)],
);

/**
 * MQTT 5 sessions kept after their connection ended, until when (the granted
 * Session Expiry Interval from that end). The engine times expiry in memory
 * only; this row is what a node that starts reads, so a session whose expiry
 * fell while no node was up is removed then (src/broker/sessionExpiry.ts).
 * A row is about the connection of the client id that opened at
 * `connected_at`: a connection that opens later writes over it with no
 * expiry (the session is in use), and a write about an older connection is
 * ignored, so events of two nodes reaching the database out of order cannot
 * leave a live session marked as expiring. Rows without expiry go an hour
 * after their connection opened; a row goes when its session expires.
 */
export const sessionExpiries = pgTable('session_expiries', {
  mqttClientId: text('mqtt_client_id').primaryKey(),
  /** Null: a connection that opened at `connected_at` uses the session. */
  expiresAt: timestamp('expires_at', { withTimezone: true }),
  connectedAt: timestamp('connected_at', { withTimezone: true }).notNull().defaultNow(),
});
