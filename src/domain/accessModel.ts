import { and, asc, eq, inArray } from 'drizzle-orm';
import { schema, type Database } from '../db';
import type { RuleGrantRow } from './acl';
import { clientIdPatternMatches } from './topics';
import type { ClientCredentials } from './clients';
import { grantColumns, toGrantRow } from './groupRules';

const { clients, groups, groupPermissions, groupRules, groupRuleGroups } = schema;

/**
 * Every rule → group → permission row, indexed by what a CONNECT looks up:
 * the client row a rule names, the exact client id a rule names, and the
 * rules by client-id pattern (few; matched one by one).
 */
export interface AccessModel {
  byClientRow: ReadonlyMap<number, readonly RuleGrantRow[]>;
  byClientId: ReadonlyMap<string, readonly RuleGrantRow[]>;
  byPattern: readonly RuleGrantRow[];
}

/** Reads the whole rule model in one query (at most 1,000 rules, their groups and permissions). */
export async function loadAccessModel(db: Database): Promise<AccessModel> {
  const rows = await db
    .select(grantColumns)
    .from(groupRules)
    .innerJoin(groupRuleGroups, eq(groupRuleGroups.ruleId, groupRules.id))
    .innerJoin(groups, eq(groups.id, groupRuleGroups.groupId))
    .leftJoin(groupPermissions, eq(groupPermissions.groupId, groups.id))
    .orderBy(asc(groupRules.position), asc(groupRules.id));
  const byClientRow = new Map<number, RuleGrantRow[]>();
  const byClientId = new Map<string, RuleGrantRow[]>();
  const byPattern: RuleGrantRow[] = [];
  const push = <K>(map: Map<K, RuleGrantRow[]>, key: K, row: RuleGrantRow) => {
    const list = map.get(key);
    if (list) list.push(row);
    else map.set(key, [row]);
  };
  for (const joined of rows) {
    const row = toGrantRow(joined);
    if (!row) continue;
    if (row.rule.matchBy === 'client') {
      if (row.rule.clientRowId !== null) push(byClientRow, row.rule.clientRowId, row);
    } else if (row.rule.value.includes('*')) {
      byPattern.push(row);
    } else {
      push(byClientId, row.rule.value, row);
    }
  }
  return { byClientRow, byClientId, byPattern };
}

/**
 * The rows that may apply to client row `clientRowId` connecting as
 * `mqttClientId`: what `findConnectRow` reads from the database, found in
 * memory (`resolveAccess` decides again, rule by rule).
 */
export function grantsFor(model: AccessModel, clientRowId: number, mqttClientId: string): RuleGrantRow[] {
  const patterned = model.byPattern.filter((row) => clientIdPatternMatches(row.rule.value, mqttClientId));
  return [...(model.byClientRow.get(clientRowId) ?? []), ...(model.byClientId.get(mqttClientId) ?? []), ...patterned];
}

/** Usernames read in one query at most. */
const MAX_BATCH = 500;

interface CredentialReads {
  /** Asked while a read runs: the next read takes them all. */
  waiting: Map<string, Array<{ resolve(row: ClientCredentials | null): void; reject(error: unknown): void }>>;
  reading: boolean;
}

const readsByDatabase = new WeakMap<Database, CredentialReads>();

/**
 * The password client with `username`, or null. Reads asked for at once share
 * a query: one runs at a time, and whatever was asked meanwhile goes in the
 * next (up to 500 usernames). A cold connect storm then costs a few large
 * queries instead of one per device; with the embedded database, queued
 * queries would otherwise run back to back without letting the event loop
 * serve anyone else (a query's end hands PGlite to the next within the same
 * turn), which kept other clients' messages waiting for hundreds of ms.
 */
export function findPasswordCredentials(db: Database, username: string): Promise<ClientCredentials | null> {
  let reads = readsByDatabase.get(db);
  if (!reads) {
    reads = { waiting: new Map(), reading: false };
    readsByDatabase.set(db, reads);
  }
  const state = reads;
  return new Promise((resolve, reject) => {
    const callers = state.waiting.get(username);
    if (callers) callers.push({ resolve, reject });
    else state.waiting.set(username, [{ resolve, reject }]);
    if (!state.reading) {
      state.reading = true;
      // After this turn's other CONNECTs have asked too.
      setImmediate(() => void readBatches(db, state));
    }
  });
}

async function readBatches(db: Database, state: CredentialReads): Promise<void> {
  while (state.waiting.size > 0) {
    const batch = new Map<string, Array<{ resolve(row: ClientCredentials | null): void; reject(error: unknown): void }>>();
    for (const [username, callers] of state.waiting) {
      if (batch.size >= MAX_BATCH) break;
      batch.set(username, callers);
    }
    for (const username of batch.keys()) state.waiting.delete(username);
    try {
      const rows = await db
        .select({ id: clients.id, username: clients.username, authType: clients.authType, passwordHash: clients.passwordHash, version: clients.version })
        .from(clients)
        .where(and(inArray(clients.username, [...batch.keys()]), eq(clients.authType, 'password')));
      const byUsername = new Map(rows.map((row) => [row.username, row]));
      for (const [username, callers] of batch) for (const caller of callers) caller.resolve(byUsername.get(username) ?? null);
    } catch (error) {
      for (const callers of batch.values()) for (const caller of callers) caller.reject(error);
    }
    // Let I/O in between reads, and gather what it asks for.
    await new Promise((resolve) => setImmediate(resolve));
  }
  state.reading = false;
}
