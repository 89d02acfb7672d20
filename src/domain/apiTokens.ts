import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { and, asc, eq, lt, sql } from 'drizzle-orm';
import { z } from 'zod';
import { type Database, isUniqueViolation, schema } from '../db';
import { type AuditActor, recordChange } from './audit';
import { ConflictError, ValidationError, type FieldErrors } from './errors';
import { hashPassword, verifyPasswordHash } from './password';
import { parseInput } from './validation';

const { apiTokens, apiIdempotencyKeys } = schema;

/**
 * API tokens: what a script presents as `Authorization: Bearer gat_…` on
 * `/api/v1`. Each names what it may read or change, per resource; none ever
 * reaches administrators or tokens (the API has no route for them).
 */

/**
 * What a token's scope is about. `groups` covers groups, their permissions and
 * the group rules; `pipelines` the pipelines, their mappings and dead letters.
 */
export const TOKEN_RESOURCES = ['clients', 'groups', 'connections', 'certificates', 'audit', 'pipelines'] as const;
export type TokenResource = (typeof TOKEN_RESOURCES)[number];
export type TokenAccess = 'read' | 'write';
export type TokenScopes = Partial<Record<TokenResource, TokenAccess>>;

export const TOKEN_RESOURCE_LABELS: Record<TokenResource, string> = {
  clients: 'Clients',
  groups: 'Groups and group rules',
  connections: 'Connections',
  certificates: 'Certificates',
  audit: 'Audit trail',
  pipelines: 'Pipelines and mappings',
};

/** The audit trail is read only: there is nothing to write to it. */
export const READ_ONLY_RESOURCES: ReadonlySet<TokenResource> = new Set(['audit']);

export const TOKEN_PRESETS = {
  viewer: { clients: 'read', groups: 'read', connections: 'read', certificates: 'read', audit: 'read', pipelines: 'read' },
  editor: { clients: 'write', groups: 'write', connections: 'write', certificates: 'read', audit: 'read', pipelines: 'read' },
  administrator: { clients: 'write', groups: 'write', connections: 'write', certificates: 'write', audit: 'read', pipelines: 'write' },
} as const satisfies Record<string, TokenScopes>;
export type TokenPreset = keyof typeof TOKEN_PRESETS;

export const TOKEN_PRESET_LABELS: Record<TokenPreset, string> = {
  viewer: 'Viewer: reads everything, changes nothing',
  editor: 'Editor: changes clients, groups, rules and connections; reads certificates, the audit trail and pipelines',
  administrator: 'Administrator: changes everything a token may (never administrators or tokens)',
};

/** The preset `scopes` is exactly, or null ("custom"). */
export function presetOf(scopes: TokenScopes): TokenPreset | null {
  for (const [name, preset] of Object.entries(TOKEN_PRESETS) as Array<[TokenPreset, TokenScopes]>) {
    if (TOKEN_RESOURCES.every((r) => (scopes[r] ?? undefined) === (preset[r] ?? undefined))) return name;
  }
  return null;
}

/** True when `scopes` let a token do `access` on `resource` (write includes read). */
export function allows(scopes: TokenScopes, resource: TokenResource, access: TokenAccess): boolean {
  const given = scopes[resource];
  return given === 'write' || (given === 'read' && access === 'read');
}

/** A token as the console lists it: never its secret or digest. */
export interface ApiToken {
  id: number;
  name: string;
  last4: string;
  scopes: TokenScopes;
  allowedAddresses: string[];
  expiresAt: Date | null;
  createdBy: string | null;
  createdAt: Date;
  lastUsedAt: Date | null;
  lastUsedAddress: string | null;
}

const publicColumns = {
  id: apiTokens.id,
  name: apiTokens.name,
  last4: apiTokens.last4,
  scopes: apiTokens.scopes,
  allowedAddresses: apiTokens.allowedAddresses,
  expiresAt: apiTokens.expiresAt,
  createdBy: apiTokens.createdBy,
  createdAt: apiTokens.createdAt,
  lastUsedAt: apiTokens.lastUsedAt,
  lastUsedAddress: apiTokens.lastUsedAddress,
};

/** `gat_` and 43 base64url characters (256 bits). */
export const TOKEN_PREFIX = 'gat_';
const TOKEN_FORMAT = /^gat_([A-Za-z0-9_-]{43})$/;
/** Characters of the random part kept in clear to find the row (60 bits: never shared by chance). */
const LOOKUP_LENGTH = 10;

