import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenDatabase } from '../src/db';
import { createAuthenticator } from '../src/domain/access/authenticate';
import { createApiToken } from '../src/domain/apiTokens';
import { createClient } from '../src/domain/clients';
import { ImportFileError, MAX_IMPORT_ROWS, MAX_JSON_DEPTH, MAX_JSON_VALUES, parseImport, type ImportFormat } from '../src/domain/transfer/parse';
import { runImport } from '../src/domain/transfer/plan';
import { createApp } from '../src/web/app';
import { createTestDatabase } from './support/db';

/** The message parseImport refuses `source` with, or null when it reads it. */
function refusal(format: ImportFormat, source: string): string | null {
  try {
    parseImport(format, source);
    return null;
  } catch (error) {
    if (!(error instanceof ImportFileError)) throw error;
    return error.message;
  }
}

describe('what an import reads is bounded before it is parsed', () => {
  it('refuses more rows than an import reads, in every line format, before splitting them', () => {
    const rows = MAX_IMPORT_ROWS + 2;
    expect(refusal('ndjson', '{}\n'.repeat(rows))).toContain('rows');
    expect(refusal('mosquitto-passwd', 'a:b\n'.repeat(rows))).toContain('rows');
    expect(refusal('csv', `username\n${'a\n'.repeat(rows)}`)).toContain('rows');
    expect(refusal('emqx', `user_id,password_hash,salt\n${'a,b,c\n'.repeat(rows)}`)).toContain('rows');
    // Exactly the limit is read.
    expect(refusal('mosquitto-passwd', 'a:b\n'.repeat(MAX_IMPORT_ROWS))).toBeNull();
  });

  it('refuses JSON nested deeper than any import format, and JSON of more values than its rows could need', () => {
    const deep = `{"format":"gatehouse-export","version":1,"clients":${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}}`;
    expect(refusal('gatehouse', deep)).toContain('nested deeper');
    expect(refusal('mosquitto-dynsec', `{"clients":[],"roles":${'['.repeat(100_000)}${']'.repeat(100_000)}}`)).toContain('nested deeper');
    const wide = `[${'0,'.repeat(MAX_JSON_VALUES)}0]`;
    expect(refusal('emqx', wide)).toContain('values');
    const manyClients = JSON.stringify({ format: 'gatehouse-export', version: 1, clients: Array.from({ length: MAX_IMPORT_ROWS + 1 }, () => 0) });
    expect(refusal('gatehouse', manyClients)).toContain('rows');
    // Brackets inside strings, escaped quotes included, are text, not depth.
    const quoted = JSON.stringify({ format: 'gatehouse-export', version: 1, clients: [{ name: `${'[{'.repeat(100)}\\"[[[`, username: 'quoted', password: 'quoted-secret' }] });
    expect(refusal('gatehouse', quoted)).toBeNull();
  });

  it('reports an NDJSON line nested too deep as that line’s error, and reads the others', () => {
    const plan = parseImport('ndjson', [JSON.stringify({ username: 'fine', password: 'fine-secret' }), `{"username":${'['.repeat(50)}${']'.repeat(50)}}`].join('\n'));
    expect(plan.clients.map((c) => c.username)).toEqual(['fine']);
    expect(plan.errors).toEqual([{ line: 2, key: '#2', message: expect.stringContaining('nested deeper') }]);
  });
});

