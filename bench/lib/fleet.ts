/**
 * What every contender authenticates against, made once per run: the bench
 * user and, for the connect storms, a fleet of devices, each with its own
 * random password, so every first CONNECT costs Gatehouse a real Argon2id
 * verify (one hash shared by all would let a cache answer all but the first).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type FleetUser, mosquittoInstalled, mosquittoPasswordFile, seedDatabase } from './brokers';
import { atExit } from './cleanup';
import { Generator } from './generator';

export interface Fleet {
  users: FleetUser[];
  /** A DATA_DIR with the embedded database seeded: each Gatehouse start copies it. */
  gatehouseTemplate: string;
  /** `username:password` lines for bare Aedes. */
  aedesUsersFile: string;
  /** Undefined when Mosquitto is not installed. */
  mosquittoPasswordFile?: string;
}

const root = fileURLToPath(new URL('../..', import.meta.url));
const cacheDir = path.join(root, 'node_modules', '.cache', 'gatehouse-bench');

/**
 * Argon2id hashes of `count` random passwords. Making 5,000 takes a minute or
 * more of CPU, so they are kept in node_modules/.cache between runs; each
 * still has its own salt and password, and a broker still verifies each one.
 * Computed in worker processes on every core (no broker runs yet).
 */
async function fleetUsers(count: number): Promise<FleetUser[]> {
  if (count === 0) return [];
  const cacheFile = path.join(cacheDir, `fleet-${count}.json`);
  if (existsSync(cacheFile)) {
    const cached = JSON.parse(readFileSync(cacheFile, 'utf8')) as FleetUser[];
    if (cached.length === count) return cached;
  }
  const started = Date.now();
  const passwords = Array.from({ length: count }, () => randomBytes(18).toString('base64url'));
  const cores = cpus().length;
  console.error(`  hashing ${count} distinct passwords with Argon2id on ${cores} cores (kept in ${path.relative(root, cacheFile)} for the next runs)…`);
  const generator = await Generator.start(cores * 2, `0-${cores - 1}`);
  let hashes: string[][];
  try {
    const share = Math.ceil(count / generator.size);
    hashes = await generator.all<{ hashes: string[] }>((i) => ({ op: 'hash', passwords: passwords.slice(i * share, (i + 1) * share) })).then((parts) => parts.map((p) => p.hashes));
  } finally {
    await generator.close();
  }
  const flat = hashes.flat();
  const users = passwords.map((password, i) => ({ username: `storm-${String(i).padStart(5, '0')}`, password, passwordHash: flat[i]! }));
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(cacheFile, JSON.stringify(users));
  console.error(`  hashed in ${Math.round((Date.now() - started) / 1000)} s`);
  return users;
}

export async function prepareFleet(count: number): Promise<Fleet> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-fleet-'));
  atExit(() => rmSync(dir, { recursive: true, force: true }));
  const users = await fleetUsers(count);
  const gatehouseTemplate = path.join(dir, 'gatehouse');
  await seedDatabase({ dataDir: gatehouseTemplate }, users);
  const aedesUsersFile = path.join(dir, 'aedes-users');
  writeFileSync(aedesUsersFile, users.map((u) => `${u.username}:${u.password}\n`).join(''), { mode: 0o600 });
  return {
    users,
    gatehouseTemplate,
    aedesUsersFile,
    mosquittoPasswordFile: mosquittoInstalled() ? mosquittoPasswordFile(dir, users) : undefined,
  };
}
