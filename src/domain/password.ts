import { randomBytes } from 'node:crypto';
import { Argon2id } from 'oslo/password';

// OWASP parameters: m=19456 KiB, t=2, p=1 (also oslo's defaults; kept explicit).
const argon2id = new Argon2id({ memorySize: 19456, iterations: 2, parallelism: 1 });

/** Hashes a password with Argon2id. */
export function hashPassword(password: string): Promise<string> {
  return argon2id.hash(password);
}

/** Checks a password against an Argon2id hash; a malformed hash verifies as false. */
export async function verifyPasswordHash(hash: string, password: string): Promise<boolean> {
  try {
    return await argon2id.verify(hash, password);
  } catch {
    return false;
  }
}

let decoyHash: Promise<string> | undefined;

/**
 * Verifies `password` against `hash`, or, when there is no hash (unknown
 * username), against a decoy hash made once per process: both failures then
 * cost the same Argon2id work, so timing does not tell them apart.
 */
export async function verifyPasswordOrDecoy(hash: string | undefined, password: string): Promise<boolean> {
  if (hash !== undefined) return verifyPasswordHash(hash, password);
  decoyHash ??= hashPassword(randomBytes(16).toString('hex'));
  await verifyPasswordHash(await decoyHash, password);
  return false;
}
