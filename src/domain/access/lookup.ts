import type { Database } from '../../db';
import type { AccessChanges } from '../../db/changes';
import type { RuleModel } from './acl';
import { readCredentialsByFingerprint, readPasswordCredentials, readRuleModel } from './query';
import type { ClientCredentials } from './types';

/** A client found for a CONNECT, and where to get the rule model to match the connection against. */
export interface Found {
  credentials: ClientCredentials;
  /** Asked only once the client is authenticated: a refused CONNECT never reads the rules. */
  rules(): Promise<RuleModel>;
}

/** Where CONNECT finds clients and rules: in memory while changes are heard, else in the database. */
export interface AccessLookup {
  /** The password client with this username, or null. */
  byUsername(username: string): Promise<Found | null>;
  /** The Certificate or Certificate + Password client with this certificate fingerprint, or null. */
  byFingerprint(fingerprint: string): Promise<Found | null>;
  /** Queries sent since start. */
  databaseReads(): number;
}

export interface LookupOptions {
  /** Hears every change; absent, every lookup reads the database. */
  changes?: AccessChanges;
  /** Client rows remembered. */
  cacheSize?: number;
  /** Unknown usernames and fingerprints remembered. */
  unknownCacheSize?: number;
}

/**
 * What a CONNECT reads, kept in memory while `changes` is live: client rows
 * by username and by certificate fingerprint, unknown ones too (so a flood
 * of them costs no reads; at most `unknownCacheSize`, oldest forgotten
 * first), and the whole rule model.
 *
 * Invalidated by: every change to clients, groups, permissions or rules,
 * made on any node or by hand (database triggers NOTIFY; see db/changes.ts),
 * which forgets everything; and any break in hearing changes, during which
 * every lookup reads the database. A read during which a change was heard is
 * neither kept nor used: it is read again.
 */
export function createAccessLookup(db: Database, options: LookupOptions = {}): AccessLookup {
  const changes = options.changes;
  const cacheSize = options.cacheSize ?? 100_000;
  const unknownCacheSize = options.unknownCacheSize ?? 10_000;
  let databaseReads = 0;
  let generation = 0;
  const byUsername = new Map<string, ClientCredentials>();
  const byFingerprint = new Map<string, ClientCredentials>();
  const unknown = new Set<string>();
  let model: Promise<RuleModel> | undefined;
  changes?.onChange(() => {
    generation++;
    byUsername.clear();
    byFingerprint.clear();
    unknown.clear();
    model = undefined;
  });

  function ruleModel(): Promise<RuleModel> {
    if (model && changes?.live()) return model;
    databaseReads++;
    const loading = readRuleModel(db);
    if (!changes?.live()) return loading;
    model = loading;
    // A failed read is not remembered: the next CONNECT tries again.
    loading.catch(() => {
      if (model === loading) model = undefined;
    });
    return loading;
  }

  /** One key's credentials, remembered (found or not) while changes are heard. */
  async function remembered(
    cache: Map<string, ClientCredentials>,
    unknownKey: string,
    key: string,
    read: () => Promise<ClientCredentials | null>,
  ): Promise<ClientCredentials | null> {
    const known = cache.get(key);
    if (known) return known;
    if (unknown.has(unknownKey)) return null;
    const seen = generation;
    databaseReads++;
    const row = await read();
    if (seen === generation && changes!.live()) {
      if (row) {
        cache.set(key, row);
        if (cache.size > cacheSize) cache.delete(cache.keys().next().value!);
      } else {
        unknown.add(unknownKey);
        if (unknown.size > unknownCacheSize) unknown.delete(unknown.values().next().value!);
      }
    }
    return row;
  }

  /** Reads that raced a change, tried again this many times before one plain read decides. */
  const RETRIES = 3;

  async function find(read: () => Promise<ClientCredentials | null>, cached: () => Promise<ClientCredentials | null>): Promise<Found | null> {
    for (let attempt = 0; attempt < RETRIES && changes?.live(); attempt++) {
      // A row read before a change was heard may predate it: a change heard
      // meanwhile (the generation moved) means read again.
      const seen = generation;
      const row = await cached();
      if (seen === generation && changes.live()) return row && { credentials: row, rules: ruleModel };
    }
    // Not hearing changes, or changes keep coming: what the database says now.
    databaseReads++;
    const row = await read();
    return row && { credentials: row, rules: ruleModel };
  }

  return {
    byUsername(username) {
      const read = () => readPasswordCredentials(db, username);
      return find(read, () => remembered(byUsername, `u:${username}`, username, read));
    },
    byFingerprint(fingerprint) {
      const read = () => readCredentialsByFingerprint(db, fingerprint);
      return find(read, () => remembered(byFingerprint, `f:${fingerprint}`, fingerprint, read));
    },
    databaseReads: () => databaseReads,
  };
}
