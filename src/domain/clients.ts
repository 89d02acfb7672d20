import { and, asc, count, eq, ilike, or, sql } from 'drizzle-orm';
import { z } from 'zod';
import { type Database, isUniqueViolation, schema } from '../db';
import { ConflictError } from './errors';
import { describeRule, loadRulesNaming, lockGroupRules, recordRuleChange, type RuleChange } from './groupRules';
import { hashPassword } from './password';
import { parseInput } from './validation';

const { clients } = schema;

export const AUTH_TYPE_LABELS = { password: 'Username/Password' } as const;
export type AuthType = keyof typeof AUTH_TYPE_LABELS;

/** A client as the console sees it: never the password hash. */
export interface Client {
  id: number;
  name: string;
  authType: AuthType;
  username: string;
  version: number;
  createdAt: Date;
  updatedAt: Date;
}

export const CLIENTS_PAGE_SIZE = 50;

const CONTROL_CHARACTERS = /\p{Cc}/u;

export const clientNameSchema = z
  .string({ error: 'Enter a name.' })
  .trim()
  .min(1, 'Enter a name.')
  .max(100, 'Use at most 100 characters.')
  .refine((v) => !CONTROL_CHARACTERS.test(v), 'Remove control characters.');

export const usernameSchema = z
  .string({ error: 'Enter a username.' })
  .min(1, 'Enter a username.')
  .max(128, 'Use at most 128 characters.')
  .refine((v) => !/\s/u.test(v) && !CONTROL_CHARACTERS.test(v), 'Spaces and control characters are not allowed.');

export const passwordSchema = z
  .string({ error: 'Enter a password.' })
  .min(8, 'Use at least 8 characters.')
  .max(256, 'Use at most 256 characters.');

const createClientSchema = z.object({
  name: clientNameSchema,
  username: usernameSchema,
  password: passwordSchema,
});

const updateClientSchema = z.object({
  name: clientNameSchema,
  username: usernameSchema,
  // Empty keeps the current password.
  password: z.union([z.literal(''), passwordSchema]).optional().default(''),
});

/** `version`, when given, is the version the form was loaded with (lost-update check). */
export type ClientInput = { name?: unknown; username?: unknown; password?: unknown; version?: unknown };

const publicColumns = {
  id: clients.id,
  name: clients.name,
  authType: clients.authType,
  username: clients.username,
  version: clients.version,
  createdAt: clients.createdAt,
  updatedAt: clients.updatedAt,
};

const USERNAME_TAKEN = 'This username is already used by another client.';

/** Creates a client; throws ValidationError or ConflictError (username taken). */
export async function createClient(db: Database, input: ClientInput): Promise<Client> {
  const data = parseInput(createClientSchema, input);
  const passwordHash = await hashPassword(data.password);
  try {
    const [row] = await db
      .insert(clients)
      .values({ name: data.name, username: data.username, passwordHash })
      .returning(publicColumns);
    return row!;
  } catch (error) {
    if (isUniqueViolation(error)) throw new ConflictError('username', USERNAME_TAKEN);
    throw error;
  }
}

/**
 * Updates a client; an empty password keeps the current one. Returns null when
 * the client does not exist. Live connections are left alone: the new state
 * applies at their next CONNECT.
 */
export async function updateClient(db: Database, id: number, input: ClientInput): Promise<Client | null> {
  const data = parseInput(updateClientSchema, input);
  const expectedVersion = typeof input.version === 'string' && /^[0-9]{1,9}$/.test(input.version) ? Number(input.version) : undefined;
  const changes: Partial<typeof clients.$inferInsert> = {
    name: data.name,
    username: data.username,
    updatedAt: new Date(),
  };
  if (data.password) changes.passwordHash = await hashPassword(data.password);
  let row: Client | undefined;
  try {
    [row] = await db
      .update(clients)
      .set({ ...changes, version: sql`${clients.version} + 1` })
      .where(expectedVersion === undefined ? eq(clients.id, id) : and(eq(clients.id, id), eq(clients.version, expectedVersion)))
      .returning(publicColumns);
  } catch (error) {
    if (isUniqueViolation(error)) throw new ConflictError('username', USERNAME_TAKEN);
    throw error;
  }
  if (row) return row;
  const current = expectedVersion === undefined ? null : await getClient(db, id);
  if (!current) return null;
  throw new ConflictError(
    'form',
    `Another operator changed this client while you were editing it (it is now “${current.name}”, username “${current.username}”). ` +
      'Nothing was saved: check the fields and save again to keep your version.',
  );
}

/** A deleted client, and what its deletion did to the group rules. */
export interface DeletedClient extends Client {
  /** Set when rules named this client: they were removed with it. */
  ruleChange: RuleChange | null;
}

/**
 * Deletes a client; returns it, or null if there was none. Rules that name
 * the client go with it (a rule whose only target is gone matches nothing);
 * what was removed is recorded for the group-rules page.
 */
export async function deleteClient(db: Database, id: number): Promise<DeletedClient | null> {
  return db.transaction(async (tx) => {
    await lockGroupRules(tx); // serialises with a Save of the rules, which may be naming this client
    const naming = await loadRulesNaming(tx, id);
    const [row] = await tx.delete(clients).where(eq(clients.id, id)).returning(publicColumns);
    if (!row) return null;
    const ruleChange =
      naming.length === 0
        ? null
        : await recordRuleChange(
            tx,
            `Client “${row.name}” (${row.username}) was deleted.`,
            naming.map(
              (rule) =>
                `${describeRule(rule)} was removed${rule.groups.length ? `; it gave ${rule.groups.map((g) => `“${g.name}”`).join(', ')}` : ''}.`,
            ),
          );
    return { ...row, ruleChange };
  });
}

export async function getClient(db: Database, id: number): Promise<Client | null> {
  const [row] = await db.select(publicColumns).from(clients).where(eq(clients.id, id));
  return row ?? null;
}

export interface ClientPage {
  clients: Client[];
  total: number;
  page: number;
  pageCount: number;
  query: string;
}

/** One page of clients whose name or username contains `query` (case-insensitive). */
export async function listClients(
  db: Database,
  options: { query?: string; page?: number } = {},
): Promise<ClientPage> {
  const query = (options.query ?? '').trim();
  const where = query
    ? or(ilike(clients.name, likePattern(query)), ilike(clients.username, likePattern(query)))
    : undefined;
  const [totals] = await db.select({ total: count() }).from(clients).where(where);
  const total = totals?.total ?? 0;
  const pageCount = Math.max(1, Math.ceil(total / CLIENTS_PAGE_SIZE));
  const page = Math.min(Math.max(1, Math.trunc(options.page ?? 1) || 1), pageCount);
  const rows = await db
    .select(publicColumns)
    .from(clients)
    .where(where)
    .orderBy(asc(sql`lower(${clients.name})`), asc(clients.id))
    .limit(CLIENTS_PAGE_SIZE)
    .offset((page - 1) * CLIENTS_PAGE_SIZE);
  return { clients: rows, total, page, pageCount, query };
}

/** `%` and `_` typed by the user are matched literally. */
export function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** What authentication needs of a client (read by `findConnectRow`, with its grants). */
export interface ClientCredentials {
  id: number;
  username: string;
  authType: AuthType;
  passwordHash: string;
  version: number;
}

/** Names and usernames for pickers, by name (at most `limit`). */
export async function listClientChoices(db: Database, limit = 2000): Promise<Array<{ name: string; username: string }>> {
  return db
    .select({ name: clients.name, username: clients.username })
    .from(clients)
    .orderBy(asc(sql`lower(${clients.name})`), asc(clients.id))
    .limit(limit);
}
