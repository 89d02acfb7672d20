/**
 * The durable outbox: every message a pipeline's mappings match is a row of
 * `pipeline_outbox` (one per pipeline) until it is forwarded, dropped by a
 * limit, or moved to the dead letters.
 *
 * Writing (createOutboxWriter) is part of accepting a message: the broker
 * waits for it before PUBACK/PUBREC. Rows are written by group commit: while
 * one INSERT is in flight, the messages arriving meanwhile gather, and the
 * next INSERT takes them all, so a burst of concurrent QoS 1 publishes costs a
 * few statements, not one each.
 *
 * Taking work (claimOutboxRows) is safe across nodes: a claim locks rows with
 * `FOR UPDATE SKIP LOCKED`, under a per-pipeline advisory lock held for the
 * claim's short transaction, and gives each row a lease (`not_before`). A
 * node that dies leaves leases that run out; another node takes the rows
 * then (forwarded at least once; the stable message id lets the endpoint
 * drop a repeat). Order: a row is claimed only when no earlier row of its
 * `order_key` (the topic) is held, so one topic's messages go out in order
 * while other topics go on beside them.
 */
import { randomUUID } from 'node:crypto';
import { and, asc, desc, eq, inArray, lt, sql } from 'drizzle-orm';
import { type Database, schema } from '../../db';
import { executeHot, executeHotInTransaction, rowsOf } from '../../db/hot';
import { type AuditActor, recordChange } from '../audit';

const { pipelineOutbox, pipelineDeadLetters, pipelines } = schema;

/** A message as the broker accepted it, as the hook receives it. */
export interface AcceptedMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  /** MQTT 5 properties, when the client sent any. */
  properties?: Readonly<Record<string, unknown>>;
}

/** The publishing session, as the hook receives it. */
export interface PublishingSession {
  clientRowId?: number;
  username?: string;
  mqttClientId?: string;
  groups?: readonly string[];
}

/** One row of the outbox, as the delivery sees it. */
export interface OutboxRow {
  id: number;
  pipelineId: number;
  messageId: string;
  orderKey: string;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  clientRowId: number | null;
  username: string | null;
  mqttClientId: string | null;
  receivedAt: Date;
  attempts: number;
  bytes: number;
}

/** Why a message was not forwarded (the counters' `reason` label). */
export type DropReason = 'overflow_oldest' | 'overflow_newest' | 'refused' | 'expired' | 'write_failed';
export const DROP_REASONS: DropReason[] = ['overflow_oldest', 'overflow_newest', 'refused', 'expired', 'write_failed'];

/** What a pipeline's outbox holds, across every node. */
export interface OutboxUsage {
  rows: number;
  bytes: number;
  oldest: Date | null;
}

/** What the writer needs to know of a pipeline. */
export interface WriterPipeline {
  id: number;
  maxOutboxBytes: number;
  overflow: 'drop_oldest' | 'drop_newest' | 'refuse';
}

export interface OutboxWriterDeps {
  db: Database;
  /** The pipelines a message goes to (the live mapping matcher); empty for most messages. */
  match(message: AcceptedMessage, session: PublishingSession): readonly WriterPipeline[];
  /** Bytes in each pipeline's outbox (measured, plus what was written since). */
  usage(pipelineId: number): number;
  /** Told after rows are written (to wake the delivery and count). */
  written(rows: Array<{ pipelineId: number; bytes: number; message: AcceptedMessage; session: PublishingSession; messageId: string; receivedAt: Date }>): void;
  dropped(pipelineId: number, reason: DropReason): void;
  /** Rows per INSERT at most. */
  maxBatchRows?: number;
  log?: (message: string) => void;
}

/** The publish is refused: the outbox of a pipeline with the "refuse" policy is full (MQTT 5: 0x97 quota exceeded). */
export class OutboxFullError extends Error {
  readonly reasonCode = 0x97;
  constructor(readonly pipelineId: number) {
    super(`the outbox of pipeline ${pipelineId} is full`);
  }
}

export interface OutboxWriter {
  /**
   * The broker's `onPublishAccepted` hook. Returns nothing when no mapping
   * matches; else a promise that settles once the rows are committed (QoS 0
   * callers need not wait: its failure is counted, never thrown).
   */
  write(message: AcceptedMessage, session: PublishingSession): Promise<void> | void;
  /** Waits for every row handed over so far. */
  flush(): Promise<void>;
  stats(): { batches: number; rows: number };
}

