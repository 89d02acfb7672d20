import type { Database } from '../../db';
import type { AccessChanges } from '../../db/changes';
import type { RuleModel } from './acl';
import { CredentialTable } from './credentials';
import { readClientCount, readCredentialsAfter, readCredentialsByIds, readRuleModel } from './query';
import type { ClientCredentials } from './types';

/**
 * Everything a CONNECT needs, in memory: every client's credentials
 * (certificate fingerprints included) and the whole rule model, read at
 * start and kept current from the change feed (db/changes.ts, triggers of
 * migrations 0003 and 0015).
 *
 * What changes it, and how:
 * - `clients:<ids>` (a client inserted, updated or deleted, on any node, by
 *   the console, the API, an import, the admin command or by hand in SQL):
 *   those rows are read again by id and replace what was kept;
 * - `clients` (a TRUNCATE): every client is read again;
 * - `groups`, `group_permissions`, `group_rules`, `group_rule_groups`: the
 *   rule model is read again (one query);
 * - `lost` (the feed stopped hearing): the model is stale and answers only
 *   as a last resort (see `current`); `resumed`: everything is read again,
 *   changes may have been missed meanwhile, and it is current once that
 *   reading is done (if the feed stayed live throughout).
 * Changes are applied one batch at a time, in the order heard; a read that
 * fails is tried again after a second. Lookups wait for the changes heard
 * before them (`caughtUp`), so a change heard is never answered around.
 */
export interface AccessModel {
  /** True while the model answers for the database: read, and hearing every change since. */
  current(): boolean;
  /**
   * Resolves true once every change heard before the call is applied (at
   * once when none is waiting), false if that takes longer than `timeoutMs`
   * or the model stops being current meanwhile.
   */
  caughtUp(timeoutMs?: number): Promise<boolean>;
  /** Resolves once every change committed before the call is applied here (or the feed is not live). */
  settled(): Promise<void>;
  byId(id: number): ClientCredentials | null;
  /** Any client with this username, whatever its authentication type. */
  byUsername(username: string): ClientCredentials | null;
  byFingerprint(fingerprint: string): ClientCredentials | null;
  rules(): RuleModel;
  /**
   * Counts the changes heard: what was read from the database while it had
   * one value (and the model was current) still holds while it keeps it.
   */
  changesHeard(): number;
  stats(): AccessModelStats;
  /** Stops applying changes. */
  close(): void;
}

export interface AccessModelStats {
  clients: number;
  /** What the credential table holds on to. */
  credentialBytes: number;
  /** Milliseconds the first read of every client and rule took. */
  loadMs: number;
  /** Whole reads since (after the feed was lost, or a TRUNCATE). */
  reloads: number;
  /** Client rows read again after a change. */
  rowsApplied: number;
}

export interface AccessModelOptions {
  /** Clients read per query while reading all of them. */
  pageSize?: number;
  /** Clients read again per query after changes. */
  batchSize?: number;
  log?: (message: string) => void;
}

/** The tables whose changes the rule model is read again for. */
const RULE_TABLES = new Set(['groups', 'group_permissions', 'group_rules', 'group_rule_groups']);
const CLIENT_IDS = /^clients:([0-9]{1,10}(?:,[0-9]{1,10})*)$/;

