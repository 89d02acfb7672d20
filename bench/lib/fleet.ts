/**
 * What every contender authenticates against, made once per run: the bench
 * user and, for the connect storms, a fleet of devices, each with its own
 * password from the console's generator, stored as the console stores a
 * generated password (the fast salted format, see src/domain/password.ts): a
 * fleet provisioned through the console with "Generate strong password" is
 * the realistic case. Every first CONNECT is still a miss of Gatehouse's
 * CONNECT cache and a real verify (one password shared by all would let the
 * cache answer all but the first).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generatePassword, hashGeneratedPassword, hashPassword } from '../../src/domain/password';
import { type FleetUser, mosquittoInstalled, mosquittoPasswordFile, seedDatabase } from './brokers';
import { atExit } from './cleanup';

export interface Fleet {
  users: FleetUser[];
  /** A DATA_DIR with the embedded database seeded: each Gatehouse start copies it. */
  gatehouseTemplate: string;
  /**
   * The same devices with the same passwords, stored as typed ones are
   * (Argon2id), for the typed-password storm; undefined unless asked for.
   */
  typedTemplate?: string;
  /** `username:password` lines for bare Aedes. */
  aedesUsersFile: string;
  /** Undefined when Mosquitto is not installed. */
  mosquittoPasswordFile?: string;
}

function fleetUsers(count: number): FleetUser[] {
  return Array.from({ length: count }, (_, i) => {
    const password = generatePassword();
    return { username: `storm-${String(i).padStart(5, '0')}`, password, passwordHash: hashGeneratedPassword(password) };
  });
}

export async function prepareFleet(count: number, options: { typed?: boolean } = {}): Promise<Fleet> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-bench-fleet-'));
  atExit(() => rmSync(dir, { recursive: true, force: true }));
  const users = fleetUsers(count);
  const gatehouseTemplate = path.join(dir, 'gatehouse');
  await seedDatabase({ dataDir: gatehouseTemplate }, users);
  let typedTemplate: string | undefined;
  if (options.typed && count > 0) {
    // An Argon2id hash each, as the console stores a typed password: about a minute for 5,000.
    const started = performance.now();
    const typed: FleetUser[] = [];
    for (let i = 0; i < users.length; i += 64) {
      const slice = users.slice(i, i + 64);
      const hashes = await Promise.all(slice.map((user) => hashPassword(user.password)));
      slice.forEach((user, j) => typed.push({ ...user, passwordHash: hashes[j]! }));
    }
    typedTemplate = path.join(dir, 'gatehouse-typed');
    await seedDatabase({ dataDir: typedTemplate }, typed);
    console.error(`  ${count} Argon2id hashes for the typed-password storm made in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
  const aedesUsersFile = path.join(dir, 'aedes-users');
  writeFileSync(aedesUsersFile, users.map((u) => `${u.username}:${u.password}\n`).join(''), { mode: 0o600 });
  return {
    users,
    gatehouseTemplate,
    typedTemplate,
    aedesUsersFile,
    mosquittoPasswordFile: mosquittoInstalled() ? mosquittoPasswordFile(dir, users) : undefined,
  };
}