/** A message as the outbox INSERT reads it (one JSON element; `p`: the pipelines it goes to, a row each). */
interface OutboxMessageJson {
  message_id: string;
  topic: string;
  /** Base64. */
  payload: string;
  qos: number;
  retain: boolean;
  client_row_id: number | null;
  username: string | null;
  mqtt_client_id: string | null;
  received_at: string;
  bytes: number;
  p: number[];
}

interface Pending {
  message: OutboxMessageJson;
  settle: { resolve(): void; reject(error: unknown): void } | null;
  report: Parameters<OutboxWriterDeps['written']>[0];
  qos0: boolean;
}

/**
 * One statement and one parameter for any number of messages: the statement
 * text never changes (postgres.js prepares it once; the query builder's
 * multi-row INSERT was a new text, a new Parse/Describe and a dozen
 * parameters to build per row), and PGlite parses one JSON value instead of
 * a dozen bound parameters a row. Rows are numbered in the order given, so
 * ids (the order of delivery per topic) follow the order of acceptance.
 */
function insertOutboxMessages(db: Database, messages: OutboxMessageJson[]) {
  return executeHot(db, sql`
    insert into pipeline_outbox (pipeline_id, message_id, order_key, topic, payload, qos, retain, client_row_id, username, mqtt_client_id, received_at, bytes)
    select p.pipeline_id::integer, m.message_id, m.topic, m.topic, decode(m.payload, 'base64'), m.qos, m.retain, m.client_row_id,
      m.username, m.mqtt_client_id, m.received_at, m.bytes
    from rows from (jsonb_to_recordset(${JSON.stringify(messages)}::jsonb) as (message_id text, topic text, payload text, qos smallint,
      retain boolean, client_row_id integer, username text, mqtt_client_id text, received_at timestamptz, bytes integer, p jsonb))
      with ordinality as m(message_id, topic, payload, qos, retain, client_row_id, username, mqtt_client_id, received_at, bytes, p, n)
    cross join lateral jsonb_array_elements_text(m.p) as p(pipeline_id)
    order by m.n, p.pipeline_id::integer`);
}

/** U+0000 cannot be stored in a text column (or a jsonb string): a client id or username holding one is kept with U+FFFD in its place. */
const withoutNul = (text: string | undefined): string | null => (text === undefined ? null : text.includes('\0') ? text.replaceAll('\0', '\uFFFD') : text);

