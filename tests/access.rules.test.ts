import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { listenForAccessChanges, type AccessChanges } from '../src/db/changes';
import { loadAccessModel, type AccessModel } from '../src/domain/access/model';
import { accessFor } from '../src/domain/access/acl';
import { createAuthenticator, type Authenticator } from '../src/domain/access/authenticate';
import { loadAccess, readRuleModel } from '../src/domain/access/query';
import type { AccessSnapshot, AuthenticateInput } from '../src/domain/access/types';
import { createClient } from '../src/domain/clients';
import { replaceGroupRules, type RuleInput } from '../src/domain/groupRules';
import { createGroup } from '../src/domain/groups';
import { createTestDatabase, drivers } from './support/db';

/**
 * One table of rule cases, run against every way access is decided: the pure
 * matcher over the rule model, the console's checker, CONNECT reading the
 * database (no change feed) and CONNECT answered from memory (the access
 * model, its feed live). They share one matcher; this table keeps them from ever disagreeing.
 */

const FINGERPRINT = Array.from({ length: 32 }, (_, i) => (i * 7 + 3).toString(16).padStart(2, '0').toUpperCase()).join(':');
const OTHER_FINGERPRINT = Array.from({ length: 32 }, (_, i) => (i * 5 + 1).toString(16).padStart(2, '0').toUpperCase()).join(':');
const PASSWORD = 'rules-table-password';

/** Groups, each with its permission rows, and the rules giving them (in page order). */
const GROUPS: Record<string, Array<[effect: 'allow' | 'deny', action: 'publish' | 'subscribe', topic: string]>> = {
  Alpha: [
    ['allow', 'publish', 'alpha/%u/#'],
    ['deny', 'publish', 'alpha/%u/secret'],
  ],
  Exact: [['allow', 'subscribe', 'exact/%c']],
  Pattern: [['allow', 'publish', 'dev/%c/#']],
  Like: [['allow', 'publish', 'like/#']],
  Suffix: [['allow', 'subscribe', 'suffix/#']],
  Middle: [['deny', 'subscribe', 'middle/#']],
  Backslash: [['allow', 'publish', 'backslash']],
  Cert: [['allow', 'publish', 'cert/%u/%c']],
  OtherCert: [['allow', 'publish', 'other-cert/#']],
  Empty: [],
  Denied: [['deny', 'publish', '#']],
};

const RULES: Array<{ matchBy: 'client' | 'client_id' | 'certificate'; value: string; groups: string[] }> = [
  { matchBy: 'client', value: 'alpha', groups: ['Alpha'] },
  { matchBy: 'client_id', value: 'dev-1', groups: ['Exact'] },
  { matchBy: 'client_id', value: 'dev-*', groups: ['Pattern'] },
  { matchBy: 'client_id', value: 'dev_%-*', groups: ['Like'] },
  { matchBy: 'client_id', value: '*-end', groups: ['Suffix'] },
  { matchBy: 'client_id', value: 'a*b*c', groups: ['Middle', 'Empty'] },
  { matchBy: 'client_id', value: 'a\\b', groups: ['Backslash'] },
  { matchBy: 'certificate', value: FINGERPRINT, groups: ['Cert'] },
  { matchBy: 'certificate', value: OTHER_FINGERPRINT, groups: ['OtherCert'] },
  { matchBy: 'client', value: 'beta', groups: ['Alpha'] },
  { matchBy: 'client_id', value: 'x**y', groups: ['Denied', 'Pattern'] },
];

interface Case {
  username: 'alpha' | 'beta' | 'gamma';
  clientId: string;
  /** Certificate clients connect with their certificate. */
  certificate?: string;
  groups: string[];
}

const CASES: Case[] = [
  { username: 'alpha', clientId: 'dev-1', groups: ['Alpha', 'Exact', 'Pattern'] },
  { username: 'alpha', clientId: 'dev-', groups: ['Alpha', 'Pattern'] },
  { username: 'alpha', clientId: 'dev', groups: ['Alpha'] },
  { username: 'alpha', clientId: 'dev_%-7', groups: ['Alpha', 'Like'] },
  // `_` and `%` are not wildcards, and matching is case-sensitive.
  { username: 'alpha', clientId: 'devX%-7', groups: ['Alpha'] },
  { username: 'alpha', clientId: 'dev_XY-7', groups: ['Alpha'] },
  { username: 'alpha', clientId: 'DEV-1', groups: ['Alpha'] },
  { username: 'gamma', clientId: 'x-end', groups: ['Suffix'] },
  { username: 'gamma', clientId: '-end', groups: ['Suffix'] },
  { username: 'gamma', clientId: 'x-endx', groups: [] },
  { username: 'gamma', clientId: 'abc', groups: ['Middle', 'Empty'] },
  { username: 'gamma', clientId: 'aXXbYYc', groups: ['Middle', 'Empty'] },
  { username: 'gamma', clientId: 'acb', groups: [] },
  { username: 'gamma', clientId: 'a\\b', groups: ['Backslash'] },
  { username: 'gamma', clientId: 'aXb', groups: [] },
  { username: 'gamma', clientId: 'xy', groups: ['Pattern', 'Denied'] },
  { username: 'gamma', clientId: 'x-mid-y', groups: ['Pattern', 'Denied'] },
  // A certificate client: its own rule by client, the rule by its certificate, not the other certificate's.
  { username: 'beta', clientId: 'dev-2', certificate: FINGERPRINT, groups: ['Alpha', 'Pattern', 'Cert'] },
  { username: 'beta', clientId: 'plain', certificate: FINGERPRINT, groups: ['Alpha', 'Cert'] },
];

