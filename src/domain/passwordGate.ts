import { isGeneratedPasswordHash, verifyGeneratedPassword, verifyPasswordOrDecoy } from './password';

/**
 * The throttled password check shared by device CONNECTs and console sign-in:
 * failures counted per username and per address with doubling lock-outs, a
 * bounded number of Argon2id verifies at once and waiting, the lock-out checked
 * again when a verify's turn comes (guesses sent in parallel all passed the
 * first check), and a decoy verify for unknown usernames so both failures cost
 * the same.
 */
export interface PasswordGateOptions {
  /** Failures for one username before back-off starts. */
  usernameThreshold: number;
  /** Failures from one address before back-off starts. */
  addressThreshold: number;
  usernameMaxBackoffMs: number;
  addressMaxBackoffMs: number;
  /**
   * Verifies running at once, and waiting for a turn in each lane (beyond
   * that: throttled at once). Verifies for unknown usernames take at most
   * half of the slots and wait behind those for known ones (see createLanes).
   */
  maxConcurrent: number;
  maxWaiting: number;
  /** Where failures are counted; default: in this process's memory. */
  failureTrackers?: FailureTrackerFactory;
  now?: () => number;
}

/**
 * `busy`: not this username's or address's back-off but the waiting line
 * being full (too many verifies wait): the server is overloaded, the caller
 * did nothing wrong (an MQTT 5 device is told 0x88, not 0x97).
 */
export type GateResult = { ok: true } | { ok: false; reason: 'bad_credentials' } | { ok: false; reason: 'throttled'; retryAfterMs: number; busy?: true };

/** How long a full waiting line asks a caller to wait. */
const BUSY_RETRY_AFTER_MS = 1000;

/** How long a caller waits when the failure counts cannot be read. */
const UNCOUNTED_RETRY_AFTER_MS = 1000;

