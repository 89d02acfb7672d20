/**
 * Importing a fleet from the console: 100,000 clients in one file, a dry run
 * and then the real import, posted to `/transfer/import` as the page's form
 * does, on the embedded database (a new DATA_DIR, nothing else in it).
 * `node --import tsx bench/import.ts`, or `npm run bench -- import`;
 * BENCH_IMPORT_CLIENTS (default 100000).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { count as countRows } from 'drizzle-orm';
import { openDatabase, schema } from '../src/db';
import { generatePassword, hashGeneratedPassword } from '../src/domain/password';
import { BUNDLE_FORMAT, BUNDLE_VERSION } from '../src/domain/transfer/parse';
import { signedInCookie, startConsole, stopConsole } from './console';

const fmt = (n: number, digits = 1) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/**
 * The file: a Gatehouse export of `count` clients, each with its own
 * generated password stored in the fast format (as a fleet provisioned with
 * "Generate strong password" exports), about 170 bytes a client.
 */
function fleetFile(count: number): string {
  const clients = Array.from({ length: count }, (_, i) => ({
    name: `Meter ${String(i).padStart(6, '0')}`,
    username: `meter-${i.toString(36)}-${(i * 7919).toString(36)}`,
    authType: 'password',
    passwordHash: hashGeneratedPassword(generatePassword()),
  }));
  return JSON.stringify({ format: BUNDLE_FORMAT, version: BUNDLE_VERSION, exportedAt: new Date().toISOString(), clients });
}

async function post(base: string, cookie: string, file: string, run: 'dry' | 'apply'): Promise<{ seconds: number; status: number; summary: string }> {
  const form = new FormData();
  form.set('file', new Blob([file], { type: 'application/json' }), 'fleet.json');
  form.set('format', 'gatehouse');
  form.set('mode', 'upsert');
  form.set('run', run);
  const started = performance.now();
  const res = await fetch(`${base}/transfer/import`, { method: 'POST', body: form, headers: { cookie, origin: base } });
  const html = await res.text();
  const seconds = (performance.now() - started) / 1000;
  const summary = /<p role="status">([^<]*)<\/p>/.exec(html)?.[1] ?? html.slice(0, 200);
  return { seconds, status: res.status, summary };
}

export async function importScenario(options: { clients?: number } = {}): Promise<void> {
  const count = options.clients ?? Number(process.env.BENCH_IMPORT_CLIENTS ?? 100_000);
  const dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-import-'));
  try {
    const database = await openDatabase({ kind: 'pglite', dataDir });
    const cookie = await signedInCookie(database);
    await database.close();
    const file = fleetFile(count);
    const { child, base } = await startConsole({ DATA_DIR: dataDir });
    let rows: Array<[string, Awaited<ReturnType<typeof post>>]> = [];
    try {
      rows = [
        ['dry run', await post(base, cookie, file, 'dry')],
        ['import', await post(base, cookie, file, 'apply')],
        ['dry run again (all unchanged)', await post(base, cookie, file, 'dry')],
      ];
    } finally {
      await stopConsole(child);
    }
    const reopened = await openDatabase({ kind: 'pglite', dataDir });
    const [stored] = await reopened.db.select({ total: countRows() }).from(schema.clients);
    const total = stored?.total ?? 0;
    await reopened.close();
    console.log(`\n### Importing ${fmt(count, 0)} clients from the console (embedded database)\n`);
    console.log(`A Gatehouse export of ${fmt(count, 0)} clients (${fmt(file.length / 1e6)} MB), posted to \`/transfer/import\` as the page's form does; time from the request to the whole answer (the page with its report). Target: ≤ 60 s each.\n`);
    console.log('| step | seconds | status | report |');
    console.log('| --- | --- | --- | --- |');
    for (const [step, row] of rows) console.log(`| ${step} | ${fmt(row.seconds)} | ${row.status} | ${row.summary} |`);
    console.log(`\nClients stored afterwards: ${fmt(total, 0)}.`);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  importScenario().then(
    () => process.exit(0),
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
