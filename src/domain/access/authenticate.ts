import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Database } from '../../db';
import type { AccessChanges } from '../../db/changes';
import { createPasswordGate, type FailureTrackerFactory } from '../passwordGate';
import { replaceForeignPasswordHash } from '../rehash';
import { accessFor, type RuleModel } from './acl';
import { createAccessLookup, type Found } from './lookup';
import {
  MAX_USERNAME_LENGTH,
  type AccessSnapshot,
  type AuthenticateInput,
  type AuthResult,
  type ClientCredentials,
  type Principal,
} from './types';

export interface AuthenticatorOptions {
  /** Argon2id verifies running at once; more wait their turn. */
  maxConcurrentVerifies?: number;
  /** Verifies waiting for a turn; beyond this a CONNECT is answered at once (CONNACK 3). */
  maxQueuedVerifies?: number;
  /** Failures for one username before back-off starts. */
  failuresBeforeBackoff?: number;
  /** Failures from one address before back-off starts (higher: fleets share NAT addresses). */
  addressFailuresBeforeBackoff?: number;
  /** Longest back-off after repeated failures. */
  maxBackoffMs?: number;
  /** Verified credentials (and, with `changes`, client rows) remembered per process. */
  cacheSize?: number;
  /** With `changes`: unknown usernames remembered (each at most MAX_USERNAME_LENGTH long). */
  unknownCacheSize?: number;
  /**
   * Hears every change to credentials and rules. Given, what CONNECT reads is
   * kept in memory and forgotten on each change (a warm CONNECT reads no
   * database); absent, every CONNECT reads the database once.
   */
  changes?: AccessChanges;
  /** Where failures are counted (several nodes: a store they share); default: this process's memory. */
  failureTrackers?: FailureTrackerFactory;
  now?: () => number;
}

export interface Authenticator {
  authenticate(input: AuthenticateInput): Promise<AuthResult>;
  /**
   * What `who` may do now, as a CONNECT would find it (the same lookup), or
   * null when its client no longer exists (or no longer has that username, or
   * that certificate). For what outlives a session: its will.
   */
  currentAccess(who: Pick<Principal, 'clientRowId' | 'username' | 'mqttClientId' | 'certFingerprint'>): Promise<AccessSnapshot | null>;
  /** Forgets the verified-credential cache and failure counts. */
  reset(): Promise<void>;
  /**
   * Counters since start: Argon2id verifies run, connects whose password was
   * already verified, and connects that read the database.
   */
  stats(): { verifies: number; cacheHits: number; databaseReads: number; waitingVerifies: number };
}

interface CachedCredential {
  version: number;
  clientRowId: number;
  /**
   * The stored hash the password was verified against: the entry holds only
   * while the row still has this very hash, so a hash changed without a
   * version bump (by hand in SQL) is a miss too.
   */
  passwordHash: string;
  passwordMac: Buffer;
}

/**
 * The one authentication path for every listener, for password and
 * certificate clients alike: the client is found through one lookup (in
 * memory while changes are heard, see lookup.ts), and the rules that apply
 * are decided by acl.ts once it is authenticated. A verified password is
 * remembered as an HMAC under a per-process key together with the row's
 * version and hash, so a reconnect storm costs no Argon2id work and any edit
 * of the client (which bumps its version) or of its hash is a cache miss.
 */
