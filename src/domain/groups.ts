import { and, asc, count, eq, ilike, inArray, sql } from 'drizzle-orm';
import { z } from 'zod';
import { type Database, isUniqueViolation, schema } from '../db';
import { rowsOf } from '../db/hot';
import type { Action, Effect, MatchBy } from './access/types';
import { likePattern } from './clients';
import { type AuditActor, recordChange } from './audit';
import { ConflictError } from './errors';
import { describeRule, loadRulesGiving, lockGroupRules, recordRuleChange, type GroupRule, type RuleChange } from './groupRules';
import { topicFilterProblem } from './topics';
import { parseInput } from './validation';

const { groups, groupPermissions } = schema;

export interface Group {
  id: number;
  name: string;
  description: string;
  version: number;
  createdAt: Date;
  updatedAt: Date;
}

export interface GroupPermission {
  effect: Effect;
  action: Action;
  /** A topic filter; `%u` and `%c` stand for the username and the client id. */
  topic: string;
}

export interface GroupWithPermissions extends Group {
  permissions: GroupPermission[];
}

export interface GroupSummary extends Group {
  permissionCount: number;
  ruleCount: number;
  /** Its first permission rows (at most GROUP_SUMMARY_ROWS), in order: its topics in short. */
  topics?: Array<{ effect: Effect; action: Action; topic: string }>;
  /** Who holds it: the first rules that give it (at most GROUP_SUMMARY_ROWS), in page order. */
  holders?: Array<GroupHolder>;
}

/** A rule that gives a group, as the groups list names it. */
export interface GroupHolder {
  matchBy: MatchBy;
  /** Rules by client: the client. */
  client: { id: number; name: string } | null;
  /** Rules by client id or certificate: the id, pattern or fingerprint. */
  value: string;
}

/** Permission rows and holders the groups list shows per group; the rest is counted. */
export const GROUP_SUMMARY_ROWS = 3;

export interface GroupPage {
  groups: GroupSummary[];
  total: number;
  page: number;
  pageCount: number;
  query: string;
}

export const GROUPS_PAGE_SIZE = 50;
export const MAX_PERMISSIONS_PER_GROUP = 200;

const CONTROL_CHARACTERS = /\p{Cc}/u;

const groupNameSchema = z
  .string({ error: 'Enter a name.' })
  .trim()
  .min(1, 'Enter a name.')
  .max(100, 'Use at most 100 characters.')
  .refine((v) => !CONTROL_CHARACTERS.test(v), 'Remove control characters.');

const descriptionSchema = z
  .string()
  .trim()
  .max(500, 'Use at most 500 characters.')
  .refine((v) => !CONTROL_CHARACTERS.test(v), 'Remove control characters.')
  .optional()
  .default('');

export const permissionSchema = z.object({
  effect: z.enum(['allow', 'deny'], { error: 'Choose Allow or Deny.' }),
  action: z.enum(['publish', 'subscribe'], { error: 'Choose Publish or Subscribe.' }),
  // Not trimmed: spaces are legal in MQTT topics, and a stray one is flagged
  // only when it breaks the filter.
  topic: z.string({ error: 'Enter a topic filter.' }).superRefine((value, ctx) => {
    const problem = topicFilterProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }),
});

/** A group as the console and an import take it. */
export const groupSchema = z.object({
  name: groupNameSchema,
  description: descriptionSchema,
  permissions: z
    .array(permissionSchema)
    .max(MAX_PERMISSIONS_PER_GROUP, `A group holds at most ${MAX_PERMISSIONS_PER_GROUP} permission rows.`)
    .optional()
    .default([]),
});

/** `version`, when given, is the version the form was loaded with (lost-update check). */
export type GroupInput = { name?: unknown; description?: unknown; permissions?: unknown; version?: unknown };

const NAME_TAKEN = 'A group with this name already exists.';

const groupColumns = {
  id: groups.id,
  name: groups.name,
  description: groups.description,
  version: groups.version,
  createdAt: groups.createdAt,
  updatedAt: groups.updatedAt,
};

