import { createHash, randomBytes } from 'node:crypto';
import { eq, lt } from 'drizzle-orm';
import { type Database, schema } from '../db';

const { adminSessions, administrators } = schema;

/** A session ends after this long without a request. */
export const SESSION_IDLE_MS = 12 * 60 * 60_000;
/** …and in any case this long after sign-in. */
export const SESSION_ABSOLUTE_MS = 7 * 24 * 60 * 60_000;

export interface NewSession {
  /** Goes into the cookie; never stored. */
  token: string;
  tokenHash: string;
  expiresAt: Date;
}

export interface ValidSession {
  tokenHash: string;
  administrator: { id: number; username: string };
  expiresAt: Date;
  /** True when this check pushed `expiresAt` forward (the cookie should follow). */
  renewed: boolean;
}

/** 256 random bits, base64url: the cookie value. */
export function generateSessionToken(): string {
  return randomBytes(32).toString('base64url');
}

/** What the database keeps of a token: its SHA-256, hex. */
export function hashSessionToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function expiryFrom(now: number, createdAt: number): Date {
  return new Date(Math.min(now + SESSION_IDLE_MS, createdAt + SESSION_ABSOLUTE_MS));
}

/** Starts a session for an administrator; sweeps expired sessions on the way. */
export async function createSession(db: Database, administratorId: number, now = Date.now()): Promise<NewSession> {
  const token = generateSessionToken();
  const tokenHash = hashSessionToken(token);
  const expiresAt = expiryFrom(now, now);
  await db.delete(adminSessions).where(lt(adminSessions.expiresAt, new Date(now)));
  await db.insert(adminSessions).values({ tokenHash, administratorId, expiresAt, createdAt: new Date(now) });
  return { token, tokenHash, expiresAt };
}

/**
 * How long a session read from the database is trusted without reading it
 * again. Every console request checks its session: without this, that check
 * is a query of its own on every page (the largest share of a cached list
 * page's cost on the embedded database). A sign-out, a password change or a
 * removal on this node forgets what is kept at once; on another node it
 * applies within this long.
 */
export const SESSION_RECHECK_MS = 1000;

interface KnownSession {
  /** The count of forgets when it was kept: a forget since makes it unknown. */
  forgets: number;
  administrator: { id: number; username: string };
  expiresAt: number;
  createdAt: number;
  /** When it was read (the `now` of that check). */
  readAt: number;
}

/** Sessions read lately, per database (one goes with it when it is closed), by token hash; bounded, the oldest dropped first. */
const knownSessions = new WeakMap<Database, Map<string, KnownSession>>();
const MAX_KNOWN_SESSIONS = 1000;
/** Counts forgets: what was kept before the last one, or read while it happened, is not used. */
let forgets = 0;

/**
 * Forgets the sessions read lately: called by whatever ends or changes a
 * session or its administrator (on this node), once its change is committed.
 * Counting is enough: what was kept before, and every read still running,
 * is not used or kept.
 */
export function forgetKnownSessions(): void {
  forgets++;
}

/**
 * The session a cookie token stands for, or null (unknown, expired, or its
 * administrator removed). Sliding expiry: once more than half of the idle
 * window has passed, the session is extended by a full window, up to the
 * absolute limit. Renewing at most twice a window keeps writes rare.
 */
export async function validateSession(db: Database, token: string, now = Date.now()): Promise<ValidSession | null> {
  if (!token || token.length > 200) return null;
  const tokenHash = hashSessionToken(token);
  let known = knownSessions.get(db);
  if (!known) knownSessions.set(db, (known = new Map()));
  const kept = known.get(tokenHash);
  if (kept && kept.forgets === forgets && now >= kept.readAt && now - kept.readAt < SESSION_RECHECK_MS && kept.expiresAt > now) {
    const remaining = kept.expiresAt - now;
    // Due for renewal: the database path below writes it.
    if (!(remaining < SESSION_IDLE_MS / 2 && expiryFrom(now, kept.createdAt).getTime() > kept.expiresAt)) {
      return { tokenHash, administrator: { ...kept.administrator }, expiresAt: new Date(kept.expiresAt), renewed: false };
    }
  }
  const forgetsBefore = forgets;
  const [row] = await db
    .select({
      expiresAt: adminSessions.expiresAt,
      createdAt: adminSessions.createdAt,
      id: administrators.id,
      username: administrators.username,
    })
    .from(adminSessions)
    .innerJoin(administrators, eq(administrators.id, adminSessions.administratorId))
    .where(eq(adminSessions.tokenHash, tokenHash));
  known.delete(tokenHash);
  if (!row) return null;
  if (row.expiresAt.getTime() <= now) {
    await db.delete(adminSessions).where(eq(adminSessions.tokenHash, tokenHash));
    return null;
  }
  const administrator = { id: row.id, username: row.username };
  const remaining = row.expiresAt.getTime() - now;
  const renewedExpiry = expiryFrom(now, row.createdAt.getTime());
  let expiresAt = row.expiresAt;
  let renewed = false;
  if (remaining < SESSION_IDLE_MS / 2 && renewedExpiry.getTime() > row.expiresAt.getTime()) {
    await db.update(adminSessions).set({ expiresAt: renewedExpiry }).where(eq(adminSessions.tokenHash, tokenHash));
    expiresAt = renewedExpiry;
    renewed = true;
  }
  if (forgets === forgetsBefore) {
    if (known.size >= MAX_KNOWN_SESSIONS) known.delete(known.keys().next().value!);
    known.set(tokenHash, { forgets, administrator: { ...administrator }, expiresAt: expiresAt.getTime(), createdAt: row.createdAt.getTime(), readAt: now });
  }
  return { tokenHash, administrator, expiresAt, renewed };
}

/** Ends one session (sign-out). */
export async function deleteSession(db: Database, tokenHash: string): Promise<void> {
  await db.delete(adminSessions).where(eq(adminSessions.tokenHash, tokenHash));
  forgetKnownSessions();
}

/** Ends every session of an administrator (inside a transaction, its caller forgets once more after the commit). */
export async function deleteSessionsOfAdministrator(db: Database, administratorId: number): Promise<void> {
  await db.delete(adminSessions).where(eq(adminSessions.administratorId, administratorId));
  forgetKnownSessions();
}

export async function countSessionsOfAdministrator(db: Database, administratorId: number): Promise<number> {
  const rows = await db.select({ tokenHash: adminSessions.tokenHash }).from(adminSessions).where(eq(adminSessions.administratorId, administratorId));
  return rows.length;
}
