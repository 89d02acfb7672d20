import { verifyPasswordOrDecoy } from './password';

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
  /** Verifies running at once, and waiting for a turn (beyond that: throttled at once). */
  maxConcurrent: number;
  maxWaiting: number;
  now?: () => number;
}

export type GateResult = { ok: true } | { ok: false; reason: 'bad_credentials' } | { ok: false; reason: 'throttled'; retryAfterMs: number };

/** How long a full waiting line asks a caller to wait. */
const BUSY_RETRY_AFTER_MS = 1000;

export function createPasswordGate(options: PasswordGateOptions) {
  const now = options.now ?? Date.now;
  const usernameFailures = createFailureTracker({ threshold: options.usernameThreshold, maxBackoffMs: options.usernameMaxBackoffMs, now });
  const addressFailures = createFailureTracker({ threshold: options.addressThreshold, maxBackoffMs: options.addressMaxBackoffMs, now });
  const slots = createSemaphore(options.maxConcurrent, options.maxWaiting);
  let verifies = 0;

  /** Milliseconds until this username and address may try again (0: now). */
  function retryAfterMs(username: string, address: string | undefined): number {
    return Math.max(usernameFailures.retryAfterMs(username), address === undefined ? 0 : addressFailures.retryAfterMs(address));
  }

  return {
    retryAfterMs,
    /**
     * Checks `password` against `hash` (undefined: unknown username, checked
     * against the decoy) and counts the outcome. A success resets the
     * username, not the address: one valid account must not reset the count
     * of an address that guesses at the others.
     */
    async verify(username: string, address: string | undefined, hash: string | undefined, password: string): Promise<GateResult> {
      const throttled = (wait: number): GateResult => ({ ok: false, reason: 'throttled', retryAfterMs: wait });
      const waitBefore = retryAfterMs(username, address);
      if (waitBefore > 0) return throttled(waitBefore);
      let valid: boolean;
      try {
        const outcome = await slots.run(async () => {
          const wait = retryAfterMs(username, address);
          if (wait > 0) return wait;
          verifies++;
          return verifyPasswordOrDecoy(hash, password);
        });
        if (typeof outcome === 'number') return throttled(outcome);
        valid = outcome;
      } catch (error) {
        if (error instanceof BusyError) return throttled(BUSY_RETRY_AFTER_MS);
        throw error;
      }
      if (hash === undefined || !valid) {
        usernameFailures.fail(username);
        if (address !== undefined) addressFailures.fail(address);
        return { ok: false, reason: 'bad_credentials' };
      }
      usernameFailures.succeed(username);
      return { ok: true };
    },
    /** A success proved another way (a cached credential): resets the username. */
    succeed(username: string) {
      usernameFailures.succeed(username);
    },
    clear() {
      usernameFailures.clear();
      addressFailures.clear();
    },
    /** Argon2id verifies run since start (decoys included). */
    verifies: () => verifies,
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
 * Runs at most `limit` tasks at once; the rest wait in order, at most
 * `maxWaiting` of them (then `run` throws BusyError without running the task).
 * A finished task hands its slot straight to the next in line.
 */
export function createSemaphore(limit: number, maxWaiting = Number.POSITIVE_INFINITY) {
  let active = 0;
  const waiting: Array<() => void> = [];
  return {
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

interface FailureEntry {
  count: number;
  lockedUntil: number;
  lastFailure: number;
}

/**
 * Counts failures per key. After `threshold` failures each further failure
 * doubles a lock-out (1 s, 2 s, 4 s … up to `maxBackoffMs`); entries are
 * forgotten 15 minutes after their last failure. Bounded in size.
 */
export function createFailureTracker(options: { threshold: number; maxBackoffMs: number; now: () => number; maxEntries?: number }) {
  const entries = new Map<string, FailureEntry>();
  const forgetAfterMs = 15 * 60_000;
  const maxEntries = options.maxEntries ?? 100_000;

  function current(key: string): FailureEntry | undefined {
    const entry = entries.get(key);
    if (entry && options.now() - entry.lastFailure > forgetAfterMs) {
      entries.delete(key);
      return undefined;
    }
    return entry;
  }

  return {
    isLocked(key: string): boolean {
      const entry = current(key);
      return entry !== undefined && entry.lockedUntil > options.now();
    },
    /** Milliseconds until `key` may try again (0 when not locked). */
    retryAfterMs(key: string): number {
      const entry = current(key);
      return entry ? Math.max(0, entry.lockedUntil - options.now()) : 0;
    },
    fail(key: string): void {
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
    succeed(key: string): void {
      entries.delete(key);
    },
    clear(): void {
      entries.clear();
    },
  };
}
