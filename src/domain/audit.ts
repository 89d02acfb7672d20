/**
 * The audit trail. Two ways in:
 *
 * - `recordChange(tx, by, …)`: console changes (clients, groups, group rules,
 *   administrators), written by the domain function that makes the change, in
 *   its transaction: a change that rolls back leaves no record, and a change
 *   that committed cannot lose its record to a crash a moment later.
 * - `createAuditRecorder(db)`: everything else (sign-ins, MQTT authentication
 *   failures, refused publishes and subscriptions, disconnects done from the
 *   console). `record()` only appends to a bounded buffer in memory, which is
 *   flushed about once a second in one multi-row INSERT and at shutdown, so
 *   the broker never waits on the database for it. A full buffer drops new
 *   events and counts them (an `audit.dropped` row says how many).
 *
 * Nothing secret is stored: snapshots name their fields one by one (never a
 * password or a hash; "password changed" instead), and `scrubSecrets` drops
 * any key that looks like one as a second line of defence.
 */
import { and, asc, desc, eq, gte, inArray, lt, or, sql, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { type Database, schema } from '../db';
import { parseInput } from './validation';

const { auditEvents } = schema;

type Tx = Parameters<Parameters<Database['transaction']>[0]>[0];
type Queryable = Database | Tx;

/** What the audit trail records, with the label the console shows. */
export const AUDIT_KINDS = {
  'client.created': 'Client created',
  'client.updated': 'Client changed',
  'client.deleted': 'Client deleted',
  'group.created': 'Group created',
  'group.updated': 'Group changed',
  'group.deleted': 'Group deleted',
  'group_rules.saved': 'Group rules saved',
  'group_rule.created': 'Group rule added',
  'group_rule.updated': 'Group rule changed',
  'group_rule.deleted': 'Group rule deleted',
  'administrator.created': 'Administrator added',
  'administrator.deleted': 'Administrator removed',
  'administrator.password_changed': 'Administrator password changed',
  'certificates.changed': 'Certificates changed',
  'token.created': 'API token created',
  'token.revoked': 'API token revoked',
  'import.applied': 'Import applied',
  'pipeline.created': 'Pipeline created',
  'pipeline.updated': 'Pipeline changed',
  'pipeline.deleted': 'Pipeline deleted',
  'pipeline.secret_rotated': 'Pipeline signing secret rotated',
  'pipeline.dead_letters_replayed': 'Pipeline dead letters replayed',
  'pipeline.dead_letters_purged': 'Pipeline dead letters purged',
  'console.signed_in': 'Signed in',
  'console.sign_in_failed': 'Sign-in failed',
  'mqtt.auth_failed': 'MQTT authentication failed',
  'mqtt.publish_refused': 'MQTT publish refused',
  'mqtt.subscribe_refused': 'MQTT subscription refused',
  'mqtt.disconnected': 'MQTT connection closed from the console',
  'retained.cleared': 'Retained message cleared',
  'topics.watched': 'Live messages watched',
  'audit.dropped': 'Audit events dropped',
} as const;

export type AuditKind = keyof typeof AUDIT_KINDS;

export function isAuditKind(value: string): value is AuditKind {
  return Object.hasOwn(AUDIT_KINDS, value);
}

export const REFUSAL_KINDS: AuditKind[] = ['mqtt.auth_failed', 'mqtt.publish_refused', 'mqtt.subscribe_refused'];

/**
 * The trail in views, so a device retrying every 30 s does not bury the
 * administrators' changes: what people did in the console (sign-ins and
 * disconnects from the console included), what the broker refused, or all.
 */
export const AUDIT_VIEWS = {
  changes: { label: 'Console changes', kinds: (Object.keys(AUDIT_KINDS) as AuditKind[]).filter((kind) => !REFUSAL_KINDS.includes(kind)) },
  refusals: { label: 'Broker refusals', kinds: REFUSAL_KINDS },
  all: { label: 'Everything', kinds: Object.keys(AUDIT_KINDS) as AuditKind[] },
} as const satisfies Record<string, { label: string; kinds: readonly AuditKind[] }>;

export type AuditView = keyof typeof AUDIT_VIEWS;

export function isAuditView(value: string): value is AuditView {
  return Object.hasOwn(AUDIT_VIEWS, value);
}

/** Who made a change: a signed-in administrator, or (username null) something else, named by `via`. */
export interface AuditActor {
  username: string | null;
  address?: string;
  /** How the change was made when not by an administrator in the console: "command line", "ADMIN_USERNAME"… */
  via?: string;
}

/** One event, as `record()` takes it. */
export interface AuditEventInput {
  kind: AuditKind;
  actor?: string | null;
  subject?: string | null;
  details?: Record<string, unknown>;
  address?: string | null;
  /** When it happened; now by default. */
  at?: Date;
  count?: number;
}

/** A stored event. */
export interface AuditEvent {
  id: number;
  at: Date;
  kind: string;
  actor: string | null;
  subject: string | null;
  details: Record<string, unknown>;
  address: string | null;
  count: number;
}

const SECRET_KEY = /pass(word)?_?hash|hash|secret|token|^password$|private_?key/i;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Longest actor, subject or address kept in an event; the rest is cut and marked. */
export const AUDIT_MAX_TEXT = 256;
/** Longest string kept inside an event's details (a snapshot's field). */
const AUDIT_MAX_DETAIL = 4096;

/**
 * `text` as an event may keep it: at most AUDIT_MAX_TEXT characters (a
 * username or client id comes from anyone who reaches the broker port), no
 * U+0000 and no lone surrogate (PostgreSQL refuses both in text and jsonb,
 * and one such row would fail its whole batch).
 */
export function auditText(text: string, max?: number): string;
export function auditText(text: string | null | undefined, max?: number): string | null;
export function auditText(text: string | null | undefined, max = AUDIT_MAX_TEXT): string | null {
  if (text === null || text === undefined) return null;
  let clean = text.includes('\u0000') ? text.replaceAll('\u0000', '\ufffd') : text;
  if (clean.length > max) clean = `${clean.slice(0, max - 1)}…`;
  return clean.replace(LONE_SURROGATE, '\ufffd');
}

/** `details` without any key that could hold a secret, at any depth, its strings made storable (auditText). */
export function scrubSecrets(value: unknown): unknown {
  if (typeof value === 'string') return auditText(value, AUDIT_MAX_DETAIL);
  if (Array.isArray(value)) return value.map(scrubSecrets);
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>)
        .filter(([key]) => !SECRET_KEY.test(key))
        .map(([key, v]) => [auditText(key), scrubSecrets(v)]),
    );
  }
  return value;
}

