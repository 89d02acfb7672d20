import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Database } from '../db';
import type { AccessChanges } from '../db/changes';
import { findPasswordCredentials, grantsFor, loadAccessModel, type AccessModel } from './accessModel';
import { resolveAccess, type AccessSnapshot, type RuleGrantRow } from './acl';
import { MAX_USERNAME_LENGTH, type AuthType, type ClientCredentials } from './clients';
import { findConnectRow, type ConnectRow } from './groupRules';
import { authenticateByCertificate, type ClientCertificate } from './certificateAuth';
import { createPasswordGate, type FailureTrackerFactory } from './passwordGate';
import { replaceForeignPasswordHash } from './rehash';

/** MQTT over TCP, over WebSocket, and the same two over TLS. */
export type Transport = 'tcp' | 'ws' | 'tls' | 'wss';

export interface AuthenticateInput {
  username?: string;
  password?: Buffer | string;
  /** The MQTT client id from CONNECT. */
  clientId: string;
  remoteAddress?: string;
  transport: Transport;
  /** Over TLS: the client certificate presented, if any (see certificateAuth.ts). */
  clientCertificate?: ClientCertificate;
  /** Over TLS with mTLS on: a certificate no client has is refused. */
  certificateRequired?: boolean;
}

/** Who a connection is, once authenticated. */
export interface Principal {
  /** The `clients` row. */
  clientRowId: number;
  username: string;
  authType: AuthType;
  /** The MQTT client id from CONNECT. */
  mqttClientId: string;
  transport: Transport;
  remoteAddress?: string;
  /** Certificate clients: the fingerprint of the certificate they connected with. */
  certFingerprint?: string;
}

export type AuthFailure =
  /** No username or no password: there are no anonymous connections. */
  | 'missing_credentials'
  /** Unknown username or wrong password: never told apart. */
  | 'bad_credentials'
  /** Too many recent failures for this username or address. */
  | 'throttled'
  /** The database could not be asked. */
  | 'unavailable'
  /** A client id no MQTT string may hold (U+0000, [MQTT-1.5.3-2]). */
  | 'bad_client_id'
  /** A client certificate out of its dates, or (mTLS) one no client has. */
  | 'certificate_refused';

export type AuthResult =
  /**
   * `access`: the groups and permissions of the connection, read in the same
   * query as the credentials; the session keeps this snapshot until it ends.
   */
  | { ok: true; principal: Principal; access: AccessSnapshot }
  | { ok: false; reason: AuthFailure };

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
   * What `who` may do now, as a CONNECT would find it (the same cache), or
   * null when its client no longer exists. For what outlives a session: its will.
   */
  currentAccess(who: Pick<Principal, 'clientRowId' | 'username' | 'mqttClientId'>): Promise<AccessSnapshot | null>;
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
 * The one authentication path for every listener. A CONNECT needs the client
 * row and the rules, groups and permissions that may apply to it (resolved
 * only once the password is verified): with `changes`, from memory (see
 * createConnectLookup); otherwise in one database read. A verified password is
 * remembered as an HMAC under a per-process key together with the row's
 * version and hash, so a reconnect storm costs no Argon2id work and any edit
 * of the client (which bumps its version) or of its hash is a cache miss.
 */
