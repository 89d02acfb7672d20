import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Database } from '../db';
import { resolveAccess, type AccessSnapshot, type RuleGrantRow } from './acl';
import type { AuthType } from './clients';
import { findConnectRow } from './groupRules';
import { createPasswordGate, type FailureTrackerFactory } from './passwordGate';

export type Transport = 'tcp' | 'ws';

export interface AuthenticateInput {
  username?: string;
  password?: Buffer | string;
  /** The MQTT client id from CONNECT. */
  clientId: string;
  remoteAddress?: string;
  transport: Transport;
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
  | 'bad_client_id';

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
  /** Verified credentials remembered per process. */
  cacheSize?: number;
  /** Where failures are counted (several nodes: a store they share); default: this process's memory. */
  failureTrackers?: FailureTrackerFactory;
  now?: () => number;
}

export interface Authenticator {
  authenticate(input: AuthenticateInput): Promise<AuthResult>;
  /** Forgets the verified-credential cache and failure counts. */
  reset(): Promise<void>;
  /** Counters since start: Argon2id verifies run, and connects served from the cache. */
  stats(): { verifies: number; cacheHits: number };
}

interface CachedCredential {
  version: number;
  clientRowId: number;
  passwordMac: Buffer;
}

/**
 * The one authentication path for every listener. One database read per
 * CONNECT, which also brings the rules, groups and permissions that may apply
 * to the connection (resolved only once the password is verified). A verified
 * password is remembered as an HMAC under a per-process key together with the
 * row's version, so a reconnect storm costs no Argon2id work and any edit of
 * the client (which bumps its version) is a cache miss.
 */
export function createAuthenticator(db: Database, options: AuthenticatorOptions = {}): Authenticator {
  const now = options.now ?? Date.now;
  const cacheSize = options.cacheSize ?? 10_000;
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
    const username = input.username ?? '';
    const password = input.password === undefined ? Buffer.alloc(0) : Buffer.from(input.password);
    if (!username || password.length === 0) return { ok: false, reason: 'missing_credentials' };
    // [MQTT-1.5.3-2] No MQTT string holds U+0000 (PostgreSQL text cannot either):
    // such a username names no client, and such a client id is refused.
    if (input.clientId.includes('\u0000')) return { ok: false, reason: 'bad_client_id' };
    if (username.includes('\u0000')) return { ok: false, reason: 'bad_credentials' };

    let found;
    try {
      found = await findConnectRow(db, username, input.clientId);
    } catch {
      return { ok: false, reason: 'unavailable' };
    }
    const row = found?.credentials;
    const grants = found?.grants ?? [];

    const passwordMac = mac(password);
    const cached = cache.get(username);
    if (row && cached && cached.version === row.version && cached.clientRowId === row.id) {
      // A device that proved this very password before is not locked out by
      // someone guessing its username or sharing its (NAT) address: back-off
      // only gates the costly verifies.
      if (timingSafeEqual(cached.passwordMac, passwordMac)) {
        cacheHits++;
        // Not awaited: a warm CONNECT costs one database read and never
        // waits on a shared failure store (the reset cannot reject).
        void gate.succeed(username);
        return success(row, grants, input);
      }
    }

    const checked = await gate.verify(username, input.remoteAddress, row?.passwordHash, password.toString('utf8'));
    if (!checked.ok) return { ok: false, reason: checked.reason };
    if (!row) throw new Error('a password verified without a client row');
    cache.delete(username);
    cache.set(username, { version: row.version, clientRowId: row.id, passwordMac });
    if (cache.size > cacheSize) cache.delete(cache.keys().next().value!);
    return success(row, grants, input);
  }

  return {
    authenticate,
    async reset() {
      cache.clear();
      await gate.clear();
    },
    stats: () => ({ verifies: gate.verifies(), cacheHits }),
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
