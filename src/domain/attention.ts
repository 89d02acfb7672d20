import { and, desc, gte, inArray, isNotNull, sql } from 'drizzle-orm';
import type { Database } from '../db';
import { auditEvents, clients } from '../db/schema';
import { REFUSAL_KINDS } from './audit';
import { rowsOf } from '../db/hot';

/** Rows each of the overview's lists shows. */
export const ATTENTION_ROWS = 5;

/**
 * Refused-CONNECT rows of the audit trail read at most, newest first (each
 * one username, address and reason in one minute, with its count): the
 * list's cost stays bounded whatever a storm of failures wrote.
 */
export const REFUSED_CONNECT_ROWS_READ = 10_000;

export interface RefusedConnects {
  /** Clients whose CONNECT the broker refused in the last 24 hours, the latest attempt first. */
  clients: Array<{ id: number; name: string; username: string; attempts: number; lastAt: Date; reason: string }>;
  /** How many clients were refused in all (the list shows ATTENTION_ROWS). */
  clientCount: number;
  /** Usernames no client has (or none given), refused in the same time: how many, and their attempts. */
  unknown: { usernames: number; attempts: number };
  /** The rows read reached REFUSED_CONNECT_ROWS_READ: older refusals of the 24 hours are not counted. */
  partial: boolean;
}

export interface Attention {
  /** Devices that tried to connect and were refused (wrong password, unknown username, certificate…). */
  refusedConnects: RefusedConnects;
  /** Usernames the broker refused most (CONNECTs, publishes, subscriptions) in the last 24 hours, with their client when there is one. */
  topRefused: Array<{ username: string; refusals: number; lastAt: Date; client: { id: number; name: string } | null }>;
}

/** The overview's lists of what to look at, each bounded by ATTENTION_ROWS. */
export async function loadAttention(db: Database, now = new Date()): Promise<Attention> {
  const since = new Date(now.getTime() - 24 * 3600_000);
  const [refusedConnects, refused] = await Promise.all([
    loadRefusedConnects(db, since),
    db
      .select({ username: auditEvents.actor, refusals: sql<number>`sum(${auditEvents.count})::integer`, lastAt: sql<Date>`max(${auditEvents.at})` })
      .from(auditEvents)
      .where(and(inArray(auditEvents.kind, REFUSAL_KINDS), gte(auditEvents.at, since), isNotNull(auditEvents.actor)))
      .groupBy(auditEvents.actor)
      .orderBy(desc(sql`sum(${auditEvents.count})`), auditEvents.actor)
      .limit(ATTENTION_ROWS),
  ]);
  const usernames = refused.map((row) => row.username!);
  const known = usernames.length
    ? await db.select({ id: clients.id, name: clients.name, username: clients.username }).from(clients).where(inArray(clients.username, usernames))
    : [];
  const byUsername = new Map(known.map((c) => [c.username, { id: c.id, name: c.name }]));
  return {
    refusedConnects,
    topRefused: refused.map((row) => ({
      username: row.username!,
      refusals: Number(row.refusals),
      lastAt: new Date(row.lastAt),
      client: byUsername.get(row.username!) ?? null,
    })),
  };
}

/**
 * Refused CONNECTs since `since`, from the audit trail: the latest
 * REFUSED_CONNECT_ROWS_READ rows of `mqtt.auth_failed` (read by the kind-and-time
 * index), matched to clients by username; one statement over them answers
 * the totals on every row, beside the clients shown (none: one row of totals).
 */
async function loadRefusedConnects(db: Database, since: Date): Promise<RefusedConnects> {
  const result = await db.execute(sql`with recent as (
      select ${auditEvents.actor} as actor, ${auditEvents.count} as count, ${auditEvents.at} as at, ${auditEvents.details} ->> 'reason' as reason
      from ${auditEvents}
      where ${auditEvents.kind} = 'mqtt.auth_failed' and ${auditEvents.at} >= ${since.toISOString()}::timestamptz
      order by ${auditEvents.at} desc, ${auditEvents.id} desc
      limit ${REFUSED_CONNECT_ROWS_READ}),
    matched as (
      select r.actor, r.count, r.at, r.reason, c.id, c.name, c.username
      from recent r left join ${clients} c on c.username = r.actor),
    totals as (
      select count(distinct id)::integer as clients,
        count(distinct coalesce(actor, '')) filter (where id is null)::integer as unknown_usernames,
        coalesce(sum(count) filter (where id is null), 0)::integer as unknown_attempts,
        count(*)::integer as rows_read
      from matched),
    top as (
      select id, name, username, sum(count)::integer as attempts, max(at) as last_at, (array_agg(reason order by at desc))[1] as reason
      from matched
      where id is not null
      group by id, name, username
      order by max(at) desc, id
      limit ${ATTENTION_ROWS})
    select totals.*, top.* from totals left join top on true
    order by top.last_at desc, top.id`);
  const rows = rowsOf<{
    clients: number;
    unknown_usernames: number;
    unknown_attempts: number;
    rows_read: number;
    id: number | null;
    name: string;
    username: string;
    attempts: number;
    last_at: string | Date;
    reason: string | null;
  }>(result);
  const total = rows[0]!;
  return {
    clients: rows
      .filter((row) => row.id !== null)
      .map((row) => ({
        id: Number(row.id),
        name: row.name,
        username: row.username,
        attempts: Number(row.attempts),
        lastAt: new Date(row.last_at),
        reason: row.reason ?? '',
      })),
    clientCount: Number(total.clients),
    unknown: { usernames: Number(total.unknown_usernames), attempts: Number(total.unknown_attempts) },
    partial: Number(total.rows_read) >= REFUSED_CONNECT_ROWS_READ,
  };
}
