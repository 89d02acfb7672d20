import { asc, sql } from 'drizzle-orm';
import { type Database, schema } from '../../db';
import { csvLine } from '../audit';
import { listGroupRules } from '../groupRules';
import { BUNDLE_FORMAT, BUNDLE_VERSION } from './parse';

const { clients, groups, groupPermissions } = schema;

/**
 * Everything needed to make another Gatehouse grant what this one grants:
 * clients with their password hashes (and certificate clients' fingerprints),
 * groups with their permission rows, and the group rules. Never the server's
 * private key, administrators or API tokens. `parseBundle` reads it back.
 */
export async function exportBundle(db: Database, now = new Date()) {
  const clientRows = await db
    .select({ name: clients.name, username: clients.username, authType: clients.authType, passwordHash: clients.passwordHash, certFingerprint: clients.certFingerprint })
    .from(clients)
    .orderBy(asc(sql`lower(${clients.name})`), asc(clients.id));
  const groupRows = await db.select({ id: groups.id, name: groups.name, description: groups.description }).from(groups).orderBy(asc(sql`lower(${groups.name})`), asc(groups.id));
  const permissions = await db
    .select({ groupId: groupPermissions.groupId, effect: groupPermissions.effect, action: groupPermissions.action, topic: groupPermissions.topic })
    .from(groupPermissions)
    .orderBy(asc(groupPermissions.groupId), asc(groupPermissions.position));
  const byGroup = new Map<number, Array<{ effect: string; action: string; topic: string }>>();
  for (const { groupId, ...p } of permissions) {
    const list = byGroup.get(groupId);
    if (list) list.push(p);
    else byGroup.set(groupId, [p]);
  }
  const rules = await listGroupRules(db);
  return {
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    exportedAt: now.toISOString(),
    clients: clientRows.map((c) => ({
      name: c.name,
      username: c.username,
      authType: c.authType,
      ...(c.authType === 'certificate' ? {} : { passwordHash: c.passwordHash }),
      ...(c.certFingerprint ? { certFingerprint: c.certFingerprint } : {}),
    })),
    groups: groupRows.map((g) => ({ name: g.name, description: g.description, permissions: byGroup.get(g.id) ?? [] })),
    rules: rules.map((r) => ({ matchBy: r.matchBy, value: r.matchBy === 'client' ? (r.clientUsername ?? '') : r.value, groups: r.groups.map((g) => g.name) })),
  };
}

export type ExportBundle = Awaited<ReturnType<typeof exportBundle>>;

export const CLIENTS_CSV_HEADER = ['name', 'username', 'authType', 'passwordHash', 'certFingerprint'];

/**
 * The clients as CSV (RFC 4180), readable by the CSV import. A hash starts
 * with `$` and a fingerprint with a hex digit, never with a formula
 * character; names and usernames are guarded by `csvCell` like the audit
 * export (a leading `'` before `=`, `+`, `-`, `@`…), and one that starts with
 * `'` itself gets another, so that the import can take the guard off again
 * without changing a name that really starts with `'=`.
 */
export function clientsCsv(bundle: ExportBundle): string {
  const text = (value: string) => (value.startsWith("'") ? `'${value}` : value);
  return (
    csvLine(CLIENTS_CSV_HEADER) +
    bundle.clients
      .map((c) => csvLine([text(c.name), text(c.username), c.authType, 'passwordHash' in c ? c.passwordHash : '', 'certFingerprint' in c ? c.certFingerprint : '']))
      .join('')
  );
}
