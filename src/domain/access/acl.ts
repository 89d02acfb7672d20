import {
  clientIdPatternMatches,
  filterCovers,
  filtersOverlap,
  splitLevels,
  substitutePlaceholders,
  topicMatches,
} from '../topics';
import type { AccessSnapshot, Action, Effect, GrantedGroup, GrantedPermission, RuleGrantRow, RuleRef, Who } from './types';

/**
 * Access control as pure functions: which rules apply to a connection, the
 * groups and permissions it gets from them, and what those allow. The
 * broker, the console's checker and every lookup (in memory or from the
 * database) call these very functions: there is no other rule matcher.
 */

/** True when `rule` applies to the connection `who`. */
export function ruleMatches(rule: RuleRef, who: Who): boolean {
  if (rule.matchBy === 'client') return rule.clientRowId === who.clientRowId;
  if (rule.matchBy === 'certificate') return who.certFingerprint !== undefined && rule.value === who.certFingerprint;
  return who.mqttClientId !== undefined && clientIdPatternMatches(rule.value, who.mqttClientId);
}

/**
 * Every rule → group → permission row, indexed by what a connection is
 * looked up by: the client row a rule names, the exact client id or the
 * certificate fingerprint it names; rules by client-id pattern (few) are
 * kept in a list. The index only narrows: `resolveAccess` decides each row
 * with `ruleMatches`.
 */
export interface RuleModel {
  byClientRow: ReadonlyMap<number, readonly RuleGrantRow[]>;
  byClientId: ReadonlyMap<string, readonly RuleGrantRow[]>;
  byFingerprint: ReadonlyMap<string, readonly RuleGrantRow[]>;
  /** Rules by client id with `*`. */
  byPattern: readonly RuleGrantRow[];
  /** Every rule by client id, exact or pattern: what stays unresolved while the client id is unknown. */
  allByClientId: readonly RuleGrantRow[];
}

/** Indexes the rows of the rule → group → permission join (see RuleModel). */
export function indexRules(rows: readonly RuleGrantRow[]): RuleModel {
  const byClientRow = new Map<number, RuleGrantRow[]>();
  const byClientId = new Map<string, RuleGrantRow[]>();
  const byFingerprint = new Map<string, RuleGrantRow[]>();
  const byPattern: RuleGrantRow[] = [];
  const allByClientId: RuleGrantRow[] = [];
  const push = <K>(map: Map<K, RuleGrantRow[]>, key: K, row: RuleGrantRow) => {
    const list = map.get(key);
    if (list) list.push(row);
    else map.set(key, [row]);
  };
  for (const row of rows) {
    const rule = row.rule;
    if (rule.matchBy === 'client') {
      if (rule.clientRowId !== null) push(byClientRow, rule.clientRowId, row);
    } else if (rule.matchBy === 'certificate') {
      push(byFingerprint, rule.value, row);
    } else {
      allByClientId.push(row);
      if (rule.value.includes('*')) byPattern.push(row);
      else push(byClientId, rule.value, row);
    }
  }
  return { byClientRow, byClientId, byFingerprint, byPattern, allByClientId };
}

/**
 * The rows that may apply to `who`: those of rules naming its client row, its
 * exact client id (every rule by client id while it is unknown, so they can be
 * listed as unresolved) or its certificate, and the patterns it matches.
 */
export function rulesFor(model: RuleModel, who: Who): RuleGrantRow[] {
  const rows = [...(model.byClientRow.get(who.clientRowId) ?? [])];
  if (who.mqttClientId === undefined) {
    rows.push(...model.allByClientId);
  } else {
    rows.push(...(model.byClientId.get(who.mqttClientId) ?? []));
    for (const row of model.byPattern) if (ruleMatches(row.rule, who)) rows.push(row);
  }
  if (who.certFingerprint !== undefined) rows.push(...(model.byFingerprint.get(who.certFingerprint) ?? []));
  return rows;
}

