import { describe, expect, it } from 'vitest';
import {
  decidePublish,
  decideSubscribe,
  mayDeliver,
  NO_ACCESS,
  resolveAccess,
  type Action,
  type Effect,
  type RuleGrantRow,
  type RuleRef,
} from '../src/domain/acl';

type Row = [Effect, Action, string];

let nextRuleId = 1;
function rule(partial: Partial<RuleRef> & Pick<RuleRef, 'matchBy'>): RuleRef {
  const id = nextRuleId++;
  return { id, position: id, clientRowId: null, value: '', ...partial };
}

/** Join rows for `groups` given by `r`. */
function grants(r: RuleRef, groups: Array<{ id: number; name: string; rows: Row[] }>): RuleGrantRow[] {
  return groups.flatMap((g): RuleGrantRow[] =>
    g.rows.length === 0
      ? [{ rule: r, groupId: g.id, groupName: g.name, permission: null }]
      : g.rows.map(([effect, action, topic], position) => ({
          rule: r,
          groupId: g.id,
          groupName: g.name,
          permission: { position, effect, action, topic },
        })),
  );
}

const who = { clientRowId: 7, username: 'sensor-user', mqttClientId: 's1' };

function accessWith(rows: Row[], whoOverride = who) {
  return resolveAccess(grants(rule({ matchBy: 'client', clientRowId: 7 }), [{ id: 1, name: 'G', rows }]), whoOverride);
}

describe('publish decisions', () => {
  const access = accessWith([
    ['allow', 'publish', 'sensors/%c/#'],
    ['deny', 'publish', 'sensors/%c/secret'],
    ['allow', 'publish', 'shared/+'],
    ['allow', 'subscribe', 'commands/#'],
  ]);
  it.each([
    ['sensors/s1/temp', true, 'allowed', 'sensors/%c/#'],
    ['sensors/s1', true, 'allowed', 'sensors/%c/#'], // # matches its parent
    ['sensors/s1/secret', false, 'denied', 'sensors/%c/secret'],
    ['sensors/s2/temp', false, 'no_match', undefined],
    ['shared/x', true, 'allowed', 'shared/+'],
    ['shared/x/y', false, 'no_match', undefined],
    ['commands/x', false, 'no_match', undefined], // a subscribe row does not grant publish
    ['$SYS/x', false, 'reserved', undefined],
    ['$gatehouse/refused', false, 'reserved', undefined],
  ])('%s → allowed %s (%s by %s)', (topic, allowed, reason, deciding) => {
    const decision = decidePublish(access, topic);
    expect(decision.allowed).toBe(allowed);
    expect(decision.reason).toBe(reason);
    expect(decision.permission?.topic).toBe(deciding);
  });

  it('denies everything without any row', () => {
    expect(decidePublish(NO_ACCESS, 'a').allowed).toBe(false);
    expect(decideSubscribe(NO_ACCESS, '#').allowed).toBe(false);
    expect(mayDeliver(NO_ACCESS, 'a')).toBe(false);
  });

  it('lets a deny win whatever the order of rows and groups', () => {
    const r = rule({ matchBy: 'client', clientRowId: 7 });
    const access = resolveAccess(
      grants(r, [
        { id: 1, name: 'A allows', rows: [['allow', 'publish', '#']] },
        { id: 2, name: 'B denies', rows: [['deny', 'publish', 'x/y']] },
      ]),
      who,
    );
    expect(decidePublish(access, 'x/y')).toMatchObject({ allowed: false, reason: 'denied', permission: { groupName: 'B denies' } });
    expect(decidePublish(access, 'x/z')).toMatchObject({ allowed: true, permission: { groupName: 'A allows' } });
  });
});

