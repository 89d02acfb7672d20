import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, schema, type OpenDatabase } from '../src/db';
import { createAdministrator } from '../src/domain/administrators';
import { createSession } from '../src/domain/sessions';
import { SESSION_COOKIE } from '../src/web/session';
import { createPostgresTestDatabase, drivers, type DriverName } from './support/db';
import { seedDataDir } from './support/pgliteTemplate';
import { startProcess, stopProcess, waitForPorts, type Running } from './support/process';

/**
 * kill -9 in the middle of a burst of client creations through the console:
 * every creation that was answered with success is there after the crash,
 * and nothing is there half-written.
 */
describe.each(drivers)('a crash during console writes on %s', { timeout: 180_000 }, (driver: DriverName) => {
  let cleanup: Array<() => Promise<void>> = [];
  let running: Running | undefined;
  afterEach(async () => {
    if (running) await stopProcess(running, 'SIGKILL');
    for (const step of cleanup.reverse()) await step();
    cleanup = [];
  });

  it('loses no creation that got its success answer, and leaves nothing half-written', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-crash-'));
    cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
    let databaseUrl = '';
    if (driver === 'postgres') {
      const created = await createPostgresTestDatabase();
      cleanup.push(() => created.drop());
      databaseUrl = created.url;
    }
    const open = (): Promise<OpenDatabase> => openDatabase(databaseUrl ? { kind: 'postgres', url: databaseUrl } : { kind: 'pglite', dataDir });

    if (!databaseUrl) await seedDataDir(dataDir);
    const seeded = await open();
    const administrator = await createAdministrator(seeded.db, { username: 'crash-admin', password: 'crash-admin-password' });
    const session = await createSession(seeded.db, administrator.id);
    await seeded.close();

    running = startProcess({ DATA_DIR: dataDir, DATABASE_URL: databaseUrl });
    const ports = await waitForPorts(running);
    const origin = `http://127.0.0.1:${ports.http}`;
    const succeeded: string[] = [];
    let attempts = 0;
    let stop = false;
    const create = async (n: number) => {
      const username = `crash-${n}`;
      const response = await fetch(`${origin}/clients`, {
        method: 'POST',
        redirect: 'manual',
        headers: { origin, cookie: `${SESSION_COOKIE}=${session.token}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ name: `Crash ${n}`, username, password: `crash-password-${n}` }),
      });
      if (response.status === 303) succeeded.push(username);
      else throw new Error(`creation ${n} answered ${response.status}`);
    };
    // Four writers at once until the process is killed under them.
    const writers = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const n = attempts++;
        try {
          await create(n);
        } catch (error) {
          if (!stop) throw error;
        }
      }
    });
    while (succeeded.length < 40) await new Promise((resolve) => setTimeout(resolve, 20));
    stop = true;
    expect(await stopProcess(running, 'SIGKILL')).toBe(null);
    running = undefined;
    await Promise.all(writers);

    const after = await open();
    try {
      const rows = await after.db.select().from(schema.clients);
      const usernames = new Set(rows.map((row) => row.username));
      for (const username of succeeded) expect(usernames.has(username), username).toBe(true);
      expect(rows.length).toBeLessThanOrEqual(attempts);
      for (const row of rows) {
        expect(row.passwordHash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
        expect(row.name).toBe(`Crash ${row.username.slice('crash-'.length)}`);
        expect(row.version).toBe(1);
      }
    } finally {
      await after.close();
    }
  });
});
