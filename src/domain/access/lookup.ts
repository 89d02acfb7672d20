import type { Database } from '../../db';
import type { RuleModel } from './acl';
import type { AccessModel } from './model';
import { readCredentialsByFingerprint, readCredentialsById, readPasswordCredentials, readRuleModel } from './query';
import type { ClientCredentials } from './types';

/** What a CONNECT found for a username, a certificate or a row id. */
export interface Found {
  /** The client, or null when there is none. */
  credentials: ClientCredentials | null;
  /** The rule model to match the connection against; asked only once it is authenticated. */
  rules(): Promise<RuleModel>;
  /**
   * True when what was found is no longer what a lookup would find now (a
   * change applied while the password was being verified): decide again.
   */
  changed(): boolean;
}

/**
 * Where CONNECT finds clients and rules. While the access model is current
 * (model.ts), in memory: no database is read. Otherwise in the database, and
 * when the database cannot be read either, in the model as it was last known
 * (a database outage: nothing can change meanwhile).
 */
export interface AccessLookup {
  /** A Username/Password client with this username. */
  byUsername(username: string): Promise<Found>;
  /** A Certificate or Certificate + Password client with this certificate fingerprint. */
  byFingerprint(fingerprint: string): Promise<Found>;
  /** The client with this row id (for what outlives a session: its will). */
  byId(id: number): Promise<Found>;
  /** The rule model as a lookup would find it now (the console's checker). */
  rules(): Promise<RuleModel>;
  stats(): LookupStats;
}

export interface LookupStats {
  /** Queries sent for lookups since start. */
  databaseReads: number;
  /** Lookups answered from memory while current. */
  memoryAnswers: number;
  /** Lookups answered from the model as last known, the database unreachable. */
  lastKnownAnswers: number;
}

const isPasswordClient = (row: ClientCredentials | null) => (row?.authType === 'password' ? row : null);
const isCertificateClient = (row: ClientCredentials | null) => (row && row.authType !== 'password' ? row : null);

/** `model` absent: every lookup reads the database. */
export function createAccessLookup(db: Database, model?: AccessModel): AccessLookup {
  const stats: LookupStats = { databaseReads: 0, memoryAnswers: 0, lastKnownAnswers: 0 };
  const freshRules = sharedFreshRead(() => {
    stats.databaseReads++;
    return readRuleModel(db);
  });

  async function find(fromMemory: () => ClientCredentials | null, fromDatabase: () => Promise<ClientCredentials | null>): Promise<Found> {
    if (model && (await model.caughtUp())) {
      stats.memoryAnswers++;
      return inMemory(fromMemory);
    }
    let credentials: ClientCredentials | null;
    try {
      stats.databaseReads++;
      credentials = await fromDatabase();
    } catch (error) {
      if (!model) throw error;
      stats.lastKnownAnswers++;
      return inMemory(fromMemory);
    }
    return {
      credentials,
      rules: async () => {
        try {
          return await freshRules();
        } catch (error) {
          if (!model) throw error;
          return model.rules();
        }
      },
      changed: () => false,
    };
  }

  function inMemory(fromMemory: () => ClientCredentials | null): Found {
    const credentials = fromMemory();
    return {
      credentials,
      rules: async () => model!.rules(),
      changed: () => !sameCredentials(fromMemory(), credentials),
    };
  }

  return {
    byUsername: (username) => find(() => isPasswordClient(model!.byUsername(username)), async () => readPasswordCredentials(db, username)),
    byFingerprint: (fingerprint) =>
      find(() => isCertificateClient(model!.byFingerprint(fingerprint)), async () => isCertificateClient(await readCredentialsByFingerprint(db, fingerprint))),
    byId: (id) => find(() => model!.byId(id), () => readCredentialsById(db, id)),
    async rules() {
      if (model && (await model.caughtUp())) return model.rules();
      try {
        return await freshRules();
      } catch (error) {
        if (!model) throw error;
        return model.rules();
      }
    },
    stats: () => ({ ...stats }),
  };
}

function sameCredentials(a: ClientCredentials | null, b: ClientCredentials | null): boolean {
  if (a === null || b === null) return a === b;
  return a.id === b.id && a.version === b.version && a.passwordHash === b.passwordHash && a.authType === b.authType && a.username === b.username && a.certFingerprint === b.certFingerprint;
}

/**
 * `read`, shared by callers that come while it runs, but never answered
 * with a read that began before the call: one that did is waited for, and
 * one more read then serves everyone who came meanwhile.
 */
function sharedFreshRead<T>(read: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | undefined;
  let next: Promise<T> | undefined;
  const start = (): Promise<T> => {
    const current = read();
    running = current;
    const clear = () => {
      if (running === current) running = undefined;
    };
    current.then(clear, clear);
    return current;
  };
  return () => {
    if (!running) return start();
    if (!next) {
      const after = running.then(
        () => undefined,
        () => undefined,
      );
      next = after.then(() => {
        next = undefined;
        return start();
      });
    }
    return next;
  };
}
