import { asc, count, eq, sql } from 'drizzle-orm';
import { z } from 'zod';
import { type Database, isUniqueViolation, schema } from '../db';
import { createPasswordGate, type FailureTrackerFactory } from './passwordGate';
import { MAX_USERNAME_LENGTH } from './access/types';
import { usernameSchema } from './clients';
import { type AuditActor, recordChange } from './audit';
import { ConflictError, type FieldErrors, ValidationError } from './errors';
import { hashPassword } from './password';
import { deleteSessionsOfAdministrator, forgetKnownSessions } from './sessions';
import { parseInput } from './validation';

const { administrators } = schema;

/** An administrator as the console sees it: never the password hash. */
export interface Administrator {
  id: number;
  username: string;
  createdAt: Date;
  updatedAt: Date;
}

/** No administrator's password is longer, so a longer one is refused before any hashing. */
export const MAX_ADMINISTRATOR_PASSWORD_LENGTH = 256;

/**
 * Longer than a client's minimum: an administrator hands out every broker
 * credential, and a person types this password (a device stores its own).
 */
export const administratorPasswordSchema = z
  .string({ error: 'Enter a password.' })
  .min(12, 'Use at least 12 characters.')
  .max(MAX_ADMINISTRATOR_PASSWORD_LENGTH, `Use at most ${MAX_ADMINISTRATOR_PASSWORD_LENGTH} characters.`);

const administratorInputSchema = z.object({
  username: usernameSchema,
  password: administratorPasswordSchema,
});

/** `confirm_password` is checked only when the form has the field. */
export type AdministratorInput = { username?: unknown; password?: unknown; confirm_password?: unknown };

/**
 * Parses with `schema`, then adds the cross-field messages of `extra`, so a
 * form shows every message at once (zod skips refinements after an error).
 */
function parseWithChecks<T extends z.ZodType>(schema: T, input: object, extra: FieldErrors): z.output<T> {
  let errors: FieldErrors = {};
  let data: z.output<T> | undefined;
  try {
    data = parseInput(schema, input);
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    errors = { ...error.fieldErrors };
  }
  for (const [field, message] of Object.entries(extra)) errors[field] ??= message;
  if (Object.keys(errors).length > 0) throw new ValidationError(errors);
  return data!;
}

function parseAdministratorInput(input: AdministratorInput) {
  const extra: FieldErrors = {};
  if (input.confirm_password !== undefined && input.confirm_password !== input.password) {
    extra.confirm_password = 'The two passwords differ.';
  }
  return parseWithChecks(administratorInputSchema, input, extra);
}

const publicColumns = {
  id: administrators.id,
  username: administrators.username,
  createdAt: administrators.createdAt,
  updatedAt: administrators.updatedAt,
};

const USERNAME_TAKEN = 'This username is already used by another administrator.';

/**
 * An arbitrary constant: creating the first administrator and removing one
 * take this transaction lock, so two nodes (or two requests) can never both
 * create "the first" one or remove each other down to none.
 */
const ADMINISTRATORS_LOCK_KEY = 7_231_004_118;

export async function countAdministrators(db: Database): Promise<number> {
  const [row] = await db.select({ total: count() }).from(administrators);
  return row?.total ?? 0;
}

export async function listAdministrators(db: Database): Promise<Administrator[]> {
  return db.select(publicColumns).from(administrators).orderBy(asc(sql`lower(${administrators.username})`), asc(administrators.id));
}

export async function getAdministrator(db: Database, id: number): Promise<Administrator | null> {
  const [row] = await db.select(publicColumns).from(administrators).where(eq(administrators.id, id));
  return row ?? null;
}

export async function getAdministratorByUsername(db: Database, username: string): Promise<Administrator | null> {
  const [row] = await db.select(publicColumns).from(administrators).where(eq(administrators.username, username));
  return row ?? null;
}

