import { and, asc, eq } from 'drizzle-orm';
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

/** The password client with `username`, or null. */
export async function findPasswordCredentials(db: Database, username: string): Promise<ClientCredentials | null> {
  const [row] = await db
    .select({ id: clients.id, username: clients.username, authType: clients.authType, passwordHash: clients.passwordHash, version: clients.version })
    .from(clients)
    .where(and(eq(clients.username, username), eq(clients.authType, 'password')));
  return row ?? null;
}