export function createAuthenticator(db: Database, options: AuthenticatorOptions = {}): Authenticator {
  const now = options.now ?? Date.now;
  const cacheSize = options.cacheSize ?? 100_000;
  const lookup = createConnectLookup(db, options.changes, cacheSize, options.unknownCacheSize ?? 10_000);
  const macKey = randomBytes(32);
  const cache = new Map<string, CachedCredential>();
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

  async function authenticate(input: AuthenticateInput): Promise<AuthResult> {
    // Certificate clients (certificateAuth.ts): the certificate's fingerprint
    // decides first; null goes on to the password path below.
    if (input.clientCertificate || input.certificateRequired) {
      const decided = await authenticateByCertificate(db, input, (user, hash, secret) => gate.verify(user, input.remoteAddress, hash, secret));
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

    let found;
    try {
      found = await lookup.find(username, input.clientId);
    } catch {
      return { ok: false, reason: 'unavailable' };
    }
    const row = found?.credentials;
    const grants = found?.grants ?? [];

    const passwordMac = mac(password);
    const cached = cache.get(username);
    if (row && cached && cached.version === row.version && cached.clientRowId === row.id && cached.passwordHash === row.passwordHash) {
      // A device that proved this very password before is not locked out by
      // someone guessing its username or sharing its (NAT) address: back-off
      // only gates the costly verifies.
      if (timingSafeEqual(cached.passwordMac, passwordMac)) {
        cacheHits++;
        // Not awaited: a warm CONNECT never waits on a shared failure store
        // (the reset cannot reject).
        void gate.succeed(username);
        return success(row, grants, input);
      }
    }

    const checked = await gate.verify(username, input.remoteAddress, row?.passwordHash, password.toString('utf8'));
    if (!checked.ok) return { ok: false, reason: checked.reason };
    if (!row) throw new Error('a password verified without a client row');
    // An imported hash (Mosquitto, EMQX…) is replaced by our own at its first success.
    if (await replaceForeignPasswordHash(db, row.id, row.passwordHash, password.toString('utf8'))) return success(row, grants, input);
    cache.delete(username);
    cache.set(username, { version: row.version, clientRowId: row.id, passwordHash: row.passwordHash, passwordMac });
    if (cache.size > cacheSize) cache.delete(cache.keys().next().value!);
    return success(row, grants, input);
  }

  return {
    authenticate,
    async currentAccess(who) {
      const found = await lookup.find(who.username, who.mqttClientId);
      if (!found || found.credentials.id !== who.clientRowId) return null;
      return resolveAccess(found.grants, { clientRowId: found.credentials.id, username: found.credentials.username, mqttClientId: who.mqttClientId });
    },
    async reset() {
      cache.clear();
      await gate.clear();
    },
    stats: () => ({ verifies: gate.verifies(), cacheHits, databaseReads: lookup.databaseReads(), waitingVerifies: gate.waiting() }),
  };
}

/**
 * What a CONNECT reads, kept in memory while `changes` is live: client rows
 * by username, unknown usernames (so a flood of them costs no reads; at most
 * `unknownCacheSize`, oldest forgotten first), and the whole rule model
 * (rules, groups, permissions), indexed.
 *
 * Invalidated by: every change to clients, groups, permissions or rules,
 * made on any node or by hand (database triggers NOTIFY; see db/changes.ts),
 * which forgets everything; and any break in hearing changes, during which
 * every CONNECT reads the database. A read during which a change was heard is
 * neither kept nor used: it is read again (see `find`).
 */
function createConnectLookup(db: Database, changes: AccessChanges | undefined, cacheSize: number, unknownCacheSize: number) {
  let databaseReads = 0;
  if (!changes) {
    return {
      find(username: string, clientId: string): Promise<ConnectRow | null> {
        databaseReads++;
        return findConnectRow(db, username, clientId);
      },
      databaseReads: () => databaseReads,
    };
  }
  let generation = 0;
  const credentials = new Map<string, ClientCredentials>();
  const unknown = new Set<string>();
  let model: Promise<AccessModel> | undefined;
  changes.onChange(() => {
    generation++;
    credentials.clear();
    unknown.clear();
    model = undefined;
  });

  function accessModel(): Promise<AccessModel> {
    if (model) return model;
    databaseReads++;
    const loading = loadAccessModel(db);
    model = loading;
    // A failed read is not remembered: the next CONNECT tries again.
    loading.catch(() => {
      if (model === loading) model = undefined;
    });
    return loading;
  }

  async function credentialsOf(username: string): Promise<ClientCredentials | null> {
    const known = credentials.get(username);
    if (known) return known;
    if (unknown.has(username)) return null;
    const seen = generation;
    databaseReads++;
    const row = await findPasswordCredentials(db, username);
    if (seen === generation && changes!.live()) {
      if (row) {
        credentials.set(username, row);
        if (credentials.size > cacheSize) credentials.delete(credentials.keys().next().value!);
      } else {
        unknown.add(username);
        if (unknown.size > unknownCacheSize) unknown.delete(unknown.values().next().value!);
      }
    }
    return row;
  }

  /** Reads that raced a change, tried again this many times before one plain read decides. */
  const RETRIES = 3;

  return {
    async find(username: string, clientId: string): Promise<ConnectRow | null> {
      for (let attempt = 0; attempt < RETRIES && changes.live(); attempt++) {
        // A row or a model read before a change was heard may predate it: a
        // change heard meanwhile (the generation moved) means read again.
        const seen = generation;
        const row = await credentialsOf(username);
        const found = row && { credentials: row, grants: grantsFor(await accessModel(), row.id, clientId) };
        if (seen === generation && changes.live()) return found;
      }
      // Not hearing changes, or changes keep coming: what the database says now.
      databaseReads++;
      return findConnectRow(db, username, clientId);
    },
    databaseReads: () => databaseReads,
  };
}

function success(row: { id: number; username: string; authType: AuthType }, grants: readonly RuleGrantRow[], input: AuthenticateInput): AuthResult {
  const principal: Principal = {
    clientRowId: row.id,
    username: row.username,
    authType: row.authType,
    mqttClientId: input.clientId,
    transport: input.transport,
    remoteAddress: input.remoteAddress,
  };
  return { ok: true, principal, access: resolveAccess(grants, principal) };
}