/** Creates an administrator; throws ValidationError or ConflictError (username taken). */
export async function createAdministrator(db: Database, input: AdministratorInput, by?: AuditActor): Promise<Administrator> {
  const data = parseAdministratorInput(input);
  const passwordHash = await hashPassword(data.password);
  try {
    return await db.transaction(async (tx) => {
      const [row] = await tx.insert(administrators).values({ username: data.username, passwordHash }).returning(publicColumns);
      await recordChange(tx, by, { kind: 'administrator.created', subject: row!.username, details: { after: auditSnapshot(row!), note: 'password set' } });
      return row!;
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw new ConflictError('username', USERNAME_TAKEN);
    throw error;
  }
}

/**
 * Creates the first administrator, or returns null when one already exists
 * (another node, request or the environment got there first).
 */
export async function createFirstAdministrator(db: Database, input: AdministratorInput, by?: AuditActor): Promise<Administrator | null> {
  const data = parseAdministratorInput(input);
  const passwordHash = await hashPassword(data.password);
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${ADMINISTRATORS_LOCK_KEY})`);
    const [existing] = await tx.select({ total: count() }).from(administrators);
    if ((existing?.total ?? 0) > 0) return null;
    const [row] = await tx.insert(administrators).values({ username: data.username, passwordHash }).returning(publicColumns);
    await recordChange(tx, by, { kind: 'administrator.created', subject: row!.username, details: { after: auditSnapshot(row!), note: 'password set' } });
    return row!;
  });
}

/** What the audit trail keeps of an administrator: never the password or its hash. */
function auditSnapshot(administrator: Administrator) {
  return { id: administrator.id, username: administrator.username };
}

/** Why a removal was refused. */
export class LastAdministratorError extends ConflictError {
  constructor() {
    super('form', 'The last administrator cannot be removed: add another administrator first.');
  }
}

/**
 * Removes an administrator and, through the foreign key, every session of
 * theirs. Returns null when there was none; throws LastAdministratorError
 * rather than leave the console without an administrator.
 */
export async function deleteAdministrator(db: Database, id: number, by?: AuditActor): Promise<Administrator | null> {
  const removed = await db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${ADMINISTRATORS_LOCK_KEY})`);
    const [target] = await tx.select(publicColumns).from(administrators).where(eq(administrators.id, id));
    if (!target) return null;
    const [totals] = await tx.select({ total: count() }).from(administrators);
    if ((totals?.total ?? 0) <= 1) throw new LastAdministratorError();
    await tx.delete(administrators).where(eq(administrators.id, id));
    await recordChange(tx, by, { kind: 'administrator.deleted', subject: target.username, details: { before: auditSnapshot(target) } });
    return target;
  });
  forgetKnownSessions();
  return removed;
}

/**
 * Sets a new password and ends every session of the administrator (a
 * password change is how a stolen session is cut off). Returns null when the
 * administrator does not exist.
 */
export async function setAdministratorPassword(db: Database, id: number, newPassword: unknown, by?: AuditActor): Promise<Administrator | null> {
  const password = parseInput(z.object({ password: administratorPasswordSchema }), { password: newPassword }).password;
  const passwordHash = await hashPassword(password);
  const changed = await db.transaction(async (tx) => {
    const [row] = await tx
      .update(administrators)
      .set({ passwordHash, updatedAt: new Date() })
      .where(eq(administrators.id, id))
      .returning(publicColumns);
    if (!row) return null;
    await deleteSessionsOfAdministrator(tx, id);
    await recordChange(tx, by, { kind: 'administrator.password_changed', subject: row.username, details: { note: 'password changed; every session ended' } });
    return row;
  });
  forgetKnownSessions();
  return changed;
}

const changePasswordSchema = z.object({
  current_password: z
    .string({ error: 'Enter your current password.' })
    .min(1, 'Enter your current password.')
    .max(MAX_ADMINISTRATOR_PASSWORD_LENGTH, 'This is not your current password.'),
  new_password: administratorPasswordSchema,
});

export type ChangePasswordInput = { current_password?: unknown; new_password?: unknown; confirm_password?: unknown };

/** A failure says whether the username is an administrator's, for the audit trail only. */
export type SignInResult =
  | { ok: true; administrator: Administrator }
  | { ok: false; reason: 'bad_credentials'; knownUsername?: boolean }
  | { ok: false; reason: 'throttled'; retryAfterMs: number; knownUsername?: boolean };

export interface SignInGuardOptions {
  /** Failures for one username before it is locked out (1 s, doubling). */
  failuresBeforeBackoff?: number;
  /** Failures from one address before it is locked out. */
  addressFailuresBeforeBackoff?: number;
  /** Longest lock-out of a username: short, so a stranger cannot lock an administrator out for long. */
  maxUsernameBackoffMs?: number;
  /** Longest lock-out of an address. */
  maxAddressBackoffMs?: number;
  /** Where failures are counted (several nodes: a store they share); default: this process's memory. */
  failureTrackers?: FailureTrackerFactory;
  now?: () => number;
}

