import { asc, eq, inArray, sql } from 'drizzle-orm';
import { type Database, isUniqueViolation, schema } from '../../db';
import { type AuditActor, recordChange } from '../audit';
import { normalizeFingerprint } from '../certificates';
import { clientNameSchema, passwordSchema, usernameSchema } from '../clients';
import { ValidationError } from '../errors';
import { groupSchema } from '../groups';
import { clientIdPatternProblem, listGroupRules, lockGroupRules, MAX_GROUP_RULES, replaceGroupRules } from '../groupRules';
import { hashPassword } from '../password';
import { createSemaphore } from '../passwordGate';
import type { ImportPlan, PlannedClient, PlannedGroup, PlannedRule } from './parse';

const { clients, groups, groupPermissions } = schema;

export type ImportMode = 'create-only' | 'upsert' | 'sync';
export type RowAction = 'create' | 'update' | 'unchanged' | 'conflict' | 'error' | 'delete';

export interface RowReport {
  line: number;
  kind: 'client' | 'group' | 'rule';
  /** The username, the group name, or the rule's target. */
  key: string;
  action: RowAction;
  message?: string;
}

export interface ImportReport {
  mode: ImportMode;
  dryRun: boolean;
  /** True once written (never for a dry run, nor for a refused all-or-nothing import). */
  applied: boolean;
  counts: Record<RowAction, number>;
  rows: RowReport[];
  notes: string[];
}

export interface ImportOptions {
  mode: ImportMode;
  dryRun: boolean;
  /** Sync deletes what the file does not name: it must be confirmed. */
  confirmSync?: boolean;
  /** Default true: any row in error or conflict and nothing is written. False: those rows are skipped. */
  allOrNothing?: boolean;
}

/** Rows reported one by one at most (the counts cover them all). */
export const MAX_REPORTED_ROWS = 10_000;
/** Characters of a row's key a report shows. */
const MAX_REPORTED_KEY = 200;

type ExistingClient = { id: number; name: string; username: string; authType: string; passwordHash: string; certFingerprint: string | null };
type Tx = Parameters<Parameters<Database['transaction']>[0]>[0];

function firstProblem(result: { success: boolean; error?: { issues: Array<{ message: string }> } }): string | null {
  return result.success ? null : (result.error?.issues[0]?.message ?? 'Not valid.');
}

/** A client row of the file, checked; its fingerprint normalized. */
function checkClient(client: PlannedClient): string | null {
  const problem =
    firstProblem(clientNameSchema.safeParse(client.name)) ??
    firstProblem(usernameSchema.safeParse(client.username)) ??
    (client.password !== undefined ? firstProblem(passwordSchema.safeParse(client.password)) : null);
  if (problem) return problem;
  if (client.authType !== 'password') {
    const fingerprint = client.certFingerprint ? normalizeFingerprint(client.certFingerprint) : null;
    if (!fingerprint) return 'A certificate client needs certFingerprint (SHA-256, 64 hexadecimal digits).';
    client.certFingerprint = fingerprint;
  } else {
    client.certFingerprint = null;
  }
  if (client.authType !== 'certificate' && client.password === undefined && client.passwordHash === undefined) return 'No password or passwordHash.';
  if (client.authType === 'certificate') {
    client.password = undefined;
    client.passwordHash = '';
  }
  return null;
}

/** A group of the file, checked as the console checks one; its name and description as they are saved. */
function checkGroup(group: PlannedGroup): string | null {
  const parsed = groupSchema.safeParse({ name: group.name, description: group.description, permissions: group.permissions });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const [field, row] = issue.path;
    const where = field === 'permissions' && typeof row === 'number' ? `Permission row ${row + 1}: ` : field === 'description' ? 'Description: ' : '';
    return `${where}${issue.message}`;
  }
  group.name = parsed.data.name;
  group.description = parsed.data.description;
  return null;
}

function clientChanged(existing: ExistingClient, client: PlannedClient): boolean {
  return (
    existing.name !== client.name ||
    existing.authType !== client.authType ||
    (existing.certFingerprint ?? null) !== (client.certFingerprint ?? null) ||
    client.password !== undefined ||
    (client.passwordHash !== undefined && client.passwordHash !== existing.passwordHash)
  );
}