export function createOutboxWriter(deps: OutboxWriterDeps): OutboxWriter {
  const maxBatchRows = deps.maxBatchRows ?? 500;
  const queue: Pending[] = [];
  let writing = false;
  let scheduled = false;
  let batches = 0;
  let rowsWritten = 0;
  /** Bytes handed over and not yet committed, per pipeline: they count against its limit already. */
  const queuedBytes = new Map<number, number>();
  const unqueue = (message: OutboxMessageJson) => {
    for (const pipelineId of message.p) {
      const left = (queuedBytes.get(pipelineId) ?? 0) - message.bytes;
      if (left > 0) queuedBytes.set(pipelineId, left);
      else queuedBytes.delete(pipelineId);
    }
  };
  const idle: Array<() => void> = [];

  function pump() {
    if (!writing && queue.length > 0) {
      // Take whole messages until the batch is full: a message's rows (one per pipeline) commit together.
      const taken: Pending[] = [];
      let count = 0;
      while (queue.length > 0 && (taken.length === 0 || count + queue[0]!.message.p.length <= maxBatchRows)) {
        const next = queue.shift()!;
        taken.push(next);
        count += next.message.p.length;
      }
      writing = true;
      void insertOutboxMessages(
        deps.db,
        taken.map((p) => p.message),
      )
        .then(
          () => {
            batches++;
            rowsWritten += count;
            for (const p of taken) unqueue(p.message);
            deps.written(taken.flatMap((p) => p.report));
            for (const p of taken) p.settle?.resolve();
          },
          (error: unknown) => {
            for (const p of taken) unqueue(p.message);
            for (const p of taken) {
              if (p.qos0) for (const pipelineId of p.message.p) deps.dropped(pipelineId, 'write_failed');
              p.settle?.reject(error);
            }
            deps.log?.(`could not write ${count} messages to the pipelines' outbox: ${(error as Error).message}`);
          },
        )
        .finally(() => {
          writing = false;
          schedule();
        });
    }
    if (!writing && queue.length === 0) idle.splice(0).forEach((resolve) => resolve());
  }

  /**
   * The next INSERT starts once the sockets have been read (setImmediate runs
   * after the event loop's poll phase): the publishes of every connection that
   * arrived meanwhile go in one statement. PGlite runs a statement on the event
   * loop itself, so nothing is read while it runs, and starting the next one
   * at once took only what happened to be queued (one connection's read).
   */
  function schedule() {
    if (scheduled || writing) return;
    if (queue.length === 0) {
      pump();
      return;
    }
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      pump();
    });
  }

  function enqueue(pending: Pending) {
    queue.push(pending);
    schedule();
  }

  return {
    write(message, session) {
      const targets = deps.match(message, session);
      if (targets.length === 0) return;
      const receivedAt = new Date();
      const messageId = randomUUID();
      const bytes = message.payload.length + Buffer.byteLength(message.topic) + 200;
      const pipelineIds: number[] = [];
      const report: Pending['report'] = [];
      for (const pipeline of targets) {
        if (deps.usage(pipeline.id) + (queuedBytes.get(pipeline.id) ?? 0) + bytes > pipeline.maxOutboxBytes) {
          if (pipeline.overflow === 'drop_newest') {
            deps.dropped(pipeline.id, 'overflow_newest');
            continue;
          }
          if (pipeline.overflow === 'refuse') {
            deps.dropped(pipeline.id, 'refused');
            if (message.qos === 0) continue;
            // Nothing is written for any pipeline: the device sends it again later.
            return Promise.reject(new OutboxFullError(pipeline.id));
          }
          // drop_oldest: written; the janitor makes room by removing the oldest rows.
        }
        pipelineIds.push(pipeline.id);
        report.push({ pipelineId: pipeline.id, bytes, message, session, messageId, receivedAt });
      }
      if (pipelineIds.length === 0) return;
      for (const id of pipelineIds) queuedBytes.set(id, (queuedBytes.get(id) ?? 0) + bytes);
      const row: OutboxMessageJson = {
        message_id: messageId,
        topic: message.topic,
        payload: message.payload.toString('base64'),
        qos: message.qos,
        retain: message.retain,
        client_row_id: session.clientRowId ?? null,
        username: withoutNul(session.username),
        mqtt_client_id: withoutNul(session.mqttClientId),
        received_at: receivedAt.toISOString(),
        bytes,
        p: pipelineIds,
      };
      if (message.qos === 0) {
        enqueue({ message: row, settle: null, report, qos0: true });
        return;
      }
      return new Promise<void>((resolve, reject) => {
        enqueue({ message: row, settle: { resolve, reject }, report, qos0: false });
      });
    },
    flush() {
      if (!writing && queue.length === 0) return Promise.resolve();
      return new Promise((resolve) => idle.push(resolve));
    },
    stats: () => ({ batches, rows: rowsWritten }),
  };
}

type OutboxRecord = typeof pipelineOutbox.$inferSelect;

function rowOf(record: OutboxRecord): OutboxRow {
  return {
    id: Number(record.id),
    pipelineId: record.pipelineId,
    messageId: record.messageId,
    orderKey: record.orderKey,
    topic: record.topic,
    payload: record.payload,
    qos: record.qos,
    retain: record.retain,
    clientRowId: record.clientRowId,
    username: record.username,
    mqttClientId: record.mqttClientId,
    receivedAt: record.receivedAt,
    attempts: record.attempts,
    bytes: record.bytes,
  };
}

/** An arbitrary constant mixed with the pipeline id for the claim's advisory lock. */
const CLAIM_LOCK_CLASS = 7_231_020;

/**
 * Claims up to `limit` rows of a pipeline that are due, in id order, each the
 * next of its topic (see the module comment), and leases them for `leaseMs`.
 * Rows come back in id order.
 *
 * `exclusive`: this process is the only one claiming this pipeline's rows
 * (the embedded database; one delivery loop per pipeline), so the claim is
 * one statement without the advisory lock and its transaction (four
 * statements fewer on the event loop). Several nodes need the lock: two
 * concurrent claims could each take a different row of one topic (the other
 * one's lease is not yet visible), and the topic would go out of order.
 */
