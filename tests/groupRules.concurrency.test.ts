import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema, type OpenDatabase } from '../src/db';
import { createClient, deleteClient } from '../src/domain/clients';
import { ConflictError, ValidationError } from '../src/domain/errors';
import { addGroupRule, deleteGroupRule, listGroupRules, replaceGroupRules, RuleChangedError, ruleRevision, updateGroupRule } from '../src/domain/groupRules';
import { createGroup, deleteGroup } from '../src/domain/groups';
import { generatedPasswordToken, generatePassword } from '../src/domain/password';
import { createTestDatabase, drivers } from './support/db';

const PAIRS = 20;

/** What a Save racing a deletion may do: succeed, or refuse with a message for the form (never a 500). */
async function outcomeOf(save: Promise<unknown>): Promise<'saved' | 'conflict' | 'invalid'> {
  try {
    await save;
    return 'saved';
  } catch (error) {
    if (error instanceof ConflictError) return 'conflict';
    if (error instanceof ValidationError) return 'invalid';
    throw error;
  }
}

describe.each(drivers)('group rules saved while groups and clients are deleted, on %s', (driver) => {
  let database: OpenDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
  });
  afterAll(async () => {
    await database?.close();
  });

  async function checkRulesConsistent() {
    const groupIds = new Set((await database.db.select({ id: schema.groups.id }).from(schema.groups)).map((g) => g.id));
    for (const rule of await listGroupRules(database.db)) {
      expect(rule.groups.length).toBeGreaterThan(0);
      for (const g of rule.groups) expect(groupIds.has(g.id)).toBe(true);
    }
  }

  it(`lets ${PAIRS} Saves race ${PAIRS} group deletions without an unexpected error`, async () => {
    const keep = await createGroup(database.db, { name: 'Kept', permissions: [] });
    const outcomes: string[] = [];
    for (let i = 0; i < PAIRS; i++) {
      const doomed = await createGroup(database.db, { name: `Doomed ${i}`, permissions: [] });
      const [outcome, deleted] = await Promise.all([
        outcomeOf(
          replaceGroupRules(
            database.db,
            [
              { matchBy: 'client_id', value: `dev-${i}-*`, groups: [String(doomed.id), String(keep.id)] },
              { matchBy: 'client_id', value: `only-${i}`, groups: [String(doomed.id)] },
            ],
            undefined,
          ),
        ),
        deleteGroup(database.db, doomed.id),
      ]);
      expect(deleted?.group.id).toBe(doomed.id);
      outcomes.push(outcome);
      await checkRulesConsistent();
    }
    expect(outcomes).toHaveLength(PAIRS);
  });

  it(`lets ${PAIRS} Saves race ${PAIRS} client deletions without an unexpected error`, async () => {
    const group = await createGroup(database.db, { name: 'For clients', permissions: [] });
    for (let i = 0; i < PAIRS; i++) {
      // A generated password: a typed one is an Argon2id hash per client, and the subject is the race.
      const secret = generatePassword();
      const client = await createClient(database.db, { name: `Device ${i}`, username: `device-${i}`, password: secret, password_generated: generatedPasswordToken(secret) });
      const [, deleted] = await Promise.all([
        outcomeOf(replaceGroupRules(database.db, [{ matchBy: 'client', value: client.username, groups: [String(group.id)] }], undefined)),
        deleteClient(database.db, client.id),
      ]);
      expect(deleted?.id).toBe(client.id);
      // Whichever went first, no rule names the deleted client.
      expect((await listGroupRules(database.db)).filter((rule) => rule.clientRowId === client.id)).toEqual([]);
    }
  });

  it('reports a group deleted under a Save by a path that skips the lock as a conflict, not a crash', async () => {
    const keep = await createGroup(database.db, { name: 'Kept too', permissions: [] });
    for (let i = 0; i < PAIRS; i++) {
      const doomed = await createGroup(database.db, { name: `Raw ${i}`, permissions: [] });
      const [outcome] = await Promise.all([
        outcomeOf(replaceGroupRules(database.db, [{ matchBy: 'client_id', value: `raw-${i}`, groups: [String(keep.id), String(doomed.id)] }], undefined)),
        database.db.delete(schema.groups).where(eq(schema.groups.id, doomed.id)),
      ]);
      expect(['saved', 'conflict', 'invalid']).toContain(outcome);
      await checkRulesConsistent();
    }
  });

  it('turns a foreign-key failure during a Save into a ConflictError with a message for the form', async () => {
    // Deterministic stand-in for the race: the group vanishes between validation and insert.
    const doomed = await createGroup(database.db, { name: 'Vanishing', permissions: [] });
    await database.db.execute(
      sql.raw(`create function vanish() returns trigger language plpgsql as $$
        begin delete from groups where id = ${doomed.id}; return new; end $$`),
    );
    await database.db.execute(sql.raw('create trigger vanish before insert on group_rules for each row execute function vanish()'));
    try {
      const error = await replaceGroupRules(database.db, [{ matchBy: 'client_id', value: 'gone', groups: [String(doomed.id)] }], undefined).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ConflictError);
      expect((error as ConflictError).fieldErrors).toEqual({
        form: expect.stringContaining('A group or client used by these rules was deleted meanwhile'),
      });
    } finally {
      await database.db.execute(sql.raw('drop trigger vanish on group_rules'));
      await database.db.execute(sql.raw('drop function vanish()'));
    }
  });

  it(`lets ${PAIRS} pairs of edits of one rule made from the same page race: one saves, the other is told someone else changed it`, async () => {
    const group = await createGroup(database.db, { name: 'Edited in pairs', permissions: [] });
    for (let i = 0; i < PAIRS; i++) {
      const rule = await addGroupRule(database.db, { matchBy: 'client_id', value: `pair-${i}`, groups: [String(group.id)] });
      const revision = ruleRevision(rule);
      const results = await Promise.all(
        ['mine', 'theirs'].map((who) => updateGroupRule(database.db, rule.id, { matchBy: 'client_id', value: `pair-${i}-${who}`, groups: [String(group.id)] }, revision).catch((e: unknown) => e)),
      );
      const refused = results.filter((r) => r instanceof RuleChangedError);
      expect(refused).toHaveLength(1);
      expect((refused[0] as RuleChangedError).message).toContain('Someone else changed this rule since you opened it');
      const saved = results.find((r) => !(r instanceof Error)) as { value: string };
      // What the refused edit is shown is the rule as the other one saved it.
      expect((refused[0] as RuleChangedError).current?.value).toBe(saved.value);
      expect((await listGroupRules(database.db)).find((r) => r.id === rule.id)?.value).toBe(saved.value);
    }
  });

  it(`lets ${PAIRS} edits race ${PAIRS} deletions of the same rule: never both, never an unexpected error`, async () => {
    const group = await createGroup(database.db, { name: 'Edited or deleted', permissions: [] });
    for (let i = 0; i < PAIRS; i++) {
      const rule = await addGroupRule(database.db, { matchBy: 'client_id', value: `either-${i}`, groups: [String(group.id)] });
      const revision = ruleRevision(rule);
      const [edited, deleted] = await Promise.all([
        updateGroupRule(database.db, rule.id, { matchBy: 'client_id', value: `either-${i}-edited`, groups: [String(group.id)] }, revision).catch((e: unknown) => e),
        deleteGroupRule(database.db, rule.id, revision).catch((e: unknown) => e),
      ]);
      const editSaved = !(edited instanceof Error);
      const deleteDone = !(deleted instanceof Error) && deleted !== null;
      expect(editSaved !== deleteDone).toBe(true);
      if (!editSaved) expect(edited).toBeInstanceOf(RuleChangedError);
      if (!deleteDone) expect(deleted).toBeInstanceOf(RuleChangedError);
      expect((await listGroupRules(database.db)).some((r) => r.id === rule.id)).toBe(editSaved);
    }
  });

  it(`lets ${PAIRS} row edits race ${PAIRS} group deletions without an unexpected error`, async () => {
    const keep = await createGroup(database.db, { name: 'Kept for rows', permissions: [] });
    const rule = await addGroupRule(database.db, { matchBy: 'client_id', value: 'row-edit', groups: [String(keep.id)] });
    for (let i = 0; i < PAIRS; i++) {
      const doomed = await createGroup(database.db, { name: `Row doomed ${i}`, permissions: [] });
      const [outcome, deleted] = await Promise.all([
        outcomeOf(updateGroupRule(database.db, rule.id, { matchBy: 'client_id', value: `row-edit`, groups: [String(doomed.id), String(keep.id)] }, undefined)),
        deleteGroup(database.db, doomed.id),
      ]);
      expect(deleted?.group.id).toBe(doomed.id);
      expect(['saved', 'invalid']).toContain(outcome);
      await checkRulesConsistent();
    }
  });

  it('turns a foreign-key failure during a row edit into a ConflictError with a message for the row', async () => {
    const keep = await createGroup(database.db, { name: 'Kept under a row', permissions: [] });
    const doomed = await createGroup(database.db, { name: 'Vanishing under a row', permissions: [] });
    const rule = await addGroupRule(database.db, { matchBy: 'client_id', value: 'row-vanish', groups: [String(keep.id)] });
    await database.db.execute(
      sql.raw(`create function vanish_row() returns trigger language plpgsql as $$
        begin delete from groups where id = ${doomed.id}; return new; end $$`),
    );
    await database.db.execute(sql.raw('create trigger vanish_row before insert on group_rule_groups for each row execute function vanish_row()'));
    try {
      const error = await updateGroupRule(database.db, rule.id, { matchBy: 'client_id', value: 'row-vanish', groups: [String(doomed.id)] }, ruleRevision(rule)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConflictError);
      expect((error as ConflictError).fieldErrors).toEqual({ form: expect.stringContaining('A group or client this rule uses was deleted meanwhile') });
    } finally {
      await database.db.execute(sql.raw('drop trigger vanish_row on group_rule_groups'));
      await database.db.execute(sql.raw('drop function vanish_row()'));
    }
    // Nothing of the edit was kept.
    expect((await listGroupRules(database.db)).find((r) => r.id === rule.id)?.groups.map((g) => g.name)).toEqual(['Kept under a row']);
  });
});