/**
 * Writes one console change with `db`; given a transaction, the record
 * commits or rolls back with the change. `details` usually holds `before`
 * and `after` snapshots.
 */
export async function recordChange(
  db: Queryable,
  by: AuditActor | undefined,
  event: { kind: AuditKind; subject: string; details: Record<string, unknown> },
): Promise<void> {
  const details = scrubSecrets({ ...event.details, ...(by?.via ? { via: by.via } : {}) }) as Record<string, unknown>;
  await db.insert(auditEvents).values({
    kind: event.kind,
    actor: auditText(by?.username),
    subject: auditText(event.subject),
    details,
    address: auditText(by?.address),
  });
}

// ---------------------------------------------------------------------------
// Buffered recording (off the hot path)

export interface AuditRecorderOptions {
  /** How often the buffer is written; default 1000 ms. */
  flushIntervalMs?: number;
  /** Events (and per-minute failure counters) held at most; beyond, new ones are dropped and counted. */
  maxBuffered?: number;
  /** Rows per INSERT. */
  batchSize?: number;
  now?: () => number;
  log?: (message: string) => void;
}

export interface AuthFailureEvent {
  /** The username tried ('' when the CONNECT had none). */
  username: string;
  address?: string;
  reason: string;
  clientId?: string;
  transport?: string;
  /** The MQTT 5 CONNACK reason code the device was answered with (none: 3.1/3.1.1). */
  reasonCode?: number;
}

/** How a reason code sent to a device is written in an audit row's details: `0x87`. */
export function auditReasonCode(code: number): string {
  return `0x${code.toString(16).toUpperCase().padStart(2, '0')}`;
}