export async function claimOutboxRows(db: Database, pipelineId: number, limit: number, leaseMs: number, exclusive = false): Promise<OutboxRow[]> {
  const claim = sql`
    with due as (
      select o.id from pipeline_outbox o
      where o.pipeline_id = ${pipelineId}
        and (o.not_before is null or o.not_before <= now())
        and not exists (
          select 1 from pipeline_outbox p
          where p.pipeline_id = o.pipeline_id and p.order_key = o.order_key and p.id < o.id
            and p.not_before is not null and p.not_before > now())
      order by o.id
      limit ${limit}
      for update skip locked
    )
    update pipeline_outbox u set not_before = now() + make_interval(secs => ${leaseMs / 1000})
    from due where u.id = due.id
    returning u.id, u.pipeline_id, u.message_id, u.order_key, u.topic, u.payload, u.qos, u.retain, u.client_row_id,
      u.username, u.mqtt_client_id, u.received_at, u.attempts, u.bytes`;
  const claimed = exclusive
    ? await executeHot(db, claim)
    : await executeHotInTransaction(db, [sql`select pg_advisory_xact_lock(${CLAIM_LOCK_CLASS}, ${pipelineId})`, claim]);
  return rowsOf(claimed)
    .map((r) => ({
      id: Number(r.id),
      pipelineId: Number(r.pipeline_id),
      messageId: String(r.message_id),
      orderKey: String(r.order_key),
      topic: String(r.topic),
      payload: asBuffer(r.payload),
      qos: Number(r.qos),
      retain: Boolean(r.retain),
      clientRowId: r.client_row_id === null ? null : Number(r.client_row_id),
      username: (r.username as string | null) ?? null,
      mqttClientId: (r.mqtt_client_id as string | null) ?? null,
      receivedAt: asDate(r.received_at),
      attempts: Number(r.attempts),
      bytes: Number(r.bytes),
    }))
    .sort((a, b) => a.id - b.id);
}

/**
 * Row ids as one parameter (a PostgreSQL array literal, `::bigint[]` in the
 * statement): one statement text whatever the count, where `inArray` made a
 * new text and a parameter per id.
 */
function idList(ids: readonly number[]): string {
  for (const id of ids) if (!Number.isSafeInteger(id)) throw new Error(`not a row id: ${id}`);
  return `{${ids.join(',')}}`;
}

function asDate(value: unknown): Date {
  if (value instanceof Date) return value;
  // PostgreSQL's text form: `2026-12-05 10:40:00.123+00`.
  const text = String(value).replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00');
  return new Date(text);
}

function asBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  // A driver that answers bytea as text: `\x…`.
  const text = String(value);
  return text.startsWith('\\x') ? Buffer.from(text.slice(2), 'hex') : Buffer.from(text);
}


/** Forwarded: the rows leave the outbox. */
export async function completeOutboxRows(db: Database, ids: number[]): Promise<void> {
  if (ids.length === 0) return;
  await executeHot(db, sql`delete from pipeline_outbox where id = any(${idList(ids)}::bigint[])`);
}

/** Not forwarded this time: tried again after `delayMs` (they hold back the later rows of their topics meanwhile). */
export async function retryOutboxRows(db: Database, ids: number[], delayMs: number, status: number | null, error: string): Promise<void> {
  if (ids.length === 0) return;
  await executeHot(db, sql`
    update pipeline_outbox set attempts = attempts + 1, not_before = now() + make_interval(secs => ${delayMs / 1000}),
      last_status = ${status}, last_error = ${error.slice(0, 1000)}
    where id = any(${idList(ids)}::bigint[])`);
}

/** Claimed but not tried (their topic's earlier row failed): free again, held back by that row. */
export async function releaseOutboxRows(db: Database, ids: number[]): Promise<void> {
  if (ids.length === 0) return;
  await executeHot(db, sql`update pipeline_outbox set not_before = null where id = any(${idList(ids)}::bigint[])`);
}

/** Failed for good: moved to the dead letters with the last status and the start of the answer. */
export async function deadLetterOutboxRows(db: Database, ids: number[], status: number | null, answer: string): Promise<void> {
  if (ids.length === 0) return;
  await db.transaction(async (tx) => {
    const moved = await tx.delete(pipelineOutbox).where(inArray(pipelineOutbox.id, ids)).returning();
    if (moved.length === 0) return;
    await tx.insert(pipelineDeadLetters).values(
      moved.map((row) => ({
        pipelineId: row.pipelineId,
        messageId: row.messageId,
        orderKey: row.orderKey,
        topic: row.topic,
        payload: row.payload,
        qos: row.qos,
        retain: row.retain,
        clientRowId: row.clientRowId,
        username: row.username,
        mqttClientId: row.mqttClientId,
        receivedAt: row.receivedAt,
        attempts: row.attempts + 1,
        lastStatus: status,
        lastError: answer.slice(0, 1000),
      })),
    );
  });
}

