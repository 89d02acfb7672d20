import { and, asc, eq, gt, inArray, sql } from 'drizzle-orm';
import { schema, type Database } from '../../db';
import { accessFor, indexRules, type RuleModel } from './acl';
import type { AccessSnapshot, ClientCredentials, RuleGrantRow, Who } from './types';

const { clients, clientTotals, groups, groupPermissions, groupRules, groupRuleGroups } = schema;

/**
 * What access is read from the database with: the one rule → group →
 * permission join, and clients' credentials. Nothing here decides anything;
 * acl.ts does, over what these return.
 */

const grantColumns = {
  ruleId: groupRules.id,
  rulePosition: groupRules.position,
  matchBy: groupRules.matchBy,
  ruleClientRowId: groupRules.clientId,
  value: groupRules.value,
  groupId: groups.id,
  groupName: groups.name,
  permissionPosition: groupPermissions.position,
  effect: groupPermissions.effect,
  action: groupPermissions.action,
  topic: groupPermissions.topic,
};

/**
 * Every rule → group → permission row, in page order, indexed: the whole
 * rule model in one query (at most 1,000 rules, their groups and the groups'
 * permissions). A rule whose groups are gone has no row.
 */
export async function readRuleModel(db: Database): Promise<RuleModel> {
  return indexRules((await selectRuleRows(db)).map(toGrantRow));
}

/** What `who` may do, from the rules as the database holds them now (the console's checker). */
export async function loadAccess(db: Database, who: Who): Promise<AccessSnapshot> {
  return accessFor(await readRuleModel(db), who);
}

function selectRuleRows(db: Database) {
  return db
    .select(grantColumns)
    .from(groupRules)
    .innerJoin(groupRuleGroups, eq(groupRuleGroups.ruleId, groupRules.id))
    .innerJoin(groups, eq(groups.id, groupRuleGroups.groupId))
    .leftJoin(groupPermissions, eq(groupPermissions.groupId, groups.id))
    .orderBy(asc(groupRules.position), asc(groupRules.id));
}

function toGrantRow(row: Awaited<ReturnType<typeof selectRuleRows>>[number]): RuleGrantRow {
  return {
    rule: { id: row.ruleId, position: row.rulePosition, matchBy: row.matchBy, clientRowId: row.ruleClientRowId, value: row.value },
    groupId: row.groupId,
    groupName: row.groupName,
    permission:
      row.permissionPosition === null || row.effect === null || row.action === null || row.topic === null
        ? null
        : { position: row.permissionPosition, effect: row.effect, action: row.action, topic: row.topic },
  };
}

const credentialColumns = {
  id: clients.id,
  username: clients.username,
  authType: clients.authType,
  passwordHash: clients.passwordHash,
  certFingerprint: clients.certFingerprint,
  version: clients.version,
};

/** The client whose certificate has this fingerprint (a Certificate or Certificate + Password client), or null. */
export async function readCredentialsByFingerprint(db: Database, fingerprint: string): Promise<ClientCredentials | null> {
  const [row] = await db
    .select(credentialColumns)
    .from(clients)
    .where(and(eq(clients.certFingerprint, fingerprint), inArray(clients.authType, ['certificate', 'certificate_password'])));
  return row ?? null;
}

/** The client with this row id, or null. */
export async function readCredentialsById(db: Database, id: number): Promise<ClientCredentials | null> {
  const [row] = await db.select(credentialColumns).from(clients).where(eq(clients.id, id));
  return row ?? null;
}

/** Clients by row id, those that exist (one query, one array parameter). */
export function readCredentialsByIds(db: Database, ids: readonly number[]): Promise<ClientCredentials[]> {
  if (ids.length === 0) return Promise.resolve([]);
  return db
    .select(credentialColumns)
    .from(clients)
    .where(sql`${clients.id} = any(${`{${ids.join(',')}}`}::integer[])`);
}

/** Up to `limit` clients after row id `afterId`, in id order: the whole table, a page at a time. */
export function readCredentialsAfter(db: Database, afterId: number, limit: number): Promise<ClientCredentials[]> {
  return db.select(credentialColumns).from(clients).where(gt(clients.id, afterId)).orderBy(asc(clients.id)).limit(limit);
}

/** About how many clients there are (kept by triggers, migration 0005): room to make before reading them. */
export async function readClientCount(db: Database): Promise<number> {
  const [row] = await db.select({ total: clientTotals.total }).from(clientTotals).where(eq(clientTotals.id, 1));
  return row?.total ?? 0;
}

/** Usernames read in one query at most. */
const MAX_BATCH = 500;

interface Caller {
  resolve(row: ClientCredentials | null): void;
  reject(error: unknown): void;
}

interface CredentialReads {
  /** Asked while a read runs: the next read takes them all. */
  waiting: Map<string, Caller[]>;
  reading: boolean;
}

const readsByDatabase = new WeakMap<Database, CredentialReads>();

/**
 * The password client with `username`, or null. Reads asked for at once share
 * a query: one runs at a time, and whatever was asked meanwhile goes in the
 * next (up to 500 usernames). Every answer comes from a query sent after it
 * was asked. With the embedded database, queued queries would otherwise run
 * back to back without letting the event loop serve anyone else (a query's
 * end hands PGlite to the next within the same turn).
 */
export function readPasswordCredentials(db: Database, username: string): Promise<ClientCredentials | null> {
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
    const batch = new Map<string, Caller[]>();
    for (const [username, callers] of state.waiting) {
      if (batch.size >= MAX_BATCH) break;
      batch.set(username, callers);
    }
    for (const username of batch.keys()) state.waiting.delete(username);
    try {
      const rows = await db
        .select(credentialColumns)
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