export function createPasswordGate(options: PasswordGateOptions) {
  const now = options.now ?? Date.now;
  const trackers: FailureTrackerFactory = options.failureTrackers ?? ((_, limits) => createFailureTracker({ ...limits, now }));
  const usernameFailures = trackers('username', { threshold: options.usernameThreshold, maxBackoffMs: options.usernameMaxBackoffMs });
  const addressFailures = trackers('address', { threshold: options.addressThreshold, maxBackoffMs: options.addressMaxBackoffMs });
  const slots = createLanes(options.maxConcurrent, options.maxWaiting);
  let verifies = 0;

  /** Milliseconds until this username and address may try again (0: now). */
  async function retryAfterMs(username: string, address: string | undefined): Promise<number> {
    try {
      const waits = await Promise.all([usernameFailures.retryAfterMs(username), address === undefined ? 0 : addressFailures.retryAfterMs(address)]);
      return Math.max(...waits);
    } catch {
      // Counts that cannot be read (a shared store down or too slow) throttle:
      // counting "not locked" would give unlimited guesses for as long as the
      // store is away. Devices whose password is cached never ask, so they
      // keep connecting; only new verifies wait for the store to come back.
      return UNCOUNTED_RETRY_AFTER_MS;
    }
  }

  /**
   * Counts a verify's outcome. A count that cannot be written is dropped: the
   * answer stays what the verify said, and while the store is away the next
   * check throttles anyway.
   */
  async function count(username: string, address: string | undefined, valid: boolean): Promise<void> {
    try {
      if (valid) await usernameFailures.succeed(username);
      else await Promise.all([usernameFailures.fail(username), address === undefined ? undefined : addressFailures.fail(address)]);
    } catch {}
  }

  return {
    retryAfterMs,
    /**
     * Checks `password` against `hash` (undefined: unknown username, checked
     * against the decoy) and counts the outcome. A success resets the
     * username, not the address: one valid account must not reset the count
     * of an address that guesses at the others.
     *
     * `stale`, asked once the verify is done and before its outcome is
     * counted: true when `hash` is no longer what the caller would find now
     * (a change applied during the verify). Such an outcome is not counted,
     * because the caller decides the same attempt again with what is current
     * and that decision is counted: one wrong password, one failure.
     */
    async verify(username: string, address: string | undefined, hash: string | undefined, password: string, stale: () => boolean = () => false): Promise<GateResult> {
      const throttled = (wait: number, busy?: true): GateResult => ({ ok: false, reason: 'throttled', retryAfterMs: wait, ...(busy ? { busy } : {}) });
      const waitBefore = await retryAfterMs(username, address);
      if (waitBefore > 0) return throttled(waitBefore);
      // A right generated password is known in microseconds: it does not
      // wait behind Argon2id verifies for a slot. A wrong one goes the way
      // of any failure below (a slot, its decoy verify, the lock-out counts).
      if (hash !== undefined && isGeneratedPasswordHash(hash) && verifyGeneratedPassword(hash, password)) {
        verifies++;
        if (!stale()) await count(username, address, true);
        return { ok: true };
      }
      let valid: boolean;
      try {
        const outcome = await slots.run(hash === undefined ? 'unknown' : 'known', async () => {
          const wait = await retryAfterMs(username, address);
          if (wait > 0) return wait;
          verifies++;
          const matched = await verifyPasswordOrDecoy(hash, password);
          // Counted before the slot passes on, so the next in line re-checks
          // against this failure too.
          if (!stale()) await count(username, address, matched);
          return matched;
        });
        if (typeof outcome === 'number') return throttled(outcome);
        valid = outcome;
      } catch (error) {
        if (error instanceof BusyError) return throttled(BUSY_RETRY_AFTER_MS, true);
        throw error;
      }
      return valid ? { ok: true } : { ok: false, reason: 'bad_credentials' };
    },
    /**
     * A success proved another way (a cached credential): resets the username.
     * Never rejects: a reset that does not reach the store leaves the count to
     * expire, which errs towards locking, never towards more guesses.
     */
    async succeed(username: string): Promise<void> {
      try {
        await usernameFailures.succeed(username);
      } catch {}
    },
    async clear(): Promise<void> {
      await Promise.all([usernameFailures.clear(), addressFailures.clear()]);
    },
    /** Argon2id verifies run since start (decoys included). */
    verifies: () => verifies,
    /** Verifies waiting for a slot now. */
    waiting: () => slots.waiting(),
  };
}

export type PasswordGate = ReturnType<typeof createPasswordGate>;

/** Thrown by a semaphore whose waiting line is full. */
export class BusyError extends Error {
  constructor() {
    super('too many waiting');
  }
}

/**
 * Verify slots in two lanes. A flood of guesses at usernames that do not
 * exist (each a decoy Argon2id verify) must not keep devices whose usernames
 * do exist waiting behind it: verifies for unknown usernames run in at most
 * half of the slots (one, when there is one), and a slot that frees goes to
 * a verify for a known username first. Each lane waits in order, at most
 * `maxWaiting` in each (then `run` throws BusyError without running the task).
 * Wrong passwords for known usernames stay in the known lane, where the
 * per-username and per-address back-off bounds them.
 */
export function createLanes(limit: number, maxWaiting: number) {
  const unknownLimit = Math.max(1, Math.floor(limit / 2));
  let active = 0;
  let unknownActive = 0;
  const waiting = { known: [] as Array<() => void>, unknown: [] as Array<() => void> };

  function next() {
    if (active >= limit) return;
    const known = waiting.known.shift();
    if (known) {
      active++;
      known();
      return;
    }
    if (unknownActive < unknownLimit) {
      const unknown = waiting.unknown.shift();
      if (unknown) {
        active++;
        unknownActive++;
        unknown();
      }
    }
  }

  return {
    /** Tasks waiting for a slot, both lanes. */
    waiting: () => waiting.known.length + waiting.unknown.length,
    async run<T>(lane: 'known' | 'unknown', task: () => Promise<T>): Promise<T> {
      const free = active < limit && (lane === 'known' || unknownActive < unknownLimit);
      if (free) {
        active++;
        if (lane === 'unknown') unknownActive++;
      } else {
        if (waiting[lane].length >= maxWaiting) throw new BusyError();
        await new Promise<void>((resolve) => waiting[lane].push(resolve));
      }
      try {
        return await task();
      } finally {
        active--;
        if (lane === 'unknown') unknownActive--;
        next();
      }
    },
  };
}