export const MAX_ALLOWED_ADDRESSES = 50;
const CONTROL_CHARACTERS = /\p{Cc}/u;

const tokenNameSchema = z
  .string({ error: 'Enter a name.' })
  .trim()
  .min(1, 'Enter a name.')
  .max(100, 'Use at most 100 characters.')
  .refine((v) => !CONTROL_CHARACTERS.test(v), 'Remove control characters.');

const scopeValue = z.enum(['none', 'read', 'write']).optional();

export const tokenInputSchema = z.object({
  name: tokenNameSchema,
  preset: z.enum(['viewer', 'editor', 'administrator', 'custom'], { error: 'Choose a scope.' }),
  scopes: z.object(Object.fromEntries(TOKEN_RESOURCES.map((r) => [r, scopeValue])) as Record<TokenResource, typeof scopeValue>).optional(),
  /** Days until it expires; empty or 0: never. */
  expiresInDays: z
    .string()
    .trim()
    .optional()
    .transform((v, ctx) => {
      if (!v || v === '0' || v === 'never') return null;
      if (!/^[1-9][0-9]{0,3}$/.test(v) || Number(v) > 3650) {
        ctx.addIssue({ code: 'custom', message: 'Enter a number of days from 1 to 3650, or leave it empty for no expiry.' });
        return z.NEVER;
      }
      return Number(v);
    }),
  /** One address or CIDR range per line (or separated by commas or spaces). */
  allowedAddresses: z.string().max(5000, 'Use at most 5000 characters.').optional().default(''),
});

export type TokenInput = { name?: unknown; preset?: unknown; scopes?: unknown; expiresInDays?: unknown; allowedAddresses?: unknown };

/** An address as compared: IPv4-mapped IPv6 (`::ffff:10.0.0.1`) is the IPv4 address. */
export function normalizeAddress(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  return mapped ? mapped[1]! : address;
}

/** Parses a list of addresses and CIDR ranges; throws a message naming the first bad one. */
export function parseAllowedAddresses(text: string): string[] {
  const entries = [...new Set(text.split(/[\s,]+/).filter(Boolean))];
  if (entries.length > MAX_ALLOWED_ADDRESSES) throw new Error(`List at most ${MAX_ALLOWED_ADDRESSES} addresses or ranges.`);
  for (const entry of entries) {
    const [address, bits, extra] = entry.split('/');
    const family = isIP(address ?? '');
    const max = family === 4 ? 32 : 128;
    if (family === 0 || extra !== undefined || (bits !== undefined && (!/^[0-9]{1,3}$/.test(bits) || Number(bits) > max))) {
      throw new Error(`“${entry.slice(0, 60)}” is not an IP address or a CIDR range such as 192.0.2.0/24.`);
    }
  }
  return entries;
}

/** True when `address` is one of `allowed` (empty: any address). */
export function addressAllowed(allowed: readonly string[], address: string | undefined): boolean {
  if (allowed.length === 0) return true;
  if (!address) return false;
  const plain = normalizeAddress(address);
  const family = isIP(plain);
  if (family === 0) return false;
  const list = new BlockList();
  for (const entry of allowed) {
    const [base, bits] = entry.split('/');
    const type = isIP(base!) === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(base!, type);
    else list.addSubnet(base!, Number(bits), type);
  }
  return list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
}