export interface SignInGuard {
  /** Checks a username and password, throttled per username and per address. */
  signIn(input: { username?: unknown; password?: unknown; address?: string }): Promise<SignInResult>;
  /**
   * Changes the password of a signed-in administrator after checking the
   * current one through the same throttle. Throws ValidationError (with a
   * `current_password` message when it is wrong) or returns 'throttled'.
   */
  changePassword(
    administrator: Administrator,
    input: ChangePasswordInput,
    address?: string,
  ): Promise<{ ok: true } | { ok: false; reason: 'throttled'; retryAfterMs: number }>;
  reset(): Promise<void>;
  /** Argon2id verifies run since start (unknown usernames included). */
  stats(): { verifies: number };
}

/**
 * Sign-in for the console. Unknown usernames are verified against a dummy
 * Argon2id hash, so they cost what a wrong password costs; a locked username
 * or address is refused before any verify, whether the username exists or not.
 */
export function createSignInGuard(db: Database, options: SignInGuardOptions = {}): SignInGuard {
  const gate = createPasswordGate({
    usernameThreshold: options.failuresBeforeBackoff ?? 5,
    addressThreshold: options.addressFailuresBeforeBackoff ?? 20,
    usernameMaxBackoffMs: options.maxUsernameBackoffMs ?? 60_000,
    addressMaxBackoffMs: options.maxAddressBackoffMs ?? 5 * 60_000,
    // Sign-in shares the CPU with the broker's own verifies: a flood of
    // sign-in posts waits here instead of starving device CONNECTs.
    maxConcurrent: 2,
    maxWaiting: 64,
    failureTrackers: options.failureTrackers,
    now: options.now,
  });

  async function check(username: string, password: string, address: string | undefined): Promise<SignInResult> {
    // A locked username or address costs no database read either.
    const wait = await gate.retryAfterMs(username, address);
    if (wait > 0) return { ok: false, reason: 'throttled', retryAfterMs: wait };
    const row = await db
      .select({ ...publicColumns, passwordHash: administrators.passwordHash })
      .from(administrators)
      .where(eq(administrators.username, username))
      .then((rows) => rows[0]);
    const checked = await gate.verify(username, address, row?.passwordHash, password);
    if (!checked.ok) return { ...checked, knownUsername: Boolean(row) };
    if (!row) throw new Error('a password verified without an administrator row');
    const { passwordHash: _, ...administrator } = row;
    return { ok: true, administrator };
  }

  return {
    async signIn(input) {
      const username = typeof input.username === 'string' ? input.username : '';
      const password = typeof input.password === 'string' ? input.password : '';
      const errors: Record<string, string> = {};
      if (!username) errors.username = 'Enter your username.';
      else if (username.length > MAX_USERNAME_LENGTH) errors.username = `Usernames have at most ${MAX_USERNAME_LENGTH} characters.`;
      if (!password) errors.password = 'Enter your password.';
      // No stored password is longer: refused before the throttle, the database and Argon2id.
      else if (password.length > MAX_ADMINISTRATOR_PASSWORD_LENGTH) errors.password = `Passwords have at most ${MAX_ADMINISTRATOR_PASSWORD_LENGTH} characters.`;
      if (Object.keys(errors).length) throw new ValidationError(errors);
      return check(username, password, input.address);
    },

    async changePassword(administrator, input, address) {
      const extra: FieldErrors = {};
      if ((input.confirm_password ?? '') !== input.new_password) extra.confirm_password = 'The two new passwords differ.';
      if (input.current_password && input.new_password === input.current_password) {
        extra.new_password = 'Choose a password different from the current one.';
      }
      const data = parseWithChecks(changePasswordSchema, input, extra);
      const result = await check(administrator.username, data.current_password, address);
      if (!result.ok && result.reason === 'throttled') return result;
      if (!result.ok || result.administrator.id !== administrator.id) {
        throw new ValidationError({ current_password: 'This is not your current password.' });
      }
      const updated = await setAdministratorPassword(db, administrator.id, data.new_password, { username: administrator.username, address });
      if (!updated) throw new ValidationError({ form: 'Your account no longer exists.' });
      return { ok: true };
    },

    async reset() {
      await gate.clear();
    },

    stats: () => ({ verifies: gate.verifies() }),
  };
}
