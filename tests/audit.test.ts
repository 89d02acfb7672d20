import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { desc, eq, sql } from 'drizzle-orm';
import { type OpenDatabase, schema } from '../src/db';
import { configSchema } from '../src/config';
import { createAdministrator } from '../src/domain/administrators';
import {
  createAuditRecorder,
  csvCell,
  deleteOldAuditEvents,
  listAuditGroups,
  parseAuditFilters,
  startAuditRetention,
  type AuditEvent,
  type AuditRecorder,
} from '../src/domain/audit';
import { createClient } from '../src/domain/clients';
import { createApp } from '../src/web/app';
import { signIn, TEST_ORIGIN, type SignedInApp } from './support/admin';
import { createTestDatabase, drivers } from './support/db';
import { htmx, postForm, send } from './support/http';
import { tableRows } from './support/html';

const { auditEvents, clients, administrators } = schema;

/** Every stored audit row, oldest first. */
async function allEvents(database: OpenDatabase): Promise<AuditEvent[]> {
  return database.db.select().from(auditEvents).orderBy(auditEvents.id);
}

async function eventsOfKind(database: OpenDatabase, kind: string): Promise<AuditEvent[]> {
  return database.db.select().from(auditEvents).where(eq(auditEvents.kind, kind)).orderBy(auditEvents.id);
}