export interface AuditRecorder {
  /** Buffers one event; never waits, never throws. */
  record(event: AuditEventInput): void;
  /** Counts one MQTT authentication failure into its username/address/reason/minute row (a 5.0 device's apart, with its reason code). */
  authFailure(event: AuthFailureEvent): void;
  /** Writes what is buffered now. */
  flush(): Promise<void>;
  /** Stops the timer and writes what is left. */
  close(): Promise<void>;
  stats(): { buffered: number; dropped: number; written: number };
}

/** An event waiting in the buffer: a stored event before it has an id. */
type Row = Omit<AuditEvent, 'id'>;

const MINUTE_MS = 60_000;

/** Buffers events in memory and writes them in batches; see the module comment. */
export function createAuditRecorder(db: Database, options: AuditRecorderOptions = {}): AuditRecorder {
  const now = options.now ?? Date.now;
  const log = options.log ?? (() => {});
  const maxBuffered = options.maxBuffered ?? 10_000;
  const batchSize = options.batchSize ?? 1000;
  let queue: Row[] = [];
  let failures = new Map<string, Row>();
  let dropped = 0;
  let droppedSince: number | undefined;
  let written = 0;
  let flushing: Promise<void> | undefined;
  let lastErrorLog = 0;
  let closed = false;

  const drop = () => {
    dropped++;
    droppedSince ??= now();
  };

  const timer = setInterval(() => void flush(), options.flushIntervalMs ?? 1000);
  timer.unref();

  function flush(): Promise<void> {
    // One flush at a time; a caller during one waits for it and then the next.
    if (flushing) return flushing.then(() => (queue.length || failures.size || dropped ? flush() : undefined));
    if (queue.length === 0 && failures.size === 0 && dropped === 0) return Promise.resolve();
    const rows = queue;
    queue = [];
    rows.push(...failures.values());
    failures = new Map();
    if (dropped > 0) {
      rows.push({
        at: new Date(droppedSince ?? now()),
        kind: 'audit.dropped',
        actor: null,
        subject: null,
        details: { reason: 'the audit buffer was full' },
        address: null,
        count: dropped,
      });
      dropped = 0;
      droppedSince = undefined;
    }
    flushing = (async () => {
      for (let start = 0; start < rows.length; start += batchSize) {
        const batch = rows.slice(start, start + batchSize);
        // Rows of this batch written, or dropped as refused, one by one: not to be kept again.
        let settled = 0;
        try {
          try {
            await insertRows(db, batch);
            written += batch.length;
          } catch (error) {
            if (!isDataError(error)) throw error;
            // One bad row must not hold back the rest for ever: each alone, the bad ones dropped.
            for (const row of batch) {
              try {
                await insertRows(db, [row]);
                written++;
              } catch (rowError) {
                if (!isDataError(rowError)) throw rowError;
                log(`an audit event (${row.kind}) could not be stored and was dropped: ${JSON.stringify((rowError as Error).message)}`);
              }
              settled++;
            }
          }
        } catch (error) {
          if (now() - lastErrorLog > MINUTE_MS) {
            lastErrorLog = now();
            log(`audit events could not be written (${(error as Error).message}); kept in memory up to ${maxBuffered}, then dropped and counted`);
          }
          // Kept for the next flush as far as room allows. Failure counters go
          // back to their counter (one row per key in an INSERT: ON CONFLICT
          // cannot update a row twice in one statement).
          const kept: Row[] = [];
          // A transient error midway through the rows written alone keeps only
          // those not yet written: a failure counter written twice would count twice.
          for (const row of rows.slice(start + settled)) {
            if (row.kind !== 'mqtt.auth_failed') {
              if (queue.length + kept.length < maxBuffered) kept.push(row);
              else drop();
              continue;
            }
            const key = failureKey(row.at.getTime(), row.actor ?? '', row.address ?? '', String(row.details.reason), row.details.reasonCode);
            const counter = failures.get(key);
            if (counter) counter.count += row.count;
            else if (failures.size < maxBuffered) failures.set(key, row);
            else drop();
          }
          queue = [...kept, ...queue];
          return;
        }
      }
    })().finally(() => {
      flushing = undefined;
    });
    return flushing;
  }

  return {
    record(event) {
      if (closed || queue.length >= maxBuffered) return drop();
      queue.push({
        at: event.at ?? new Date(now()),
        kind: event.kind,
        actor: auditText(event.actor),
        subject: auditText(event.subject),
        details: scrubSecrets(event.details ?? {}) as Record<string, unknown>,
        address: auditText(event.address),
        count: event.count ?? 1,
      });
    },
    authFailure(input) {
      const event = {
        ...input,
        username: auditText(input.username),
        address: auditText(input.address),
        reason: auditText(input.reason),
        clientId: auditText(input.clientId),
        reasonCode: input.reasonCode === undefined ? undefined : auditReasonCode(input.reasonCode),
      };
      const minute = Math.floor(now() / MINUTE_MS) * MINUTE_MS;
      const key = failureKey(minute, event.username, event.address ?? '', event.reason, event.reasonCode);
      const row = failures.get(key);
      if (row) {
        row.count++;
        return;
      }
      if (closed || failures.size >= maxBuffered) return drop();
      failures.set(key, {
        at: new Date(minute),
        kind: 'mqtt.auth_failed',
        actor: event.username,
        subject: null,
        // The first client id and transport of the minute, as a sample.
        details: {
          reason: event.reason,
          ...(event.clientId !== undefined ? { clientId: event.clientId } : {}),
          ...(event.transport ? { transport: event.transport } : {}),
          ...(event.reasonCode !== undefined ? { reasonCode: event.reasonCode } : {}),
        },
        address: event.address ?? null,
        count: 1,
      });
    },
    flush,
    async close() {
      clearInterval(timer);
      await flush();
      closed = true;
    },
    stats: () => ({ buffered: queue.length + failures.size, dropped, written }),
  };
}

