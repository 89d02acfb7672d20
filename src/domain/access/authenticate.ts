import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Database } from '../../db';
import { createPasswordGate, type FailureTrackerFactory, type GateResult } from '../passwordGate';
import { replaceForeignPasswordHash } from '../rehash';
import { accessFor, type RuleModel } from './acl';
import { createAccessLookup, type Found, type LookupStats } from './lookup';
import type { AccessModel } from './model';
import {
  MAX_USERNAME_LENGTH,
  type AccessSnapshot,
  type AuthenticateInput,
  type AuthFailure,
  type AuthResult,
  type ClientCredentials,
  type Principal,
  type Who,
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
  /** Verified passwords remembered per process. */
  cacheSize?: number;
  /**
   * Every client and rule in memory, kept current from the change feed
   * (model.ts): while it is current, no CONNECT reads the database. Absent,
   * every CONNECT reads the database.
   */
  model?: AccessModel;
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
  /** What `who` may do under the rules as a CONNECT would find them now (the console's checker). */
  accessOf(who: Who): Promise<AccessSnapshot>;
  /** The rule model as a CONNECT would find it now. */
  ruleModel(): Promise<RuleModel>;
  /** Forgets the verified-credential cache and failure counts. */
  reset(): Promise<void>;
  /**
   * Counters since start: Argon2id verifies run, connects whose password was
   * already verified, lookups that read the database, answered from memory,
   * or from the model as last known while the database was unreachable.
   */
  stats(): { verifies: number; cacheHits: number; waitingVerifies: number } & LookupStats;
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
  const lookup = createAccessLookup(db, options.model);
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
   * (Argon2id, or the decoy for an unknown username). `stale`: whether `row`
   * changed meanwhile (the attempt is then decided again, see `decide`).
   */
  async function checkPassword(username: string, row: ClientCredentials | null, password: Buffer, address: string | undefined, stale: () => boolean) {
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
    const checked = await gate.verify(username, address, row?.passwordHash, password.toString('utf8'), stale);
    if (!checked.ok) return { ok: false as const, reason: failureOf(checked) };
    if (!row) throw new Error('a password verified without a client row');
    // An imported hash (Mosquitto, EMQX…) is replaced by our own at its first
    // success; the row changes, so there is nothing to remember.
    if (await replaceForeignPasswordHash(db, row.id, row.passwordHash, password.toString('utf8'))) return { ok: true as const, rehashed: true };
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
      return { ok: false, reason: checked.ok ? 'bad_credentials' : failureOf(checked) };
    }

    return decide(
      () => lookup.byUsername(username),
      async (found) => {
        const checked = await checkPassword(username, found.credentials, password, input.remoteAddress, found.changed);
        return checked.ok ? { ok: true, ownChange: 'rehashed' in checked } : { ok: false, reason: checked.reason };
      },
      (found) => success(found, input, undefined),
    );
  }

  /**
   * Looks the client up, checks it, and answers. Should what was found
   * change while it was checked (a change applied during a verify), it is
   * decided again with what is current, twice at most, then refused as
   * unavailable: a password changed a moment ago is never accepted from
   * before the change. Only the decision made with what is current counts
   * towards the back-off (one wrong password, one failure, however many
   * times it was decided). A refusal already counted stands, whatever is
   * applied after it was verified: what it was counted against was current
   * then, and deciding it again would count the same CONNECT twice (a change
   * applied while its failure was written to the shared counts did).
   */
  async function decide(
    find: () => Promise<Found>,
    // `ownChange`: the check itself changed the client (an imported hash replaced).
    check: (found: Found) => Promise<{ ok: true; ownChange?: boolean } | { ok: false; reason: AuthFailure }>,
    accept: (found: Found) => Promise<AuthResult>,
  ): Promise<AuthResult> {
    for (let attempt = 0; attempt < 3; attempt++) {
      let found: Found;
      try {
        found = await find();
      } catch {
        return { ok: false, reason: 'unavailable' };
      }
      // What the verify's outcome was counted against: `changed` is asked once
      // it is verified, before it is counted, and a false answer counts it.
      let counted = false;
      const checked = await check({
        ...found,
        changed: () => {
          const changed = found.changed();
          if (!changed) counted = true;
          return changed;
        },
      });
      if (!checked.ok && counted) return checked;
      if (!(checked.ok && checked.ownChange) && found.changed()) continue;
      if (!checked.ok) return checked;
      return accept(found);
    }
    return { ok: false, reason: 'unavailable' };
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
    const refused = (reason: AuthFailure) => ({ ok: false as const, reason });
    let unknown = false;
    const result = await decide(
      () => lookup.byFingerprint(certificate.fingerprint256),
      async (found) => {
        const row = found.credentials;
        unknown = row === null;
        if (!row) return refused('certificate_refused');
        const at = new Date();
        if (certificate.validTo < at || certificate.validFrom > at) return refused('certificate_refused');
        if (row.authType === 'certificate_password') {
          const password = input.password === undefined ? Buffer.alloc(0) : Buffer.from(input.password);
          if (!input.username || password.length === 0) return refused('missing_credentials');
          if (input.username !== row.username) return refused('bad_credentials');
          const checked = await checkPassword(row.username, row, password, input.remoteAddress, found.changed);
          if (!checked.ok) return refused(checked.reason);
          return { ok: true, ownChange: 'rehashed' in checked };
        }
        return { ok: true };
      },
      (found) => success(found, input, certificate.fingerprint256),
    );
    // A certificate no client has: without mTLS, the password path decides.
    if (unknown && !input.certificateRequired && !result.ok && result.reason === 'certificate_refused') return null;
    return result;
  }

  return {
    authenticate,
    async currentAccess(who) {
      const found = await lookup.byId(who.clientRowId);
      const row = found.credentials;
      if (!row || row.username !== who.username) return null;
      if (who.certFingerprint !== undefined && (row.authType === 'password' || row.certFingerprint !== who.certFingerprint)) return null;
      return accessFor(await found.rules(), { clientRowId: row.id, username: row.username, mqttClientId: who.mqttClientId, certFingerprint: who.certFingerprint });
    },
    async accessOf(who) {
      return accessFor(await lookup.rules(), who);
    },
    ruleModel: () => lookup.rules(),
    async reset() {
      verified.clear();
      await gate.clear();
    },
    stats: () => ({ verifies: gate.verifies(), cacheHits, waitingVerifies: gate.waiting(), ...lookup.stats() }),
  };
}

/** Why the password gate refused: a full waiting line is the server's state (unavailable), not the device's back-off. */
function failureOf(checked: Exclude<GateResult, { ok: true }>): AuthFailure {
  return checked.reason === 'throttled' && checked.busy ? 'unavailable' : checked.reason;
}

/** The principal of an authenticated CONNECT, and what the rules give it. */
async function success(found: Found, input: AuthenticateInput, certFingerprint: string | undefined): Promise<AuthResult> {
  const row = found.credentials!;
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
