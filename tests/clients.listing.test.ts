import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { schema, type Database, type OpenDatabase } from '../src/db';
import {
  CLIENTS_PAGE_SIZE,
  CLIENTS_SEARCH_COUNT_LIMIT,
  countClients,
  createClient,
  deleteClient,
  listClients,
  type ClientPage,
} from '../src/domain/clients';
import { createApp } from '../src/web/app';
import { forgetKnownSessions } from '../src/domain/sessions';
import { signIn } from './support/admin';
import { grantGroup } from './support/acl';
import { countQueries, createTestDatabase, drivers } from './support/db';
import { tableRows } from './support/html';

const { clients } = schema;

// Directly, without hashing passwords: listing tests need many clients.
async function insertClients(db: Database, rows: Array<{ name: string; username: string }>) {
  await db.insert(clients).values(rows.map((row) => ({ ...row, passwordHash: 'not-a-real-hash' })));
}

// Every client's id in the list's order, straight from the database (no paging).
async function idsInOrder(db: Database, keep: (row: { name: string; username: string }) => boolean = () => true): Promise<number[]> {
  const rows = await db.select({ id: clients.id, name: clients.name, username: clients.username }).from(clients).orderBy(sql`lower(${clients.name})`, clients.id);
  return rows.filter(keep).map((row) => row.id);
}

const contains = (query: string) => (row: { name: string; username: string }) =>
  row.name.toLowerCase().includes(query) || row.username.toLowerCase().includes(query);

// Follows Next from the first page, with the positions the links carry.
async function walkForward(db: Database, query = ''): Promise<ClientPage[]> {
  const pages = [await listClients(db, { query })];
  for (let page = pages[0]!; page.next; pages.push(page)) {
    page = await listClients(db, { query, after: page.next, at: page.from === null ? undefined : page.from + page.clients.length });
    if (pages.length > 200) throw new Error('Next never ends');
  }
  return pages;
}

async function walkBackward(db: Database, query = ''): Promise<ClientPage[]> {
  const pages = [await listClients(db, { query, page: 'last' })];
  for (let page = pages[0]!; page.previous; pages.push(page)) {
    const at = page.from === null ? 0 : page.from - CLIENTS_PAGE_SIZE;
    page = await listClients(db, { query, before: page.previous, at: at > 0 ? at : undefined });
    if (pages.length > 200) throw new Error('Previous never ends');
  }
  return pages;
}

const ids = (page: ClientPage) => page.clients.map((client) => client.id);

async function cursorAt(db: Database, index: number) {
  const [row] = await db.select({ id: clients.id, key: sql<string>`lower(${clients.name})` }).from(clients).orderBy(sql`lower(${clients.name})`, clients.id).offset(index).limit(1);
  return row!;
}

describe.each(drivers)('the clients list, paged by key, on %s', (driver) => {
  let database: OpenDatabase;
  let db: Database;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
    db = database.db;
    // 260 clients whose name order is not their id order, with names that
    // differ only in case (the id breaks the tie).
    const numbers = Array.from({ length: 260 }, (_, i) => (i * 97) % 260);
    await insertClients(
      db,
      numbers.map((n, i) => ({ name: `${i % 2 ? 'sensor' : 'Sensor'} ${String(Math.floor(n / 2)).padStart(3, '0')}`, username: `sensor-${i}` })),
    );
  });
  afterAll(async () => {
    await database?.close();
  });

  it('pages forward with Next through every client once, in order, 50 at a time, knowing each page’s position', async () => {
    const pages = await walkForward(db);
    expect(pages.flatMap(ids)).toEqual(await idsInOrder(db));
    expect(pages.map((page) => page.clients.length)).toEqual([50, 50, 50, 50, 50, 10]);
    expect(pages.map((page) => page.from)).toEqual([1, 51, 101, 151, 201, 251]);
    expect(pages.map((page) => page.total)).toEqual([260, 260, 260, 260, 260, 260]);
    expect(pages[0]!.previous).toBeNull();
    expect(pages.at(-1)!.next).toBeNull();
  });

  it('pages back with Previous from the last page through the same pages', async () => {
    const backward = await walkBackward(db);
    const forward = await walkForward(db);
    expect(backward.reverse().map(ids)).toEqual(forward.map(ids));
    expect(backward.map((page) => page.from)).toEqual([1, 51, 101, 151, 201, 251]);
    expect(backward.map((page) => page.page)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(backward[0]!.pageCount).toBe(6);
  });

  it('serves an old page number by counting from the start, and the last page for one past the end', async () => {
    const order = await idsInOrder(db);
    const third = await listClients(db, { page: 3 });
    expect(ids(third)).toEqual(order.slice(100, 150));
    expect(third.from).toBe(101);
    const past = await listClients(db, { page: 40 });
    expect(ids(past)).toEqual(order.slice(250));
    expect(past.next).toBeNull();
  });

  it('shows the start of the list, full, when Previous has less than a page before it', async () => {
    const order = await idsInOrder(db);
    const page = await listClients(db, { before: await cursorAt(db, 10), at: 1 });
    expect(page.previous).toBeNull();
    expect(ids(page)).toEqual(order.slice(0, 50));
    expect(page.from).toBe(1);
  });

  it('shows the last page when no client follows the cursor any more', async () => {
    const order = await idsInOrder(db);
    const page = await listClients(db, { after: await cursorAt(db, 259), at: 261 });
    expect(ids(page)).toEqual(order.slice(250));
    expect(page.from).toBe(251);
  });
});