/** What `who` may do under `model`: its groups and the union of their permissions. */
export function accessFor(model: RuleModel, who: Who): AccessSnapshot {
  return resolveAccess(rulesFor(model, who), who);
}

/** The filter that matches every topic a permission can reach (`$` topics are refused anyway). */
const EVERY_TOPIC = '#';

/**
 * What a permission row's filter becomes for `who`. When a substituted value
 * is unusable (empty, or holding `+`, `#`, `/` or a null character), the row
 * fails closed: an Allow row matches nothing (null), and a Deny row denies
 * every topic for its action (`#`), so a hostile username or client id can
 * neither widen a grant nor escape a deny. A `%c` row while the client id is
 * still unknown (the console, before one is entered) stays null: nothing is
 * decided without a client id.
 */
function concreteFilter(permission: { effect: Effect; topic: string }, who: Who): string | null {
  const filter = substitutePlaceholders(permission.topic, { username: who.username, clientId: who.mqttClientId });
  if (filter !== null || permission.effect === 'allow') return filter;
  const onlyClientIdUnknown =
    who.mqttClientId === undefined && substitutePlaceholders(permission.topic, { username: who.username, clientId: 'known' }) !== null;
  return onlyClientIdUnknown ? null : EVERY_TOPIC;
}

/**
 * Granted permissions made from a row, by row object: the rows of the rule
 * model CONNECT keeps in memory are the same objects for every connection, so
 * every session whose filter comes out the same (every row without `%u`/`%c`,
 * and a `%u` row for sessions of one username) shares one frozen object and
 * its split levels instead of holding copies: 10,000 devices of a group hold
 * its permissions once. Rows read per CONNECT from the database are new
 * objects each time and simply miss.
 */
const grantedByRow = new WeakMap<RuleGrantRow, GrantedPermission>();

function grantedPermission(row: RuleGrantRow, filter: string | null): GrantedPermission {
  const known = grantedByRow.get(row);
  if (known && known.filter === filter) return known;
  const permission = row.permission!;
  // Built field by field (not spread): objects of one shape, which V8 then
  // describes once instead of once per object.
  const granted: GrantedPermission = Object.freeze({
    groupId: row.groupId,
    groupName: row.groupName,
    position: permission.position,
    effect: permission.effect,
    action: permission.action,
    topic: permission.topic,
    filter,
    levels: filter === null ? null : Object.freeze(splitLevels(filter)),
  });
  grantedByRow.set(row, granted);
  return granted;
}

/**
 * The groups and the union of their permissions for `who`, from the rows of
 * the rule → group → permission join. Groups are ordered by the first rule
 * that gave them, then by name; a group given by several rules appears once.
 */
export function resolveAccess(rows: readonly RuleGrantRow[], who: Who): AccessSnapshot {
  const sorted = [...rows].sort(
    (x, y) =>
      x.rule.position - y.rule.position ||
      x.rule.id - y.rule.id ||
      // The same group has the same name: no collation needed (rows of one group are the most common tie).
      (x.groupId === y.groupId ? 0 : x.groupName.localeCompare(y.groupName)) ||
      x.groupId - y.groupId ||
      (x.permission?.position ?? -1) - (y.permission?.position ?? -1),
  );
  const groups = new Map<number, GrantedGroup>();
  const firstRows = new Map<number, RuleGrantRow>();
  const permissionsByGroup = new Map<number, GrantedPermission[]>();
  const unresolved = new Map<number, RuleRef>();
  const seenRows = new Set<string>();
  for (const row of sorted) {
    if (row.rule.matchBy === 'client_id' && who.mqttClientId === undefined) {
      unresolved.set(row.rule.id, row.rule);
      continue;
    }
    if (!ruleMatches(row.rule, who)) continue;
    let group = groups.get(row.groupId);
    if (!group) {
      group = { id: row.groupId, name: row.groupName, via: [] };
      groups.set(row.groupId, group);
      firstRows.set(row.groupId, row);
      permissionsByGroup.set(row.groupId, []);
    }
    if (!group.via.some((rule) => rule.id === row.rule.id)) group.via.push(row.rule);
    if (row.permission && !seenRows.has(`${row.groupId}:${row.permission.position}`)) {
      seenRows.add(`${row.groupId}:${row.permission.position}`);
      permissionsByGroup.get(row.groupId)!.push(grantedPermission(row, concreteFilter(row.permission, who)));
    }
  }
  const permissions = [...groups.keys()].flatMap((id) => permissionsByGroup.get(id)!);
  return Object.freeze({
    username: who.username,
    mqttClientId: who.mqttClientId,
    groups: Object.freeze([...groups.values()].map((group) => sharedGroup(firstRows.get(group.id)!, group))),
    permissions: Object.freeze(permissions),
    unresolvedRules: unresolved.size === 0 ? NO_RULES : Object.freeze([...unresolved.values()]),
  });
}

