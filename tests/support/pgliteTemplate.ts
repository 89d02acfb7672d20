import { existsSync, openAsBlob, readFileSync } from 'node:fs';
import { cp, mkdir, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { migrationsFolder, openDatabase } from '../../src/db';
import { isAlive } from './process';
import { contentKey, filesUnder } from './templateKey';

/**
 * One embedded database, created and migrated once, that every test starts
 * from: PGlite's initdb (a second PostgreSQL and the initdb program, in
 * WebAssembly) and the migrations cost 2–12 s of CPU per database depending
 * on the machine's load, where loading a copy costs a fraction of it.
 *
 * It lives in node_modules/.cache/gatehouse-test/pglite-<key>, `<key>` a hash
 * of what its content depends on: every file under drizzle/ (so a new or
 * changed migration makes a new one), src/db/index.ts (how a database is
 * created and migrated), this file and PGlite's version. vitest's globalSetup
 * (tests/support/globalSetup.ts) makes it before any test file runs; a test
 * run without it makes it on first use. Databases opened from it still run
 * the migrations, which finds nothing left to do.
 */
export interface PgliteTemplate {
  /** A closed PGlite data directory, to copy into a `DATA_DIR` as `pglite/`. */
  dataDir: string;
  /** The same database as a `dumpDataDir()` tarball, for `loadDataDir`. */
  dump: string;
}

const root = path.resolve(import.meta.dirname, '..', '..');
const cacheRoot = path.join(root, 'node_modules', '.cache', 'gatehouse-test');
const PREFIX = 'pglite-';
/** Templates of other keys untouched this long are removed (another run may still use a recent one). */
const STALE_MS = 60 * 60 * 1000;

/** What the template's content depends on. */
function templateKey(): string {
  const pglitePackage = path.join(root, 'node_modules', '@electric-sql', 'pglite', 'package.json');
  return contentKey(
    [...filesUnder(migrationsFolder), path.join(root, 'src', 'db', 'index.ts'), import.meta.filename],
    `pglite ${JSON.parse(readFileSync(pglitePackage, 'utf8')).version}`,
  );
}

const made = new Map<string, Promise<PgliteTemplate>>();

/** The template for the migrations as they are now, made if missing. */
export function pgliteTemplate(): Promise<PgliteTemplate> {
  const key = templateKey();
  let template = made.get(key);
  if (!template) {
    template = ensureTemplate(key).catch((error) => {
      made.delete(key);
      throw error;
    });
    made.set(key, template);
  }
  return template;
}

async function ensureTemplate(key: string): Promise<PgliteTemplate> {
  const dir = path.join(cacheRoot, `${PREFIX}${key}`);
  const template = { dataDir: path.join(dir, 'pglite'), dump: path.join(dir, 'pglite.tar') };
  if (existsSync(path.join(dir, 'complete'))) {
    const now = new Date();
    await utimes(dir, now, now);
    return template;
  }
  await mkdir(cacheRoot, { recursive: true });
  await removeStale(path.basename(dir));
  // Made beside its place and renamed into it when complete, so a run killed
  // halfway, or two runs making it at once, never leave a partial template.
  const building = `${dir}.building-${process.pid}`;
  await rm(building, { recursive: true, force: true });
  try {
    const database = await openDatabase({ kind: 'pglite', dataDir: building });
    try {
      const dump = await (database.db as unknown as { $client: PGlite }).$client.dumpDataDir('none');
      await writeFile(path.join(building, 'pglite.tar'), Buffer.from(await dump.arrayBuffer()));
    } finally {
      await database.close();
    }
    // The DATA_DIR lock file stays out of the copies.
    await rm(path.join(building, 'lock'), { recursive: true, force: true });
    await writeFile(path.join(building, 'complete'), '');
    await rename(building, dir).catch((error: NodeJS.ErrnoException) => {
      // Another run finished the same template first: use that one.
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
    });
  } finally {
    await rm(building, { recursive: true, force: true });
  }
  return template;
}

/** Templates of other keys no run has used for a while, and leftovers of killed builds. */
async function removeStale(current: string): Promise<void> {
  for (const entry of await readdir(cacheRoot)) {
    if (!entry.startsWith(PREFIX) || entry === current) continue;
    const full = path.join(cacheRoot, entry);
    const building = /\.building-(\d+)$/.exec(entry);
    const stale = building ? !isAlive(Number(building[1])) : Date.now() - (await stat(full)).mtimeMs > STALE_MS;
    if (stale) await rm(full, { recursive: true, force: true });
  }
}

let dumpBlob: Promise<Blob> | undefined;

/** The template's tarball, read from disk once per process. */
export function pgliteTemplateDump(): Promise<Blob> {
  dumpBlob ??= pgliteTemplate().then((template) => openAsBlob(template.dump));
  return dumpBlob;
}

/**
 * Puts a copy of the migrated template in `dataDir` (as `dataDir/pglite`), so
 * a Gatehouse started on it skips creating its embedded database. Only for
 * tests whose subject is not that first start.
 */
export async function seedDataDir(dataDir: string): Promise<void> {
  const { dataDir: source } = await pgliteTemplate();
  await mkdir(dataDir, { recursive: true });
  await cp(source, path.join(dataDir, 'pglite'), { recursive: true });
}