describe.each(drivers)('searching clients on %s', (driver) => {
  let database: OpenDatabase;
  let db: Database;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
    db = database.db;
    // 600 matches of "pump" spread over the start of the list (every other
    // username), 2,100 clients that do not match, then 500 matches bunched at
    // the end (in the name): more matches than a search counts.
    await insertClients(db, [
      ...Array.from({ length: 1200 }, (_, i) => ({ name: `Berlin meter ${String(i).padStart(4, '0')}`, username: `${i % 2 ? 'meter' : 'pump'}-${i}` })),
      ...Array.from({ length: 2100 }, (_, i) => ({ name: `Lyon valve ${String(i).padStart(4, '0')}`, username: `valve-${i}` })),
      ...Array.from({ length: 500 }, (_, i) => ({ name: `Oslo PUMP ${String(i).padStart(4, '0')}`, username: `o-${i}` })),
    ]);
    await insertClients(db, [
      { name: 'abc', username: 'def' },
      { name: '100% humidity', username: 'hum_1' },
      { name: '1000 humidity', username: 'hum-2' },
    ]);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('finds a few matches by name or username substring, in any case, and counts them exactly', async () => {
    const byName = await listClients(db, { query: 'METER 010' });
    expect(byName.clients.map((c) => c.name)).toEqual(Array.from({ length: 10 }, (_, i) => `Berlin meter 010${i}`));
    expect(byName).toMatchObject({ total: 10, totalIsLowerBound: false, previous: null, next: null });
    const byUsername = await listClients(db, { query: 'Valve-209' });
    expect(byUsername.clients.map((c) => c.username)).toEqual(['valve-209', ...Array.from({ length: 10 }, (_, i) => `valve-209${i}`)]);
    expect(byUsername.total).toBe(11);
  });

  it('takes % and _ literally, and never matches across the name and the username', async () => {
    expect((await listClients(db, { query: '0%' })).clients.map((c) => c.username)).toEqual(['hum_1']);
    expect((await listClients(db, { query: 'm_1' })).clients.map((c) => c.username)).toEqual(['hum_1']);
    expect((await listClients(db, { query: 'cd' })).total).toBe(0);
    expect((await listClients(db, { query: 'c\nd' })).total).toBe(0);
  });

  it('pages through up to a thousand matches exactly, forward and back', async () => {
    const keep = contains('meter 0');
    const expected = await idsInOrder(db, keep);
    expect(expected).toHaveLength(1000);
    const forward = await walkForward(db, 'meter 0');
    expect(forward.flatMap(ids)).toEqual(expected);
    expect(forward.map((page) => page.from)).toEqual(Array.from({ length: 20 }, (_, i) => 1 + 50 * i));
    expect(forward.every((page) => page.total === 1000 && !page.totalIsLowerBound)).toBe(true);
    const backward = await walkBackward(db, 'meter 0');
    expect(backward.reverse().map(ids)).toEqual(forward.map(ids));
  });

  it('says "more than" a thousand matches, and pages through every one of them whether spread or bunched', async () => {
    const expected = await idsInOrder(db, contains('pump'));
    expect(expected).toHaveLength(1100);
    const forward = await walkForward(db, 'pump');
    expect(forward.flatMap(ids)).toEqual(expected);
    expect(forward[0]).toMatchObject({ total: CLIENTS_SEARCH_COUNT_LIMIT, totalIsLowerBound: true, pageCount: null });
    expect(forward.at(-1)!.from).toBe(1051);
    // Back from the last page (the last 50): every match again, in order; the
    // first page is shown full, so it may repeat what the page after it shows.
    const backward = (await walkBackward(db, 'pump')).reverse();
    expect(backward[0]!.clients.map((c) => c.id)).toEqual(expected.slice(0, 50));
    const seen = backward.flatMap(ids);
    expect([...new Set(seen)]).toEqual(expected);
    expect(seen.slice(50)).toEqual(expected.slice(expected.length - (seen.length - 50)));
  });

  it('shows the groups of the clients on pages of many matches, read in order or through the index', async () => {
    await grantGroup(db, { name: 'Pumps', permissions: [['allow', 'publish', 'pumps/#']], usernames: ['pump-0', 'o-10'], clientIds: ['pump-*'] });
    const forward = await walkForward(db, 'pump');
    const first = forward[0]!;
    const berlin = first.clients.find((c) => c.username === 'pump-0')!;
    expect(first.access.groupsByClient.get(berlin.id)).toEqual(['Pumps']);
    expect(first.access.groupsByClient.size).toBe(1);
    expect(first.access.hasClientIdRules).toBe(true);
    // The first Oslo page comes after 2,100 clients that do not match: read through the index.
    const oslo = forward.find((page) => page.clients[0]!.name === 'Oslo PUMP 0000')!;
    const o10 = oslo.clients.find((c) => c.username === 'o-10')!;
    expect(oslo.access.groupsByClient.get(o10.id)).toEqual(['Pumps']);
    expect(oslo.access.groupsByClient.size).toBe(1);
  });

  it('finds the same clients without the trigram index', async () => {
    const before = await listClients(db, { query: 'valve-209' });
    await db.execute(sql`drop index if exists clients_search_idx`);
    const after = await listClients(db, { query: 'valve-209' });
    expect(ids(after)).toEqual(ids(before));
    expect(after.total).toBe(11);
  });
});