interface Decided {
  report: ImportReport;
  clientsToCreate: PlannedClient[];
  clientsToUpdate: Array<PlannedClient & { id: number }>;
  clientIdsToDelete: number[];
  groupsToCreate: PlannedGroup[];
  groupsToUpdate: Array<PlannedGroup & { id: number }>;
  groupIdsToDelete: number[];
  rules: PlannedRule[] | null;
}

/** Compares the plan with what is stored, row by row, writing nothing. */
async function decide(db: Database | Tx, plan: ImportPlan, options: ImportOptions): Promise<Decided> {
  const counts: Record<RowAction, number> = { create: 0, update: 0, unchanged: 0, conflict: 0, error: 0, delete: 0 };
  const rows: RowReport[] = [];
  const report = (row: RowReport) => {
    counts[row.action]++;
    // A key is what the file said (a username, a group name), before any check: cut to what a report shows.
    if (rows.length < MAX_REPORTED_ROWS) rows.push(row.key.length > MAX_REPORTED_KEY ? { ...row, key: `${row.key.slice(0, MAX_REPORTED_KEY - 1)}…` } : row);
  };
  for (const error of plan.errors) report({ line: error.line, kind: 'client', key: error.key, action: 'error', message: error.message });

  const existing = (await db
    .select({ id: clients.id, name: clients.name, username: clients.username, authType: clients.authType, passwordHash: clients.passwordHash, certFingerprint: clients.certFingerprint })
    .from(clients)) as ExistingClient[];
  const byUsername = new Map(existing.map((c) => [c.username, c]));
  const byFingerprint = new Map(existing.flatMap((c) => (c.certFingerprint ? [[c.certFingerprint, c] as const] : [])));
  const seen = new Set<string>();
  const seenFingerprints = new Set<string>();
  const decided: Decided = {
    report: { mode: options.mode, dryRun: options.dryRun, applied: false, counts, rows, notes: plan.notes },
    clientsToCreate: [],
    clientsToUpdate: [],
    clientIdsToDelete: [],
    groupsToCreate: [],
    groupsToUpdate: [],
    groupIdsToDelete: [],
    rules: plan.rules,
  };

  for (const [index, client] of plan.clients.entries()) {
    if (index % ROWS_PER_TURN === ROWS_PER_TURN - 1) await nextTurn();
    const row = (action: RowAction, message?: string) => report({ line: client.line, kind: 'client', key: client.username, action, message });
    const problem = checkClient(client);
    if (problem) {
      row('error', problem);
      continue;
    }
    if (seen.has(client.username)) {
      row('error', 'This username appears twice in the file.');
      continue;
    }
    seen.add(client.username);
    if (client.certFingerprint) {
      const holder = byFingerprint.get(client.certFingerprint);
      if (seenFingerprints.has(client.certFingerprint) || (holder && holder.username !== client.username)) {
        row('conflict', 'Another client already uses this certificate fingerprint.');
        continue;
      }
      seenFingerprints.add(client.certFingerprint);
    }
    const current = byUsername.get(client.username);
    if (!current) {
      row('create');
      decided.clientsToCreate.push(client);
    } else if (!clientChanged(current, client)) {
      row('unchanged');
    } else if (options.mode === 'create-only') {
      row('conflict', 'A client with this username exists (create-only mode).');
    } else {
      row('update', client.password !== undefined ? 'password set' : undefined);
      decided.clientsToUpdate.push({ ...client, id: current.id });
    }
  }
  if (options.mode === 'sync') {
    for (const current of existing) {
      if (seen.has(current.username)) continue;
      report({ line: 0, kind: 'client', key: current.username, action: 'delete' });
      decided.clientIdsToDelete.push(current.id);
    }
  }

  const existingGroups = await db.select({ id: groups.id, name: groups.name, description: groups.description }).from(groups);
  const groupNames = new Set(existingGroups.map((g) => g.name));
  if (plan.groups) {
    const permissionsOf = new Map<number, string>();
    const stored = await db
      .select({ groupId: groupPermissions.groupId, effect: groupPermissions.effect, action: groupPermissions.action, topic: groupPermissions.topic })
      .from(groupPermissions)
      .orderBy(asc(groupPermissions.groupId), asc(groupPermissions.position));
    for (const p of stored) permissionsOf.set(p.groupId, `${permissionsOf.get(p.groupId) ?? ''}${JSON.stringify([p.effect, p.action, p.topic])}`);
    const byName = new Map(existingGroups.map((g) => [g.name, g]));
    const seenGroups = new Set<string>();
    for (const [index, group] of plan.groups.entries()) {
      if (index % ROWS_PER_TURN === ROWS_PER_TURN - 1) await nextTurn();
      const row = (action: RowAction, message?: string) => report({ line: group.line, kind: 'group', key: group.name, action, message });
      const problem = checkGroup(group);
      if (problem) {
        row('error', problem);
        continue;
      }
      if (seenGroups.has(group.name)) {
        row('error', 'This group appears twice in the file.');
        continue;
      }
      seenGroups.add(group.name);
      groupNames.add(group.name);
      const current = byName.get(group.name);
      const rowsText = group.permissions.map((p) => JSON.stringify([p.effect, p.action, p.topic])).join('');
      if (!current) {
        row('create');
        decided.groupsToCreate.push(group);
      } else if (current.description === group.description && (permissionsOf.get(current.id) ?? '') === rowsText) {
        row('unchanged');
      } else if (options.mode === 'create-only') {
        row('conflict', 'A group with this name exists (create-only mode).');
      } else {
        row('update');
        decided.groupsToUpdate.push({ ...group, id: current.id });
      }
    }
    if (options.mode === 'sync') {
      for (const current of existingGroups) {
        if (seenGroups.has(current.name)) continue;
        report({ line: 0, kind: 'group', key: current.name, action: 'delete' });
        decided.groupIdsToDelete.push(current.id);
        groupNames.delete(current.name);
      }
    }
  }

  if (plan.rules) {
    if (plan.rules.length > MAX_GROUP_RULES) report({ line: 0, kind: 'rule', key: 'rules', action: 'error', message: `There can be at most ${MAX_GROUP_RULES} group rules.` });
    const usernames = new Set([...seen, ...(options.mode === 'sync' ? [] : existing.map((c) => c.username))]);
    for (const rule of plan.rules) {
      const key = `${rule.matchBy} ${rule.value}`;
      const row = (action: RowAction, message?: string) => report({ line: rule.line, kind: 'rule', key, action, message });
      if (rule.matchBy === 'client' && !usernames.has(rule.value)) row('error', 'No client has this username (in the file or stored).');
      else if (rule.matchBy === 'client_id' && clientIdPatternProblem(rule.value)) row('error', clientIdPatternProblem(rule.value)!);
      else if (rule.matchBy === 'certificate' && !normalizeFingerprint(rule.value)) row('error', 'Not a SHA-256 fingerprint.');
      else if (!['client', 'client_id', 'certificate'].includes(rule.matchBy)) row('error', 'matchBy is client, client_id or certificate.');
      else if (rule.groups.length === 0) row('error', 'A rule gives at least one group.');
      else if (rule.groups.some((g) => !groupNames.has(g))) {
        const missing = rule.groups.filter((g) => !groupNames.has(g));
        row('error', `No group is named ${missing.slice(0, 5).map((g) => `“${g.slice(0, 100)}”`).join(', ')}${missing.length > 5 ? ` (and ${missing.length - 5} more)` : ''}.`);
      }
      else row('update', options.mode === 'sync' ? 'rules replaced by the file’s' : 'replaces the rules for the same target');
    }
  }
  return decided;
}