describe('subscribe decisions', () => {
  const access = accessWith([
    ['allow', 'subscribe', 'sensors/#'],
    ['deny', 'subscribe', 'sensors/secret/#'],
    ['allow', 'subscribe', 'a/+'],
    ['deny', 'subscribe', 'dash/+/secret'],
    ['allow', 'subscribe', 'dash/#'],
    ['allow', 'publish', 'pub/#'],
  ]);
  it.each([
    ['sensors/#', true, 'allowed'], // granted: the deny only covers part of it
    ['sensors/+/temp', true, 'allowed'],
    ['sensors/secret/#', false, 'denied'],
    ['sensors/secret/x', false, 'denied'],
    ['sensors/secret', false, 'denied'], // sensors/secret/# matches its parent
    ['sensors', true, 'allowed'],
    ['a/b', true, 'allowed'],
    ['a/+', true, 'allowed'],
    ['a/#', false, 'no_match'], // a/+ does not cover a/b/c
    ['#', false, 'no_match'],
    ['+/temp', false, 'no_match'],
    ['pub/x', false, 'no_match'], // publish rows grant no subscription
    ['$SYS/#', false, 'reserved'],
    ['dash/#', true, 'allowed'],
    ['dash/s1/secret', false, 'denied'],
  ])('%s → granted %s (%s)', (filter, allowed, reason) => {
    const decision = decideSubscribe(access, filter);
    expect(decision.allowed).toBe(allowed);
    expect(decision.reason).toBe(reason);
  });

  it('lists the deny rows that withhold part of a granted subscription', () => {
    const decision = decideSubscribe(access, 'sensors/#');
    expect(decision.permission?.topic).toBe('sensors/#');
    expect(decision.withheld?.map((p) => p.topic)).toEqual(['sensors/secret/#']);
    expect(decideSubscribe(access, 'sensors/public/#').withheld).toEqual([]);
  });

  it.each([
    ['sensors/public/x', true],
    ['sensors/secret/x', false],
    ['sensors/secret', false],
    ['dash/s1/temp', true],
    ['dash/s1/secret', false],
    ['elsewhere', false], // no allow matches
    ['$SYS/x', false],
  ])('delivers %s: %s', (topic, expected) => {
    expect(mayDeliver(access, topic)).toBe(expected);
  });
});

describe('resolveAccess', () => {
  const byClient = rule({ matchBy: 'client', clientRowId: 7, position: 0 });
  const byPattern = rule({ matchBy: 'client_id', value: 'sensor-*', position: 1 });
  const byExactId = rule({ matchBy: 'client_id', value: 'dash-1', position: 2 });
  const otherClient = rule({ matchBy: 'client', clientRowId: 8, position: 3 });
  const rows = [
    ...grants(byClient, [{ id: 1, name: 'Base', rows: [['allow', 'publish', 'base/#']] }]),
    ...grants(byPattern, [
      { id: 2, name: 'Sensors', rows: [['allow', 'publish', 'sensors/%c/#']] },
      { id: 1, name: 'Base', rows: [['allow', 'publish', 'base/#']] },
    ]),
    ...grants(byExactId, [{ id: 3, name: 'Dashboards', rows: [['allow', 'subscribe', '#']] }]),
    ...grants(otherClient, [{ id: 4, name: 'Other', rows: [] }]),
  ];

  it('merges the groups of every rule that matches, each group once, noting the rules that gave it', () => {
    const access = resolveAccess(rows, { clientRowId: 7, username: 'u', mqttClientId: 'sensor-9' });
    expect(access.groups.map((g) => [g.name, g.via.map((r) => r.id)])).toEqual([
      ['Base', [byClient.id, byPattern.id]],
      ['Sensors', [byPattern.id]],
    ]);
    expect(access.permissions.map((p) => [p.groupName, p.filter])).toEqual([
      ['Base', 'base/#'],
      ['Sensors', 'sensors/sensor-9/#'],
    ]);
  });

  it('matches client id rules exactly or by pattern, and client rules by row id', () => {
    expect(resolveAccess(rows, { clientRowId: 8, username: 'u', mqttClientId: 'dash-1' }).groups.map((g) => g.name)).toEqual([
      'Dashboards',
      'Other',
    ]);
    expect(resolveAccess(rows, { clientRowId: 9, username: 'u', mqttClientId: 'dash-10' }).groups).toEqual([]);
  });

  it('leaves client id rules unresolved when the client id is unknown', () => {
    const access = resolveAccess(rows, { clientRowId: 7, username: 'u', mqttClientId: undefined });
    expect(access.groups.map((g) => g.name)).toEqual(['Base']);
    expect(access.unresolvedRules.map((r) => r.id)).toEqual([byPattern.id, byExactId.id]);
  });

  it('keeps a group without rows (it grants nothing) and a row whose placeholder is unusable (it matches nothing)', () => {
    const access = resolveAccess(
      grants(byClient, [
        { id: 5, name: 'Empty', rows: [] },
        { id: 6, name: 'Own', rows: [['allow', 'publish', 'own/%c']] },
      ]),
      { clientRowId: 7, username: 'u', mqttClientId: 'bad/#' },
    );
    expect(access.groups.map((g) => g.name)).toEqual(['Empty', 'Own']);
    expect(access.permissions[0]).toMatchObject({ topic: 'own/%c', filter: null });
    expect(decidePublish(access, 'own/bad/#').allowed).toBe(false);
    expect(decidePublish(access, 'own/bad').allowed).toBe(false);
  });

  it('is frozen: a snapshot cannot be changed after CONNECT', () => {
    const access = resolveAccess(rows, { clientRowId: 7, username: 'u', mqttClientId: 's' });
    expect(Object.isFrozen(access)).toBe(true);
    expect(Object.isFrozen(access.permissions)).toBe(true);
  });
});