describe.each(drivers)('the search index on %s', (driver) => {
  let database: OpenDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('is built where pg_trgm is available, and answers the search as listClients writes it', async (context) => {
    const rows = (await database.db.execute(sql`select 1 from pg_available_extensions where name = 'pg_trgm'`)) as unknown as { rows?: unknown[]; length?: number };
    const available = (rows.rows ?? (rows as unknown as unknown[])).length > 0;
    if (!available) context.skip('pg_trgm is not loaded in this database (PGlite needs it passed to PGlite.create)');
    await insertClients(database.db, [{ name: 'Boiler', username: 'boiler-1' }]);
    const plan = await database.db.transaction(async (tx) => {
      // A one-row table is read faster without an index: forbid that, to see
      // whether the index can answer the query at all.
      await tx.execute(sql`set local enable_seqscan = off`);
      const explained = await tx.execute(
        sql`explain select * from ${clients} where (${clients.name} || E'\\n' || ${clients.username}) ilike ${'%oile%'}`,
      );
      return JSON.stringify(explained);
    });
    expect(plan).toContain('clients_search_idx');
    expect(ids(await listClients(database.db, { query: 'oile' }))).toHaveLength(1);
  });
});

describe.each(drivers)('counting clients on %s', (driver) => {
  let database: OpenDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(driver);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('keeps the total through creates, deletes, bulk statements and truncation', async () => {
    const { db } = database;
    expect(await countClients(db)).toBe(0);
    const one = await createClient(db, { name: 'One', username: 'one', password: '12345678' });
    await insertClients(db, Array.from({ length: 120 }, (_, i) => ({ name: `Bulk ${i}`, username: `bulk-${i}` })));
    expect(await countClients(db)).toBe(121);
    expect((await listClients(db)).total).toBe(121);
    await deleteClient(db, one.id);
    await db.delete(clients).where(sql`${clients.name} like 'Bulk 1%'`);
    const left = await idsInOrder(db);
    expect(await countClients(db)).toBe(left.length);
    expect(left.length).toBe(120 - 31);
    // A statement that changes nothing leaves it alone.
    await db.delete(clients).where(sql`false`);
    expect(await countClients(db)).toBe(left.length);
    await db.execute(sql`truncate ${clients} cascade`);
    expect(await countClients(db)).toBe(0);
  });
});