/** PostgreSQL's class 22, data exception: the row is at fault, not the database. */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code ?? (error as { cause?: { code?: unknown } } | null)?.cause?.code;
  return typeof code === 'string' && code.startsWith('22');
}

/** A 5.0 device's failures (with a reason code) count apart from a 3.1.1 device's of the same reason. */
function failureKey(minute: number, username: string, address: string, reason: string, reasonCode: unknown): string {
  return `${minute}\u0000${username}\u0000${address}\u0000${reason}\u0000${typeof reasonCode === 'string' ? reasonCode : ''}`;
}

/**
 * One multi-row INSERT. A failure counter whose row another flush (or
 * another node) already started that minute adds its count to it (the unique
 * index of migration 0017 on kind, actor, address, minute, reason and reason code).
 */
async function insertRows(db: Database, rows: Row[]): Promise<void> {
  if (rows.length === 0) return;
  // One parameter, the rows as JSON: far cheaper to send and parse than seven per row.
  const json = JSON.stringify(rows.map((r) => ({ ...r, at: r.at.toISOString() })));
  await db.execute(sql`insert into ${auditEvents} (at, kind, actor, subject, details, address, count)
    select at, kind, actor, subject, details, address, count
    from jsonb_to_recordset(${json}::jsonb) as r(at timestamptz, kind text, actor text, subject text, details jsonb, address text, count integer)
    on conflict (kind, coalesce(actor, ''), coalesce(address, ''), at, (details ->> 'reason'), coalesce(details ->> 'reasonCode', '')) where kind = 'mqtt.auth_failed'
    do update set count = ${auditEvents}.count + excluded.count`);
}

// ---------------------------------------------------------------------------
// Reading: filters, pages, CSV

export const AUDIT_PAGE_SIZE = 50;
/** The CSV export stops after this many rows (and says so in its last line). */
export const AUDIT_CSV_MAX_ROWS = 100_000;

const CONTROL_CHARACTERS = /\p{Cc}/u;
const optionalText = (max: number) =>
  z
    .string()
    .trim()
    .max(max, `Use at most ${max} characters.`)
    .refine((v) => !CONTROL_CHARACTERS.test(v), 'Remove control characters.')
    .optional()
    .transform((v) => v || undefined);

/** `2025-05-01T12:30` (as `<input type="datetime-local">` sends it, read as UTC), with seconds, or a full ISO time. */
const timeSchema = z
  .string()
  .trim()
  .optional()
  .transform((value, ctx) => {
    if (!value) return undefined;
    const match = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})?$/.exec(value);
    const date = match ? new Date(`${match[1]}T${match[2]}${match[3] ?? ''}${match[5] ?? 'Z'}`) : null;
    if (!date || Number.isNaN(date.getTime())) {
      ctx.addIssue({ code: 'custom', message: 'Enter a date and time such as 2025-05-01T12:30 (UTC).' });
      return z.NEVER;
    }
    return { date, minuteOnly: !match![3], text: value };
  });