/** Runs `task` over `items`, at most `limit` at once (Argon2id hashes on the thread pool). */
async function mapLimited<T, R>(items: T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const slots = createSemaphore(limit);
  return Promise.all(items.map((item) => slots.run(() => task(item))));
}

const BATCH = 1000;

/** Rows checked between two turns of the event loop. */
const ROWS_PER_TURN = 2000;

/**
 * Lets the event loop run (sockets, timers) before going on. Needed even
 * between database statements: the embedded database answers in microtasks,
 * so a loop of awaited statements never reaches the event loop by itself
 * (measured: a 100,000-client import held every device's packets for 15 s).
 */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

async function insertClients(tx: Tx, list: Array<PlannedClient & { passwordHash: string }>): Promise<void> {
  for (let start = 0; start < list.length; start += BATCH) {
    await nextTurn();
    const batch = list.slice(start, start + BATCH).map((c) => ({
      name: c.name,
      username: c.username,
      authType: c.authType,
      passwordHash: c.passwordHash,
      certFingerprint: c.certFingerprint ?? null,
    }));
    // One JSON parameter per batch: far cheaper for the embedded database than five per row.
    await tx.execute(sql`insert into ${clients} (name, username, auth_type, password_hash, cert_fingerprint)
      select name, username, auth_type, password_hash, cert_fingerprint
      from jsonb_to_recordset(${JSON.stringify(batch.map((b) => ({ name: b.name, username: b.username, auth_type: b.authType, password_hash: b.passwordHash, cert_fingerprint: b.certFingerprint })))}::jsonb)
        as r(name text, username text, auth_type text, password_hash text, cert_fingerprint text)`);
  }
}

