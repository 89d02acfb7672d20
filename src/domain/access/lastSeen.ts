import { sql, type SQL, type SQLWrapper } from 'drizzle-orm';
import type { RuleModel } from './acl';
import type { AuthType, Who } from './types';

/**
 * Access as a client was last seen: the connection the clients list judges
 * each client by (its last session's client id, its certificate), and the
 * same judgement as SQL, so the list can be filtered to the clients the rules
 * give no group over every page.
 */

/** What of a client the rules look at. */
export interface SeenClient {
  id: number;
  username: string;
  authType: AuthType;
  certFingerprint: string | null;
  /** The MQTT client id of its last session; null: never seen (rules by client id cannot be judged). */
  lastClientId: string | null;
}

/** The connection `accessFor` judges a client by in the list: its last client id, its certificate if it uses one. */
export function lastSeenWho(client: SeenClient): Who {
  return {
    clientRowId: client.id,
    username: client.username,
    mqttClientId: client.lastClientId ?? undefined,
    certFingerprint: client.authType !== 'password' && client.certFingerprint ? client.certFingerprint : undefined,
  };
}

/** Columns of `clients` (or of a subquery that selects them). */
export interface SeenClientColumns {
  id: SQLWrapper;
  authType: SQLWrapper;
  certFingerprint: SQLWrapper;
  lastClientId: SQLWrapper;
}

/**
 * SQL that is true for a client to which `model` gives no group when judged
 * as `lastSeenWho` judges it: no rule names its row, none its certificate
 * (certificate clients), none its last client id exactly or by pattern. It
 * is `accessFor(model, lastSeenWho(client)).groups.length === 0`, written
 * over the rules in the model (at most 1,000), each value a parameter; a
 * pattern's `*` becomes LIKE's `%`, its `%`, `_` and `\` taken literally
 * (LIKE, like clientIdPatternMatches, is case-sensitive).
 */
export function noGroupCondition(model: RuleModel, c: SeenClientColumns): SQL {
  const conditions: SQL[] = [];
  const rows = [...model.byClientRow.keys()];
  if (rows.length) conditions.push(sql`${c.id} not in (${sql.join(rows.map((id) => sql`${id}::integer`), sql`, `)})`);
  const fingerprints = [...model.byFingerprint.keys()];
  if (fingerprints.length) {
    conditions.push(sql`(${c.authType} = 'password' or ${c.certFingerprint} is null or ${c.certFingerprint} not in (${sql.join(fingerprints.map((f) => sql`${f}::text`), sql`, `)}))`);
  }
  const exact = [...model.byClientId.keys()];
  const patterns = [...new Set(model.byPattern.map((row) => likeOf(row.rule.value)))];
  const byClientId: SQL[] = [];
  if (exact.length) byClientId.push(sql`${c.lastClientId} not in (${sql.join(exact.map((v) => sql`${v}::text`), sql`, `)})`);
  for (const pattern of patterns) byClientId.push(sql`${c.lastClientId} not like ${pattern}::text`);
  if (byClientId.length) conditions.push(sql`(${c.lastClientId} is null or (${sql.join(byClientId, sql` and `)}))`);
  return conditions.length ? sql`(${sql.join(conditions, sql` and `)})` : sql`true`;
}

/** A client id pattern (`*` for any run of characters) as a LIKE pattern with `\` as its escape. */
function likeOf(pattern: string): string {
  return pattern.replace(/[\\%_]/g, (ch) => `\\${ch}`).replaceAll('*', '%');
}