export const auditFilterSchema = z
  .object({
    kind: z
      .string()
      .optional()
      .transform((v) => v || undefined)
      .refine((v) => v === undefined || isAuditKind(v), 'Choose a kind from the list.'),
    actor: optionalText(200),
    q: optionalText(200),
    from: timeSchema,
    to: timeSchema,
    view: z
      .string()
      .optional()
      .transform((v) => v || undefined)
      .refine((v) => v === undefined || isAuditView(v), 'Choose a view from the list.'),
  })
  .refine((f) => !f.from || !f.to || f.from.date <= f.to.date, { path: ['to'], message: '“To” must not be before “From”.' })
  .refine((f) => !f.kind || !f.view || (AUDIT_VIEWS[f.view as AuditView].kinds as readonly string[]).includes(f.kind), {
    path: ['kind'],
    message: 'This kind is not in this view: choose one of its kinds, or Everything.',
  });

export type AuditFilterInput = { kind?: unknown; actor?: unknown; q?: unknown; from?: unknown; to?: unknown; view?: unknown };

/** Filters as parsed; `text` keeps what was typed, for the form and links. */
export interface AuditFilters {
  kind?: AuditKind;
  /** The kinds of the view (none: every kind). */
  kinds?: readonly AuditKind[];
  actor?: string;
  q?: string;
  from?: Date;
  /** Exclusive: a time given to the minute includes that whole minute. */
  toExclusive?: Date;
  /** Read by an API token: only what it may see (see tokenSees), matched as it is shown. */
  seenByToken?: string;
  text: { kind: string; actor: string; q: string; from: string; to: string };
  /** The view: given, or the one a kind belongs to, or everything when no view is asked for (the API's way). */
  view?: AuditView;
}

// ---------------------------------------------------------------------------
// What an API token may read of the trail

/**
 * Kinds a token never sees: sign-ins, administrators and tokens (a token may
 * never see administrators or other tokens), and pipelines (their rows hold
 * endpoints and headers, which only the pipelines scope may read).
 */
const HIDDEN_FROM_TOKENS = ['administrator.', 'console.', 'token.', 'pipeline.'];
export const TOKEN_VISIBLE_KINDS = (Object.keys(AUDIT_KINDS) as AuditKind[]).filter((kind) => !HIDDEN_FROM_TOKENS.some((prefix) => kind.startsWith(prefix)));
/** Kinds whose actor is a device (the username it sent) or nobody: shown to tokens as they are. */
const DEVICE_KINDS: readonly AuditKind[] = ['mqtt.auth_failed', 'mqtt.publish_refused', 'mqtt.subscribe_refused', 'audit.dropped'];
/** How a token sees the actor of a change made by an administrator, or by another token. */
export const ADMINISTRATOR_ACTOR = 'administrator';
export const OTHER_TOKEN_ACTOR = 'API token';

/**
 * `event` as the token named `tokenName` reads it: a device's event as it is;
 * the token's own changes with its name and address; anyone else's change
 * with who made it said as "administrator" or "API token", and without their
 * address. Null for a kind it never sees.
 */
export function tokenSees(event: AuditEvent, tokenName: string): AuditEvent | null {
  if (!(TOKEN_VISIBLE_KINDS as string[]).includes(event.kind)) return null;
  if ((DEVICE_KINDS as string[]).includes(event.kind) || event.actor === null) return event;
  if (event.details.via === 'API token') return event.actor === tokenName ? event : { ...event, actor: OTHER_TOKEN_ACTOR, address: null };
  return { ...event, actor: ADMINISTRATOR_ACTOR, address: null };
}

/** SQL for `tokenSees`' "shown as it is": the actor and address of this row are the token's to read. */
function shownToToken(tokenName: string): SQL {
  return or(
    inArray(auditEvents.kind, [...DEVICE_KINDS]),
    sql`${auditEvents.actor} is null`,
    and(eq(auditEvents.actor, tokenName), sql`${auditEvents.details}->>'via' = 'API token'`),
  )!;
}