/** A CSV body split into rows of cells (RFC 4180 quoting), enough for these tests. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(cell);
      cell = '';
    } else if (ch === '\r' && text[i + 1] === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
      i++;
    } else cell += ch;
  }
  if (cell || row.length) rows.push([...row, cell]);
  return rows;
}

describe.each(drivers)('audit trail on %s', (driver) => {
  let database: OpenDatabase;
  let recorder: AuditRecorder;
  let app: ReturnType<typeof createApp>;
  let admin: SignedInApp;

  beforeAll(async () => {
    database = await createTestDatabase(driver);
    // The interval is long: these tests flush when they mean to.
    recorder = createAuditRecorder(database.db, { flushIntervalMs: 3_600_000 });
    app = createApp({ db: database.db, audit: recorder, trustProxy: true, log: () => {} });
    admin = await signIn(app, database.db, 'auditor');
  });
  afterAll(async () => {
    await recorder?.close();
    await database?.close();
  });
  beforeEach(async () => {
    await recorder.flush();
    await database.db.delete(auditEvents);
  });

  const fromAddress = { 'x-forwarded-for': '198.51.100.7' };

  it('records a client edit with before and after, and never the password or its hash', async () => {
    const created = await postForm(admin, '/clients', { name: 'Front door', username: 'front-door', password: 'first-secret-pw' }, fromAddress);
    expect(created.status).toBe(303);
    const [row] = await database.db.select().from(clients).where(eq(clients.username, 'front-door'));
    const firstHash = row!.passwordHash;

    const edited = await postForm(admin, `/clients/${row!.id}`, { name: 'Back door', username: 'front-door', password: 'second-secret-pw' }, fromAddress);
    expect(edited.status).toBe(303);
    const [after] = await database.db.select().from(clients).where(eq(clients.id, row!.id));

    const [creation] = await eventsOfKind(database, 'client.created');
    expect(creation).toMatchObject({ actor: 'auditor', subject: 'front-door', address: '198.51.100.7', count: 1 });
    expect(creation!.details).toEqual({ after: { id: row!.id, name: 'Front door', username: 'front-door', authType: 'password' }, note: 'password set' });

    const [edit] = await eventsOfKind(database, 'client.updated');
    expect(edit).toMatchObject({ actor: 'auditor', subject: 'front-door', address: '198.51.100.7' });
    expect(edit!.details).toEqual({
      before: { id: row!.id, name: 'Front door', username: 'front-door', authType: 'password' },
      after: { id: row!.id, name: 'Back door', username: 'front-door', authType: 'password' },
      note: 'password changed',
    });

    // Nowhere in any stored row, in any column.
    const stored = JSON.stringify(await database.db.execute(sql`select row_to_json(a)::text as row from audit_events a`));
    for (const secret of [firstHash, after!.passwordHash, 'first-secret-pw', 'second-secret-pw', '$argon2']) {
      expect(stored).not.toContain(secret);
    }
    expect(stored).toContain('Back door');
  });

  it('records nothing for a change that was not made', async () => {
    await createClient(database.db, { name: 'Taken', username: 'taken', password: 'taken-password' });
    await database.db.delete(auditEvents);
    const refused = await postForm(admin, '/clients', { name: 'Again', username: 'taken', password: 'another-password' });
    expect(refused.status).toBe(409);
    const [row] = await database.db.select().from(clients).where(eq(clients.username, 'taken'));
    const stale = await postForm(admin, `/clients/${row!.id}`, { name: 'Stale', username: 'taken', password: '', version: String(row!.version + 5) });
    expect(stale.status).toBe(409);
    expect(await allEvents(database)).toEqual([]);
  });

  it('records a deleted client with what it was', async () => {
    const client = await createClient(database.db, { name: 'Gone', username: 'gone', password: 'gone-password' });
    const res = await send(admin, `/clients/${client.id}`, { method: 'DELETE', headers: htmx });
    expect(res.status).toBe(200);
    const [deleted] = await eventsOfKind(database, 'client.deleted');
    expect(deleted).toMatchObject({ actor: 'auditor', subject: 'gone' });
    expect(deleted!.details).toMatchObject({ before: { name: 'Gone', username: 'gone' } });
  });

  it('records group changes and group rule saves with before and after', async () => {
    const create = await postForm(admin, '/groups', [
      ['name', 'Sensors'],
      ['description', 'read and write'],
      ['permission-effect', 'allow'],
      ['permission-action', 'publish'],
      ['permission-topic', 'sensors/#'],
    ]);
    expect(create.status).toBe(303);
    const [created] = await eventsOfKind(database, 'group.created');
    const groupId = (created!.details.after as { id: number }).id;
    expect(created).toMatchObject({ actor: 'auditor', subject: 'Sensors' });
    expect(created!.details.after).toMatchObject({ name: 'Sensors', permissions: ['allow publish sensors/#'] });

    const update = await postForm(admin, `/groups/${groupId}`, [
      ['name', 'Sensors'],
      ['description', 'read only'],
      ['permission-effect', 'allow'],
      ['permission-action', 'subscribe'],
      ['permission-topic', 'sensors/+/temp'],
    ]);
    expect(update.status).toBe(303);
    const [updated] = await eventsOfKind(database, 'group.updated');
    expect(updated!.details.before).toMatchObject({ description: 'read and write', permissions: ['allow publish sensors/#'] });
    expect(updated!.details.after).toMatchObject({ description: 'read only', permissions: ['allow subscribe sensors/+/temp'] });

    const rules = await postForm(admin, '/group-rules', [
      ['matchBy', 'client_id'],
      ['value', 'sensor-*'],
      ['groups', String(groupId)],
    ]);
    expect(rules.status).toBe(303);
    const [added] = await eventsOfKind(database, 'group_rule.created');
    expect(added).toMatchObject({ actor: 'auditor', subject: 'MQTT Client ID sensor-*' });
    expect(added!.details).toEqual({ after: { matchBy: 'MQTT Client ID', value: 'sensor-*', groups: ['Sensors'] } });

    const removed = await postForm(admin, `/groups/${groupId}/delete`, {});
    expect(removed.status).toBe(303);
    const [deleted] = await eventsOfKind(database, 'group.deleted');
    expect(deleted!.details.before).toMatchObject({ name: 'Sensors' });
    expect(JSON.stringify(deleted!.details.rulesChanged)).toContain('sensor-*');
  });

  it('records administrator changes without their passwords', async () => {
    const added = await postForm(admin, '/administrators', { username: 'bob', password: 'bob-long-password-1' });
    expect(added.status).toBe(303);
    const [bob] = await database.db.select().from(administrators).where(eq(administrators.username, 'bob'));
    const removed = await postForm(admin, `/administrators/${bob!.id}/remove`, {});
    expect(removed.status).toBe(303);
    const changed = await postForm(admin, '/administrators/password', {
      current_password: 'test-admin-password',
      new_password: 'auditor-new-password',
      confirm_password: 'auditor-new-password',
    });
    expect(changed.status).toBe(303);

    const rows = await allEvents(database);
    expect(rows.map((r) => [r.kind, r.actor, r.subject])).toEqual([
      ['administrator.created', 'auditor', 'bob'],
      ['administrator.deleted', 'auditor', 'bob'],
      ['administrator.password_changed', 'auditor', 'auditor'],
    ]);
    expect(rows[0]!.details).toEqual({ after: { id: bob!.id, username: 'bob' }, note: 'password set' });
    const text = JSON.stringify(rows);
    for (const secret of ['bob-long-password-1', 'auditor-new-password', 'test-admin-password', bob!.passwordHash, '$argon2']) {
      expect(text).not.toContain(secret);
    }
    // The session changed with the password: sign the test administrator in again.
    admin = await signIn(app, database.db, `auditor-${Date.now()}`);
  });

  it('records sign-ins and failed sign-ins with the username tried and the address, never the password, nor a username that is no administrator’s', async () => {
    await createAdministrator(database.db, { username: 'carol', password: 'carol-password-1' });
    await database.db.delete(auditEvents);
    const login = (username: string, password: string) =>
      postForm(app, '/login', { username, password }, { origin: TEST_ORIGIN, 'x-forwarded-for': '203.0.113.9' });
    expect((await login('carol', 'wrong-password-x')).status).toBe(401);
    expect((await login('mallory', 'guess-password')).status).toBe(401);
    expect((await login('carol', 'carol-password-1')).status).toBe(303);

    // Buffered: nothing is written before the flush.
    expect(await allEvents(database)).toEqual([]);
    await recorder.flush();
    const rows = await allEvents(database);
    expect(rows.map((r) => [r.kind, r.actor, r.address, r.details])).toEqual([
      ['console.sign_in_failed', 'carol', '203.0.113.9', { reason: 'bad_credentials' }],
      ['console.sign_in_failed', null, '203.0.113.9', { reason: 'bad_credentials', username: 'not an administrator (not recorded)' }],
      ['console.signed_in', 'carol', '203.0.113.9', {}],
    ]);
    const text = JSON.stringify(rows);
    for (const secret of ['wrong-password-x', 'guess-password', 'carol-password-1', 'mallory']) expect(text).not.toContain(secret);
  });

  it('stores what anyone may send (U+0000, lone surrogates, 64 KB) cut to size, and a batch with a row the database refuses loses only that row', async () => {
    const hostile = `bad\u0000name\ud800${'x'.repeat(65_536)}`;
    recorder.authFailure({ username: hostile, address: '192.0.2.77', reason: 'bad_credentials', clientId: hostile });
    recorder.record({ kind: 'mqtt.publish_refused', actor: 'fine', subject: hostile, details: { clientId: hostile } });
    await recorder.flush();
    const rows = await allEvents(database);
    expect(rows.map((r) => r.kind).sort()).toEqual(['mqtt.auth_failed', 'mqtt.publish_refused']);
    for (const row of rows) {
      for (const text of [row.actor, row.subject, (row.details as { clientId?: string }).clientId].filter((t) => t && t !== 'fine')) {
        expect(text!.startsWith('bad\ufffdname\ufffdxxx')).toBe(true);
        expect(text!.length).toBeLessThanOrEqual(4096);
      }
      expect(row.actor === 'fine' || row.actor!.length <= 256).toBe(true);
    }

    // A row PostgreSQL refuses (a count beyond integer) goes alone; the others are written.
    recorder.record({ kind: 'console.signed_in', actor: 'before' });
    recorder.record({ kind: 'console.signed_in', actor: 'too-many', count: 2 ** 40 });
    recorder.record({ kind: 'console.signed_in', actor: 'after' });
    await recorder.flush();
    const signIns = (await eventsOfKind(database, 'console.signed_in')).map((r) => r.actor);
    expect(signIns).toEqual(['before', 'after']);
    expect(recorder.stats().buffered).toBe(0);
  });

  it('drops and counts events beyond its buffer', async () => {
    const small = createAuditRecorder(database.db, { maxBuffered: 3, flushIntervalMs: 3_600_000 });
    for (let i = 0; i < 5; i++) small.record({ kind: 'mqtt.publish_refused', actor: 'loud', subject: `t/${i}` });
    expect(small.stats()).toMatchObject({ buffered: 3, dropped: 2 });
    await small.close();
    const rows = await allEvents(database);
    expect(rows.filter((r) => r.kind === 'mqtt.publish_refused').map((r) => r.subject)).toEqual(['t/0', 't/1', 't/2']);
    expect(rows.filter((r) => r.kind === 'audit.dropped').map((r) => r.count)).toEqual([2]);
  });

  it('keeps what it could not write and writes it with the next flush, failure counts merged', async () => {
    let down = true;
    // The real database, with its writes failing while `down`.
    const flaky = new Proxy(database.db, {
      get(target, property, receiver) {
        if (property === 'execute' && down) return () => Promise.reject(new Error('connection refused'));
        return Reflect.get(target, property, receiver);
      },
    });
    const logs: string[] = [];
    const clock = Date.parse('2025-02-01T10:00:30.000Z');
    const buffered = createAuditRecorder(flaky, { flushIntervalMs: 3_600_000, now: () => clock, log: (line) => logs.push(line) });
    buffered.authFailure({ username: 'vault', address: '192.0.2.9', reason: 'bad_credentials' });
    buffered.record({ kind: 'console.signed_in', actor: 'alice' });
    await buffered.flush();
    expect(logs.join('\n')).toContain('audit events could not be written');
    buffered.authFailure({ username: 'vault', address: '192.0.2.9', reason: 'bad_credentials' });
    down = false;
    await buffered.close();
    const rows = await allEvents(database);
    expect(rows.map((r) => [r.kind, r.actor, r.count])).toEqual([
      ['console.signed_in', 'alice', 1],
      ['mqtt.auth_failed', 'vault', 2],
    ]);
  });

  it('keeps only the rows not yet written when a transient error hits while a refused batch is written row by row', async () => {
    // The real database; the one INSERT of the buffer's last row alone (the
    // drop counter) fails once as a lost connection would, after the rows
    // before it were written one by one.
    let failed = false;
    const flaky = new Proxy(database.db, {
      get(target, property, receiver) {
        if (property !== 'execute') return Reflect.get(target, property, receiver);
        return (query: { queryChunks: unknown[] }) => {
          const json = query.queryChunks.find((chunk): chunk is string => typeof chunk === 'string' && chunk.startsWith('['));
          const rows = json ? (JSON.parse(json) as Array<{ kind: string }>) : [];
          if (!failed && rows.length === 1 && rows[0]!.kind === 'audit.dropped') {
            failed = true;
            return Promise.reject(new Error('connection reset'));
          }
          return target.execute(query as never);
        };
      },
    });
    const logs: string[] = [];
    const buffered = createAuditRecorder(flaky, { maxBuffered: 4, flushIntervalMs: 3_600_000, log: (line) => logs.push(line) });
    buffered.record({ kind: 'console.signed_in', actor: 'before' });
    // PostgreSQL refuses this one (a count beyond integer): the batch is written row by row.
    buffered.record({ kind: 'console.signed_in', actor: 'too-many', count: 2 ** 40 });
    buffered.record({ kind: 'console.signed_in', actor: 'after' });
    buffered.record({ kind: 'console.signed_in', actor: 'also after' });
    buffered.record({ kind: 'console.signed_in', actor: 'beyond the buffer' });
    buffered.authFailure({ username: 'vault', address: '192.0.2.9', reason: 'bad_credentials' });
    await buffered.flush();
    expect(failed).toBe(true);
    expect(logs.join('\n')).toContain('audit events could not be written (connection reset)');
    expect(buffered.stats().buffered).toBe(1);
    await buffered.close();

    const rows = await allEvents(database);
    expect(rows.map((r) => [r.kind, r.actor, r.count])).toEqual([
      ['console.signed_in', 'before', 1],
      ['console.signed_in', 'after', 1],
      ['console.signed_in', 'also after', 1],
      ['mqtt.auth_failed', 'vault', 1],
      ['audit.dropped', null, 1],
    ]);
  });

  describe('the /audit page and its CSV export', () => {
    const base = Date.parse('2025-03-10T12:00:00.000Z');
    beforeEach(async () => {
      const at = (minutes: number) => new Date(base + minutes * 60_000);
      recorder.record({ kind: 'console.signed_in', actor: 'alice', subject: 'alice', address: '192.0.2.1', at: at(0) });
      recorder.record({ kind: 'mqtt.publish_refused', actor: 'sensor-7', subject: 'plant/valve', details: { clientId: 'dev-7' }, address: '192.0.2.50', at: at(5) });
      recorder.record({ kind: 'mqtt.subscribe_refused', actor: 'sensor-8', subject: 'plant/#', details: { clientId: 'dev-8' }, at: at(10) });
      recorder.record({ kind: 'console.sign_in_failed', actor: '=HYPERLINK("http://evil.example","x")', subject: '-2+3', details: { reason: 'bad_credentials', note: 'a "quoted", comma\nand line' }, at: at(20) });
      recorder.record({ kind: 'console.sign_in_failed', actor: '@SUM(A1)', subject: '+1', at: at(21) });
      await recorder.flush();
    });

    const rowsOf = (html: string) => [...html.matchAll(/<tr><td><time datetime="([^"]+)"/g)].map((m) => m[1]);

    it('is for signed-in administrators only', async () => {
      const res = await send(app, '/audit');
      expect(res.status).toBe(302);
      expect(res.headers.get('location')).toContain('/login');
      expect((await send(app, '/audit.csv')).status).toBe(302);
    });

    it('lists events newest first and filters by kind, actor, text and time range', async () => {
      const all = await (await send(admin, '/audit?view=all')).text();
      expect(rowsOf(all)).toEqual(['2025-03-10T12:21:00.000Z', '2025-03-10T12:20:00.000Z', '2025-03-10T12:10:00.000Z', '2025-03-10T12:05:00.000Z', '2025-03-10T12:00:00.000Z']);
      expect(all).toContain('href="/audit" aria-current="page"');
      expect(all).toContain('<a href="/audit?view=all" aria-current="page">Everything</a>');

      const byKind = await (await send(admin, '/audit?view=all&kind=mqtt.publish_refused')).text();
      expect(rowsOf(byKind)).toEqual(['2025-03-10T12:05:00.000Z']);
      expect(byKind).toContain('<option value="mqtt.publish_refused" selected="">');

      const byActor = await (await send(admin, '/audit?view=all&actor=sensor-8')).text();
      expect(rowsOf(byActor)).toEqual(['2025-03-10T12:10:00.000Z']);

      // Text is found in details too (the client id), `%` literally.
      expect(rowsOf(await (await send(admin, '/audit?view=all&q=DEV-7')).text())).toEqual(['2025-03-10T12:05:00.000Z']);
      expect(rowsOf(await (await send(admin, '/audit?view=all&q=%25')).text())).toEqual([]);

      const range = await (await send(admin, '/audit?view=all&from=2025-03-10T12:05&to=2025-03-10T12:10')).text();
      expect(rowsOf(range)).toEqual(['2025-03-10T12:10:00.000Z', '2025-03-10T12:05:00.000Z']);

      // An htmx request gets the page; its results are what the form selects.
      const fragment = await (await send(admin, '/audit?kind=console.signed_in', { headers: htmx })).text();
      expect(fragment).toContain('id="audit-results"');
    });

    it('opens on the console changes, and shows the broker refusals in a view of their own', async () => {
      const changes = await (await send(admin, '/audit')).text();
      expect(rowsOf(changes)).toEqual(['2025-03-10T12:21:00.000Z', '2025-03-10T12:20:00.000Z', '2025-03-10T12:00:00.000Z']);
      expect(changes).toContain('<a href="/audit" aria-current="page">Console changes</a>');
      // Its kinds are the console's: no refusal kind to choose.
      expect(changes).not.toContain('<option value="mqtt.publish_refused"');
      const refusals = await (await send(admin, '/audit?view=refusals')).text();
      expect(refusals).toContain('<a href="/audit?view=refusals" aria-current="page">Broker refusals</a>');
      expect(refusals).toContain('plant/valve');
      expect(refusals).toContain('plant/#');
      expect(refusals).not.toContain('alice');
      // A kind without a view opens the view it belongs to; a kind outside the view asked for is refused.
      expect(await (await send(admin, '/audit?kind=mqtt.subscribe_refused')).text()).toContain('<a href="/audit?view=refusals" aria-current="page">');
      const wrong = await send(admin, '/audit?view=changes&kind=mqtt.subscribe_refused');
      expect(wrong.status).toBe(422);
      expect(await wrong.text()).toContain('This kind is not in this view');
    });

    it('folds identical refusals into one row with their count, and links their usernames to the client', async () => {
      const device = await createClient(database.db, { name: 'Retrying valve', username: 'valve-retry', password: 'valve-password' });
      const start = base + 7_200_000;
      // A device refused every 30 s for an hour, and one other refusal in between.
      for (let i = 0; i < 120; i++) {
        recorder.record({ kind: 'mqtt.publish_refused', actor: 'valve-retry', subject: 'plant/valve/set', address: '192.0.2.9', details: { clientId: 'valve-1' }, at: new Date(start + i * 30_000) });
        if (i === 60) recorder.record({ kind: 'mqtt.subscribe_refused', actor: 'stranger', subject: 'secret/#', at: new Date(start + i * 30_000 + 1) });
      }
      recorder.record({ kind: 'mqtt.auth_failed', actor: 'valve-retry', subject: null, address: '192.0.2.9', count: 7, details: { reason: 'bad_credentials' }, at: new Date(start + 3_600_000) });
      await recorder.flush();
      const html = await (await send(admin, '/audit?view=refusals&actor=valve-retry')).text();
      expect(tableRows(html).map((row) => [row['Last (UTC)'], row.Kind, row.Username, row.Topic, row.Times])).toEqual([
        ['2025-03-10 15:00', 'MQTT authentication failed', 'valve-retry', '', '7'],
        ['2025-03-10 14:59', 'MQTT publish refused', 'valve-retry', 'plant/valve/set', '120 since 2025-03-10 14:00'],
      ]);
      expect(html).toContain(`<a href="/clients/${device.id}" class="truncate" title="valve-retry"><code>valve-retry</code></a>`);
      // In the other views each event is its own row, and the username links there too.
      const all = await (await send(admin, '/audit?view=all&actor=valve-retry')).text();
      expect(rowsOf(all)).toHaveLength(50);
      expect(all).toContain(`<a href="/clients/${device.id}" class="truncate" title="valve-retry">`);
      // A username that is no client's is plain text.
      const stranger = await (await send(admin, '/audit?view=refusals&actor=stranger')).text();
      expect(stranger).toContain('<code class="truncate" title="stranger">stranger</code>');
    });

    it('pages folded refusals: a page holds 50 groups, the next starts at the first event of the 51st', async () => {
      const start = base + 86_400_000;
      // 60 topics, newest first t59…t0, each refused twice (the older copy an hour earlier).
      for (let i = 0; i < 60; i++) {
        recorder.record({ kind: 'mqtt.publish_refused', actor: 'pager-2', subject: `g/${i}`, at: new Date(start + i * 1000) });
        recorder.record({ kind: 'mqtt.publish_refused', actor: 'pager-2', subject: `g/${i}`, at: new Date(start - 3_600_000 + i * 1000) });
      }
      await recorder.flush();
      const filters = parseAuditFilters({ view: 'refusals', actor: 'pager-2' });
      const first = await listAuditGroups(database.db, filters);
      expect(first.groups.map((g) => g.latest.subject)).toEqual(Array.from({ length: 50 }, (_, i) => `g/${59 - i}`));
      // Their older copies come after the 51st topic's first event: on the next page, not folded here.
      expect(first.groups.every((g) => g.count === 1)).toBe(true);
      expect(first.older).not.toBeNull();
      // The rest of the new copies, then the old copies of g/59…g/20; those of g/19…g/0 wait for page 3.
      const second = await listAuditGroups(database.db, filters, { older: first.older! });
      expect(second.groups.map((g) => g.latest.subject)).toEqual([
        ...Array.from({ length: 10 }, (_, i) => `g/${9 - i}`),
        ...Array.from({ length: 40 }, (_, i) => `g/${59 - i}`),
      ]);
      const third = await listAuditGroups(database.db, filters, { older: second.older! });
      expect(third.groups.map((g) => g.latest.subject)).toEqual(Array.from({ length: 20 }, (_, i) => `g/${19 - i}`));
      expect(third.older).toBeNull();
      // Every event is on exactly one page.
      expect([first, second, third].flatMap((page) => page.groups).reduce((sum, g) => sum + g.count, 0)).toBe(120);
    });

    it('refuses a bad filter and keeps what was typed', async () => {
      const res = await send(admin, '/audit?from=yesterday&actor=bob&kind=nope');
      expect(res.status).toBe(422);
      const html = await res.text();
      expect(html).toContain('Enter a date and time such as');
      expect(html).toContain('Choose a kind from the list.');
      expect(html).toContain('value="bob"');
      expect(rowsOf(html)).toEqual([]);
    });

    it('pages by key, newest first, and back', async () => {
      for (let i = 0; i < 120; i++) recorder.record({ kind: 'mqtt.publish_refused', actor: 'pager', subject: `t/${i}`, at: new Date(base + 3_600_000 + i * 1000) });
      await recorder.flush();
      const subjects = (html: string) => tableRows(html).map((row) => row.Subject).filter((subject) => /^t\/\d+$/.test(subject ?? ''));
      const first = await (await send(admin, '/audit?view=all&actor=pager')).text();
      expect(subjects(first)).toHaveLength(50);
      expect(subjects(first)[0]).toBe('t/119');
      const older = /href="(\/audit\?view=all&amp;actor=pager&amp;older=[^"]+)" rel="next"/.exec(first)![1]!.replaceAll('&amp;', '&');
      const second = await (await send(admin, older)).text();
      expect(subjects(second)[0]).toBe('t/69');
      const third = await (await send(admin, /href="([^"]+)" rel="next"/.exec(second)![1]!.replaceAll('&amp;', '&'))).text();
      expect(subjects(third)).toEqual(Array.from({ length: 20 }, (_, i) => `t/${19 - i}`));
      expect(third).not.toContain('rel="next"');
      const back = await (await send(admin, /href="([^"]+)" rel="prev"/.exec(third)![1]!.replaceAll('&amp;', '&'))).text();
      expect(subjects(back)).toEqual(subjects(second));
    });

    it('exports the filtered events as CSV, escaped and safe from formula injection', async () => {
      const res = await send(admin, '/audit.csv?kind=console.sign_in_failed');
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/csv; charset=utf-8');
      expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="gatehouse-audit-[0-9-]+\.csv"$/);
      const text = await res.text();
      const rows = parseCsv(text);
      expect(rows[0]).toEqual(['time', 'kind', 'actor', 'subject', 'address', 'count', 'details']);
      expect(rows.slice(1)).toEqual([
        ['2025-03-10T12:21:00.000Z', 'console.sign_in_failed', "'@SUM(A1)", "'+1", '', '1', '{}'],
        [
          '2025-03-10T12:20:00.000Z',
          'console.sign_in_failed',
          `'=HYPERLINK("http://evil.example","x")`,
          "'-2+3",
          '',
          '1',
          JSON.stringify({ note: 'a "quoted", comma\nand line', reason: 'bad_credentials' }),
        ],
      ]);
      // Every line ends with CRLF; the raw text quotes what needs it.
      expect(text).toContain(`"'=HYPERLINK(""http://evil.example"",""x"")"`);

      const all = parseCsv(await (await send(admin, '/audit.csv?view=all')).text());
      expect(all).toHaveLength(6);
      // Without a view, the console's changes, as the page opens on them.
      expect(parseCsv(await (await send(admin, '/audit.csv')).text())).toHaveLength(4);
      const range = parseCsv(await (await send(admin, '/audit.csv?view=all&to=2025-03-10T12:05')).text());
      expect(range.slice(1).map((r) => r[0])).toEqual(['2025-03-10T12:05:00.000Z', '2025-03-10T12:00:00.000Z']);
    });
  });

  it('deletes events older than the retention period, and only those', async () => {
    const now = Date.now();
    const day = 86_400_000;
    recorder.record({ kind: 'console.signed_in', actor: 'old', at: new Date(now - 91 * day) });
    recorder.record({ kind: 'console.signed_in', actor: 'edge', at: new Date(now - 89 * day) });
    recorder.record({ kind: 'console.signed_in', actor: 'new', at: new Date(now - day) });
    await recorder.flush();
    expect(await deleteOldAuditEvents(database.db, 90, now)).toBe(1);
    expect((await database.db.select().from(auditEvents).orderBy(desc(auditEvents.at))).map((r) => r.actor)).toEqual(['new', 'edge']);

    // Started, it deletes once at once (then hourly).
    const retention = startAuditRetention(database.db, { days: 30 });
    await retention.stop();
    expect((await allEvents(database)).map((r) => r.actor)).toEqual(['new']);
  });
});

describe('audit helpers', () => {
  it('quotes CSV cells that need it and defuses formulas', () => {
    expect(csvCell('plain')).toBe('plain');
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('two\nlines')).toBe('"two\nlines"');
    for (const start of ['=', '+', '-', '@', '\t', '\r']) expect(csvCell(`${start}1`).startsWith(`'${start}`) || csvCell(`${start}1`).startsWith(`"'${start}`)).toBe(true);
    expect(csvCell(null)).toBe('');
    expect(csvCell(3)).toBe('3');
  });

  it('reads AUDIT_RETENTION_DAYS: 90 by default, a positive whole number otherwise', () => {
    expect(configSchema.parse({}).AUDIT_RETENTION_DAYS).toBe(90);
    expect(configSchema.parse({ AUDIT_RETENTION_DAYS: '7' }).AUDIT_RETENTION_DAYS).toBe(7);
    for (const bad of ['0', '-1', '1.5', 'ninety']) expect(configSchema.safeParse({ AUDIT_RETENTION_DAYS: bad }).success).toBe(false);
  });
});
