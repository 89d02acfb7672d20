import { createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { hash as argon2Hash, verify as argon2Verify } from '@node-rs/argon2';

// OWASP parameters: m=19456 KiB, t=2, p=1, Argon2id v0x13 (the library's
// defaults; kept explicit). Passwords are NFKC-normalized first, as the hashes
// stored before (made through oslo) were.
const ARGON2_OPTIONS = { memoryCost: 19456, timeCost: 2, parallelism: 1, outputLen: 32 } as const;

/** Hashes a password with Argon2id: every password a person typed. */
export function hashPassword(password: string): Promise<string> {
  return argon2Hash(password.normalize('NFKC'), ARGON2_OPTIONS);
}

/**
 * The console's password generator: 24 characters drawn uniformly (no modulo
 * bias) from 67, about 145 bits of entropy. The browser's "Generate strong
 * password" button asks the server for one (public/app.js), so the server
 * knows which passwords it made (see `generatedPasswordToken`).
 */
export const GENERATED_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.~!@#%^*';
export const GENERATED_LENGTH = 24;

export function generatePassword(): string {
  let out = '';
  for (let i = 0; i < GENERATED_LENGTH; i++) out += GENERATED_ALPHABET[randomInt(GENERATED_ALPHABET.length)];
  return out;
}

/**
 * Generated secrets are stored as `$gh-hmac-sha256$<salt>$<digest>` (base64url):
 * HMAC-SHA256 keyed with a 16-byte random salt over the secret. With 145 bits
 * of entropy no amount of hashing work changes what a stolen row is worth (an
 * offline search of 2^145 is out of reach either way), so the slow hash would
 * only cost every first CONNECT 10–25 ms of CPU. The prefix says which format
 * a row holds: every other row is Argon2id (PHC `$argon2id$…`).
 */
const FAST_PREFIX = '$gh-hmac-sha256$';

export function isGeneratedPasswordHash(hash: string): boolean {
  return hash.startsWith(FAST_PREFIX);
}

/**
 * The stored form of a password `generatePassword` made. Never call it for a
 * password a person typed or chose, however long: those get `hashPassword`.
 */
export function hashGeneratedPassword(password: string): string {
  const salt = randomBytes(16);
  return `${FAST_PREFIX}${salt.toString('base64url')}$${fastDigest(salt, password).toString('base64url')}`;
}

function fastDigest(salt: Buffer, password: string): Buffer {
  return createHmac('sha256', salt).update(password, 'utf8').digest();
}

/** `$gh-hmac-sha256$` + 16 bytes of salt + `$` + 32 bytes of digest, base64url without padding. */
const FAST_FORMAT = /^\$gh-hmac-sha256\$([A-Za-z0-9_-]{22})\$([A-Za-z0-9_-]{43})$/;

/** True when `password` is the generated password `hash` (a fast row) was made from; never throws. */
export function verifyGeneratedPassword(hash: string, password: string): boolean {
  try {
    return verifyFast(hash, password);
  } catch {
    return false;
  }
}

function verifyFast(hash: string, password: string): boolean {
  const parts = FAST_FORMAT.exec(hash);
  if (!parts) return false;
  const salt = Buffer.from(parts[1]!, 'base64url');
  const expected = Buffer.from(parts[2]!, 'base64url');
  return timingSafeEqual(expected, fastDigest(salt, password));
}

/**
 * A password the server generated comes back with this token (an HMAC under
 * a per-process key), so saving a form can tell the generator's output from
 * a typed password: a typed one (or an edited generated one) has no valid
 * token and gets Argon2id. A token from another process (a restart, another
 * node) does not verify either: the password is then stored with Argon2id,
 * which is always safe.
 */
const tokenKey = randomBytes(32);

export function generatedPasswordToken(password: string): string {
  return createHmac('sha256', tokenKey).update('generated-password\0').update(password, 'utf8').digest('base64url');
}

/** True when `token` says the server generated exactly `password`. */
export function isServerGenerated(password: string, token: unknown): boolean {
  if (typeof token !== 'string' || token.length === 0 || token.length > 64) return false;
  const expected = Buffer.from(generatedPasswordToken(password));
  const given = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The stored form of a password from a form: fast only for the generator's own output (see above). */
export function hashFormPassword(password: string, generatedToken: unknown): Promise<string> {
  return isServerGenerated(password, generatedToken) ? Promise.resolve(hashGeneratedPassword(password)) : hashPassword(password);
}

/** Checks a password against a stored hash (either format); a malformed hash verifies as false. */
export async function verifyPasswordHash(hash: string, password: string): Promise<boolean> {
  try {
    if (isGeneratedPasswordHash(hash)) return verifyFast(hash, password);
    return await argon2Verify(hash, password.normalize('NFKC'), ARGON2_OPTIONS);
  } catch {
    return false;
  }
}

let decoyHash: Promise<string> | undefined;

function decoyVerify(password: string): Promise<boolean> {
  decoyHash ??= hashPassword(randomBytes(16).toString('hex'));
  return decoyHash.then((hash) => verifyPasswordHash(hash, password));
}

/**
 * Verifies `password` against `hash`, or, when there is no hash (unknown
 * username), against a decoy hash made once per process. Every failure costs
 * one Argon2id verify: an unknown username (the decoy), a wrong password for
 * an Argon2id row, and a wrong password for a generated (fast) row, which
 * runs the decoy after its fast check. Timing therefore tells none of them
 * apart; only a right generated password is answered without Argon2id work.
 */
export async function verifyPasswordOrDecoy(hash: string | undefined, password: string): Promise<boolean> {
  if (hash === undefined) {
    await decoyVerify(password);
    return false;
  }
  if (isGeneratedPasswordHash(hash)) {
    if (verifyFast(hash, password)) return true;
    await decoyVerify(password);
    return false;
  }
  return verifyPasswordHash(hash, password);
}