/**
 * Parses the filter form; throws ValidationError (see parseInput) on a bad
 * value. Without a view, a kind chooses the view it belongs to, and no kind
 * means `defaultView` (everything, unless the caller says otherwise).
 */
export function parseAuditFilters(input: AuditFilterInput, defaultView: AuditView = 'all'): AuditFilters {
  const data = parseInput(auditFilterSchema, input);
  const kind = data.kind as AuditKind | undefined;
  const view: AuditView = (data.view as AuditView | undefined) ?? (kind ? (REFUSAL_KINDS.includes(kind) ? 'refusals' : 'changes') : defaultView);
  return {
    view,
    kinds: view === 'all' ? undefined : AUDIT_VIEWS[view].kinds,
    kind,
    actor: data.actor,
    q: data.q,
    from: data.from?.date,
    toExclusive: data.to ? new Date(data.to.date.getTime() + (data.to.minuteOnly ? MINUTE_MS : 1)) : undefined,
    text: { kind: data.kind ?? '', actor: data.actor ?? '', q: data.q ?? '', from: data.from?.text ?? '', to: data.to?.text ?? '' },
  };
}

/** A place in the trail, newest first: (at, id). */
export interface AuditCursor {
  at: Date;
  id: number;
}

export function formatAuditCursor(cursor: AuditCursor): string {
  return `${cursor.at.toISOString()}_${cursor.id}`;
}

export function parseAuditCursor(text: string | undefined): AuditCursor | null {
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)_([1-9][0-9]{0,15})$/.exec(text ?? '');
  if (!match) return null;
  const at = new Date(match[1]!);
  const id = Number(match[2]);
  return Number.isNaN(at.getTime()) || !Number.isSafeInteger(id) ? null : { at, id };
}

export interface AuditPage {
  events: AuditEvent[];
  /** Older events (Next), and newer ones (Previous); null at either end. */
  older: AuditCursor | null;
  newer: AuditCursor | null;
}

const eventColumns = {
  id: auditEvents.id,
  at: auditEvents.at,
  kind: auditEvents.kind,
  actor: auditEvents.actor,
  subject: auditEvents.subject,
  details: auditEvents.details,
  address: auditEvents.address,
  count: auditEvents.count,
};

