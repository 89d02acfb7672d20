import { randomBytes } from 'node:crypto';
import path from 'node:path';
import postgres from 'postgres';
import { migrationsFolder, openDatabase } from '../../src/db';
import { contentKey, filesUnder } from './templateKey';

/**
 * One PostgreSQL database, created and migrated once, that every PostgreSQL
 * test database is created from (`create database … template …`): running
 * the migrations on a new database costs the server 2–5 s per database on
 * the shared test machine, copying a migrated one about half of that.
 *
 * It is named `gatehouse_template_<key>` on TEST_DATABASE_URL's server,
 * `<key>` a hash of every file under drizzle/, src/db/index.ts and this file,
 * so a new or changed migration makes a new one; runs with the same
 * migrations reuse it. It accepts no connections (so it can always be copied,
 * and nothing writes into it). vitest's globalSetup makes it before any test
 * file runs; a test run without it makes it on first use. Databases created
 * from it still run the migrations when opened, which finds nothing to do.
 */
const PREFIX = 'gatehouse_template_';
/** Templates of other keys no run has used this long are dropped (another run may still use a recent one). */
const STALE_MS = 60 * 60 * 1000;

function templateName(): string {
  const inputs = [...filesUnder(migrationsFolder), path.join(import.meta.dirname, '..', '..', 'src', 'db', 'index.ts'), import.meta.filename];
  return `${PREFIX}${contentKey(inputs, 'postgres')}`;
}

function databaseUrl(serverUrl: string, name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

const made = new Map<string, Promise<string>>();

/** The name of the template for the migrations as they are now on `serverUrl`'s server, made if missing. */
export function postgresTemplate(serverUrl: string): Promise<string> {
  const name = templateName();
  const key = `${serverUrl} ${name}`;
  let template = made.get(key);
  if (!template) {
    template = ensureTemplate(serverUrl, name).catch((error) => {
      made.delete(key);
      throw error;
    });
    made.set(key, template);
  }
  return template;
}

/** When a run last used (or began building) the template, kept as the database's comment: read when dropping stale ones. */
const usedAt = (admin: postgres.Sql, name: string) => admin.unsafe(`comment on database "${name}" is 'used ${new Date().toISOString()}'`);

async function ensureTemplate(serverUrl: string, name: string): Promise<string> {
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  try {
    const [existing] = await admin`select 1 from pg_database where datname = ${name}`;
    if (existing) {
      await usedAt(admin, name);
      return name;
    }
    await dropStale(admin, name);
    // Made under a name of its own and renamed when complete, so a run killed
    // halfway, or two runs making it at once, never leave a partial template.
    const building = `${name}_building_${randomBytes(4).toString('hex')}`;
    await admin.unsafe(`create database "${building}"`);
    await usedAt(admin, building);
    try {
      const database = await openDatabase({ kind: 'postgres', url: databaseUrl(serverUrl, building), maxConnections: 1 });
      await database.close();
      await admin.unsafe(`alter database "${building}" rename to "${name}"`).catch((error: { code?: string }) => {
        // Another run finished the same template first: use that one.
        if (error.code !== '42P04') throw error;
      });
    } finally {
      await admin.unsafe(`drop database if exists "${building}" with (force)`);
    }
    await admin.unsafe(`alter database "${name}" with is_template true allow_connections false`);
    await usedAt(admin, name);
    return name;
  } finally {
    await admin.end();
  }
}

/** Templates of other keys no run has used for a while, and leftovers of builds killed halfway. */
async function dropStale(admin: postgres.Sql, current: string): Promise<void> {
  const rows = await admin<{ name: string; comment: string | null }[]>`
    select datname as name, shobj_description(oid, 'pg_database') as comment
    from pg_database where starts_with(datname, ${PREFIX}) and datname <> ${current}`;
  for (const { name, comment } of rows) {
    const used = Date.parse(/^used (.+)$/.exec(comment ?? '')?.[1] ?? '');
    if (!Number.isFinite(used) || Date.now() - used < STALE_MS) continue;
    await admin.unsafe(`alter database "${name}" with is_template false`);
    await admin.unsafe(`drop database if exists "${name}" with (force)`);
  }
}