/**
 * Frees every lease and waiting retry: for a node that knows it is the only
 * one (the embedded database serves one process), at start, so what the
 * process held when it was killed goes out at once instead of when its lease
 * runs out.
 */
export async function releaseAllOutboxLeases(db: Database): Promise<void> {
  await db.update(pipelineOutbox).set({ notBefore: null }).where(sql`${pipelineOutbox.notBefore} is not null`);
}

/** Rows, bytes and the oldest message of every pipeline's outbox. */
export async function measureOutboxes(db: Database): Promise<Map<number, OutboxUsage>> {
  const rows = await db
    .select({
      pipelineId: pipelineOutbox.pipelineId,
      rows: sql<number>`count(*)`.mapWith(Number),
      bytes: sql<number>`coalesce(sum(${pipelineOutbox.bytes}), 0)`.mapWith(Number),
      oldest: sql<Date | null>`min(${pipelineOutbox.receivedAt})`.mapWith((value) => (value === null ? null : new Date(value))),
    })
    .from(pipelineOutbox)
    .groupBy(pipelineOutbox.pipelineId);
  return new Map(rows.map((row) => [row.pipelineId, { rows: row.rows, bytes: row.bytes, oldest: row.oldest }]));
}

/** Deletes a pipeline's rows older than `maxAgeSeconds`; returns how many. */
export async function expireOutboxRows(db: Database, pipelineId: number, maxAgeSeconds: number): Promise<number> {
  const cutoff = new Date(Date.now() - maxAgeSeconds * 1000);
  const deleted = await db
    .delete(pipelineOutbox)
    .where(and(eq(pipelineOutbox.pipelineId, pipelineId), lt(pipelineOutbox.receivedAt, cutoff)))
    .returning({ id: pipelineOutbox.id });
  return deleted.length;
}

/** Deletes a pipeline's oldest rows until about `excessBytes` are gone; returns how many rows. */
export async function dropOldestOutboxRows(db: Database, pipelineId: number, excessBytes: number, averageBytes: number): Promise<number> {
  const count = Math.max(1, Math.ceil(excessBytes / Math.max(1, averageBytes)));
  const deleted = await db.execute(sql`
    delete from pipeline_outbox where id in (
      select id from pipeline_outbox where pipeline_id = ${pipelineId} order by id limit ${count})
    returning id`);
  return rowsOf(deleted).length;
}

/** The outbox's newest row of a pipeline (a recent real message for the Test button), or null. */
export async function latestOutboxRow(db: Database, pipelineId: number): Promise<OutboxRow | null> {
  const [record] = await db.select().from(pipelineOutbox).where(eq(pipelineOutbox.pipelineId, pipelineId)).orderBy(desc(pipelineOutbox.id)).limit(1);
  return record ? rowOf(record) : null;
}

/** A dead letter as the console lists it. */
export interface DeadLetter {
  id: number;
  messageId: string;
  topic: string;
  payloadPreview: string;
  payloadBytes: number;
  qos: number;
  username: string | null;
  mqttClientId: string | null;
  receivedAt: Date;
  failedAt: Date;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
}

export const DEAD_LETTERS_PAGE_SIZE = 50;

/** One page of a pipeline's dead letters, newest first, with their total. */
export async function listDeadLetters(db: Database, pipelineId: number, page = 1): Promise<{ letters: DeadLetter[]; total: number; page: number; pageCount: number }> {
  const [totals] = await db.select({ n: sql<number>`count(*)`.mapWith(Number) }).from(pipelineDeadLetters).where(eq(pipelineDeadLetters.pipelineId, pipelineId));
  const total = totals?.n ?? 0;
  const pageCount = Math.max(1, Math.ceil(total / DEAD_LETTERS_PAGE_SIZE));
  const current = Math.min(Math.max(1, Math.trunc(page) || 1), pageCount);
  const records = await db
    .select()
    .from(pipelineDeadLetters)
    .where(eq(pipelineDeadLetters.pipelineId, pipelineId))
    .orderBy(desc(pipelineDeadLetters.id))
    .limit(DEAD_LETTERS_PAGE_SIZE)
    .offset((current - 1) * DEAD_LETTERS_PAGE_SIZE);
  return {
    total,
    page: current,
    pageCount,
    letters: records.map((r) => ({
      id: Number(r.id),
      messageId: r.messageId,
      topic: r.topic,
      payloadPreview: r.payload.subarray(0, 200).toString('utf8'),
      payloadBytes: r.payload.length,
      qos: r.qos,
      username: r.username,
      mqttClientId: r.mqttClientId,
      receivedAt: r.receivedAt,
      failedAt: r.failedAt,
      attempts: r.attempts,
      lastStatus: r.lastStatus,
      lastError: r.lastError,
    })),
  };
}