describe.each(drivers)('one table of rule cases, every way access is decided, on %s', (driver) => {
  let database: OpenDatabase;
  let changes: AccessChanges;
  let model: AccessModel;
  let ids: Record<Case['username'], number>;
  let fromDatabase: Authenticator;
  let fromMemory: Authenticator;

  beforeAll(async () => {
    database = await createTestDatabase(driver);
    const db = database.db;
    ids = {
      alpha: (await createClient(db, { name: 'Alpha', username: 'alpha', password: PASSWORD })).id,
      beta: (await createClient(db, { name: 'Beta', username: 'beta', authType: 'certificate', fingerprint: FINGERPRINT })).id,
      gamma: (await createClient(db, { name: 'Gamma', username: 'gamma', password: PASSWORD })).id,
    };
    const groupIds = new Map<string, number>();
    for (const [name, rows] of Object.entries(GROUPS)) {
      const group = await createGroup(db, { name, permissions: rows.map(([effect, action, topic]) => ({ effect, action, topic })) });
      groupIds.set(name, group.id);
    }
    const inputs: RuleInput[] = RULES.map((rule) => ({ matchBy: rule.matchBy, value: rule.value, groups: rule.groups.map((name) => String(groupIds.get(name))) }));
    await replaceGroupRules(db, inputs, undefined);
    changes = await listenForAccessChanges(database);
    fromDatabase = createAuthenticator(db);
    model = await loadAccessModel(db, changes);
    fromMemory = createAuthenticator(db, { model });
  });
  afterAll(async () => {
    model?.close();
    await changes?.close();
    await database?.close();
  });

  const connectInput = (c: Case): AuthenticateInput => ({
    username: c.username,
    password: c.certificate ? undefined : PASSWORD,
    clientId: c.clientId,
    transport: c.certificate ? 'tls' : 'tcp',
    ...(c.certificate ? { clientCertificate: { fingerprint256: c.certificate, validFrom: new Date(Date.now() - 60_000), validTo: new Date(Date.now() + 60_000) } } : {}),
  });

  async function connected(auth: Authenticator, c: Case): Promise<AccessSnapshot> {
    const result = await auth.authenticate(connectInput(c));
    if (!result.ok) throw new Error(`refused: ${result.reason}`);
    return result.access;
  }

  it.each(CASES)('$username as $clientId gets $groups', async (c) => {
    const who = { clientRowId: ids[c.username], username: c.username, mqttClientId: c.clientId, certFingerprint: c.certificate };
    const pure = accessFor(await readRuleModel(database.db), who);
    expect(pure.groups.map((group) => group.name).sort()).toEqual([...c.groups].sort());
    // Every permission row of every group given, none of another.
    expect(pure.permissions.length).toBe(c.groups.reduce((n, name) => n + GROUPS[name]!.length, 0));
    expect(await loadAccess(database.db, who)).toEqual(pure);
    expect(await connected(fromDatabase, c)).toEqual(pure);
    const reads = fromMemory.stats().databaseReads;
    expect(await connected(fromMemory, c)).toEqual(pure);
    expect(fromMemory.stats().databaseReads).toBe(reads);
    expect(await fromMemory.accessOf(who)).toEqual(pure);
  });

  it('lists every rule by client id as unresolved while the client id is unknown (the console), and decides the others', async () => {
    const who = { clientRowId: ids.alpha, username: 'alpha', mqttClientId: undefined };
    const access = await loadAccess(database.db, who);
    expect(access.groups.map((group) => group.name)).toEqual(['Alpha']);
    expect(access.unresolvedRules.map((rule) => rule.value)).toEqual(RULES.filter((rule) => rule.matchBy === 'client_id').map((rule) => rule.value));
  });
});
