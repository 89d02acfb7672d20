import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { decidePublish } from '../src/domain/access/acl';
import { loadAccess } from '../src/domain/access/query';
import { createClient, deleteClient } from '../src/domain/clients';
import { ConflictError, ValidationError } from '../src/domain/errors';
import {
  clientGroupsOverview,
  listGroupRules,
  listRuleChanges,
  replaceGroupRules,
  rulesRevision,
} from '../src/domain/groupRules';
import { createGroup, deleteGroup, getGroup, groupDeletionImpact, listGroups, updateGroup } from '../src/domain/groups';
import { createTestDatabase, drivers } from './support/db';

function validationErrors(promise: Promise<unknown>) {
  return promise.then(
    () => {
      throw new Error('expected a ValidationError');
    },
    (error: unknown) => {
      if (!(error instanceof ValidationError)) throw error;
      return error.fieldErrors;
    },
  );
}

describe.each(drivers)('groups and group rules on %s', (driver) => {
  let database: OpenDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('creates a group with ordered permission rows and reads it back', async () => {
    const group = await createGroup(database.db, {
      name: ' Sensors ',
      description: 'Field devices',
      permissions: [
        { effect: 'allow', action: 'publish', topic: 'sensors/%c/#' },
        { effect: 'deny', action: 'subscribe', topic: 'sensors/+/secret' },
      ],
    });
    expect(group.name).toBe('Sensors');
    const read = await getGroup(database.db, group.id);
    expect(read?.permissions).toEqual([
      { effect: 'allow', action: 'publish', topic: 'sensors/%c/#' },
      { effect: 'deny', action: 'subscribe', topic: 'sensors/+/secret' },
    ]);
  });

  it('flags each bad permission row by its index and saves nothing', async () => {
    const errors = await validationErrors(
      createGroup(database.db, {
        name: 'Bad rows',
        permissions: [
          { effect: 'allow', action: 'publish', topic: 'fine/#' },
          { effect: 'allow', action: 'publish', topic: 'a/#/b' },
          { effect: 'allow', action: 'subscribe', topic: 'a+' },
          { effect: 'allow', action: 'subscribe', topic: '' },
          { effect: 'allow', action: 'subscribe', topic: 'x'.repeat(65536) },
          { effect: 'maybe', action: 'jump', topic: 'ok' },
        ],
      }),
    );
    expect(errors).toEqual({
      'permissions.1.topic': '# must be the last level and stand alone, as in a/#.',
      'permissions.2.topic': '+ must fill a whole level, as in a/+/b.',
      'permissions.3.topic': 'Enter a topic filter.',
      'permissions.4.topic': 'Use at most 65535 bytes.',
      'permissions.5.effect': 'Choose Allow or Deny.',
      'permissions.5.action': 'Choose Publish or Subscribe.',
    });
    expect((await listGroups(database.db, { query: 'Bad rows' })).total).toBe(0);
  });

  it('refuses a duplicate name as a conflict on the name field', async () => {
    await createGroup(database.db, { name: 'Unique', permissions: [] });
    await expect(createGroup(database.db, { name: 'Unique', permissions: [] })).rejects.toBeInstanceOf(ConflictError);
  });

  it('replaces the rows on update, and lists groups with row and rule counts', async () => {
    const group = await createGroup(database.db, { name: 'Counted', permissions: [{ effect: 'allow', action: 'publish', topic: 'a' }] });
    await updateGroup(database.db, group.id, {
      name: 'Counted',
      permissions: [
        { effect: 'allow', action: 'publish', topic: 'b' },
        { effect: 'allow', action: 'publish', topic: 'c' },
        { effect: 'deny', action: 'publish', topic: 'd' },
      ],
    });
    const page = await listGroups(database.db, { query: 'count' });
    expect(page.groups).toEqual([expect.objectContaining({ name: 'Counted', permissionCount: 3, ruleCount: 0 })]);
    expect(await updateGroup(database.db, 999_999, { name: 'Ghost' })).toBeNull();
  });

  describe('rules', () => {
    it('saves all rows or none, flagging each bad row', async () => {
      const client = await createClient(database.db, { name: 'Rule target', username: 'rule-target', password: '12345678' });
      const group = await createGroup(database.db, { name: 'Rule group', permissions: [] });
      const before = await listGroupRules(database.db);
      const errors = await validationErrors(
        replaceGroupRules(
          database.db,
          [
            { matchBy: 'client', value: 'rule-target', groups: [String(group.id)] },
            { matchBy: 'client', value: 'nobody-has-this', groups: [String(group.id)] },
            { matchBy: 'client_id', value: '', groups: [] },
            { matchBy: 'nonsense', value: 'x', groups: ['999999'] },
          ],
          rulesRevision(before),
        ),
      );
      expect(errors).toEqual({
        'rules.1.value': 'No client has this username.',
        'rules.2.value': 'Enter an MQTT client ID, or a pattern with *.',
        'rules.2.groups': 'Choose at least one group.',
        'rules.3.matchBy': 'Choose Client, MQTT Client ID or Certificate fingerprint.',
        'rules.3.groups': 'A chosen group no longer exists; choose again.',
      });
      expect(await listGroupRules(database.db)).toEqual(before);

      const saved = await replaceGroupRules(
        database.db,
        [
          { matchBy: 'client', value: ' rule-target ', groups: String(group.id) },
          { matchBy: 'client_id', value: 'sensor-*', groups: [String(group.id), String(group.id)] },
        ],
        rulesRevision(before),
      );
      expect(saved.map((r) => [r.matchBy, r.clientRowId, r.value, r.groups.map((g) => g.name)])).toEqual([
        ['client', client.id, '', ['Rule group']],
        ['client_id', null, 'sensor-*', ['Rule group']],
      ]);
    });

    it('refuses a save made from an outdated page', async () => {
      const group = await createGroup(database.db, { name: 'Race group', permissions: [] });
      const stale = rulesRevision(await listGroupRules(database.db));
      await replaceGroupRules(database.db, [{ matchBy: 'client_id', value: 'first', groups: [String(group.id)] }], stale);
      await expect(
        replaceGroupRules(database.db, [{ matchBy: 'client_id', value: 'second', groups: [String(group.id)] }], stale),
      ).rejects.toBeInstanceOf(ConflictError);
      expect((await listGroupRules(database.db)).map((r) => r.value)).toEqual(['first']);
    });

    it('resolves access from the rules as saved: client rules, exact and pattern client ids, LIKE characters taken literally', async () => {
      const client = await createClient(database.db, { name: 'Access', username: 'access-user', password: '12345678' });
      const base = await createGroup(database.db, { name: 'Base', permissions: [{ effect: 'allow', action: 'publish', topic: 'base/%u' }] });
      const pattern = await createGroup(database.db, { name: 'Pattern', permissions: [{ effect: 'allow', action: 'publish', topic: 'own/%c/#' }] });
      const literal = await createGroup(database.db, { name: 'Literal', permissions: [{ effect: 'allow', action: 'publish', topic: 'lit' }] });
      await replaceGroupRules(
        database.db,
        [
          { matchBy: 'client', value: 'access-user', groups: [String(base.id)] },
          { matchBy: 'client_id', value: 'dev_%-*', groups: [String(pattern.id)] },
          { matchBy: 'client_id', value: 'a\\b', groups: [String(literal.id)] },
        ],
        undefined,
      );
      const who = (mqttClientId: string | undefined) => ({ clientRowId: client.id, username: 'access-user', mqttClientId });
      const matched = await loadAccess(database.db, who('dev_%-7'));
      expect(matched.groups.map((g) => g.name)).toEqual(['Base', 'Pattern']);
      expect(decidePublish(matched, 'own/dev_%-7/x').allowed).toBe(true);
      expect(decidePublish(matched, 'base/access-user').allowed).toBe(true);
      // `_` and `%` are not LIKE wildcards here
      expect((await loadAccess(database.db, who('devX%-7'))).groups.map((g) => g.name)).toEqual(['Base']);
      expect((await loadAccess(database.db, who('dev_XY-7'))).groups.map((g) => g.name)).toEqual(['Base']);
      expect((await loadAccess(database.db, who('a\\b'))).groups.map((g) => g.name)).toEqual(['Base', 'Literal']);
      const unknownId = await loadAccess(database.db, who(undefined));
      expect(unknownId.groups.map((g) => g.name)).toEqual(['Base']);
      expect(unknownId.unresolvedRules.map((r) => r.value)).toEqual(['dev_%-*', 'a\\b']);
    });

    it('deleting a group removes it from rules, removes rules left empty, and records what changed', async () => {
      const client = await createClient(database.db, { name: 'Keeper', username: 'keeper', password: '12345678' });
      const doomed = await createGroup(database.db, { name: 'Doomed', permissions: [] });
      const kept = await createGroup(database.db, { name: 'Kept', permissions: [] });
      await replaceGroupRules(
        database.db,
        [
          { matchBy: 'client', value: 'keeper', groups: [String(doomed.id), String(kept.id)] },
          { matchBy: 'client_id', value: 'only-doomed-*', groups: [String(doomed.id)] },
        ],
        undefined,
      );
      expect(await groupDeletionImpact(database.db, doomed.id)).toEqual([
        { rule: 'The rule for client “Keeper” (keeper)', removed: false, remainingGroups: ['Kept'] },
        { rule: 'The rule for MQTT client ID pattern “only-doomed-*”', removed: true, remainingGroups: [] },
      ]);
      const result = await deleteGroup(database.db, doomed.id);
      expect(result?.change?.summary).toBe('Group “Doomed” was deleted.');
      expect(result?.change?.details).toEqual([
        'The rule for client “Keeper” (keeper) no longer gives “Doomed”; it still gives “Kept”.',
        'The rule for MQTT client ID pattern “only-doomed-*” was removed: “Doomed” was its only group.',
      ]);
      expect((await listGroupRules(database.db)).map((r) => [r.clientRowId, r.value, r.groups.map((g) => g.name)])).toEqual([
        [client.id, '', ['Kept']],
      ]);
      expect((await listRuleChanges(database.db))[0]?.id).toBe(result?.change?.id);
      expect(await deleteGroup(database.db, doomed.id)).toBeNull();
    });

    it('deleting a client removes the rules that name it and records what changed', async () => {
      const client = await createClient(database.db, { name: 'Leaving', username: 'leaving', password: '12345678' });
      const group = await createGroup(database.db, { name: 'Left behind', permissions: [] });
      await replaceGroupRules(
        database.db,
        [
          { matchBy: 'client', value: 'leaving', groups: [String(group.id)] },
          { matchBy: 'client_id', value: 'stays', groups: [String(group.id)] },
        ],
        undefined,
      );
      expect((await clientGroupsOverview(database.db, [client.id])).groupsByClient.get(client.id)).toEqual(['Left behind']);
      const deleted = await deleteClient(database.db, client.id);
      expect(deleted?.ruleChange?.summary).toBe('Client “Leaving” (leaving) was deleted.');
      expect(deleted?.ruleChange?.details).toEqual(['The rule for client “Leaving” (leaving) was removed; it gave “Left behind”.']);
      expect((await listGroupRules(database.db)).map((r) => r.value)).toEqual(['stays']);

      const lonely = await createClient(database.db, { name: 'No rules', username: 'no-rules', password: '12345678' });
      expect((await deleteClient(database.db, lonely.id))?.ruleChange).toBeNull();
    });
  });
});