const NO_RULES: readonly RuleRef[] = Object.freeze([]);

/** Granted groups by the row that first gave them: shared as `grantedByRow` is, when they came the same way. */
const groupByRow = new WeakMap<RuleGrantRow, GrantedGroup>();

function sharedGroup(first: RuleGrantRow, group: GrantedGroup): GrantedGroup {
  const known = groupByRow.get(first);
  if (
    known &&
    known.id === group.id &&
    known.name === group.name &&
    known.via.length === group.via.length &&
    known.via.every((rule, i) => rule === group.via[i])
  ) {
    return known;
  }
  Object.freeze(group.via);
  Object.freeze(group);
  groupByRow.set(first, group);
  return group;
}

/** Nothing granted: what a connection without a snapshot gets. */
export const NO_ACCESS: AccessSnapshot = Object.freeze({
  username: '',
  mqttClientId: undefined,
  groups: Object.freeze([]),
  permissions: Object.freeze([]),
  unresolvedRules: Object.freeze([]),
});

export type DecisionReason =
  /** A Deny row decided. */
  | 'denied'
  /** An Allow row decided. */
  | 'allowed'
  /** No row matched (or covered): nothing matching means deny. */
  | 'no_match'
  /** Topics starting with `$` belong to the broker. */
  | 'reserved';

export interface Decision {
  allowed: boolean;
  reason: DecisionReason;
  /** The row that decided, when one did. */
  permission?: GrantedPermission;
  /**
   * For a granted subscription: Deny/Subscribe rows that overlap it. Messages
   * on topics they match are not delivered.
   */
  withheld?: GrantedPermission[];
}

const RESERVED: Decision = Object.freeze({ allowed: false, reason: 'reserved' });
const NO_MATCH: Decision = Object.freeze({ allowed: false, reason: 'no_match' });

/**
 * May this connection publish to `topic`? Denied if a Deny/Publish filter
 * matches it; else allowed if an Allow/Publish filter matches it; else denied.
 */
export function decidePublish(access: AccessSnapshot, topic: string): Decision {
  if (topic.startsWith('$')) return RESERVED; // [MQTT-4.7.2-1]
  let allow: GrantedPermission | undefined;
  for (const permission of access.permissions) {
    if (permission.action !== 'publish' || !permission.levels) continue;
    if (!topicMatches(permission.levels, topic)) continue;
    if (permission.effect === 'deny') return { allowed: false, reason: 'denied', permission };
    allow ??= permission;
  }
  return allow ? { allowed: true, reason: 'allowed', permission: allow } : NO_MATCH;
}

/**
 * May this connection subscribe to `filter`? Granted when an Allow/Subscribe
 * filter covers every topic `filter` can match and no Deny/Subscribe filter
 * covers `filter`. A Deny/Subscribe filter that only overlaps it is listed in
 * `withheld`: its messages are dropped at delivery (see `mayDeliver`).
 */
