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
 * The session a cookie token stands for, or null (unknown, expired, or its
 * administrator removed). Sliding expiry: once more than half of the idle
 * window has passed, the session is extended by a full window, up to the
 * absolute limit. Renewing at most twice a window keeps writes rare.
 */
export async function validateSession(db: Database, token: string, now = Date.now()): Promise<ValidSession | null> {
  if (!token || token.length > 200) return null;
  const tokenHash = hashSessionToken(token);
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
  if (!row) return null;
  if (row.expiresAt.getTime() <= now) {
    await db.delete(adminSessions).where(eq(adminSessions.tokenHash, tokenHash));
    return null;
  }
  const administrator = { id: row.id, username: row.username };
  const remaining = row.expiresAt.getTime() - now;
  const renewedExpiry = expiryFrom(now, row.createdAt.getTime());
  if (remaining < SESSION_IDLE_MS / 2 && renewedExpiry.getTime() > row.expiresAt.getTime()) {
    await db.update(adminSessions).set({ expiresAt: renewedExpiry }).where(eq(adminSessions.tokenHash, tokenHash));
    return { tokenHash, administrator, expiresAt: renewedExpiry, renewed: true };
  }
  return { tokenHash, administrator, expiresAt: row.expiresAt, renewed: false };
}

/** Ends one session (sign-out). */
export async function deleteSession(db: Database, tokenHash: string): Promise<void> {
  await db.delete(adminSessions).where(eq(adminSessions.tokenHash, tokenHash));
}

/** Ends every session of an administrator. */
export async function deleteSessionsOfAdministrator(db: Database, administratorId: number): Promise<void> {
  await db.delete(adminSessions).where(eq(adminSessions.administratorId, administratorId));
}

export async function countSessionsOfAdministrator(db: Database, administratorId: number): Promise<number> {
  const rows = await db.select({ tokenHash: adminSessions.tokenHash }).from(adminSessions).where(eq(adminSessions.administratorId, administratorId));
  return rows.length;
}