describe.each(drivers)('the clients page over HTTP, paged by key, on %s', (driver) => {
  let database: OpenDatabase;
  let request: (path: string) => Promise<Response>;
  const sessions = new Map<number, number>();
  beforeAll(async () => {
    database = await createTestDatabase(driver);
    const app = createApp({ db: database.db, log: () => {}, live: { sessionsByClient: async () => sessions } });
    const signedIn = await signIn(app, database.db);
    request = async (path) => signedIn.request(path);
    await insertClients(
      database.db,
      Array.from({ length: 120 }, (_, i) => ({ name: `Gate ${String(i).padStart(3, '0')}`, username: `gate-${i}` })),
    );
  });
  afterAll(async () => {
    await database?.close();
  });

  const rowNames = (html: string) => tableRows(html).map((row) => row.Name);
  const link = (html: string, label: string) => {
    const match = new RegExp(`<a href="([^"]*)"[^>]*>${label}</a>`).exec(html);
    return match ? match[1]!.replaceAll('&amp;', '&') : null;
  };
  const gate = (i: number) => `Gate ${String(i).padStart(3, '0')}`;

  it('links First, Previous, Next and Last, and they lead through the list without JavaScript', async () => {
    const first = await (await request('/clients')).text();
    expect(first).toContain('<p id="clients-count">120 clients.</p>');
    expect(first).toContain('<li aria-current="page">1–50 of 120</li>');
    expect(first).toContain('<span aria-disabled="true">Previous</span>');
    expect(rowNames(first)).toEqual(Array.from({ length: 50 }, (_, i) => gate(i)));

    const second = await (await request(link(first, 'Next')!)).text();
    expect(rowNames(second)).toEqual(Array.from({ length: 50 }, (_, i) => gate(50 + i)));
    expect(second).toContain('51–100 of 120');

    const last = await (await request(link(second, 'Last')!)).text();
    expect(rowNames(last)).toEqual(Array.from({ length: 20 }, (_, i) => gate(100 + i)));
    expect(last).toContain('101–120 of 120');
    expect(last).toContain('<span aria-disabled="true">Next</span>');

    const back = await (await request(link(last, 'Previous')!)).text();
    expect(rowNames(back)).toEqual(rowNames(second));
    expect(back).toContain('51–100 of 120');
    const start = await (await request(link(back, 'First')!)).text();
    expect(rowNames(start)).toEqual(rowNames(first));
  });

  it('keeps the search in every page link', async () => {
    const html = await (await request('/clients?q=gate-1')).text();
    expect(html).toContain('31 clients match “gate-1”.');
    expect(html).not.toContain('aria-label="Pages"');
    const wide = await (await request('/clients?q=GATE')).text();
    expect(link(wide, 'Next')).toMatch(/^\/clients\?q=GATE&after=/);
    expect(link(wide, 'Last')).toBe('/clients?q=GATE&page=last');
  });

  it('still serves old ?page=N links, and ignores a cursor it did not write', async () => {
    const third = await (await request('/clients?page=3')).text();
    expect(rowNames(third)).toEqual(Array.from({ length: 20 }, (_, i) => gate(100 + i)));
    expect(third).toContain('101–120 of 120');
    for (const path of ['/clients?after=nonsense', '/clients?before=12', '/clients?after=1%3Aa%00b', '/clients?page=0', '/clients?page=99999999999999999999']) {
      const res = await request(path);
      expect(res.status, path).toBe(200);
      expect(rowNames(await res.text()), path).toEqual(Array.from({ length: 50 }, (_, i) => gate(i)));
    }
  });

  it('costs the same number of queries for a page of 50 clients with groups and live sessions as for a short one', async () => {
    await grantGroup(database.db, { name: 'Gates', permissions: [['allow', 'publish', 'gates/#']], usernames: Array.from({ length: 60 }, (_, i) => `gate-${i}`) });
    for (let i = 1; i <= 120; i++) sessions.set(i, 1);
    const cost = async (path: string) => {
      // The session is read again (it is kept for a second: sessions.ts).
      forgetKnownSessions();
      const counter = countQueries(database.db);
      const res = await request(path);
      const html = await res.text();
      counter.stop();
      expect(res.status).toBe(200);
      return { queries: counter.count(), rows: rowNames(html).length, groups: (html.match(/>Gates</g) ?? []).length };
    };
    const full = await cost('/clients');
    const deep = await cost(link(await (await request('/clients?page=2')).text(), 'Next')!);
    expect(full).toMatchObject({ rows: 50, groups: 50 });
    expect(deep).toMatchObject({ rows: 20, groups: 0, queries: full.queries });
    const wide = await cost('/clients?q=gate');
    const narrow = await cost('/clients?q=gate-11');
    expect(wide).toMatchObject({ rows: 50, groups: 50 });
    expect(narrow).toMatchObject({ rows: 11, groups: 1, queries: wide.queries });
    // The session, the rule model (read here; a running Gatehouse keeps it in
    // memory), then the page with its total and groups in one query; a
    // search with few matches reads them, then the groups of those shown.
    expect(full.queries).toBe(3);
    expect(wide.queries).toBe(4);
  });
});