/**
 * Runs at most `limit` tasks at once; the rest wait in order, at most
 * `maxWaiting` of them (then `run` throws BusyError without running the task).
 * A finished task hands its slot straight to the next in line.
 */
export function createSemaphore(limit: number, maxWaiting = Number.POSITIVE_INFINITY) {
  let active = 0;
  const waiting: Array<() => void> = [];
  return {
    /** Tasks waiting for a slot. */
    waiting: () => waiting.length,
    async run<T>(task: () => Promise<T>): Promise<T> {
      if (active >= limit) {
        if (waiting.length >= maxWaiting) throw new BusyError();
        await new Promise<void>((resolve) => waiting.push(resolve));
      } else {
        active++;
      }
      try {
        return await task();
      } finally {
        const next = waiting.shift();
        if (next) next();
        else active--;
      }
    },
  };
}

/**
 * Failure counts for one kind of key (usernames or addresses). Asynchronous so
 * that nodes can share them through a store; every method may reject when the
 * store is unreachable.
 */
export interface FailureTracker {
  /** Milliseconds until `key` may try again (0 when not locked). */
  retryAfterMs(key: string): Promise<number>;
  fail(key: string): Promise<void>;
  succeed(key: string): Promise<void>;
  clear(): Promise<void>;
}

/**
 * Makes the tracker for usernames and the one for addresses. A tracker
 * backed by a store keeps time by the store's clock, not the gate's `now`.
 */
export type FailureTrackerFactory = (name: 'username' | 'address', options: { threshold: number; maxBackoffMs: number }) => FailureTracker;

/** Entries are forgotten this long after their last failure. */
export const FORGET_FAILURES_AFTER_MS = 15 * 60_000;

interface FailureEntry {
  count: number;
  lockedUntil: number;
  lastFailure: number;
}

/**
 * Counts failures per key in this process's memory. After `threshold`
 * failures each further failure doubles a lock-out (1 s, 2 s, 4 s … up to
 * `maxBackoffMs`); entries are forgotten 15 minutes after their last failure.
 * Bounded in size.
 */
export function createFailureTracker(options: { threshold: number; maxBackoffMs: number; now: () => number; maxEntries?: number }): FailureTracker {
  const entries = new Map<string, FailureEntry>();
  const maxEntries = options.maxEntries ?? 100_000;

  function current(key: string): FailureEntry | undefined {
    const entry = entries.get(key);
    if (entry && options.now() - entry.lastFailure > FORGET_FAILURES_AFTER_MS) {
      entries.delete(key);
      return undefined;
    }
    return entry;
  }

  return {
    async retryAfterMs(key) {
      const entry = current(key);
      return entry ? Math.max(0, entry.lockedUntil - options.now()) : 0;
    },
    async fail(key) {
      const at = options.now();
      const entry = current(key) ?? { count: 0, lockedUntil: 0, lastFailure: at };
      entry.count++;
      entry.lastFailure = at;
      if (entry.count >= options.threshold) {
        const backoff = Math.min(1000 * 2 ** (entry.count - options.threshold), options.maxBackoffMs);
        entry.lockedUntil = at + backoff;
      }
      entries.delete(key);
      entries.set(key, entry);
      if (entries.size > maxEntries) entries.delete(entries.keys().next().value!);
    },
    async succeed(key) {
      entries.delete(key);
    },
    async clear() {
      entries.clear();
    },
  };
}
