import { describe, expect, it } from 'vitest';
import {
  decidePublish,
  decideSubscribe,
  mayDeliver,
  NO_ACCESS,
  resolveAccess,
  MAX_REMEMBERED_TOPIC_LENGTH,
  SessionDecisions,
} from '../src/domain/access/acl';
import type { Action, Effect, RuleGrantRow, RuleRef, Who } from '../src/domain/access/types';

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

function accessWith(rows: Row[], whoOverride: Who = who) {
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

describe('a substituted value that is unusable (hostile client ids and usernames)', () => {
  const hostile = ['+', '#', '/', 'a/b', 'x+y', 'dev#1', '', 'nul\u0000'];
  const withId = (mqttClientId: string, rows: Row[]) => accessWith(rows, { ...who, mqttClientId });
  const withUser = (username: string, rows: Row[]) => accessWith(rows, { ...who, username });

  it('still refuses what a working deny refuses, for a well-behaved client id', () => {
    const access = withId('dev1', [['allow', 'publish', 'fleet/#'], ['deny', 'publish', 'fleet/+/%c/cmd']]);
    expect(decidePublish(access, 'fleet/x/dev1/cmd')).toMatchObject({ allowed: false, reason: 'denied' });
    expect(decidePublish(access, 'fleet/x/dev1/status').allowed).toBe(true);
  });

  it.each(hostile)('client id %j: a Deny/Publish row with %%c denies every topic (fails closed)', (clientId) => {
    const access = withId(clientId, [['allow', 'publish', 'fleet/#'], ['deny', 'publish', 'fleet/+/%c/cmd'], ['allow', 'subscribe', 'fleet/#']]);
    for (const topic of ['fleet/x/dev+1/cmd', `fleet/x/${clientId}/cmd`, 'fleet/x/other/cmd', 'fleet/status', 'anything']) {
      expect(decidePublish(access, topic)).toMatchObject({ allowed: false, reason: 'denied', permission: { topic: 'fleet/+/%c/cmd', filter: '#' } });
    }
    // Only its own action: subscriptions are untouched.
    expect(decideSubscribe(access, 'fleet/#').allowed).toBe(true);
    expect(mayDeliver(access, 'fleet/x')).toBe(true);
  });

  it.each(hostile)('username %j: a Deny/Publish row with %%u denies every topic (fails closed)', (username) => {
    const access = withUser(username, [['allow', 'publish', '#'], ['deny', 'publish', 'users/%u/admin']]);
    expect(decidePublish(access, 'users/x/admin')).toMatchObject({ allowed: false, reason: 'denied', permission: { topic: 'users/%u/admin' } });
    expect(decidePublish(access, 'elsewhere')).toMatchObject({ allowed: false, reason: 'denied' });
  });

  it.each(hostile)('client id %j: a Deny/Subscribe row with %%c refuses every subscription and every delivery', (clientId) => {
    const access = withId(clientId, [['allow', 'subscribe', '#'], ['deny', 'subscribe', 'private/%c/#'], ['allow', 'publish', 'out/#']]);
    for (const filter of ['#', 'private/+/#', 'public/x', '+']) {
      expect(decideSubscribe(access, filter)).toMatchObject({ allowed: false, reason: 'denied', permission: { topic: 'private/%c/#' } });
    }
    expect(mayDeliver(access, 'public/x')).toBe(false);
    expect(mayDeliver(access, `private/${clientId}/x`)).toBe(false);
    expect(decidePublish(access, 'out/x').allowed).toBe(true);
  });

  it.each(hostile)('username %j: a Deny/Subscribe row with %%u refuses every subscription and every delivery', (username) => {
    const access = withUser(username, [['allow', 'subscribe', '#'], ['deny', 'subscribe', 'inbox/%u']]);
    expect(decideSubscribe(access, 'news/#')).toMatchObject({ allowed: false, reason: 'denied' });
    expect(mayDeliver(access, 'news/x')).toBe(false);
  });

  it.each(hostile)('client id %j: an Allow row with %%c still grants nothing', (clientId) => {
    const access = withId(clientId, [['allow', 'publish', 'own/%c/#'], ['allow', 'subscribe', 'own/%c/#']]);
    expect(access.permissions.map((p) => p.filter)).toEqual([null, null]);
    for (const topic of ['own/x', `own/${clientId}`, `own/${clientId}/x`, 'own', 'x']) {
      expect(decidePublish(access, topic)).toMatchObject({ allowed: false, reason: 'no_match' });
      expect(mayDeliver(access, topic)).toBe(false);
    }
    expect(decideSubscribe(access, 'own/#')).toMatchObject({ allowed: false, reason: 'no_match' });
    expect(decideSubscribe(access, '#')).toMatchObject({ allowed: false, reason: 'no_match' });
  });

  it.each(hostile)('username %j: an Allow row with %%u still grants nothing', (username) => {
    const access = withUser(username, [['allow', 'publish', 'users/%u/#'], ['allow', 'subscribe', 'users/%u/#']]);
    expect(decidePublish(access, 'users/x/y').allowed).toBe(false);
    expect(decideSubscribe(access, 'users/#').allowed).toBe(false);
    expect(mayDeliver(access, 'users/x/y')).toBe(false);
  });

  it('keeps refusing $ topics, and leaves a %c deny unresolved while the client id is unknown (the console)', () => {
    const failed = withId('+', [['allow', 'publish', '#'], ['deny', 'publish', 'a/%c']]);
    expect(decidePublish(failed, '$SYS/x').reason).toBe('reserved');
    const unknown = accessWith([['deny', 'publish', 'a/%c'], ['deny', 'publish', 'b/%u/%c']], { ...who, mqttClientId: undefined });
    expect(unknown.permissions.map((p) => p.filter)).toEqual([null, null]);
    // An unusable username fails closed even then.
    const badUser = accessWith([['deny', 'publish', 'b/%u/%c']], { ...who, username: 'a/b', mqttClientId: undefined });
    expect(badUser.permissions.map((p) => p.filter)).toEqual(['#']);
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

describe('decisions remembered per session', () => {
  const access = accessWith([
    ['allow', 'publish', 'sensors/%c/#'],
    ['deny', 'publish', 'sensors/%c/secret'],
    ['allow', 'subscribe', 'plant/#'],
    ['deny', 'subscribe', 'plant/private/#'],
  ]);

  it.each(['sensors/s1/temp', 'sensors/s1/secret', 'sensors/s2/temp', 'plant/a', 'plant/private/x', '$SYS/x', 'other'])(
    'answers %s as the pure functions do, the first time and again',
    (topic) => {
      const decisions = new SessionDecisions(access);
      for (let i = 0; i < 2; i++) {
        expect(decisions.mayPublish(topic)).toBe(decidePublish(access, topic).allowed);
        expect(decisions.mayDeliver(topic)).toBe(mayDeliver(access, topic));
      }
    },
  );

  it('does not remember topics longer than 256 characters, and bounds the length of those it does', () => {
    const decisions = new SessionDecisions(access);
    const long = `plant/${'x'.repeat(64 * 1024)}`;
    expect(decisions.mayDeliver(long)).toBe(true);
    expect(decisions.mayPublish(`sensors/s1/${'y'.repeat(MAX_REMEMBERED_TOPIC_LENGTH)}`)).toBe(true);
    expect(decisions.remembered()).toEqual({ topics: 0, chars: 0 });
    let most = 0;
    for (let i = 0; i < 1000; i++) {
      const topic = `plant/${String(i).padStart(MAX_REMEMBERED_TOPIC_LENGTH - 6, '0')}`;
      expect(decisions.mayDeliver(topic)).toBe(true);
      expect(decisions.mayPublish(`sensors/s1/${topic}`.slice(0, MAX_REMEMBERED_TOPIC_LENGTH))).toBe(true);
      most = Math.max(most, decisions.remembered().chars);
    }
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(2 * 4096);
  });

  it('stays right past its bound on distinct topics', () => {
    const decisions = new SessionDecisions(access, 4);
    for (let i = 0; i < 20; i++) {
      expect(decisions.mayPublish(`sensors/s1/t${i}`)).toBe(true);
      expect(decisions.mayPublish('sensors/s1/secret')).toBe(false);
      expect(decisions.mayDeliver(`plant/private/${i}`)).toBe(false);
    }
  });
});