/** Creates a group with its permission rows; throws ValidationError or ConflictError (name taken). */
export async function createGroup(db: Database, input: GroupInput, by?: AuditActor): Promise<GroupWithPermissions> {
  const data = parseInput(groupSchema, input);
  try {
    return await db.transaction(async (tx) => {
      const [group] = await tx.insert(groups).values({ name: data.name, description: data.description }).returning(groupColumns);
      await insertPermissions(tx, group!.id, data.permissions);
      const created = { ...group!, permissions: data.permissions };
      await recordChange(tx, by, { kind: 'group.created', subject: created.name, details: { after: auditSnapshot(created) } });
      return created;
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw new ConflictError('name', NAME_TAKEN);
    throw error;
  }
}

/**
 * Replaces a group's name, description and permission rows. Null when the
 * group does not exist. Live sessions keep the permissions they connected with.
 */
export async function updateGroup(db: Database, id: number, input: GroupInput, by?: AuditActor): Promise<GroupWithPermissions | null> {
  const data = parseInput(groupSchema, input);
  const expectedVersion = parseVersion(input.version);
  let updated: GroupWithPermissions | null;
  try {
    updated = await db.transaction(async (tx) => {
      // Read under the row lock: the audit's "before" is what this update replaces.
      const before = await readGroup(tx, id, true);
      if (!before) return null;
      const [group] = await tx
        .update(groups)
        .set({ name: data.name, description: data.description, updatedAt: new Date(), version: sql`${groups.version} + 1` })
        .where(expectedVersion === undefined ? eq(groups.id, id) : and(eq(groups.id, id), eq(groups.version, expectedVersion)))
        .returning(groupColumns);
      if (!group) return null;
      await tx.delete(groupPermissions).where(eq(groupPermissions.groupId, id));
      await insertPermissions(tx, id, data.permissions);
      const after = { ...group, permissions: data.permissions };
      await recordChange(tx, by, { kind: 'group.updated', subject: after.name, details: { before: auditSnapshot(before), after: auditSnapshot(after) } });
      return after;
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw new ConflictError('name', NAME_TAKEN);
    throw error;
  }
  if (updated) return updated;
  const current = expectedVersion === undefined ? null : await getGroup(db, id);
  if (!current) return null;
  throw new ConflictError(
    'form',
    `Another operator changed this group while you were editing it (it is now “${current.name}” with ${current.permissions.length} permission rows). ` +
      'Nothing was saved: check the rows and save again to keep your version.',
  );
}

function parseVersion(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value > 0) return value;
  if (typeof value === 'string' && /^[0-9]{1,9}$/.test(value)) return Number(value);
  return undefined;
}

type Tx = Parameters<Parameters<Database['transaction']>[0]>[0];

async function insertPermissions(tx: Tx, groupId: number, permissions: GroupPermission[]) {
  if (permissions.length === 0) return;
  await tx.insert(groupPermissions).values(permissions.map((p, position) => ({ groupId, position, ...p })));
}

export async function getGroup(db: Database, id: number): Promise<GroupWithPermissions | null> {
  return readGroup(db, id, false);
}

/** What the audit trail keeps of a group: its fields and its rows, one line each. */
function auditSnapshot(group: GroupWithPermissions) {
  return {
    id: group.id,
    name: group.name,
    description: group.description,
    permissions: group.permissions.map((p) => `${p.effect} ${p.action} ${p.topic}`),
  };
}

async function readGroup(db: Database | Tx, id: number, lock: boolean): Promise<GroupWithPermissions | null> {
  const query = db.select(groupColumns).from(groups).where(eq(groups.id, id));
  const [group] = await (lock ? query.for('update') : query);
  if (!group) return null;
  const permissions = await db
    .select({ effect: groupPermissions.effect, action: groupPermissions.action, topic: groupPermissions.topic })
    .from(groupPermissions)
    .where(eq(groupPermissions.groupId, id))
    .orderBy(asc(groupPermissions.position));
  return { ...group, permissions };
}

/** One page of groups whose name contains `query` (case-insensitive), with row and rule counts. */
export async function listGroups(db: Database, options: { query?: string; page?: number } = {}): Promise<GroupPage> {
  const query = (options.query ?? '').trim();
  const where = query ? ilike(groups.name, likePattern(query)) : undefined;
  const [totals] = await db.select({ total: count() }).from(groups).where(where);
  const total = totals?.total ?? 0;
  const pageCount = Math.max(1, Math.ceil(total / GROUPS_PAGE_SIZE));
  const page = Math.min(Math.max(1, Math.trunc(options.page ?? 1) || 1), pageCount);
  const rows = await db
    .select({
      ...groupColumns,
      // Spelled out: inside a subquery Drizzle would leave the column names unqualified.
      permissionCount: sql<number>`(select count(*) from "group_permissions" p where p."group_id" = "groups"."id")`.mapWith(Number),
      ruleCount: sql<number>`(select count(*) from "group_rule_groups" r where r."group_id" = "groups"."id")`.mapWith(Number),
    })
    .from(groups)
    .where(where)
    .orderBy(asc(sql`lower(${groups.name})`), asc(groups.id))
    .limit(GROUPS_PAGE_SIZE)
    .offset((page - 1) * GROUPS_PAGE_SIZE);
  return { groups: await withTopicsAndHolders(db, rows), total, page, pageCount, query };
}

/**
 * The first few permission rows and rules of each group shown: two queries
 * for the page, each bounded by GROUP_SUMMARY_ROWS per group however large
 * the groups are.
 */
async function withTopicsAndHolders(db: Database, rows: GroupSummary[]): Promise<GroupSummary[]> {
  if (rows.length === 0) return rows;
  const ids = sql`${`{${rows.map((g) => g.id).join(',')}}`}::integer[]`;
  const topics = await db.execute<{ group_id: number; effect: Effect; action: Action; topic: string }>(sql`
    select group_id, effect, action, topic from (
      select p.group_id, p.effect, p.action, p.topic, p.position, row_number() over (partition by p.group_id order by p.position) as n
      from ${groupPermissions} as p where p.group_id = any(${ids})
    ) as t where n <= ${GROUP_SUMMARY_ROWS} order by group_id, position`);
  const holders = await db.execute<{ group_id: number; match_by: MatchBy; value: string; client_id: number | null; client_name: string | null }>(sql`
    select group_id, match_by, value, client_id, client_name from (
      select rg.group_id, r.match_by, r.value, c.id as client_id, c.name as client_name, r.position, r.id,
        row_number() over (partition by rg.group_id order by r.position, r.id) as n
      from ${schema.groupRuleGroups} as rg
      inner join ${schema.groupRules} as r on r.id = rg.rule_id
      left join ${schema.clients} as c on c.id = r.client_id
      where rg.group_id = any(${ids})
    ) as h where n <= ${GROUP_SUMMARY_ROWS} order by group_id, position, id`);
  const byGroup = <T extends { group_id: number }>(list: T[]) => {
    const map = new Map<number, T[]>();
    for (const row of list) map.set(Number(row.group_id), [...(map.get(Number(row.group_id)) ?? []), row]);
    return map;
  };
  const topicsOf = byGroup(rowsOf<{ group_id: number; effect: Effect; action: Action; topic: string }>(topics));
  const holdersOf = byGroup(rowsOf<{ group_id: number; match_by: MatchBy; value: string; client_id: number | null; client_name: string | null }>(holders));
  return rows.map((group) => ({
    ...group,
    topics: (topicsOf.get(group.id) ?? []).map((t) => ({ effect: t.effect, action: t.action, topic: t.topic })),
    holders: (holdersOf.get(group.id) ?? []).map((h) => ({
      matchBy: h.match_by,
      client: h.client_id === null ? null : { id: Number(h.client_id), name: h.client_name ?? '' },
      value: h.value,
    })),
  }));
}

/** Every group's id and name, by name: the choices on the group-rules page. */
export async function listGroupChoices(db: Database): Promise<Array<{ id: number; name: string }>> {
  return db.select({ id: groups.id, name: groups.name }).from(groups).orderBy(asc(sql`lower(${groups.name})`), asc(groups.id));
}

/** What deleting a group does to one rule. */
export interface RuleImpact {
  rule: string;
  /** The rule goes away (this was its only group), or only loses the group. */
  removed: boolean;
  remainingGroups: string[];
}

/** The rules that give this group, and what deleting the group would do to each. */
export async function groupDeletionImpact(db: Database | Tx, id: number): Promise<RuleImpact[]> {
  return impactOf(await loadRulesGiving(db, id), id);
}

function impactOf(rules: GroupRule[], groupId: number): RuleImpact[] {
  return rules.map((rule) => {
    const remainingGroups = rule.groups.filter((g) => g.id !== groupId).map((g) => g.name);
    return { rule: describeRule(rule), removed: remainingGroups.length === 0, remainingGroups };
  });
}

/**
 * Deletes a group. Rules that gave it lose it; a rule left with no group is
 * removed, since it would give nothing. What changed is recorded for the
 * group-rules page. Null when the group does not exist.
 */
export async function deleteGroup(db: Database, id: number, by?: AuditActor, expectedVersion?: number): Promise<{ group: Group; change: RuleChange | null } | null> {
  return db.transaction(async (tx) => {
    await lockGroupRules(tx); // serialises with a Save of the rules, which may be giving this group
    const before = await readGroup(tx, id, true);
    if (!before) return null;
    // Read under the row lock: a change that committed meanwhile is seen, not deleted over.
    if (expectedVersion !== undefined && before.version !== expectedVersion) throw new ConflictError('form', 'The group changed since that version was read: nothing was deleted.');
    const { permissions: _, ...existing } = before;
    const rulesGiving = await loadRulesGiving(tx, id);
    const impact = impactOf(rulesGiving, id);
    await tx.delete(groups).where(eq(groups.id, id));
    const emptied = rulesGiving.filter((rule) => rule.groups.every((g) => g.id === id)).map((rule) => rule.id);
    if (emptied.length > 0) await tx.delete(schema.groupRules).where(inArray(schema.groupRules.id, emptied));
    const change =
      impact.length === 0
        ? null
        : await recordRuleChange(
            tx,
            `Group “${existing.name}” was deleted.`,
            impact.map((i) =>
              i.removed
                ? `${i.rule} was removed: “${existing.name}” was its only group.`
                : `${i.rule} no longer gives “${existing.name}”; it still gives ${i.remainingGroups.map((n) => `“${n}”`).join(', ')}.`,
            ),
          );
    await recordChange(tx, by, {
      kind: 'group.deleted',
      subject: existing.name,
      details: { before: auditSnapshot(before), ...(impact.length ? { rulesChanged: change?.details ?? [] } : {}) },
    });
    return { group: existing, change };
  });
}