describe('an import’s answers', () => {
  let database: OpenDatabase;
  let app: ReturnType<typeof createApp>;
  let token: string;
  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    app = createApp({ db: database.db, log: () => {} });
    token = (await createApiToken(database.db, { name: 'importer', preset: 'editor' })).secret;
  });
  afterAll(async () => {
    await database?.close();
  });

  const post = (query: string, body: string, type: string) =>
    app.request(`/api/v1/import?${query}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': type }, body });

  it('never quote the file back when it cannot be read (it may hold passwords)', async () => {
    const cases: Array<[string, string, string]> = [
      ['format=gatehouse', '{"clients":[{"username":"a","password": hunter2-secret}]}', 'application/json'],
      ['format=ndjson', 'hunter2-secret', 'application/x-ndjson'],
      ['format=csv', 'username,password\nx,hunter2-secret"oops"\n', 'text/csv'],
      ['format=emqx', 'user_id,password_hash,salt\nx,hunter2-secret"oops",y\n', 'text/csv'],
    ];
    for (const [query, body, type] of cases) {
      const res = await post(query, body, type);
      const text = await res.text();
      expect([200, 422], `${query}: ${text}`).toContain(res.status);
      expect(text, query).not.toContain('hunter2');
    }
    const problem = await (await post('format=gatehouse', '{"clients": [}', 'application/json')).json();
    expect(problem.errors[0]).toEqual({ field: 'file', pointer: '#/file', detail: 'The file is not JSON (it has "}" where that cannot be).' });
    const cut = await (await post('format=gatehouse', '{"clients": [', 'application/json')).json();
    expect(cut.errors[0].detail).toBe('The file is not JSON (it ends too soon).');
  });

  it('checks a group as the console does, and cuts what a report quotes', async () => {
    const lines = [
      JSON.stringify({ group: { name: 'long-description', description: 'x'.repeat(501) } }),
      JSON.stringify({ group: { name: 'bad\u001bname' } }),
      JSON.stringify({ group: { name: '  spaced  ', description: '  kept tidy  ', permissions: [{ effect: 'allow', action: 'publish', topic: 'a/#' }] } }),
      JSON.stringify({ rule: { matchBy: 'client_id', value: 'x', groups: Array.from({ length: 1000 }, (_, i) => `missing-${i}`) } }),
      JSON.stringify({ username: 'u'.repeat(100_000), password: 'long-username-secret' }),
    ].join('\n');
    const res = await app.request('/api/v1/import?format=ndjson', {
      method: 'POST',
      headers: { authorization: `Bearer ${(await createApiToken(database.db, { name: 'groups-too', preset: 'administrator' })).secret}`, 'content-type': 'application/x-ndjson' },
      body: lines,
    });
    const report = await res.json();
    const byLine = new Map<number, { key: string; action: string; message?: string }>(report.rows.map((row: { line: number }) => [row.line, row]));
    expect(byLine.get(1)).toMatchObject({ action: 'error', message: 'Description: Use at most 500 characters.' });
    expect(byLine.get(2)).toMatchObject({ action: 'error', message: 'Remove control characters.' });
    expect(byLine.get(3)).toMatchObject({ action: 'create', key: 'spaced' });
    expect(byLine.get(4)!.message!.length).toBeLessThan(200);
    expect(byLine.get(4)!.message).toContain('and 995 more');
    expect(byLine.get(5)!.key.length).toBeLessThanOrEqual(200);
  });

  it('takes a CSV password as written, and reads its own clients CSV back to the same names', async () => {
    const admin = (await createApiToken(database.db, { name: 'csv-round-trip', preset: 'administrator' })).secret;
    const post = (query: string, body: string) =>
      app.request(`/api/v1/import?${query}`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'text/csv' }, body });
    const written = "name,username,password\nQuoted,csv-1,'-starts-with-a-quote\n";
    expect((await (await post('format=csv&dryRun=false', written)).json()).counts).toMatchObject({ create: 1, error: 0 });
    const auth = createAuthenticator(database.db);
    expect((await auth.authenticate({ username: 'csv-1', password: Buffer.from("'-starts-with-a-quote"), clientId: 'c1', transport: 'tcp' })).ok).toBe(true);
    for (const [i, name] of ["'=quoted", '=formula', "'plain", "''twice", '@at'].entries()) {
      await createClient(database.db, { name, username: `csv-name-${i}`, password: `csv-name-secret-${i}` });
    }
    const exported = await (await app.request('/api/v1/export/clients.csv', { headers: { authorization: `Bearer ${admin}` } })).text();
    // Nothing a spreadsheet would run: every cell that starts with a formula character is guarded.
    for (const line of exported.split('\r\n').slice(1)) for (const cell of line.split(',')) expect(cell, line).not.toMatch(/^[=+\-@]/);
    expect((await (await post('format=csv', exported)).json()).counts).toMatchObject({ create: 0, update: 0, error: 0 });
  });

  it('lets the event loop run between its batches, so devices are served while it writes', async () => {
    const hash = `$gh-hmac-sha256$${'a'.repeat(22)}$${'b'.repeat(43)}`;
    const plan = parseImport('ndjson', Array.from({ length: 5000 }, (_, i) => JSON.stringify({ username: `turn-${i}`, passwordHash: hash })).join('\n'));
    let turns = 0;
    let importing = true;
    const tick = () => {
      if (!importing) return;
      turns++;
      setImmediate(tick);
    };
    setImmediate(tick);
    const report = await runImport(database.db, plan, { mode: 'upsert', dryRun: false });
    importing = false;
    expect(report.counts.create).toBe(5000);
    // One turn at least per batch of 1,000 rows written, and per 2,000 rows checked (twice).
    expect(turns).toBeGreaterThanOrEqual(5 + 2 * 2);
  });
});