function digestOf(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** The scopes an input names (checked whatever else is wrong with it, so every message shows at once). */
function scopesOf(input: TokenInput): { scopes: TokenScopes; errors: FieldErrors } {
  const preset = input.preset;
  if (typeof preset === 'string' && Object.hasOwn(TOKEN_PRESETS, preset)) return { scopes: { ...TOKEN_PRESETS[preset as TokenPreset] }, errors: {} };
  if (preset !== 'custom') return { scopes: {}, errors: {} };
  const given = (input.scopes && typeof input.scopes === 'object' ? input.scopes : {}) as Record<string, unknown>;
  const scopes: TokenScopes = {};
  const errors: FieldErrors = {};
  for (const resource of TOKEN_RESOURCES) {
    const value = given[resource];
    if (value === 'read' || value === 'write') {
      if (value === 'write' && READ_ONLY_RESOURCES.has(resource)) errors[`scopes.${resource}`] = 'The audit trail can only be read.';
      scopes[resource] = value;
    }
  }
  if (Object.keys(scopes).length === 0 && Object.keys(errors).length === 0) errors.scopes = 'Give the token access to at least one resource.';
  return { scopes, errors };
}

/** A token just made: `secret` is shown once and never again. */
export interface CreatedApiToken {
  token: ApiToken;
  secret: string;
}

/**
 * Creates a token; throws ValidationError (every field's message at once) or
 * ConflictError (name taken). Only the digest is stored.
 */
export async function createApiToken(db: Database, input: TokenInput, by?: AuditActor, now = new Date()): Promise<CreatedApiToken> {
  let data: z.output<typeof tokenInputSchema> | undefined;
  let errors: FieldErrors = {};
  try {
    data = parseInput(tokenInputSchema, input);
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    errors = { ...error.fieldErrors };
  }
  let allowedAddresses: string[] = [];
  try {
    allowedAddresses = parseAllowedAddresses(typeof input.allowedAddresses === 'string' ? input.allowedAddresses : '');
  } catch (error) {
    errors.allowedAddresses ??= (error as Error).message;
  }
  const scoped = scopesOf(input);
  errors = { ...scoped.errors, ...errors };
  if (!data || Object.keys(errors).length > 0) throw new ValidationError(errors);

  const random = randomBytes(32).toString('base64url');
  const secret = `${TOKEN_PREFIX}${random}`;
  const expiresAt = data.expiresInDays === null ? null : new Date(now.getTime() + data.expiresInDays * 86_400_000);
  try {
    const token = await db.transaction(async (tx) => {
      const [row] = await tx
        .insert(apiTokens)
        .values({
          name: data.name,
          prefix: random.slice(0, LOOKUP_LENGTH),
          digest: digestOf(secret),
          last4: secret.slice(-4),
          scopes: scoped.scopes,
          allowedAddresses,
          expiresAt,
          createdBy: by?.username ?? by?.via ?? null,
        })
        .returning(publicColumns);
      await recordChange(tx, by, { kind: 'token.created', subject: row!.name, details: { after: auditSnapshot(row!) } });
      return row!;
    });
    return { token, secret };
  } catch (error) {
    if (isUniqueViolation(error)) throw new ConflictError('name', 'Another token already has this name.');
    throw error;
  }
}

function auditSnapshot(token: ApiToken) {
  return {
    id: token.id,
    name: token.name,
    last4: token.last4,
    scopes: token.scopes,
    expiresAt: token.expiresAt?.toISOString() ?? null,
    allowedAddresses: token.allowedAddresses,
  };
}

export async function listApiTokens(db: Database): Promise<ApiToken[]> {
  return db.select(publicColumns).from(apiTokens).orderBy(asc(sql`lower(${apiTokens.name})`), asc(apiTokens.id));
}

export async function getApiToken(db: Database, id: number): Promise<ApiToken | null> {
  const [row] = await db.select(publicColumns).from(apiTokens).where(eq(apiTokens.id, id));
  return row ?? null;
}

/** Revokes (deletes) a token; null when there was none. Every node reads tokens per request: refused at once everywhere. */
export async function revokeApiToken(db: Database, id: number, by?: AuditActor): Promise<ApiToken | null> {
  return db.transaction(async (tx) => {
    const [row] = await tx.delete(apiTokens).where(eq(apiTokens.id, id)).returning(publicColumns);
    if (!row) return null;
    await recordChange(tx, by, { kind: 'token.revoked', subject: row.name, details: { before: auditSnapshot(row) } });
    return row;
  });
}

export type TokenCheck =
  | { ok: true; token: ApiToken }
  /** Not a token, or no such token (revoked), or a wrong secret: never told apart to the caller. */
  | { ok: false; reason: 'malformed' | 'unknown' | 'expired' | 'address' };

/** "Last used" is written at most this often per token (and when the address changes). */
const LAST_USED_EVERY_MS = 60_000;

/**
 * Checks a bearer token: its format, its row (by prefix; the digest decides,
 * in constant time), its expiry and its allowed addresses. One indexed read
 * per request, so a revoked token is refused on every node at once. Notes
 * when and from where it was used.
 */
export async function checkApiToken(db: Database, presented: string, address: string | undefined, now = new Date()): Promise<TokenCheck> {
  const match = TOKEN_FORMAT.exec(presented);
  if (!match) return { ok: false, reason: 'malformed' };
  const [row] = await db
    .select({ ...publicColumns, digest: apiTokens.digest })
    .from(apiTokens)
    .where(eq(apiTokens.prefix, match[1]!.slice(0, LOOKUP_LENGTH)));
  const given = Buffer.from(digestOf(presented), 'hex');
  if (!row || !timingSafeEqual(Buffer.from(row.digest, 'hex'), given)) return { ok: false, reason: 'unknown' };
  const { digest: _, ...token } = row;
  if (token.expiresAt && token.expiresAt.getTime() <= now.getTime()) return { ok: false, reason: 'expired' };
  if (!addressAllowed(token.allowedAddresses, address)) return { ok: false, reason: 'address' };
  const usedFrom = address ? normalizeAddress(address) : null;
  if (!token.lastUsedAt || now.getTime() - token.lastUsedAt.getTime() >= LAST_USED_EVERY_MS || token.lastUsedAddress !== usedFrom) {
    await db.update(apiTokens).set({ lastUsedAt: now, lastUsedAddress: usedFrom }).where(eq(apiTokens.id, token.id));
    token.lastUsedAt = now;
    token.lastUsedAddress = usedFrom;
  }
  return { ok: true, token };
}

// ---------------------------------------------------------------------------
// Idempotency-Key

/** How long a key's answer is kept. */
export const IDEMPOTENCY_TTL_MS = 24 * 3600_000;

export type IdempotencyClaim =
  /** First time: run the request, then `completeIdempotencyKey`. */
  | { kind: 'new' }
  /** Seen with this very request: answer what was answered. */
  | { kind: 'replay'; status: number; response: unknown; location: string | null }
  /** The first request with this key is still running. */
  | { kind: 'in-progress' }
  /** The key was used with another request. */
  | { kind: 'mismatch' };

/**
 * What a request with an Idempotency-Key is compared by: a SHA-256 of its
 * method, path and body without the password, and the password it sets, if
 * any, kept only as Argon2id (a fast digest of a body holding a typed
 * password would keep that password guessable for 24 hours).
 */
export interface IdempotentRequest {
  digest: string;
  password?: string;
}

/** `request_hash` as stored: the digest, then the password's Argon2id hash when there is one. */
async function storedRequestHash(request: IdempotentRequest): Promise<string> {
  return request.password === undefined ? request.digest : `${request.digest} ${await hashPassword(request.password)}`;
}

async function sameRequest(stored: string, request: IdempotentRequest): Promise<boolean> {
  const [digest, passwordHash] = stored.split(' ');
  if (digest !== request.digest || (passwordHash === undefined) !== (request.password === undefined)) return false;
  return passwordHash === undefined || verifyPasswordHash(passwordHash, request.password!);
}

/** Claims `key` for this token and request. */
export async function claimIdempotencyKey(db: Database, tokenId: number, key: string, request: IdempotentRequest, now = new Date()): Promise<IdempotencyClaim> {
  await db.delete(apiIdempotencyKeys).where(lt(apiIdempotencyKeys.createdAt, new Date(now.getTime() - IDEMPOTENCY_TTL_MS)));
  const [existing] = await db
    .select()
    .from(apiIdempotencyKeys)
    .where(and(eq(apiIdempotencyKeys.tokenId, tokenId), eq(apiIdempotencyKeys.key, key)));
  if (!existing) {
    const inserted = await db
      .insert(apiIdempotencyKeys)
      .values({ tokenId, key, requestHash: await storedRequestHash(request) })
      .onConflictDoNothing()
      .returning({ key: apiIdempotencyKeys.key });
    if (inserted.length > 0) return { kind: 'new' };
    return claimIdempotencyKey(db, tokenId, key, request, now);
  }
  if (!(await sameRequest(existing.requestHash, request))) return { kind: 'mismatch' };
  if (existing.status === null) return { kind: 'in-progress' };
  return { kind: 'replay', status: existing.status, response: existing.response, location: existing.location };
}

/** Keeps the answer of a claimed key; a failure of the server's own (5xx) frees the key for a retry instead. */
export async function completeIdempotencyKey(db: Database, tokenId: number, key: string, answer: { status: number; response: unknown; location?: string | null }): Promise<void> {
  const where = and(eq(apiIdempotencyKeys.tokenId, tokenId), eq(apiIdempotencyKeys.key, key));
  if (answer.status >= 500) {
    await db.delete(apiIdempotencyKeys).where(where);
    return;
  }
  await db.update(apiIdempotencyKeys).set({ status: answer.status, response: answer.response, location: answer.location ?? null }).where(where);
}