export function decideSubscribe(access: AccessSnapshot, filter: string): Decision {
  if (filter.startsWith('$')) return RESERVED;
  const levels = splitLevels(filter);
  let allow: GrantedPermission | undefined;
  const withheld: GrantedPermission[] = [];
  for (const permission of access.permissions) {
    if (permission.action !== 'subscribe' || !permission.levels) continue;
    if (permission.effect === 'deny') {
      if (filterCovers(permission.levels, levels)) return { allowed: false, reason: 'denied', permission };
      if (filtersOverlap(permission.levels, levels)) withheld.push(permission);
    } else if (!allow && filterCovers(permission.levels, levels)) {
      allow = permission;
    }
  }
  return allow ? { allowed: true, reason: 'allowed', permission: allow, withheld } : NO_MATCH;
}

/**
 * May a message on `topic` be delivered to this connection? Never when a
 * Deny/Subscribe filter matches the topic (retained messages included), and
 * only when an Allow/Subscribe filter matches it: a subscription restored
 * from an older session cannot reach past today's permissions.
 */
export function mayDeliver(access: AccessSnapshot, topic: string): boolean {
  if (topic.startsWith('$')) return false;
  let allowed = false;
  for (const permission of access.permissions) {
    if (permission.action !== 'subscribe' || !permission.levels) continue;
    if (!topicMatches(permission.levels, topic)) continue;
    if (permission.effect === 'deny') return false;
    allowed = true;
  }
  return allowed;
}

/** `decidePublish` or `decideSubscribe`, by action. */
export function decide(access: AccessSnapshot, action: Action, topic: string): Decision {
  return action === 'publish' ? decidePublish(access, topic) : decideSubscribe(access, topic);
}

/** Topics longer than this are decided each time, never remembered. */
export const MAX_REMEMBERED_TOPIC_LENGTH = 256;

/**
 * The publish and delivery decisions of one session, remembered per topic:
 * its snapshot never changes, so a device that publishes or receives the same
 * topics again costs a map lookup instead of a walk of its permission rows.
 * Bounded per map, in topics (`limit`) and in their total length
 * (`limitChars`): past either a map starts over. A topic longer than
 * MAX_REMEMBERED_TOPIC_LENGTH is not remembered at all, so 64 KB topics cannot
 * pin memory in thousands of sessions.
 */
export class SessionDecisions {
  private delivers?: Memo;
  private publishes?: Memo;

  constructor(
    readonly access: AccessSnapshot,
    private readonly limit = 256,
    private readonly limitChars = 4096,
  ) {}

  /** `mayDeliver` for this session. */
  mayDeliver(topic: string): boolean {
    this.delivers ??= { decisions: new Map(), chars: 0 };
    return this.remember(this.delivers, topic, () => mayDeliver(this.access, topic));
  }

  /** `decidePublish(…).allowed` for this session. */
  mayPublish(topic: string): boolean {
    this.publishes ??= { decisions: new Map(), chars: 0 };
    return this.remember(this.publishes, topic, () => decidePublish(this.access, topic).allowed);
  }

  /** Topics remembered now and their total length, both maps together. */
  remembered(): { topics: number; chars: number } {
    const memos = [this.delivers, this.publishes].filter((memo): memo is Memo => memo !== undefined);
    return { topics: memos.reduce((n, memo) => n + memo.decisions.size, 0), chars: memos.reduce((n, memo) => n + memo.chars, 0) };
  }

  private remember(memo: Memo, topic: string, decide: () => boolean): boolean {
    if (topic.length > MAX_REMEMBERED_TOPIC_LENGTH) return decide();
    const known = memo.decisions.get(topic);
    if (known !== undefined) return known;
    const decision = decide();
    if (memo.decisions.size >= this.limit || memo.chars + topic.length > this.limitChars) {
      memo.decisions.clear();
      memo.chars = 0;
    }
    memo.decisions.set(topic, decision);
    memo.chars += topic.length;
    return decision;
  }
}

interface Memo {
  decisions: Map<string, boolean>;
  /** The total length of the topics in `decisions`. */
  chars: number;
}