async function updateClients(tx: Tx, list: Array<PlannedClient & { id: number; passwordHash: string | undefined }>): Promise<void> {
  for (let start = 0; start < list.length; start += BATCH) {
    await nextTurn();
    const batch = list.slice(start, start + BATCH).map((c) => ({
      id: c.id,
      name: c.name,
      auth_type: c.authType,
      password_hash: c.passwordHash ?? null,
      cert_fingerprint: c.certFingerprint ?? null,
    }));
    await tx.execute(sql`update ${clients} as c set
        name = r.name, auth_type = r.auth_type, password_hash = coalesce(r.password_hash, c.password_hash),
        cert_fingerprint = r.cert_fingerprint, version = c.version + 1, updated_at = now()
      from jsonb_to_recordset(${JSON.stringify(batch)}::jsonb) as r(id integer, name text, auth_type text, password_hash text, cert_fingerprint text)
      where c.id = r.id`);
  }
}

async function writeGroup(tx: Tx, group: PlannedGroup, id?: number): Promise<void> {
  let groupId = id;
  if (groupId === undefined) {
    const [row] = await tx.insert(groups).values({ name: group.name, description: group.description }).returning({ id: groups.id });
    groupId = row!.id;
  } else {
    await tx.update(groups).set({ description: group.description, updatedAt: new Date(), version: sql`${groups.version} + 1` }).where(eq(groups.id, groupId));
    await tx.delete(groupPermissions).where(eq(groupPermissions.groupId, groupId));
  }
  if (group.permissions.length > 0) {
    await tx.insert(groupPermissions).values(
      group.permissions.map((p, position) => ({ groupId: groupId!, position, effect: p.effect as 'allow' | 'deny', action: p.action as 'publish' | 'subscribe', topic: p.topic })),
    );
  }
}

/**
 * Imports a plan: a dry run (what each row would do, nothing written), or the
 * real thing in one transaction, so a failure part-way leaves nothing half
 * written. All-or-nothing by default: one row in error or conflict and
 * nothing is written. Sync also deletes the clients (and, when the file has
 * groups, the groups) it does not name, and must be confirmed. Plaintext
 * passwords are hashed with Argon2id; hashes are stored as they are (foreign
 * ones are replaced at their first CONNECT). One audit event records it.
 */