function filterConditions(filters: Omit<AuditFilters, 'text'>): SQL | undefined {
  const conditions: SQL[] = [];
  const token = filters.seenByToken;
  // A token matches an actor or an address only where it is shown them: a
  // filter or a search must not tell it who else is in the trail.
  const shown = token === undefined ? undefined : shownToToken(token);
  if (token !== undefined) conditions.push(inArray(auditEvents.kind, TOKEN_VISIBLE_KINDS));
  if (filters.kind) conditions.push(eq(auditEvents.kind, filters.kind));
  else if (filters.kinds) conditions.push(inArray(auditEvents.kind, [...filters.kinds]));
  if (filters.actor) {
    if (token !== undefined && filters.actor === ADMINISTRATOR_ACTOR) conditions.push(sql`${auditEvents.actor} is not null`, sql`not ${shown}`, sql`${auditEvents.details}->>'via' is distinct from 'API token'`);
    else if (token !== undefined && filters.actor === OTHER_TOKEN_ACTOR) conditions.push(sql`not ${shown}`, sql`${auditEvents.details}->>'via' = 'API token'`);
    else conditions.push(eq(auditEvents.actor, filters.actor), ...(shown ? [shown] : []));
  }
  if (filters.from) conditions.push(gte(auditEvents.at, filters.from));
  if (filters.toExclusive) conditions.push(lt(auditEvents.at, filters.toExclusive));
  if (filters.q) {
    // `%` and `_` typed are literal; the details are searched as JSON text.
    const pattern = `%${filters.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    const who = or(sql`${auditEvents.actor} ilike ${pattern}`, sql`${auditEvents.address} ilike ${pattern}`)!;
    conditions.push(
      or(
        shown ? and(shown, who)! : who,
        sql`${auditEvents.subject} ilike ${pattern}`,
        sql`${auditEvents.kind} ilike ${pattern}`,
        sql`${auditEvents.details}::text ilike ${pattern}`,
      )!,
    );
  }
  return conditions.length ? and(...conditions) : undefined;
}

function beyond(cursor: AuditCursor, direction: 'older' | 'newer'): SQL {
  const at = sql`${cursor.at.toISOString()}::timestamptz`;
  return direction === 'older'
    ? sql`(${auditEvents.at}, ${auditEvents.id}) < (${at}, ${cursor.id}::bigint)`
    : sql`(${auditEvents.at}, ${auditEvents.id}) > (${at}, ${cursor.id}::bigint)`;
}

async function readEvents(db: Queryable, filters: Omit<AuditFilters, 'text'>, direction: 'older' | 'newer', cursor: AuditCursor | undefined, limit: number): Promise<AuditEvent[]> {
  const rows = await db
    .select(eventColumns)
    .from(auditEvents)
    .where(and(filterConditions(filters), cursor ? beyond(cursor, direction) : undefined))
    .orderBy(...(direction === 'older' ? [desc(auditEvents.at), desc(auditEvents.id)] : [asc(auditEvents.at), asc(auditEvents.id)]))
    .limit(limit);
  return direction === 'older' ? rows : rows.reverse();
}

/**
 * One page of events matching `filters`, newest first, read by key (at, id):
 * `older` continues after a cursor, `newer` goes back towards the newest.
 */
export async function listAuditEvents(
  db: Queryable,
  filters: Omit<AuditFilters, 'text'>,
  place: { older?: AuditCursor; newer?: AuditCursor } = {},
): Promise<AuditPage> {
  const size = AUDIT_PAGE_SIZE;
  if (place.newer) {
    const rows = await readEvents(db, filters, 'newer', place.newer, size + 1);
    // Fewer than a page newer than it: that is the first page.
    if (rows.length > size) {
      const events = rows.slice(1);
      return { events, newer: cursorOf(events[0]), older: cursorOf(events.at(-1)) };
    }
    return listAuditEvents(db, filters);
  }
  const rows = await readEvents(db, filters, 'older', place.older, size + 1);
  const events = rows.slice(0, size);
  return {
    events,
    newer: place.older ? cursorOf(events[0]) ?? place.older : null,
    older: rows.length > size ? cursorOf(events.at(-1)) : null,
  };
}

function cursorOf(event: AuditEvent | undefined): AuditCursor | null {
  return event ? { at: event.at, id: event.id } : null;
}

/** The username an event names a client by: the actor of the broker's events, the subject of a client's change; null for others. */
export function clientUsernameOf(event: Pick<AuditEvent, 'kind' | 'actor' | 'subject' | 'details'>): string | null {
  if (event.kind === 'mqtt.disconnected') return typeof event.details.username === 'string' ? event.details.username : null;
  if (event.kind.startsWith('mqtt.')) return event.actor;
  if (event.kind.startsWith('client.')) return event.subject;
  return null;
}

/** Identical events (same kind, actor, subject, address and reason) shown as one row with their count. */
export interface AuditGroup {
  /** The newest event of the group (its details are shown). */
  latest: AuditEvent;
  /** The events' counts summed (a per-minute failure row counts its attempts). */
  count: number;
  /** Rows folded into this one. */
  rows: number;
  first: Date;
  last: Date;
}

export interface AuditGroupPage {
  groups: AuditGroup[];
  /** Where the next page starts; null when nothing older matches. */
  older: AuditCursor | null;
}

/** Rows one grouped page reads at most: whatever the trail holds, a page costs this. */
export const AUDIT_GROUP_SCAN = 2000;

function groupKey(event: AuditEvent): string {
  const text = (value: unknown) => (typeof value === 'string' ? value : null);
  return JSON.stringify([event.kind, event.actor, event.subject, event.address, text(event.details.reason), text(event.details.reasonCode)]);
}

/**
 * A page of the trail with identical events folded into one row (a device
 * retrying every 30 s is one row with its count, not a page of them),
 * newest first. It reads at most AUDIT_GROUP_SCAN rows: it stops at the
 * first event of a group that would not fit the page, and the next page
 * starts there, so a group can appear again on a later page with its older
 * events (each row says from when to when it counts).
 */
export async function listAuditGroups(db: Queryable, filters: Omit<AuditFilters, 'text'>, place: { older?: AuditCursor } = {}): Promise<AuditGroupPage> {
  const groups = new Map<string, AuditGroup>();
  let cursor = place.older;
  let scanned = 0;
  while (scanned < AUDIT_GROUP_SCAN) {
    const rows = await readEvents(db, filters, 'older', cursor, Math.min(500, AUDIT_GROUP_SCAN - scanned));
    if (rows.length === 0) return { groups: [...groups.values()], older: null };
    for (const event of rows) {
      const key = groupKey(event);
      const group = groups.get(key);
      if (group) {
        group.count += event.count;
        group.rows += 1;
        group.first = event.at;
      } else {
        // A new group that does not fit: the next page starts with it.
        if (groups.size === AUDIT_PAGE_SIZE) return { groups: [...groups.values()], older: cursor ?? null };
        groups.set(key, { latest: event, count: event.count, rows: 1, first: event.at, last: event.at });
      }
      cursor = { at: event.at, id: event.id };
      scanned++;
    }
  }
  const [more] = await readEvents(db, filters, 'older', cursor, 1);
  return { groups: [...groups.values()], older: more ? (cursor ?? null) : null };
}

/** Every event matching `filters`, newest first, in batches, at most AUDIT_CSV_MAX_ROWS. */
export async function* readAuditEventsForExport(db: Queryable, filters: Omit<AuditFilters, 'text'>, batch = 1000): AsyncGenerator<AuditEvent[], { truncated: boolean }> {
  let cursor: AuditCursor | undefined;
  let total = 0;
  while (total < AUDIT_CSV_MAX_ROWS) {
    const rows = await readEvents(db, filters, 'older', cursor, Math.min(batch, AUDIT_CSV_MAX_ROWS - total));
    if (rows.length === 0) return { truncated: false };
    total += rows.length;
    yield rows;
    const last = rows.at(-1)!;
    cursor = { at: last.at, id: last.id };
  }
  const [more] = await readEvents(db, filters, 'older', cursor, 1);
  return { truncated: more !== undefined };
}

export const AUDIT_CSV_HEADER = ['time', 'kind', 'actor', 'subject', 'address', 'count', 'details'];

/**
 * One CSV cell (RFC 4180): quoted when it holds a comma, a quote or a line
 * break. A cell a spreadsheet would read as a formula (starting with =, +, -,
 * @, a tab or a carriage return) is prefixed with a quote: an attacker can
 * choose a username or topic, and the export is opened by administrators.
 */
export function csvCell(value: string | number | null | undefined): string {
  let text = value === null || value === undefined ? '' : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function csvLine(cells: Array<string | number | null | undefined>): string {
  return `${cells.map(csvCell).join(',')}\r\n`;
}

export function auditEventCsvLine(event: AuditEvent): string {
  return csvLine([event.at.toISOString(), event.kind, event.actor, event.subject, event.address, event.count, JSON.stringify(event.details)]);
}

// ---------------------------------------------------------------------------
// Retention

/** Deletes events older than `days` days, a batch at a time; returns how many went. */
export async function deleteOldAuditEvents(db: Database, days: number, now = Date.now(), batch = 10_000): Promise<number> {
  const cutoff = new Date(now - days * 24 * 60 * MINUTE_MS).toISOString();
  let deleted = 0;
  for (;;) {
    const rows = await db.execute<{ id: number }>(sql`delete from ${auditEvents} where id in (
      select id from ${auditEvents} where at < ${cutoff}::timestamptz limit ${batch}) returning id`);
    const count = Array.isArray(rows) ? rows.length : ((rows as { rows?: unknown[] }).rows?.length ?? 0);
    deleted += count;
    if (count < batch) return deleted;
  }
}

/** Deletes old events now and every `intervalMs` (an hour); `stop()` ends it. */
export function startAuditRetention(db: Database, options: { days: number; intervalMs?: number; log?: (message: string) => void }): { stop(): Promise<void> } {
  const log = options.log ?? (() => {});
  let running: Promise<void> = Promise.resolve();
  const run = () => {
    running = running
      .then(() => deleteOldAuditEvents(db, options.days))
      .then(
        (count) => {
          if (count > 0) log(`deleted ${count} audit events older than ${options.days} days (AUDIT_RETENTION_DAYS)`);
        },
        (error: unknown) => log(`deleting old audit events failed: ${(error as Error).message}`),
      );
  };
  run();
  const timer = setInterval(run, options.intervalMs ?? 60 * MINUTE_MS);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