export async function deadLetterCount(db: Database, pipelineId: number): Promise<number> {
  const [row] = await db.select({ n: sql<number>`count(*)`.mapWith(Number) }).from(pipelineDeadLetters).where(eq(pipelineDeadLetters.pipelineId, pipelineId));
  return row?.n ?? 0;
}

/** The dead letters of each pipeline in `pipelineIds` (0 for one without), in one query: for the lists. */
export async function deadLetterCounts(db: Database, pipelineIds: number[]): Promise<Map<number, number>> {
  const counts = new Map(pipelineIds.map((id) => [id, 0]));
  if (pipelineIds.length === 0) return counts;
  const rows = await db
    .select({ pipelineId: pipelineDeadLetters.pipelineId, n: sql<number>`count(*)`.mapWith(Number) })
    .from(pipelineDeadLetters)
    .where(inArray(pipelineDeadLetters.pipelineId, pipelineIds))
    .groupBy(pipelineDeadLetters.pipelineId);
  for (const row of rows) counts.set(row.pipelineId, row.n);
  return counts;
}

/**
 * Puts dead letters back in the outbox (one, or all of the pipeline's), with
 * their message ids: the endpoint can tell a replay from a new message. They
 * go to the end of the queue. Returns how many.
 */
export async function replayDeadLetters(db: Database, pipelineId: number, which: number | 'all', by?: AuditActor): Promise<number> {
  return db.transaction(async (tx) => {
    const where = which === 'all' ? eq(pipelineDeadLetters.pipelineId, pipelineId) : and(eq(pipelineDeadLetters.pipelineId, pipelineId), eq(pipelineDeadLetters.id, which));
    const moved = await tx.delete(pipelineDeadLetters).where(where).returning();
    if (moved.length === 0) return 0;
    moved.sort((a, b) => Number(a.id) - Number(b.id));
    for (let i = 0; i < moved.length; i += 500) {
      await tx.insert(pipelineOutbox).values(
        moved.slice(i, i + 500).map((row) => ({
          pipelineId: row.pipelineId,
          messageId: row.messageId,
          orderKey: row.orderKey,
          topic: row.topic,
          payload: row.payload,
          qos: row.qos,
          retain: row.retain,
          clientRowId: row.clientRowId,
          username: row.username,
          mqttClientId: row.mqttClientId,
          receivedAt: row.receivedAt,
          bytes: row.payload.length + Buffer.byteLength(row.topic) + 200,
        })),
      );
    }
    const [pipeline] = await tx.select({ name: pipelines.name }).from(pipelines).where(eq(pipelines.id, pipelineId));
    await recordChange(tx, by, { kind: 'pipeline.dead_letters_replayed', subject: pipeline?.name ?? String(pipelineId), details: { count: moved.length, ...(which === 'all' ? {} : { messageId: moved[0]!.messageId }) } });
    return moved.length;
  });
}

/** Deletes a pipeline's dead letters; returns how many. */
export async function purgeDeadLetters(db: Database, pipelineId: number, by?: AuditActor): Promise<number> {
  return db.transaction(async (tx) => {
    const deleted = await tx.delete(pipelineDeadLetters).where(eq(pipelineDeadLetters.pipelineId, pipelineId)).returning({ id: pipelineDeadLetters.id });
    const [pipeline] = await tx.select({ name: pipelines.name }).from(pipelines).where(eq(pipelines.id, pipelineId));
    if (deleted.length > 0) await recordChange(tx, by, { kind: 'pipeline.dead_letters_purged', subject: pipeline?.name ?? String(pipelineId), details: { count: deleted.length } });
    return deleted.length;
  });
}
