import { afterAll, describe, expect, it } from 'vitest';
import { listenForAccessChanges } from '../src/db/changes';
import { loadAccessModel } from '../src/domain/access/model';
import { loadAccess } from '../src/domain/access/query';
import { createClient } from '../src/domain/clients';
import { createApp } from '../src/web/app';
import { grantGroup } from './support/acl';
import { signIn } from './support/admin';
import { createTestDatabase } from './support/db';
import { tableRows } from './support/html';

/**
 * The clients list's kept pages on a single node, where a page lives until
 * the version changes (`listVersionComplete`): a page must never be kept
 * under a version newer than the rules it was judged with.
 */
describe('the clients list on a single node, its pages kept', () => {
  const closing: Array<() => Promise<unknown> | unknown> = [];
  afterAll(async () => {
    for (const close of closing.reverse()) await close();
  });

  it('does not keep a "No access only" page judged with rules older than its version', async () => {
    const database = await createTestDatabase('pglite');
    closing.push(() => database.close());
    const db = database.db;
    await createClient(db, { name: 'Alpha', username: 'alpha', password: 'alpha-password' });
    const changes = await listenForAccessChanges(database);
    closing.push(() => changes.close());
    const model = await loadAccessModel(db, changes);
    closing.push(() => model.close());
    // A rule change committed and heard after the request took the model's
    // rules, while it goes on to read the page.
    let interleave: (() => Promise<void>) | undefined;
    const app = createApp({
      db,
      log: () => {},
      live: { sessionsByClient: async () => new Map() },
      access: {
        accessOf: (who) => loadAccess(db, who),
        rules: async () => {
          await model.caughtUp();
          const rules = model.rules();
          const change = interleave;
          interleave = undefined;
          await change?.();
          return rules;
        },
        settled: model.settled,
        listVersion: () => (model.current() ? `${model.changesHeard()}:0` : null),
        listVersionComplete: true,
      },
    });
    const signedIn = await signIn(app, db);
    const names = async () => tableRows(await (await signedIn.request('/clients?access=none')).text()).map((row) => row.Name);
    interleave = async () => {
      await grantGroup(db, { name: 'Alphas', permissions: [['allow', 'publish', 'a/#']], usernames: ['alpha'] });
    };
    expect(await names()).toContain('Alpha');
    await model.settled();
    expect(await model.caughtUp()).toBe(true);
    expect(await names(), 'Alpha has a group now: it is not a client without access').not.toContain('Alpha');
  });
});
