import { createHash } from 'node:crypto';
import { and, asc, desc, eq, inArray, sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db';
import { isForeignKeyViolation, schema } from '../db';
import type { MatchBy } from './access/types';
import { normalizeFingerprint } from './certificates';
import { type AuditActor, recordChange } from './audit';
import { ConflictError, ValidationError, type FieldErrors } from './errors';
import { parseInput } from './validation';
import { z } from 'zod';

const { clients, groups, groupPermissions, groupRules, groupRuleGroups, groupRuleChanges } = schema;

type Tx = Parameters<Parameters<Database['transaction']>[0]>[0];
type Queryable = Database | Tx;

/** A group rule as the console shows it. */
export interface GroupRule {
  id: number;
  position: number;
  matchBy: MatchBy;
  clientRowId: number | null;
  clientName: string | null;
  clientUsername: string | null;
  /** The MQTT client id or pattern (rules by client id). */
  value: string;
  groups: Array<{ id: number; name: string }>;
}

export const MATCH_BY_LABELS: Record<MatchBy, string> = { client: 'Client', client_id: 'MQTT Client ID', certificate: 'Certificate fingerprint' };
export const MAX_GROUP_RULES = 1000;
export const MAX_CLIENT_ID_PATTERN_LENGTH = 256;

const CONTROL_CHARACTERS = /\p{Cc}/u;

/** "the rule for client “Front door” (front-door)", for messages about a rule. */
export function describeRule(rule: Pick<GroupRule, 'matchBy' | 'clientName' | 'clientUsername' | 'value'>): string {
  return `The rule for ${matchPhrase(rule)}`;
}

/** What a rule matches, in words: "client “Front door” (front-door)", "MQTT client ID pattern “sensor-*”". */
function matchPhrase(rule: Pick<GroupRule, 'matchBy' | 'clientName' | 'clientUsername' | 'value'>): string {
  if (rule.matchBy === 'client') return `client “${rule.clientName ?? '?'}” (${rule.clientUsername ?? '?'})`;
  if (rule.matchBy === 'certificate') return `certificate fingerprint ${rule.value}`;
  return `MQTT client ID ${rule.value.includes('*') ? 'pattern ' : ''}“${rule.value}”`;
}

/** What a rule matches as typed in its form: the client's username (`fallback` without one), else its value. */
export function ruleValueText(rule: Pick<GroupRule, 'matchBy' | 'clientUsername' | 'value'>, fallback = ''): string {
  return rule.matchBy === 'client' ? (rule.clientUsername ?? fallback) : rule.value;
}

/** How a rule matches, within a sentence: "client", "MQTT Client ID", "Certificate fingerprint". */
export function matchByWord(matchBy: MatchBy): string {
  return matchBy === 'client' ? 'client' : MATCH_BY_LABELS[matchBy];
}

/** A rule as the console lists it (its groups are attached after). */
const ruleColumns = {
  id: groupRules.id,
  position: groupRules.position,
  matchBy: groupRules.matchBy,
  clientRowId: groupRules.clientId,
  clientName: clients.name,
  clientUsername: clients.username,
  value: groupRules.value,
};

/** Every rule, in page order, with its client and groups. */
export async function listGroupRules(db: Queryable): Promise<GroupRule[]> {
  const rules = await db
    .select(ruleColumns)
    .from(groupRules)
    .leftJoin(clients, eq(clients.id, groupRules.clientId))
    .orderBy(asc(groupRules.position), asc(groupRules.id));
  return attachGroups(db, rules);
}

/** The rules that give group `groupId`, with all their groups. */
export async function loadRulesGiving(db: Queryable, groupId: number): Promise<GroupRule[]> {
  const rules = await db
    .select(ruleColumns)
    .from(groupRules)
    .innerJoin(groupRuleGroups, and(eq(groupRuleGroups.ruleId, groupRules.id), eq(groupRuleGroups.groupId, groupId)))
    .leftJoin(clients, eq(clients.id, groupRules.clientId))
    .orderBy(asc(groupRules.position), asc(groupRules.id));
  return attachGroups(db, rules);
}

/** The rules that name client `clientRowId`. */
export async function loadRulesNaming(db: Queryable, clientRowId: number): Promise<GroupRule[]> {
  const rules = await db
    .select(ruleColumns)
    .from(groupRules)
    .innerJoin(clients, eq(clients.id, groupRules.clientId))
    .where(eq(groupRules.clientId, clientRowId))
    .orderBy(asc(groupRules.position), asc(groupRules.id));
  return attachGroups(db, rules);
}

async function attachGroups(db: Queryable, rules: Array<Omit<GroupRule, 'groups'>>): Promise<GroupRule[]> {
  if (rules.length === 0) return [];
  const links = await db
    .select({ ruleId: groupRuleGroups.ruleId, id: groups.id, name: groups.name })
    .from(groupRuleGroups)
    .innerJoin(groups, eq(groups.id, groupRuleGroups.groupId))
    .where(inArray(groupRuleGroups.ruleId, rules.map((r) => r.id)))
    .orderBy(asc(sql`lower(${groups.name})`), asc(groups.id));
  const byRule = new Map<number, Array<{ id: number; name: string }>>();
  for (const link of links) {
    const list = byRule.get(link.ruleId) ?? [];
    list.push({ id: link.id, name: link.name });
    byRule.set(link.ruleId, list);
  }
  return rules.map((rule) => ({ ...rule, groups: byRule.get(rule.id) ?? [] }));
}

/**
 * A fingerprint of the rules as saved: a Save made from an older page is
 * refused instead of silently undoing someone else's changes.
 */
export function rulesRevision(rules: readonly GroupRule[]): string {
  return fingerprint(rules.map((r) => [r.matchBy, r.clientRowId, r.value, r.groups.map((g) => g.id).sort((a, b) => a - b)]));
}

/** A short hash of `canonical` as JSON: the revisions a form carries. */
function fingerprint(canonical: unknown): string {
  return createHash('sha256').update(JSON.stringify(canonical)).digest('base64url').slice(0, 22);
}

/** One row of the group-rules form, as typed. */
export interface RuleInput {
  matchBy?: unknown;
  /** Rules by client: the client's username. Rules by client id: the id or pattern. */
  value?: unknown;
  /** Group ids, as strings from the form. */
  groups?: unknown;
}

/**
 * An arbitrary constant: one Save of the group rules, or one deletion of a
 * group or client they may use, at a time.
 */
export const RULES_LOCK_KEY = 7_231_004_118;

/**
 * Takes the group-rules lock until `tx` ends. Whatever changes the rules or
 * deletes a group or client they use takes it first (before any row lock),
 * so a Save never validates a group or client another transaction is
 * deleting.
 */
export async function lockGroupRules(tx: Tx): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(${RULES_LOCK_KEY})`);
}

const DELETED_MEANWHILE =
  'A group or client used by these rules was deleted meanwhile, so nothing was saved. Your rows are shown below: Save again to see which need changing, or reload the page.';

/**
 * Replaces every rule with `inputs`, in that order: all of them or none. A bad
 * row throws ValidationError with messages keyed `rules.<index>.<field>`;
 * rules changed since `expectedRevision` was read, or a group or client they
 * use deleted during the Save, throw ConflictError.
 */
export async function replaceGroupRules(
  db: Database,
  inputs: readonly RuleInput[],
  expectedRevision: string | undefined,
  by?: AuditActor,
): Promise<GroupRule[]> {
  if (inputs.length > MAX_GROUP_RULES) {
    throw new ValidationError({ form: `There can be at most ${MAX_GROUP_RULES} group rules.` });
  }
  return withRulesLock(db, DELETED_MEANWHILE, async (tx) => {
    const before = await listGroupRules(tx);
    if (expectedRevision !== undefined && rulesRevision(before) !== expectedRevision) {
      throw new ConflictError(
        'form',
        'Someone else changed the group rules since this page was loaded. Your rows are shown below; Save again to replace their changes, or reload the page to see them.',
      );
    }
    const rows = await checkRuleInputs(tx, inputs, (index, field) => `rules.${index}.${field}`);

    await tx.delete(groupRules);
    for (const [position, row] of rows.entries()) {
      const [saved] = await tx
        .insert(groupRules)
        .values({ position, matchBy: row.matchBy, clientId: row.clientId, value: row.value })
        .returning({ id: groupRules.id });
      await tx.insert(groupRuleGroups).values(row.groupIds.map((groupId) => ({ ruleId: saved!.id, groupId })));
    }
    const after = await listGroupRules(tx);
    await recordChange(tx, by, {
      kind: 'group_rules.saved',
      subject: 'group rules',
      details: { before: before.map(auditSnapshot), after: after.map(auditSnapshot) },
    });
    return after;
  });
}

/**
 * Runs `change` in a transaction holding the rules lock; a group or client
 * deleted under it is a ConflictError saying `deletedMeanwhile`, not a crash.
 */
async function withRulesLock<T>(db: Database, deletedMeanwhile: string, change: (tx: Tx) => Promise<T>): Promise<T> {
  try {
    return await db.transaction(async (tx) => {
      await lockGroupRules(tx);
      return change(tx);
    });
  } catch (error) {
    // Deletions take the rules lock too; this only guards a path that does not.
    if (isForeignKeyViolation(error)) throw new ConflictError('form', deletedMeanwhile);
    throw error;
  }
}

/** A rule as it will be stored: the client resolved, the fingerprint normalised. */
interface CheckedRule {
  matchBy: MatchBy;
  clientId: number | null;
  value: string;
  groupIds: number[];
}

/**
 * Checks rows as typed against the clients and groups that exist now (inside
 * the rules lock); throws ValidationError with messages keyed by `at(index, field)`.
 */
async function checkRuleInputs(tx: Tx, inputs: readonly RuleInput[], at: (index: number, field: 'matchBy' | 'value' | 'groups') => string): Promise<CheckedRule[]> {
  const usernames = inputs.flatMap((input) => (input.matchBy === 'client' && typeof input.value === 'string' ? [input.value.trim()] : []));
  const clientsByUsername = new Map<string, number>();
  if (usernames.length > 0) {
    const found = await tx.select({ id: clients.id, username: clients.username }).from(clients).where(inArray(clients.username, usernames));
    for (const c of found) clientsByUsername.set(c.username, c.id);
  }
  const existingGroups = new Set((await tx.select({ id: groups.id }).from(groups)).map((g) => g.id));

  const errors: FieldErrors = {};
  const rows: CheckedRule[] = [];
  inputs.forEach((input, index) => {
    const value = typeof input.value === 'string' ? input.value : '';
    let matchBy: MatchBy | undefined;
    let clientId: number | null = null;
    let storedValue = '';
    if (input.matchBy === 'client') {
      matchBy = 'client';
      const username = value.trim();
      if (!username) errors[at(index, 'value')] = 'Enter the username of a client.';
      else if (!clientsByUsername.has(username)) errors[at(index, 'value')] = 'No client has this username.';
      else clientId = clientsByUsername.get(username)!;
    } else if (input.matchBy === 'certificate') {
      matchBy = 'certificate';
      const fingerprint = normalizeFingerprint(value);
      if (!fingerprint) errors[at(index, 'value')] = 'Enter a SHA-256 certificate fingerprint: 64 hexadecimal digits, colons allowed.';
      storedValue = fingerprint ?? value;
    } else if (input.matchBy === 'client_id') {
      matchBy = 'client_id';
      const problem = clientIdPatternProblem(value);
      if (problem) errors[at(index, 'value')] = problem;
      storedValue = value;
    } else {
      errors[at(index, 'matchBy')] = 'Choose Client, MQTT Client ID or Certificate fingerprint.';
    }

    const rawGroups = Array.isArray(input.groups) ? input.groups : input.groups === undefined ? [] : [input.groups];
    const groupIds = [...new Set(rawGroups.map((g) => (typeof g === 'string' && /^[1-9][0-9]{0,9}$/.test(g) ? Number(g) : NaN)))];
    if (groupIds.length === 0) errors[at(index, 'groups')] = 'Choose at least one group.';
    else if (groupIds.some((id) => !existingGroups.has(id))) errors[at(index, 'groups')] = 'A chosen group no longer exists; choose again.';

    if (matchBy) rows.push({ matchBy, clientId, value: storedValue, groupIds });
  });
  if (Object.keys(errors).length > 0) throw new ValidationError(errors);
  return rows;
}

/**
 * A fingerprint of one rule as saved (its id, how it matches, its groups): an
 * edit or a deletion made from an older page is refused instead of silently
 * undoing someone else's change to that rule.
 */
export function ruleRevision(rule: GroupRule): string {
  return fingerprint([rule.id, rule.matchBy, rule.clientRowId, rule.value, rule.groups.map((g) => g.id).sort((a, b) => a - b)]);
}

/** One rule with its client and groups; null when there is none with this id. */
export async function getGroupRule(db: Queryable, id: number): Promise<GroupRule | null> {
  const rules = await db.select(ruleColumns).from(groupRules).leftJoin(clients, eq(clients.id, groupRules.clientId)).where(eq(groupRules.id, id));
  const [rule] = await attachGroups(db, rules);
  return rule ?? null;
}

/** Bounds on one rule's fields as a form sends them, before they are checked against clients and groups. */
const ruleFormSchema = z.object({
  matchBy: z.string().max(32).optional(),
  value: z.string().max(4096, 'This is far too long for a username, client ID or fingerprint.').optional(),
  groups: z.array(z.string().max(16)).max(MAX_GROUP_RULES, 'Choose fewer groups.').optional(),
});

/** Runs `change` under the rules lock, as one rule's add, edit or deletion. */
function changeOneRule<T>(db: Database, change: (tx: Tx) => Promise<T>): Promise<T> {
  return withRulesLock(db, ONE_RULE_DELETED_MEANWHILE, change);
}

const ONE_RULE_DELETED_MEANWHILE = 'A group or client this rule uses was deleted meanwhile, so nothing was saved. Check the rule and save again.';

/** "someone else" changed or deleted a rule: what the operator is told, and what it is now. */
export class RuleChangedError extends ConflictError {
  constructor(
    message: string,
    /** The rule as it is now; null when it was deleted. */
    readonly current: GroupRule | null,
  ) {
    super('form', message);
  }
}

async function replaceRuleGroups(tx: Tx, ruleId: number, groupIds: readonly number[]): Promise<void> {
  await tx.delete(groupRuleGroups).where(eq(groupRuleGroups.ruleId, ruleId));
  await tx.insert(groupRuleGroups).values(groupIds.map((groupId) => ({ ruleId, groupId })));
}

/**
 * Adds one rule after the others. A bad field throws ValidationError keyed
 * `matchBy`, `value` or `groups`. Audited as `group_rule.created`; like any
 * change to the rule tables, the access model of every node hears of it
 * through the change feed.
 */
export async function addGroupRule(db: Database, input: RuleInput, by?: AuditActor): Promise<GroupRule> {
  const parsed = parseInput(ruleFormSchema, input);
  return changeOneRule(db, async (tx) => {
    const [checked] = await checkRuleInputs(tx, [parsed], (_, field) => field);
    const [{ count, last }] = (await tx
      .select({ count: sql<number>`count(*)::int`, last: sql<number | null>`max(${groupRules.position})` })
      .from(groupRules)) as [{ count: number; last: number | null }];
    if (count >= MAX_GROUP_RULES) throw new ValidationError({ form: `There can be at most ${MAX_GROUP_RULES} group rules: delete one first.` });
    const [saved] = await tx
      .insert(groupRules)
      .values({ position: (last ?? -1) + 1, matchBy: checked!.matchBy, clientId: checked!.clientId, value: checked!.value })
      .returning({ id: groupRules.id });
    await tx.insert(groupRuleGroups).values(checked!.groupIds.map((groupId) => ({ ruleId: saved!.id, groupId })));
    const rule = (await getGroupRule(tx, saved!.id))!;
    await recordChange(tx, by, { kind: 'group_rule.created', subject: ruleSubject(rule), details: { after: auditSnapshot(rule) } });
    return rule;
  });
}

/**
 * Changes rule `id` in place (it keeps its position). `expectedRevision` is
 * the `ruleRevision` the operator's form was made from: when the rule changed
 * since, or was deleted, RuleChangedError says so and nothing is written.
 * Audited as `group_rule.updated`, before and after; nothing is written when
 * nothing changed.
 */
export async function updateGroupRule(db: Database, id: number, input: RuleInput, expectedRevision: string | undefined, by?: AuditActor): Promise<GroupRule> {
  const parsed = parseInput(ruleFormSchema, input);
  return changeOneRule(db, async (tx) => {
    const before = await getGroupRule(tx, id);
    if (!before) throw new RuleChangedError('Someone else deleted this rule meanwhile, so your change was not saved. Add it again as a new rule if it is still needed.', null);
    if (expectedRevision !== undefined && ruleRevision(before) !== expectedRevision) {
      throw new RuleChangedError(
        `Someone else changed this rule since you opened it: it now ${describeMatch(before)}. Your version is kept below: Save again to replace theirs, or Cancel to keep it.`,
        before,
      );
    }
    const [checked] = await checkRuleInputs(tx, [parsed], (_, field) => field);
    const same = checked!.matchBy === before.matchBy && checked!.clientId === before.clientRowId && checked!.value === before.value && givesExactly(before, checked!.groupIds);
    if (same) return before;
    await tx.update(groupRules).set({ matchBy: checked!.matchBy, clientId: checked!.clientId, value: checked!.value }).where(eq(groupRules.id, id));
    await replaceRuleGroups(tx, id, checked!.groupIds);
    const after = (await getGroupRule(tx, id))!;
    await recordChange(tx, by, { kind: 'group_rule.updated', subject: ruleSubject(after), details: { before: auditSnapshot(before), after: auditSnapshot(after) } });
    return after;
  });
}

/**
 * Deletes rule `id`; null when there is none. When `expectedRevision` is given
 * and the rule changed since, RuleChangedError (holding the rule as it is now)
 * and nothing is deleted. Audited as `group_rule.deleted`.
 */
export async function deleteGroupRule(db: Database, id: number, expectedRevision: string | undefined, by?: AuditActor): Promise<GroupRule | null> {
  return changeOneRule(db, async (tx) => {
    const before = await getGroupRule(tx, id);
    if (!before) return null;
    if (expectedRevision !== undefined && ruleRevision(before) !== expectedRevision) {
      throw new RuleChangedError(`Someone else changed this rule since the page was loaded, so it was not deleted: it now ${describeMatch(before)}. Delete it again if it should still go.`, before);
    }
    await tx.delete(groupRules).where(eq(groupRules.id, id));
    await recordChange(tx, by, { kind: 'group_rule.deleted', subject: ruleSubject(before), details: { before: auditSnapshot(before) } });
    return before;
  });
}

/** A rule in a few words, for the audit trail's subject: "MQTT client ID sensor-*". */
function ruleSubject(rule: GroupRule): string {
  return `${matchByWord(rule.matchBy)} ${ruleValueText(rule, '?')}`;
}

/** "gives “Sensors” to MQTT client IDs matching “sensor-*”", for messages about a rule's current state. */
function describeMatch(rule: GroupRule): string {
  const groupNames = rule.groups.map((g) => `“${g.name}”`).join(', ') || 'no group';
  return `gives ${groupNames} to ${matchPhrase(rule)}`;
}

/** What the audit trail keeps of a rule: how it matches, and the names of its groups. */
function auditSnapshot(rule: GroupRule) {
  return {
    matchBy: MATCH_BY_LABELS[rule.matchBy],
    value: ruleValueText(rule),
    groups: rule.groups.map((g) => g.name),
  };
}

/** Whether `rule` gives exactly the groups `groupIds` (without repeats). */
function givesExactly(rule: GroupRule, groupIds: readonly number[]): boolean {
  return rule.groups.length === groupIds.length && rule.groups.every((g) => groupIds.includes(g.id));
}

/** Why `value` is not a usable MQTT client id or pattern, or null. */
export function clientIdPatternProblem(value: string): string | null {
  if (value.length === 0) return 'Enter an MQTT client ID, or a pattern with *.';
  if (value.length > MAX_CLIENT_ID_PATTERN_LENGTH) return `Use at most ${MAX_CLIENT_ID_PATTERN_LENGTH} characters.`;
  if (CONTROL_CHARACTERS.test(value)) return 'Remove control characters.';
  return null;
}

/** A record of what a deletion did to the rules. */
export interface RuleChange {
  id: number;
  summary: string;
  details: string[];
  createdAt: Date;
}

export async function recordRuleChange(db: Queryable, summary: string, details: string[]): Promise<RuleChange> {
  const [row] = await db.insert(groupRuleChanges).values({ summary, details }).returning();
  return row!;
}

/** The most recent changes first. */
export async function listRuleChanges(db: Queryable, limit = 20): Promise<RuleChange[]> {
  return db.select().from(groupRuleChanges).orderBy(desc(groupRuleChanges.createdAt), desc(groupRuleChanges.id)).limit(limit);
}

export async function getRuleChange(db: Queryable, id: number): Promise<RuleChange | null> {
  const [row] = await db.select().from(groupRuleChanges).where(eq(groupRuleChanges.id, id));
  return row ?? null;
}

/** Forgets a change record; true when there was one. */
export async function dismissRuleChange(db: Queryable, id: number): Promise<boolean> {
  const rows = await db.delete(groupRuleChanges).where(eq(groupRuleChanges.id, id)).returning({ id: groupRuleChanges.id });
  return rows.length > 0;
}

/** What the clients table shows about each client's groups. */
export interface ClientGroupsOverview {
  /** Client row id → names of the groups rules by client give it. */
  groupsByClient: Map<number, string[]>;
  /** Whether any rule by client id exists (it may give groups at CONNECT). */
  hasClientIdRules: boolean;
}

/**
 * The names of the groups that rules by client give each row of `outer` (the
 * name of a table or subquery of the enclosing query that has the clients'
 * `id`), in order; null when none. A column of the clients list's own query,
 * so the Groups column costs no query of its own. Written with aliases: in a
 * single-table select drizzle leaves column names unqualified, which would
 * let `id` mean a column of the subquery.
 */
export function groupNamesOf(outer: string): SQL<string[] | null> {
  return sql<string[] | null>`(select array_agg(distinct g.name order by g.name)
    from ${groupRules} as r
    inner join ${groupRuleGroups} as rg on rg.rule_id = r.id
    inner join ${groups} as g on g.id = rg.group_id
    where r.client_id = ${sql.identifier(outer)}.id)`;
}

/** Whether any rule by client id exists: a column evaluated once per query. */
export function anyClientIdRule(): SQL<boolean> {
  return sql<boolean>`exists (select 1 from ${groupRules} as r where r.match_by = 'client_id')`;
}

/** The overview from rows that carry `groupNamesOf` and `anyClientIdRule` columns (at least one row). */
export function groupsOverviewOf(rows: ReadonlyArray<{ id: number; groupNames: string[] | null; anyClientIdRule: boolean }>): ClientGroupsOverview {
  const groupsByClient = new Map<number, string[]>();
  for (const row of rows) if (row.groupNames?.length) groupsByClient.set(row.id, row.groupNames);
  return { groupsByClient, hasClientIdRules: rows[0]?.anyClientIdRule ?? false };
}

/** The Groups column for some clients: one query, whatever their number. */
export async function clientGroupsOverview(db: Queryable, clientRowIds: readonly number[]): Promise<ClientGroupsOverview> {
  const ids = clientRowIds.filter((id) => Number.isSafeInteger(id));
  const rows = ids.length
    ? await db
        .select({ id: clients.id, groupNames: groupNamesOf('clients'), anyClientIdRule: anyClientIdRule() })
        .from(clients)
        // One array parameter: PGlite spends more on fifty parameters than on the query.
        .where(sql`${clients.id} = any(${`{${ids.join(',')}}`}::integer[])`)
    : [];
  if (rows.length > 0) return groupsOverviewOf(rows);
  const [any] = await db.select({ id: groupRules.id }).from(groupRules).where(eq(groupRules.matchBy, 'client_id')).limit(1);
  return { groupsByClient: new Map(), hasClientIdRules: any !== undefined };
}

/** The groups rules by client give client `clientRowId`, by name. */
export async function groupsNaming(db: Queryable, clientRowId: number): Promise<Array<{ id: number; name: string }>> {
  const rules = await loadRulesNaming(db, clientRowId);
  const byId = new Map(rules.flatMap((rule) => rule.groups).map((group) => [group.id, group]));
  return [...byId.values()].sort((a, b) => a.name.localeCompare(b.name) || a.id - b.id);
}

/** Group ids from a form (strings), or the message to show on `groups`. */
export function parseGroupChoice(values: readonly unknown[]): number[] | string {
  if (values.length > MAX_GROUP_RULES) return 'Choose fewer groups.';
  const ids = [...new Set(values.map((v) => (typeof v === 'string' && /^[1-9][0-9]{0,9}$/.test(v) ? Number(v) : NaN)))];
  return ids.some((id) => !Number.isSafeInteger(id) || id > 2_147_483_647) ? 'Choose groups from the list.' : ids;
}

/**
 * Makes the rules by client that name client `clientRowId` give exactly
 * `groupIds`, inside `tx` (the client's own create or update, which must
 * have taken the rules lock first): the first such rule keeps its place and
 * gets these groups, the others are removed, and with none a rule is added
 * at the end; no group removes them all. Nothing is written when the rules
 * already give exactly these groups through one rule. A chosen group that
 * no longer exists throws ValidationError on `groups`. Recorded as a save of
 * the group rules, so the Group rules page refuses a Save made from before it.
 */
export async function setClientGroups(tx: Tx, clientRowId: number, groupIds: readonly number[], by: AuditActor | undefined): Promise<boolean> {
  const wanted = [...new Set(groupIds)];
  if (wanted.length) {
    const found = await tx.select({ id: groups.id }).from(groups).where(inArray(groups.id, wanted));
    if (found.length !== wanted.length) throw new ValidationError({ groups: 'A chosen group no longer exists; choose again.' });
  }
  const before = await listGroupRules(tx);
  const naming = before.filter((rule) => rule.matchBy === 'client' && rule.clientRowId === clientRowId);
  if ((naming.length === 0 && wanted.length === 0) || (naming.length === 1 && givesExactly(naming[0]!, wanted))) return false;
  const [kept, ...others] = naming;
  if (others.length) await tx.delete(groupRules).where(inArray(groupRules.id, others.map((rule) => rule.id)));
  if (kept && wanted.length === 0) {
    await tx.delete(groupRules).where(eq(groupRules.id, kept.id));
  } else if (kept) {
    await replaceRuleGroups(tx, kept.id, wanted);
  } else {
    if (before.length >= MAX_GROUP_RULES) throw new ValidationError({ groups: `There can be at most ${MAX_GROUP_RULES} group rules: remove one on the Group rules page first.` });
    const position = before.reduce((max, rule) => Math.max(max, rule.position), -1) + 1;
    const [saved] = await tx.insert(groupRules).values({ position, matchBy: 'client', clientId: clientRowId, value: '' }).returning({ id: groupRules.id });
    await tx.insert(groupRuleGroups).values(wanted.map((groupId) => ({ ruleId: saved!.id, groupId })));
  }
  const after = await listGroupRules(tx);
  await recordChange(tx, by, {
    kind: 'group_rules.saved',
    subject: 'group rules',
    details: { before: before.map(auditSnapshot), after: after.map(auditSnapshot), note: 'groups chosen on the client’s form' },
  });
  return true;
}
