import { and, desc, gte, inArray, isNotNull, sql } from 'drizzle-orm';
import type { Database } from '../db';
import { auditEvents, clients } from '../db/schema';
import type { RuleModel } from './access/acl';
import { noGroupCondition } from './access/lastSeen';
import { REFUSAL_KINDS } from './audit';

/** Rows each of the overview's lists shows. */
export const ATTENTION_ROWS = 5;

export interface Attention {
  /** Clients that connected but that the rules give no group, as last seen: most recently seen first. */
  connectedWithoutAccess: Array<{ id: number; name: string; username: string; lastSeenAt: Date }>;
  /** Usernames the broker refused most (CONNECTs, publishes, subscriptions) in the last 24 hours, with their client when there is one. */
  topRefused: Array<{ username: string; refusals: number; lastAt: Date; client: { id: number; name: string } | null }>;
}

/** The overview's lists of what to look at, each bounded by ATTENTION_ROWS. */
export async function loadAttention(db: Database, model: RuleModel, now = new Date()): Promise<Attention> {
  const since = new Date(now.getTime() - 24 * 3600_000);
  const [connectedWithoutAccess, refused] = await Promise.all([
    db
      .select({ id: clients.id, name: clients.name, username: clients.username, lastSeenAt: clients.lastSeenAt })
      .from(clients)
      .where(and(isNotNull(clients.lastSeenAt), noGroupCondition(model, clients)))
      .orderBy(desc(clients.lastSeenAt), desc(clients.id))
      .limit(ATTENTION_ROWS),
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
    connectedWithoutAccess: connectedWithoutAccess.map((row) => ({ ...row, lastSeenAt: row.lastSeenAt! })),
    topRefused: refused.map((row) => ({
      username: row.username!,
      refusals: Number(row.refusals),
      lastAt: new Date(row.lastAt),
      client: byUsername.get(row.username!) ?? null,
    })),
  };
}
