import type { Database } from '../../src/db';
import type { Action, Effect } from '../../src/domain/access/types';
import { listGroupRules, replaceGroupRules, type RuleInput } from '../../src/domain/groupRules';
import { createGroup } from '../../src/domain/groups';

export type PermissionSpec = [Effect, Action, string];

/**
 * Creates a group with `permissions` and appends rules giving it to the
 * clients named by username and to the client ids (or patterns) listed.
 */
export async function grantGroup(
  db: Database,
  spec: { name: string; permissions: PermissionSpec[]; usernames?: string[]; clientIds?: string[] },
) {
  const group = await createGroup(db, {
    name: spec.name,
    permissions: spec.permissions.map(([effect, action, topic]) => ({ effect, action, topic })),
  });
  await appendRules(db, [
    ...(spec.usernames ?? []).map((value) => ({ matchBy: 'client', value, groups: [String(group.id)] })),
    ...(spec.clientIds ?? []).map((value) => ({ matchBy: 'client_id', value, groups: [String(group.id)] })),
  ]);
  return group;
}

/** The current rules as the inputs that would save them again. */
async function currentRules(db: Database): Promise<RuleInput[]> {
  const current = await listGroupRules(db);
  return current.map((rule) => ({
    matchBy: rule.matchBy,
    value: rule.matchBy === 'client' ? rule.clientUsername : rule.value,
    groups: rule.groups.map((g) => String(g.id)),
  }));
}

/** Keeps the current rules and adds `rules` after them. */
export async function appendRules(db: Database, rules: RuleInput[]) {
  return replaceGroupRules(db, [...(await currentRules(db)), ...rules], undefined);
}

/** Keeps the current rules but those matching `value` (a username, client id or fingerprint). */
export async function removeRules(db: Database, value: string) {
  return replaceGroupRules(db, (await currentRules(db)).filter((rule) => rule.value !== value), undefined);
}
