import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DatabaseTarget } from '../src/db';
import { createAdministrator, createSignInGuard } from '../src/domain/administrators';
import { countSessionsOfAdministrator, createSession } from '../src/domain/sessions';
import { drivers } from './support/db';
import { seedDataDir } from './support/pgliteTemplate';
import { bundledAdminCommand } from './support/process';

const root = path.resolve(import.meta.dirname, '..');

/** Runs `npm run admin -- …` (the built command, without npm's noise) with `input` on standard input. */
function runAdmin(args: string[], env: Record<string, string>, input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const { DATABASE_URL: _url, DATA_DIR: _dir, ...inherited } = process.env;
    const child = spawn(process.execPath, [bundledAdminCommand(), ...args], {
      cwd: root,
      env: { ...inherited, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

interface Target {
  env: Record<string, string>;
  open: DatabaseTarget;
  cleanup(): Promise<void>;
}

async function makeTarget(driver: 'pglite' | 'postgres'): Promise<Target> {
  if (driver === 'pglite') {
    const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-cli-'));
    await seedDataDir(dir);
    return { env: { DATA_DIR: dir }, open: { kind: 'pglite', dataDir: dir }, cleanup: () => rm(dir, { recursive: true, force: true }) };
  }
  const base = process.env.TEST_DATABASE_URL!;
  const name = `gatehouse_cli_${randomBytes(6).toString('hex')}`;
  const admin = postgres(base, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${name}"`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    env: { DATABASE_URL: url.toString() },
    open: { kind: 'postgres', url: url.toString(), maxConnections: 2 },
    async cleanup() {
      const dropper = postgres(base, { max: 1, onnotice: () => {} });
      await dropper.unsafe(`drop database if exists "${name}" with (force)`);
      await dropper.end();
    },
  };
}

/** Opens the target database for the length of `work` (PGlite: holding DATA_DIR's lock). */
async function withDatabase<T>(target: Target, work: (db: Awaited<ReturnType<typeof openDatabase>>['db']) => Promise<T>): Promise<T> {
  const database = await openDatabase(target.open);
  try {
    return await work(database.db);
  } finally {
    await database.close();
  }
}

// Each case starts the command as a process, several times: slow on a busy machine.
describe.each(drivers)('npm run admin -- reset-password on %s', { timeout: 180_000 }, (driver) => {
  let target: Target;
  let aliceId: number;
  beforeAll(async () => {
    target = await makeTarget(driver);
    aliceId = await withDatabase(target, async (db) => {
      const alice = await createAdministrator(db, { username: 'alice', password: 'alice-old-password' });
      await createSession(db, alice.id);
      return alice.id;
    });
  });
  afterAll(async () => {
    await target?.cleanup();
  });

  it('sets the password read from standard input and ends every session of that administrator', async () => {
    const result = await runAdmin(['reset-password', 'alice'], target.env, 'alice-new-password\n');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('The password of "alice" is changed; all of their console sessions have ended.');
    await withDatabase(target, async (db) => {
      const guard = createSignInGuard(db);
      expect(await guard.signIn({ username: 'alice', password: 'alice-new-password' })).toMatchObject({ ok: true });
      expect(await guard.signIn({ username: 'alice', password: 'alice-old-password' })).toMatchObject({ ok: false });
      expect(await countSessionsOfAdministrator(db, aliceId)).toBe(0);
    });
  });

  it('refuses a password that is too short, an unknown username and a missing argument, changing nothing', async () => {
    const short = await runAdmin(['reset-password', 'alice'], target.env, 'short\n');
    expect(short.code).toBe(1);
    expect(short.stderr).toContain('The password was not changed: Use at least 12 characters.');
    const unknown = await runAdmin(['reset-password', 'bob'], target.env, 'bob-new-password\n');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('No administrator is named "bob"');
    expect(unknown.stderr).toContain('Administrators: alice.');
    const empty = await runAdmin(['reset-password', 'alice'], target.env, '');
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain('No password on standard input');
    const usage = await runAdmin(['reset-password'], target.env, '');
    expect(usage.code).toBe(1);
    expect(usage.stderr).toContain('Usage: npm run admin -- reset-password USERNAME');
    await withDatabase(target, async (db) => {
      expect(await createSignInGuard(db).signIn({ username: 'alice', password: 'alice-new-password' })).toMatchObject({ ok: true });
    });
  });

  if (driver === 'pglite') {
    it('says clearly that the server must be stopped while it holds DATA_DIR', async () => {
      await withDatabase(target, async () => {
        const result = await runAdmin(['reset-password', 'alice'], target.env, 'alice-third-password\n');
        expect(result.code).toBe(1);
        expect(result.stderr).toMatch(/Gatehouse is running on .* \(pid \d+\)/);
        expect(result.stderr).toContain('stop the server, run this command, then start the server again');
      });
    });
  }
});