export async function runImport(db: Database, plan: ImportPlan, options: ImportOptions, by?: AuditActor, format?: string): Promise<ImportReport> {
  if (options.mode === 'sync' && !options.dryRun && !options.confirmSync) {
    throw new ValidationError({ confirm: 'Sync deletes every client (and group) the file does not name: confirm it.' });
  }
  const allOrNothing = options.allOrNothing ?? true;
  const preview = await decide(db, plan, options);
  const failed = preview.report.counts.error + preview.report.counts.conflict;
  if (options.dryRun || (allOrNothing && failed > 0)) return preview.report;

  // Hash typed passwords before the transaction: Argon2id is slow, a transaction should not be.
  const plaintext = [...preview.clientsToCreate, ...preview.clientsToUpdate].filter((c) => c.password !== undefined);
  const hashes = new Map<string, string>();
  const keyOf = (c: PlannedClient) => `${c.line}\u0000${c.username}`;
  await mapLimited(plaintext, 4, async (c) => hashes.set(keyOf(c), await hashPassword(c.password!)));

  try {
    return await db.transaction(async (tx) => {
      await lockGroupRules(tx);
      // Decided again under the lock: what was read before may have changed meanwhile.
      const decided = await decide(tx, plan, options);
      if (allOrNothing && decided.report.counts.error + decided.report.counts.conflict > 0) return decided.report;
      const hashOf = (c: PlannedClient) => (c.password !== undefined ? hashes.get(keyOf(c)) : c.passwordHash);
      const missing = [...decided.clientsToCreate, ...decided.clientsToUpdate].filter((c) => c.password !== undefined && !hashOf(c));
      await mapLimited(missing, 4, async (c) => hashes.set(keyOf(c), await hashPassword(c.password!)));
      if (decided.clientIdsToDelete.length > 0) await tx.delete(clients).where(inArray(clients.id, decided.clientIdsToDelete));
      await insertClients(tx, decided.clientsToCreate.map((c) => ({ ...c, passwordHash: hashOf(c) ?? '' })));
      await updateClients(tx, decided.clientsToUpdate.map((c) => ({ ...c, passwordHash: hashOf(c) })));
      if (decided.groupIdsToDelete.length > 0) await tx.delete(groups).where(inArray(groups.id, decided.groupIdsToDelete));
      for (const group of decided.groupsToCreate) {
        await nextTurn();
        await writeGroup(tx, group);
      }
      for (const group of decided.groupsToUpdate) {
        await nextTurn();
        await writeGroup(tx, group, group.id);
      }
      if (decided.rules) await saveRules(tx, decided.rules, options.mode, by);
      decided.report.applied = true;
      decided.report.dryRun = false;
      const { counts } = decided.report;
      await recordChange(tx, by, { kind: 'import.applied', subject: 'import', details: { format: format ?? 'unknown', mode: options.mode, counts } });
      return decided.report;
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw new ValidationError({ file: 'A row collided with one written meanwhile (a username or fingerprint): nothing was imported. Run it again.' });
    throw error;
  }
}

/** The file's rules: in sync mode they are all the rules; otherwise they replace the rules for the same targets, the others kept. */
async function saveRules(tx: Tx, rules: PlannedRule[], mode: ImportMode, by: AuditActor | undefined): Promise<void> {
  const current = await listGroupRules(tx);
  const targets = new Set(rules.map((r) => `${r.matchBy}\u0000${r.value}`));
  const kept =
    mode === 'sync'
      ? []
      : current
          .map((r) => ({ matchBy: r.matchBy, value: r.matchBy === 'client' ? (r.clientUsername ?? '') : r.value, groups: r.groups.map((g) => g.name) }))
          .filter((r) => !targets.has(`${r.matchBy}\u0000${r.value}`));
  const all = [...kept, ...rules];
  const names = [...new Set(all.flatMap((r) => r.groups))];
  const ids = names.length ? await tx.select({ id: groups.id, name: groups.name }).from(groups).where(inArray(groups.name, names)) : [];
  const idOf = new Map(ids.map((g) => [g.name, String(g.id)]));
  // The console's own Save, inside this transaction (a savepoint): the same checks and audit record.
  await replaceGroupRules(
    tx as unknown as Database,
    all.map((r) => ({ matchBy: r.matchBy, value: r.value, groups: r.groups.map((g) => idOf.get(g) ?? 'missing') })),
    undefined,
    by,
  );
}
