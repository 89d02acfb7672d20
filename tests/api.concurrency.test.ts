import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type OpenDatabase } from '../src/db';
import { createApiToken } from '../src/domain/apiTokens';
import { createClient, getClient } from '../src/domain/clients';
import { createGroup, getGroup } from '../src/domain/groups';
import { createApp } from '../src/web/app';
import { createPostgresTestDatabase, drivers } from './support/db';

describe.runIf(drivers.includes('postgres'))('If-Match on a delete, racing a change', () => {
  let created: Awaited<ReturnType<typeof createPostgresTestDatabase>>;
  let database: OpenDatabase;
  let operator: postgres.Sql;
  let app: ReturnType<typeof createApp>;
  let token: string;
  beforeAll(async () => {
    created = await createPostgresTestDatabase();
    database = await openDatabase({ kind: 'postgres', url: created.url, maxConnections: 5 });
    operator = postgres(created.url, { max: 1, onnotice: () => {} });
    app = createApp({ db: database.db, log: () => {} });
    token = (await createApiToken(database.db, { name: 'deleter', preset: 'editor' })).secret;
  });
  afterAll(async () => {
    await operator?.end();
    await database?.close();
    await created?.drop();
  });

  /**
   * Sends `DELETE path` with `If-Match` while `change` (an edit that bumps the
   * version) holds the row, and commits the change only once the delete waits
   * for it: the delete read the version before the edit, and acts after it.
   */
  async function deleteDuringChange(path: string, etag: string, change: (tx: postgres.TransactionSql) => Promise<unknown>): Promise<Response> {
    let deleting: Promise<Response> | Response | undefined;
    await operator.begin(async (tx) => {
      await change(tx);
      deleting = app.request(path, { method: 'DELETE', headers: { authorization: `Bearer ${token}`, 'if-match': etag } });
      for (let waited = 0; ; waited += 20) {
        // pg_stat_activity is a snapshot per transaction unless cleared.
        await tx`select pg_stat_clear_snapshot()`;
        const [blocked] = await tx`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`;
        if (blocked!.n > 0) break;
        if (waited > 30_000) throw new Error('the delete never waited for the change');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    });
    return deleting!;
  }

  it('refuses to delete a client changed after the version it names was read', async () => {
    const client = await createClient(database.db, { name: 'Kept', username: 'kept', password: 'kept-secret-1' });
    const res = await deleteDuringChange(`/api/v1/clients/${client.id}`, `"v${client.version}"`, (tx) => tx`update clients set name = 'Renamed', version = version + 1 where id = ${client.id}`);
    expect(res.status).toBe(412);
    expect((await getClient(database.db, client.id))?.name).toBe('Renamed');
  });

  it('refuses to delete a group changed after the version it names was read', async () => {
    const group = await createGroup(database.db, { name: 'kept-group', permissions: [] });
    const res = await deleteDuringChange(`/api/v1/groups/${group.id}`, `"v${group.version}"`, (tx) => tx`update groups set description = 'changed', version = version + 1 where id = ${group.id}`);
    expect(res.status).toBe(412);
    expect((await getGroup(database.db, group.id))?.description).toBe('changed');
  });
});