/** Reads every client and the rule model, then follows `changes`. */
export async function loadAccessModel(db: Database, changes: AccessChanges, options: AccessModelOptions = {}): Promise<AccessModel> {
  const pageSize = options.pageSize ?? 10_000;
  const batchSize = options.batchSize ?? 5_000;
  const log = options.log ?? (() => {});
  let closed = false;
  /** Changes heard, and changes heard and applied (every one up to it). */
  let heardSeq = 0;
  let appliedSeq = 0;
  const waiters: Array<{ seq: number; resolve(ok: boolean): void; timer: NodeJS.Timeout }> = [];
  const dirty = new Set<number>();
  let reloadClients = false;
  let reloadRules = false;
  /** Set when the feed stops hearing; cleared by a whole reading made while it heard throughout. */
  let stale = !changes.live();
  let losses = 0;
  /** A whole reading begun while hearing, after `losses` losses: current again once it and the rules are read. */
  let recovery: { losses: number } | undefined;
  let running: Promise<void> | undefined;
  let retry: NodeJS.Timeout | undefined;
  let rowsApplied = 0;
  let reloads = 0;

  const started = Date.now();
  // Heard from before the first reading: what changes during it is read again after.
  changes.onChange((payload) => {
    if (closed) return;
    const ids = CLIENT_IDS.exec(payload);
    if (ids) {
      for (const id of ids[1]!.split(',')) dirty.add(Number(id));
    } else if (payload === 'clients') {
      reloadClients = true;
    } else if (RULE_TABLES.has(payload)) {
      reloadRules = true;
    } else if (payload === 'lost') {
      stale = true;
      losses++;
      settleWaiters();
      return;
    } else if (payload === 'resumed') {
      reloadClients = true;
      reloadRules = true;
    } else {
      // Another feature's table (TLS settings, pipelines), or a check of the feed's own.
      return;
    }
    heardSeq++;
    kick();
  });

  let table = await readAllClients();
  let rules = await readRuleModel(db);
  const loadMs = Date.now() - started;
  if (stale && changes.live()) {
    // Not hearing when the reading began: read all of it again now that it hears.
    reloadClients = true;
    reloadRules = true;
    heardSeq++;
  }
  kick();

  async function readAllClients(): Promise<CredentialTable> {
    const next = new CredentialTable(Math.ceil((await readClientCount(db)) * 1.05));
    for (let after = 0; ; ) {
      const rows = await readCredentialsAfter(db, after, pageSize);
      for (const row of rows) next.set(row);
      if (rows.length < pageSize) return next;
      after = rows.at(-1)!.id;
      // The broker keeps serving while a million clients are read.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  function kick() {
    if (running || closed || retry) return;
    running = apply().finally(() => {
      running = undefined;
    });
  }

  async function apply(): Promise<void> {
    while (!closed && (reloadClients || reloadRules || dirty.size > 0)) {
      let step: 'clients' | 'rules' | number[] = 'rules';
      try {
        if (reloadClients) {
          step = 'clients';
          reloadClients = false;
          // Whatever was waiting is read with the rest.
          dirty.clear();
          reloadRules = true;
          recovery = changes.live() ? { losses } : undefined;
          const next = await readAllClients();
          table = next;
          reloads++;
          if (stale) log(`Read every client again (${next.size}) after a break in hearing changes`);
        } else if (reloadRules) {
          step = 'rules';
          reloadRules = false;
          rules = await readRuleModel(db);
          if (stale && recovery?.losses === losses && changes.live() && !reloadClients) {
            stale = false;
            recovery = undefined;
          }
        } else {
          const ids: number[] = [];
          for (const id of dirty) {
            ids.push(id);
            if (ids.length >= batchSize) break;
          }
          step = ids;
          for (const id of ids) dirty.delete(id);
          const rows = await readCredentialsByIds(db, ids);
          const found = new Set<number>();
          for (const row of rows) {
            found.add(row.id);
            table.set(row);
          }
          for (const id of ids) if (!found.has(id)) table.delete(id);
          rowsApplied += ids.length;
        }
      } catch (error) {
        // Put the step back and try again in a second: until then lookups wait
        // (up to their timeout) and then ask the database themselves.
        if (step === 'clients') reloadClients = true;
        else if (step === 'rules') reloadRules = true;
        else for (const id of step) dirty.add(id);
        log(`Could not apply a change to clients or rules (${(error as Error).message}); trying again`);
        retry = setTimeout(() => {
          retry = undefined;
          kick();
        }, 1000);
        retry.unref();
        return;
      }
      if (!reloadClients && !reloadRules && dirty.size === 0) {
        appliedSeq = heardSeq;
        settleWaiters();
      }
    }
  }

  function settleWaiters() {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const waiter = waiters[i]!;
      const ok = appliedSeq >= waiter.seq && current();
      if (ok || !current()) {
        waiters.splice(i, 1);
        clearTimeout(waiter.timer);
        waiter.resolve(ok);
      }
    }
  }

  function current(): boolean {
    return !closed && !stale && changes.live();
  }

  function caughtUp(timeoutMs = 2000): Promise<boolean> {
    if (!current()) return Promise.resolve(false);
    const seq = heardSeq;
    if (appliedSeq >= seq) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = {
        seq,
        resolve,
        timer: setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          resolve(false);
        }, timeoutMs),
      };
      waiter.timer.unref();
      waiters.push(waiter);
    });
  }

  return {
    current,
    caughtUp,
    async settled() {
      await changes.heard();
      await caughtUp(10_000);
    },
    byId: (id) => table.getById(id),
    byUsername: (username) => table.getByUsername(username),
    byFingerprint: (fingerprint) => table.getByFingerprint(fingerprint),
    rules: () => rules,
    changesHeard: () => heardSeq,
    stats: () => ({ clients: table.size, credentialBytes: table.memoryBytes(), loadMs, reloads, rowsApplied }),
    close() {
      closed = true;
      clearTimeout(retry);
      settleWaiters();
    },
  };
}
