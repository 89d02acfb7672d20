import { createHash, createHmac, pbkdf2, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { hash as argon2Hash, verify as argon2Verify } from '@node-rs/argon2';
import { verify as bcryptVerify } from '@node-rs/bcrypt';

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

/** Checks a password against a stored hash (any format below); a malformed hash verifies as false. */
export async function verifyPasswordHash(hash: string, password: string): Promise<boolean> {
  try {
    if (isGeneratedPasswordHash(hash)) return verifyFast(hash, password);
    const foreign = foreignFormatOf(hash);
    if (foreign) return foreignHashProblem(foreign, hash) === null && (await verifyForeign(foreign, hash, password));
    // Only our own parameters: the library would run whatever cost a PHC string names.
    if (!OWN_ARGON2ID.test(hash)) return false;
    return await argon2Verify(hash, password.normalize('NFKC'), ARGON2_OPTIONS);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// Hashes brought from elsewhere (imports from Mosquitto, EMQX, other systems).
// Each is verified natively at CONNECT; after the first success the broker
// stores the password again in our own format (`hashPassword`), so a foreign
// row lives only until its device first connects.

/** Stored formats, as the client's page names them. */
export const PASSWORD_FORMATS = {
  argon2id: 'Argon2id',
  generated: 'Generated (HMAC-SHA256)',
  none: 'No password',
  'argon2i': 'Argon2i (imported)',
  'argon2id-foreign': 'Argon2id with other parameters (imported)',
  bcrypt: 'bcrypt (imported)',
  'mosquitto-sha512': 'Mosquitto $6$ salted SHA-512 (imported)',
  'mosquitto-pbkdf2': 'Mosquitto $7$ PBKDF2-SHA512 (imported)',
  'emqx-sha256': 'EMQX salted SHA-256 (imported)',
  'emqx-sha512': 'EMQX salted SHA-512 (imported)',
  'emqx-pbkdf2': 'EMQX PBKDF2 (imported)',
} as const;
export type PasswordFormat = keyof typeof PASSWORD_FORMATS;

type ForeignFormat = Exclude<PasswordFormat, 'argon2id' | 'generated' | 'none'>;

/** True for a format brought from elsewhere: replaced with Argon2id at the device's first successful CONNECT. */
export function isImportedPasswordFormat(format: PasswordFormat): format is ForeignFormat {
  return format !== 'argon2id' && format !== 'generated' && format !== 'none';
}

const MOSQUITTO_SHA512 = /^\$6\$([A-Za-z0-9+/=]{4,64})\$([A-Za-z0-9+/=]{86,88})$/;
const MOSQUITTO_PBKDF2 = /^\$7\$([1-9][0-9]{0,6})\$([A-Za-z0-9+/=]{4,64})\$([A-Za-z0-9+/=]{86,88})$/;
const BCRYPT = /^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$/;
/**
 * EMQX keeps the algorithm in its configuration, not in the hash, so an
 * imported EMQX row is stored with it:
 * `$emqx-sha256$<prefix|suffix|disable>$<salt, base64url>$<hex>` (sha256, sha512), and
 * `$emqx-pbkdf2$<sha256|sha512|sha1>$<iterations>$<salt, base64url>$<hex>`.
 */
const EMQX_SALTED = /^\$emqx-(sha256|sha512)\$(prefix|suffix|disable)\$([A-Za-z0-9_-]*)\$([0-9a-f]{64}|[0-9a-f]{128})$/;
const EMQX_PBKDF2 = /^\$emqx-pbkdf2\$(sha1|sha256|sha512)\$([1-9][0-9]{0,6})\$([A-Za-z0-9_-]*)\$([0-9a-f]{16,256})$/;

/** An Argon2id hash made with our parameters: nothing to replace. */
const OWN_ARGON2ID = /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/;

/** An Argon2i or Argon2id PHC string (no secret key or associated data), its version optional as older libraries wrote it. */
const ARGON2_PHC = /^\$argon2(?:i|id)\$(?:v=(?:16|19)\$)?m=([0-9]{1,10}),t=([0-9]{1,10}),p=([0-9]{1,3})\$[A-Za-z0-9+/]{11,88}\$[A-Za-z0-9+/]{16,171}$/;

/**
 * The most work an imported hash may ask of one verify. A hash names its own
 * cost, and every wrong password sent for its username pays it again, in one
 * of the few verify slots every CONNECT shares: without a bound, one row of
 * an import (bcrypt cost 31, Argon2 with m=4 GiB or t=1000000, PBKDF2 with
 * ten million iterations) lets one device pin the CPU or exhaust memory.
 * These cover what the systems imported from use (EMQX bcrypt 10 and PBKDF2
 * 4096, Mosquitto PBKDF2 101 and its options, OWASP's 600,000 PBKDF2
 * iterations, Argon2 at RFC 9106's and PHP's 64 MiB) and cost at most a few
 * times our own Argon2id verify (measured side by side: bcrypt 12 ≈ 4×,
 * PBKDF2-SHA256 600,000 ≈ 4.5×, Argon2id 64 MiB t=4 ≈ 2×).
 */
export const FOREIGN_HASH_LIMITS = {
  bcryptCost: 12,
  pbkdf2Iterations: 600_000,
  argon2MemoryKiB: 65_536,
  argon2TimeCost: 10,
  /** m × t, in KiB passes: 64 MiB four times. */
  argon2Work: 65_536 * 4,
  argon2Parallelism: 8,
} as const;

/** Why an imported hash in `format` is not one Gatehouse verifies (malformed, or asking more work than FOREIGN_HASH_LIMITS), or null. */
function foreignHashProblem(format: ForeignFormat, hash: string): string | null {
  const limits = FOREIGN_HASH_LIMITS;
  switch (format) {
    case 'argon2i':
    case 'argon2id-foreign': {
      const phc = ARGON2_PHC.exec(hash);
      if (!phc) return 'An Argon2 hash that does not parse (expected $argon2i$ or $argon2id$, v=, m=, t=, p=, salt and hash).';
      const [m, t, p] = [Number(phc[1]), Number(phc[2]), Number(phc[3])];
      if (m < 8 * p || t < 1 || p < 1) return 'An Argon2 hash with impossible parameters.';
      if (m > limits.argon2MemoryKiB || t > limits.argon2TimeCost || m * t > limits.argon2Work || p > limits.argon2Parallelism) {
        return `An Argon2 hash costing more than Gatehouse verifies at CONNECT (m=${m}, t=${t}, p=${p}; at most m=${limits.argon2MemoryKiB}, t=${limits.argon2TimeCost}, m×t=${limits.argon2Work}, p=${limits.argon2Parallelism}).`;
      }
      return null;
    }
    case 'bcrypt': {
      const cost = Number(hash.slice(4, 6));
      return cost > limits.bcryptCost ? `A bcrypt hash of cost ${cost}: Gatehouse verifies at most cost ${limits.bcryptCost} at CONNECT.` : null;
    }
    case 'mosquitto-pbkdf2':
    case 'emqx-pbkdf2': {
      const iterations = Number(format === 'mosquitto-pbkdf2' ? MOSQUITTO_PBKDF2.exec(hash)![1] : EMQX_PBKDF2.exec(hash)![2]);
      return iterations > limits.pbkdf2Iterations ? `A PBKDF2 hash of ${iterations} iterations: Gatehouse verifies at most ${limits.pbkdf2Iterations} at CONNECT.` : null;
    }
    default:
      return null;
  }
}

function foreignFormatOf(hash: string): ForeignFormat | null {
  if (hash.startsWith('$argon2i$')) return 'argon2i';
  if (hash.startsWith('$argon2id$')) return OWN_ARGON2ID.test(hash) ? null : 'argon2id-foreign';
  if (BCRYPT.test(hash)) return 'bcrypt';
  if (MOSQUITTO_SHA512.test(hash)) return 'mosquitto-sha512';
  if (MOSQUITTO_PBKDF2.test(hash)) return 'mosquitto-pbkdf2';
  const salted = EMQX_SALTED.exec(hash);
  if (salted) return salted[1] === 'sha256' ? 'emqx-sha256' : 'emqx-sha512';
  if (EMQX_PBKDF2.test(hash)) return 'emqx-pbkdf2';
  return null;
}

/** Which format a stored hash is in. */
export function passwordFormatOf(hash: string): PasswordFormat {
  if (hash === '') return 'none';
  if (isGeneratedPasswordHash(hash)) return 'generated';
  return foreignFormatOf(hash) ?? 'argon2id';
}

/** True for a hash brought from elsewhere: replaced with our own at the first successful CONNECT. */
export function isForeignPasswordHash(hash: string): boolean {
  return foreignFormatOf(hash) !== null;
}

/**
 * Why `hash` is not one an import may store, or null when this file verifies
 * it (ours, or a foreign one within FOREIGN_HASH_LIMITS).
 */
export function passwordHashProblem(hash: string): string | null {
  if (isGeneratedPasswordHash(hash)) return FAST_FORMAT.test(hash) ? null : 'A generated-password hash that does not parse.';
  const foreign = foreignFormatOf(hash);
  if (foreign) return foreignHashProblem(foreign, hash);
  return OWN_ARGON2ID.test(hash) ? null : 'A hash in no format Gatehouse verifies (see README, “Coming from Mosquitto or EMQX”).';
}

/** True when `hash` is one this file can verify (ours or a foreign one within bounds): what an import may store. */
export function isKnownPasswordHash(hash: string): boolean {
  return passwordHashProblem(hash) === null;
}

const pbkdf2Async = promisify(pbkdf2);

function equalBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

async function verifyForeign(format: ForeignFormat, hash: string, password: string): Promise<boolean> {
  switch (format) {
    case 'argon2i':
    case 'argon2id-foreign':
      // The parameters are in the PHC string.
      return argon2Verify(hash, password);
    case 'bcrypt':
      // @node-rs/bcrypt, on the thread pool like Argon2id. bcryptjs computed on
      // the event loop in slices of ~100 ms: four wrong passwords at once for
      // imported bcrypt clients held every device's packets 100-400 ms per turn.
      // Both take the first 72 bytes of UTF-8, as bcrypt does.
      return bcryptVerify(password, hash);
    case 'mosquitto-sha512': {
      // mosquitto_passwd's `$6$`: SHA-512 over password then salt, both base64 (not crypt(3)'s sha512-crypt).
      const [, salt, digest] = MOSQUITTO_SHA512.exec(hash)!;
      const computed = createHash('sha512').update(password, 'utf8').update(Buffer.from(salt!, 'base64')).digest();
      return equalBytes(computed, Buffer.from(digest!, 'base64'));
    }
    case 'mosquitto-pbkdf2': {
      // mosquitto_passwd's default `$7$`: PBKDF2-HMAC-SHA512, iterations, salt and 64-byte key in base64.
      const [, iterations, salt, digest] = MOSQUITTO_PBKDF2.exec(hash)!;
      const expected = Buffer.from(digest!, 'base64');
      const computed = await pbkdf2Async(password, Buffer.from(salt!, 'base64'), Number(iterations), expected.length, 'sha512');
      return equalBytes(computed, expected);
    }
    case 'emqx-sha256':
    case 'emqx-sha512': {
      const [, algorithm, position, salt, digest] = EMQX_SALTED.exec(hash)!;
      const saltBytes = Buffer.from(salt!, 'base64url');
      const input = Buffer.from(password, 'utf8');
      const data = position === 'prefix' ? Buffer.concat([saltBytes, input]) : position === 'suffix' ? Buffer.concat([input, saltBytes]) : input;
      return equalBytes(createHash(algorithm!).update(data).digest(), Buffer.from(digest!, 'hex'));
    }
    case 'emqx-pbkdf2': {
      const [, algorithm, iterations, salt, digest] = EMQX_PBKDF2.exec(hash)!;
      const expected = Buffer.from(digest!, 'hex');
      const computed = await pbkdf2Async(password, Buffer.from(salt!, 'base64url'), Number(iterations), expected.length, algorithm!);
      return equalBytes(computed, expected);
    }
  }
}

/** EMQX's password hash settings, as its built-in database authenticator is configured. */
export interface EmqxHashOptions {
  algorithm: 'sha256' | 'sha512' | 'pbkdf2' | 'bcrypt';
  /** sha256 / sha512: where the salt goes (EMQX's default is prefix). */
  saltPosition?: 'prefix' | 'suffix' | 'disable';
  /** pbkdf2: EMQX's `mac_fun` and `iterations`. */
  macFun?: 'sha1' | 'sha256' | 'sha512';
  iterations?: number;
}

/**
 * The stored form of a user from an EMQX user export (`password_hash` in hex,
 * `salt` as text), or null when it does not fit `options`.
 */
export function emqxPasswordHash(passwordHash: string, salt: string, options: EmqxHashOptions): string | null {
  const hex = passwordHash.trim().toLowerCase();
  const saltText = Buffer.from(salt, 'utf8').toString('base64url');
  if (options.algorithm === 'bcrypt') return BCRYPT.test(passwordHash.trim()) ? passwordHash.trim() : null;
  if (options.algorithm === 'pbkdf2') {
    const stored = `$emqx-pbkdf2$${options.macFun ?? 'sha256'}$${options.iterations ?? 4096}$${saltText}$${hex}`;
    return EMQX_PBKDF2.test(stored) ? stored : null;
  }
  const stored = `$emqx-${options.algorithm}$${options.saltPosition ?? 'prefix'}$${saltText}$${hex}`;
  return EMQX_SALTED.test(stored) ? stored : null;
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
  if (passwordHashProblem(hash) !== null) {
    // Nothing this file verifies (no password, or an imported hash beyond
    // FOREIGN_HASH_LIMITS written some other way): the decoy's cost, no more.
    await decoyVerify(password);
    return false;
  }
  const foreign = foreignFormatOf(hash);
  if (foreign && foreign !== 'argon2i' && foreign !== 'argon2id-foreign' && foreign !== 'bcrypt') {
    // A fast foreign format (SHA, PBKDF2 with few iterations): a wrong
    // password costs the decoy too, as for every other failure.
    if (await verifyPasswordHash(hash, password)) return true;
    await decoyVerify(password);
    return false;
  }
  return verifyPasswordHash(hash, password);
}