export function createAuthenticator(db: Database, options: AuthenticatorOptions = {}): Authenticator {
  const now = options.now ?? Date.now;
  const cacheSize = options.cacheSize ?? 100_000;
  const lookup = createAccessLookup(db, { changes: options.changes, cacheSize, unknownCacheSize: options.unknownCacheSize });
  const macKey = randomBytes(32);
  const verified = new Map<string, CachedCredential>();
  const maxBackoffMs = options.maxBackoffMs ?? 60_000;
  const gate = createPasswordGate({
    usernameThreshold: options.failuresBeforeBackoff ?? 5,
    addressThreshold: options.addressFailuresBeforeBackoff ?? 20,
    usernameMaxBackoffMs: maxBackoffMs,
    addressMaxBackoffMs: maxBackoffMs,
    maxConcurrent: options.maxConcurrentVerifies ?? 4,
    maxWaiting: options.maxQueuedVerifies ?? 256,
    failureTrackers: options.failureTrackers,
    now,
  });
  let cacheHits = 0;

  const mac = (password: Buffer) => createHmac('sha256', macKey).update(password).digest();

  /**
   * Checks `password` for the client `row` (null: none has this username):
   * a password verified before costs an HMAC, any other a turn at the gate
   * (Argon2id, or the decoy for an unknown username).
   */
  async function checkPassword(username: string, row: ClientCredentials | null, password: Buffer, address: string | undefined) {
    const passwordMac = mac(password);
    const cached = verified.get(username);
    if (row && cached && cached.version === row.version && cached.clientRowId === row.id && cached.passwordHash === row.passwordHash) {
      // A device that proved this very password before is not locked out by
      // someone guessing its username or sharing its (NAT) address: back-off
      // only gates the costly verifies.
      if (timingSafeEqual(cached.passwordMac, passwordMac)) {
        cacheHits++;
        // Not awaited: a warm CONNECT never waits on a shared failure store
        // (the reset cannot reject).
        void gate.succeed(username);
        return { ok: true as const };
      }
    }
    const checked = await gate.verify(username, address, row?.passwordHash, password.toString('utf8'));
    if (!checked.ok) return checked;
    if (!row) throw new Error('a password verified without a client row');
    // An imported hash (Mosquitto, EMQX…) is replaced by our own at its first
    // success; the row changes, so there is nothing to remember.
    if (await replaceForeignPasswordHash(db, row.id, row.passwordHash, password.toString('utf8'))) return { ok: true as const };
    verified.delete(username);
    verified.set(username, { version: row.version, clientRowId: row.id, passwordHash: row.passwordHash, passwordMac });
    if (verified.size > cacheSize) verified.delete(verified.keys().next().value!);
    return { ok: true as const };
  }

  async function authenticate(input: AuthenticateInput): Promise<AuthResult> {
    // A certificate's fingerprint decides first; null goes on to the password path.
    if (input.clientCertificate || input.certificateRequired) {
      const decided = await authenticateByCertificate(input);
      if (decided) return decided;
    }

    const username = input.username ?? '';
    const password = input.password === undefined ? Buffer.alloc(0) : Buffer.from(input.password);
    if (!username || password.length === 0) return { ok: false, reason: 'missing_credentials' };
    // [MQTT-1.5.3-2] No MQTT string holds U+0000 (PostgreSQL text cannot either):
    // such a username names no client, and such a client id is refused.
    if (input.clientId.includes('\u0000')) return { ok: false, reason: 'bad_client_id' };
    if (username.includes('\u0000')) return { ok: false, reason: 'bad_credentials' };
    if (username.length > MAX_USERNAME_LENGTH) {
      // No client can have it: refused without a read or a cache entry, after
      // the same decoy verify as an unknown username. Failures are counted
      // under a digest, so a flood of 64 KB usernames costs the failure
      // counts no more memory than short ones.
      const key = `sha256:${createHash('sha256').update(username).digest('base64')}`;
      const checked = await gate.verify(key, input.remoteAddress, undefined, password.toString('utf8'));
      return { ok: false, reason: checked.ok ? 'bad_credentials' : checked.reason };
    }

    let found: Found | null;
    try {
      found = await lookup.byUsername(username);
    } catch {
      return { ok: false, reason: 'unavailable' };
    }
    const checked = await checkPassword(username, found?.credentials ?? null, password, input.remoteAddress);
    if (!checked.ok) return { ok: false, reason: checked.reason };
    return success(found!, input, undefined);
  }

  /**
   * A CONNECT that carries a client certificate, or that came over a
   * listener requiring one (mTLS). Certificate clients are found by the
   * certificate's SHA-256 fingerprint:
   *
   * - Certificate: the certificate is enough; CONNECT's username and password
   *   are ignored, and `%u` is the client's username in the console.
   * - Certificate + Password: CONNECT must also carry the client's username
   *   and password (CONNACK 4 otherwise, as for a password client).
   * - A certificate out of its dates is refused (CONNACK 5), even when the
   *   handshake let it through (client certificates are optional without mTLS).
   * - A certificate no client has: with mTLS, refused (CONNACK 5); without,
   *   null — the password path decides, as if no certificate had been sent.
   */
  async function authenticateByCertificate(input: AuthenticateInput): Promise<AuthResult | null> {
    const certificate = input.clientCertificate;
    if (!certificate) return input.certificateRequired ? { ok: false, reason: 'certificate_refused' } : null;
    // [MQTT-1.5.3-2] No MQTT string holds U+0000.
    if (input.clientId.includes('\u0000')) return { ok: false, reason: 'bad_client_id' };
    let found: Found | null;
    try {
      found = await lookup.byFingerprint(certificate.fingerprint256);
    } catch {
      return { ok: false, reason: 'unavailable' };
    }
    if (!found) return input.certificateRequired ? { ok: false, reason: 'certificate_refused' } : null;
    const at = new Date();
    if (certificate.validTo < at || certificate.validFrom > at) return { ok: false, reason: 'certificate_refused' };
    const row = found.credentials;
    if (row.authType === 'certificate_password') {
      const password = input.password === undefined ? Buffer.alloc(0) : Buffer.from(input.password);
      if (!input.username || password.length === 0) return { ok: false, reason: 'missing_credentials' };
      if (input.username !== row.username) return { ok: false, reason: 'bad_credentials' };
      const checked = await checkPassword(row.username, row, password, input.remoteAddress);
      if (!checked.ok) return { ok: false, reason: checked.reason };
    }
    return success(found, input, certificate.fingerprint256);
  }

  return {
    authenticate,
    async currentAccess(who) {
      const found = who.certFingerprint === undefined ? await lookup.byUsername(who.username) : await lookup.byFingerprint(who.certFingerprint);
      if (!found || found.credentials.id !== who.clientRowId || found.credentials.username !== who.username) return null;
      return accessFor(await found.rules(), { clientRowId: found.credentials.id, username: found.credentials.username, mqttClientId: who.mqttClientId, certFingerprint: who.certFingerprint });
    },
    async reset() {
      verified.clear();
      await gate.clear();
    },
    stats: () => ({ verifies: gate.verifies(), cacheHits, databaseReads: lookup.databaseReads(), waitingVerifies: gate.waiting() }),
  };
}

/** The principal of an authenticated CONNECT, and what the rules give it. */
async function success(found: Found, input: AuthenticateInput, certFingerprint: string | undefined): Promise<AuthResult> {
  const row = found.credentials;
  let rules: RuleModel;
  try {
    rules = await found.rules();
  } catch {
    return { ok: false, reason: 'unavailable' };
  }
  const principal: Principal = {
    clientRowId: row.id,
    username: row.username,
    authType: row.authType,
    mqttClientId: input.clientId,
    transport: input.transport,
    remoteAddress: input.remoteAddress,
    ...(certFingerprint === undefined ? {} : { certFingerprint }),
  };
  return { ok: true, principal, access: accessFor(rules, principal) };
}
