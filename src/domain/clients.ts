import { and, asc, count, desc, eq, inArray, sql, type SQL, type SQLWrapper } from 'drizzle-orm';
import { z } from 'zod';
import type { SubqueryWithSelection } from 'drizzle-orm/pg-core';
import { type Database, isUniqueViolation, schema } from '../db';
import { type AuditActor, recordChange } from './audit';
import { ConflictError } from './errors';
import {
  anyClientIdRule,
  clientGroupsOverview,
  describeRule,
  groupNamesOf,
  groupsOverviewOf,
  loadRulesNaming,
  lockGroupRules,
  recordRuleChange,
  setClientGroups,
  type ClientGroupsOverview,
  type RuleChange,
} from './groupRules';
import { normalizeFingerprint, parseCertificates } from './certificates';
import { ValidationError, type FieldErrors } from './errors';
import { hashFormPassword } from './password';
import { parseInput } from './validation';
import { AUTH_TYPES, MAX_USERNAME_LENGTH, type AuthType } from './access/types';
import type { RuleModel } from './access/acl';
import { noGroupCondition, type SeenClientColumns } from './access/lastSeen';

const { clients, clientTotals } = schema;

export const AUTH_TYPE_LABELS: Record<AuthType, string> = { password: 'Username/Password', certificate: 'Certificate', certificate_password: 'Certificate + Password' };

/** A client as the console sees it: never the password hash. */
export interface Client {
  id: number;
  name: string;
  authType: AuthType;
  username: string;
  /** Certificate clients: the SHA-256 fingerprint of their certificate (`AB:CD:…`). */
  certFingerprint: string | null;
  version: number;
  createdAt: Date;
  updatedAt: Date;
  /** When a session of it last ended (written in batches: see lastSeen.ts); null: never seen. */
  lastSeenAt: Date | null;
  /** The MQTT client id of the session that ended at `lastSeenAt`; null if unknown. */
  lastClientId: string | null;
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
  .max(MAX_USERNAME_LENGTH, `Use at most ${MAX_USERNAME_LENGTH} characters.`)
  .refine((v) => !/\s/u.test(v) && !CONTROL_CHARACTERS.test(v), 'Spaces and control characters are not allowed.');

export const passwordSchema = z
  .string({ error: 'Enter a password.' })
  .min(8, 'Use at least 8 characters.')
  .max(256, 'Use at most 256 characters.');

const authTypeSchema = z.enum(AUTH_TYPES, { error: 'Choose an authentication type.' }).default('password');

const createClientSchema = z.object({
  name: clientNameSchema,
  username: usernameSchema,
  authType: authTypeSchema,
  password: z.string().optional().default(''),
});

const updateClientSchema = z.object({
  name: clientNameSchema,
  username: usernameSchema,
  authType: authTypeSchema,
  // Empty keeps the current password.
  password: z.string().optional().default(''),
});

/**
 * `version`, when given, is the version the form was loaded with (lost-update
 * check). Certificate clients: `certificate` (PEM, e.g. an uploaded file) or
 * `fingerprint` (SHA-256, pasted) names their certificate; the PEM wins.
 * `password_generated`: the token that came with a password the server
 * generated (see domain/password.ts); only such a password is stored with the
 * fast hash, any other with Argon2id.
 */
export type ClientInput = {
  name?: unknown;
  username?: unknown;
  password?: unknown;
  version?: unknown;
  authType?: unknown;
  fingerprint?: unknown;
  certificate?: unknown;
  password_generated?: unknown;
};

/**
 * The password and fingerprint a client of `authType` keeps, checked:
 * password clients need a password (on create, or when they had none),
 * certificate clients a fingerprint, Certificate + Password both.
 */
function credentialsFor(
  authType: AuthType,
  input: ClientInput,
  password: string,
  current: { authType: AuthType; certFingerprint: string | null } | null,
): { errors: FieldErrors; certFingerprint: string | null; newPassword: string | null | undefined } {
  const errors: FieldErrors = {};
  let certFingerprint: string | null = null;
  if (authType !== 'password') {
    const pem = typeof input.certificate === 'string' ? input.certificate.trim() : '';
    const typed = typeof input.fingerprint === 'string' ? input.fingerprint.trim() : '';
    if (pem) {
      try {
        certFingerprint = parseCertificates(pem)[0]!.fingerprint256;
      } catch (error) {
        errors.fingerprint = `The uploaded file is not a PEM certificate: ${(error as Error).message}.`;
      }
    } else if (typed) {
      certFingerprint = normalizeFingerprint(typed);
      if (!certFingerprint) errors.fingerprint = 'Enter a SHA-256 fingerprint: 64 hexadecimal digits, colons allowed.';
    } else if (current?.certFingerprint) {
      certFingerprint = current.certFingerprint;
    } else {
      errors.fingerprint = 'Upload the client certificate or paste its SHA-256 fingerprint.';
    }
  }
  const needsPassword = authType !== 'certificate';
  // A client that kept no password (certificate only) must be given one.
  const hasPassword = current !== null && current.authType !== 'certificate';
  if (needsPassword && (password || !hasPassword)) {
    const checked = passwordSchema.safeParse(password);
    if (!checked.success) errors.password = checked.error.issues[0]!.message;
  }
  // newPassword: null clears it (certificate only), undefined keeps it.
  return { errors, certFingerprint, newPassword: !needsPassword ? null : password ? password : undefined };
}

/**
 * Validates a client form as a whole (every field's message at once) and
 * hashes a new password only once all of it is valid.
 */
async function parseClientInput(
  schema: typeof createClientSchema | typeof updateClientSchema,
  input: ClientInput,
  current: { authType: AuthType; certFingerprint: string | null } | null,
) {
  let data: z.infer<typeof createClientSchema> | undefined;
  let errors: FieldErrors = {};
  try {
    data = parseInput(schema, input);
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    errors = { ...error.fieldErrors };
  }
  const authType = data?.authType ?? (authTypeSchema.safeParse(input.authType).data ?? 'password');
  const password = typeof input.password === 'string' ? input.password : '';
  const credentials = credentialsFor(authType, input, password, current);
  errors = { ...credentials.errors, ...errors };
  if (!data || Object.keys(errors).length > 0) throw new ValidationError(errors);
  const passwordHash = credentials.newPassword === null ? '' : credentials.newPassword === undefined ? undefined : await hashFormPassword(credentials.newPassword, input.password_generated);
  return { data, certFingerprint: credentials.certFingerprint, passwordHash };
}

const publicColumns = {
  id: clients.id,
  name: clients.name,
  authType: clients.authType,
  username: clients.username,
  certFingerprint: clients.certFingerprint,
  version: clients.version,
  createdAt: clients.createdAt,
  updatedAt: clients.updatedAt,
  lastSeenAt: clients.lastSeenAt,
  lastClientId: clients.lastClientId,
};

const USERNAME_TAKEN = 'This username is already used by another client.';
const FINGERPRINT_TAKEN = 'Another client already uses this certificate.';

/** The unique value a violation is about, as a ConflictError. */
function conflictOf(error: unknown): ConflictError | null {
  if (!isUniqueViolation(error)) return null;
  const cause = (error as { cause?: { constraint_name?: string; constraint?: string; message?: string } }).cause;
  const constraint = `${cause?.constraint_name ?? ''} ${cause?.constraint ?? ''} ${cause?.message ?? ''}`;
  if (constraint.includes('fingerprint')) return new ConflictError('fingerprint', FINGERPRINT_TAKEN);
  return new ConflictError('username', USERNAME_TAKEN);
}

/** What the audit trail keeps of a client: never the password or its hash. */
function auditSnapshot(client: Client) {
  return {
    id: client.id,
    name: client.name,
    username: client.username,
    authType: client.authType,
    ...(client.certFingerprint ? { certFingerprint: client.certFingerprint } : {}),
  };
}

/** What a client's form may change besides the client itself. */
export interface ClientFormOptions {
  /**
   * The groups rules by client give it, chosen on its form (see
   * setClientGroups); undefined leaves the rules alone.
   */
  groups?: readonly number[];
}

/**
 * Creates a client; throws ValidationError or ConflictError (username taken).
 * The audit record (`by`: who) is written in the same transaction, and so
 * is the rule giving it `options.groups`.
 */
export async function createClient(db: Database, input: ClientInput, by?: AuditActor, options: ClientFormOptions = {}): Promise<Client> {
  const { data, passwordHash, certFingerprint } = await parseClientInput(createClientSchema, input, null);
  try {
    return await db.transaction(async (tx) => {
      // Before any row lock, as every change of the rules takes it.
      if (options.groups) await lockGroupRules(tx);
      const [row] = await tx
        .insert(clients)
        .values({ name: data.name, username: data.username, authType: data.authType, passwordHash: passwordHash!, certFingerprint })
        .returning(publicColumns);
      const note = data.authType === 'certificate' ? 'certificate set' : data.authType === 'certificate_password' ? 'certificate and password set' : 'password set';
      await recordChange(tx, by, { kind: 'client.created', subject: row!.username, details: { after: auditSnapshot(row!), note } });
      if (options.groups?.length) await setClientGroups(tx, row!.id, options.groups, by);
      return row!;
    });
  } catch (error) {
    throw conflictOf(error) ?? error;
  }
}

/**
 * Updates a client; an empty password keeps the current one. Returns null when
 * the client does not exist. Live connections are left alone: the new state
 * applies at their next CONNECT.
 */
export async function updateClient(db: Database, id: number, input: ClientInput, by?: AuditActor, options: ClientFormOptions = {}): Promise<Client | null> {
  const expectedVersion = typeof input.version === 'string' && /^[0-9]{1,9}$/.test(input.version) ? Number(input.version) : undefined;
  const existing = await getClient(db, id);
  if (!existing) return null;
  const { data, passwordHash, certFingerprint } = await parseClientInput(updateClientSchema, input, existing);
  const changes: Partial<typeof clients.$inferInsert> = {
    name: data.name,
    username: data.username,
    authType: data.authType,
    certFingerprint,
    updatedAt: new Date(),
  };
  if (passwordHash !== undefined) changes.passwordHash = passwordHash;
  let row: Client | undefined;
  try {
    row = await db.transaction(async (tx) => {
      if (options.groups) await lockGroupRules(tx);
      // Read under the row lock: the audit's "before" is what this update replaced.
      const [before] = await tx.select(publicColumns).from(clients).where(eq(clients.id, id)).for('update');
      if (!before || (expectedVersion !== undefined && before.version !== expectedVersion)) return undefined;
      const [after] = await tx
        .update(clients)
        .set({ ...changes, version: sql`${clients.version} + 1` })
        .where(expectedVersion === undefined ? eq(clients.id, id) : and(eq(clients.id, id), eq(clients.version, expectedVersion)))
        .returning(publicColumns);
      if (!after) return undefined;
      await recordChange(tx, by, {
        kind: 'client.updated',
        subject: after.username,
        details: { before: auditSnapshot(before), after: auditSnapshot(after), ...(passwordHash ? { note: 'password changed' } : passwordHash === '' && before.authType !== 'certificate' ? { note: 'password removed' } : {}) },
      });
      if (options.groups) await setClientGroups(tx, after.id, options.groups, by);
      return after;
    });
  } catch (error) {
    throw conflictOf(error) ?? error;
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
 * Deletes a client; returns it, or null if there was none (with
 * `expectedVersion`, throws ConflictError on `form` when it is at another
 * version). Rules that name
 * the client go with it (a rule whose only target is gone matches nothing);
 * what was removed is recorded for the group-rules page.
 */
export async function deleteClient(db: Database, id: number, by?: AuditActor, expectedVersion?: number): Promise<DeletedClient | null> {
  return db.transaction(async (tx) => {
    await lockGroupRules(tx); // serialises with a Save of the rules, which may be naming this client
    if (expectedVersion !== undefined) {
      // Under the row lock: a change that commits meanwhile is seen, not deleted over.
      const [current] = await tx.select({ version: clients.version }).from(clients).where(eq(clients.id, id)).for('update');
      if (current && current.version !== expectedVersion) throw new ConflictError('form', 'The client changed since that version was read: nothing was deleted.');
    }
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
    await recordChange(tx, by, {
      kind: 'client.deleted',
      subject: row.username,
      details: { before: auditSnapshot(row), ...(naming.length ? { rulesRemoved: naming.map(describeRule) } : {}) },
    });
    return { ...row, ruleChange };
  });
}

export async function getClient(db: Database, id: number): Promise<Client | null> {
  const [row] = await db.select(publicColumns).from(clients).where(eq(clients.id, id));
  return row ?? null;
}

/** The names of these clients, by id (ids of deleted clients are left out). */
export async function getClientNames(db: Database, ids: readonly number[]): Promise<Map<number, string>> {
  const unique = [...new Set(ids)];
  if (unique.length === 0) return new Map();
  const rows = await db
    .select({ id: clients.id, name: clients.name })
    .from(clients)
    .where(sql`${clients.id} = any(${`{${unique.join(',')}}`}::integer[])`);
  return new Map(rows.map((row) => [row.id, row.name]));
}

/** The ids of the clients with these usernames (unknown usernames are left out). */
export async function getClientIdsByUsername(db: Database, usernames: readonly string[]): Promise<Map<string, number>> {
  const unique = [...new Set(usernames)].filter((u) => u.length > 0 && u.length <= MAX_USERNAME_LENGTH);
  if (unique.length === 0) return new Map();
  const rows = await db.select({ id: clients.id, username: clients.username }).from(clients).where(inArray(clients.username, unique));
  return new Map(rows.map((row) => [row.username, row.id]));
}

/** A client's place in the list's order, (lower(name), id): where a page ends or starts. */
export interface ClientCursor {
  id: number;
  /** lower(name), as the database computed it. */
  key: string;
}

/** A cursor as text, `id:key`, for links. */
export function formatClientCursor(cursor: ClientCursor): string {
  return `${cursor.id}:${cursor.key}`;
}

/** The cursor `formatClientCursor` wrote, or null for anything else. */
export function parseClientCursor(text: string | undefined): ClientCursor | null {
  const match = /^([1-9][0-9]{0,9}):(.{0,400})$/su.exec(text ?? '');
  if (!match || CONTROL_CHARACTERS.test(match[2]!)) return null;
  const id = Number(match[1]);
  return id <= 2_147_483_647 ? { id, key: match[2]! } : null;
}

export interface ListClientsOptions {
  /** Text found, in any case, in the name or the username. */
  query?: string;
  /** The page after this client (Next). */
  after?: ClientCursor;
  /** The page before this client (Previous). */
  before?: ClientCursor;
  /**
   * 'last' for the end of the list. A number counts pages from the start with
   * OFFSET, reading every client before the page: only for old `?page=N` links.
   */
  page?: number | 'last';
  /** The position of the page's first client, as the link that led here knew it (1-based). */
  at?: number;
  /** Only the clients these rules give no group, judged as last seen (see access/lastSeen.ts). */
  noAccess?: RuleModel;
}

export interface ClientPage {
  clients: ListedClient[];
  query: string;
  /** Clients in the list, or matching the search; a lower bound when `totalIsLowerBound`. */
  total: number;
  /** A search counts its matches only up to CLIENTS_SEARCH_COUNT_LIMIT: "more than 1,000". */
  totalIsLowerBound: boolean;
  /** Position of the first client shown (1-based), or null when it is not known. */
  from: number | null;
  /** Where Previous and Next lead; null at the start and at the end of the list. */
  previous: ClientCursor | null;
  next: ClientCursor | null;
  /** The page number when the position is known, and how many pages when the total is exact. */
  page: number | null;
  pageCount: number | null;
  /** The Groups column of these clients. */
  access: ClientGroupsOverview;
  /** Only clients without access were listed. */
  noAccess: boolean;
}

/** A search counts this many matches exactly; beyond, the console says "more than". */
export const CLIENTS_SEARCH_COUNT_LIMIT = 1000;

// A search with many matches first reads this many clients in order: matches
// spread over the list fill a page from them without the search index.
const SEARCH_WINDOW = 1000;

/** A client as the clients table shows it: a page reads only these. */
export type ListedClient = Pick<Client, 'id' | 'name' | 'authType' | 'username' | 'updatedAt' | 'lastSeenAt' | 'certFingerprint' | 'lastClientId'>;

const sortKey = sql<string>`lower(${clients.name})`;
const keyedColumns = {
  id: clients.id,
  name: clients.name,
  authType: clients.authType,
  username: clients.username,
  updatedAt: clients.updatedAt,
  lastSeenAt: clients.lastSeenAt,
  certFingerprint: clients.certFingerprint,
  lastClientId: clients.lastClientId,
  sortKey: sortKey.as('sort_key'),
};
type KeyedClient = ListedClient & { sortKey: string };
type PageRow = KeyedClient & { groupNames: string[] | null; anyClientIdRule: boolean; total?: number };
type Direction = 'after' | 'before';
interface Totals {
  total: number;
  exact: boolean;
}

/**
 * One page of clients, ordered by name (case-insensitive, then id), all of
 * them or those whose name or username contains `query` in any case (`%`
 * and `_` are taken literally), with their Groups column.
 *
 * Pages are read by key, not by OFFSET, so every page costs the same however
 * deep (the index on (lower(name), id)); the list's page, its total (kept by
 * triggers) and its groups are one query. A search counts its matches up to
 * CLIENTS_SEARCH_COUNT_LIMIT and uses the trigram index where pg_trgm is
 * installed (migration 0005): with few matches it reads them all through it
 * and pages among them; with many, it reads the list in order, and falls back
 * to the index when the matches are bunched elsewhere in the list. Without
 * pg_trgm it reads the table: same results, slower.
 */
export async function listClients(db: Database, options: ListClientsOptions = {}): Promise<ClientPage> {
  const query = (options.query ?? '').trim();
  const search: Search = { query, noAccess: options.noAccess };
  if (!query && !search.noAccess) return keysetPage(db, search, null, options);
  // Names and usernames hold no control characters (and the search index
  // joins them with a newline): such a query matches nothing.
  if (CONTROL_CHARACTERS.test(query)) {
    return pageOf([], search, { total: 0, exact: true }, { from: 1, hasPrevious: false, hasNext: false }, await clientGroupsOverview(db, []));
  }
  // Only the keys of the matches: with many, they only tell that there are many.
  const cursor = options.after ?? options.before;
  const found = db
    .select({ id: clients.id, sortKey: sortKey.as('sort_key'), place: cursor ? comparedTo(cursor) : sql<number>`0`.as('place') })
    .from(clients)
    .where(matches(clients, search))
    .limit(CLIENTS_SEARCH_COUNT_LIMIT + 1)
    .as('found');
  const all = await db.select().from(found).orderBy(asc(found.sortKey), asc(found.id));
  if (all.length > CLIENTS_SEARCH_COUNT_LIMIT) return keysetPage(db, search, { total: CLIENTS_SEARCH_COUNT_LIMIT, exact: false }, options);
  return pageAmong(db, all, search, options);
}

/** How many clients there are (kept by triggers, migration 0005). */
export async function countClients(db: Database): Promise<number> {
  const [row] = await db.select({ total: clientTotals.total }).from(clientTotals).where(eq(clientTotals.id, 1));
  if (row) return row.total;
  const [counted] = await db.select({ total: count() }).from(clients);
  return counted?.total ?? 0;
}

// A search with few matches has the keys of all of them, in order, and pages
// among them; `place` tells on which side of the cursor each one lies.
async function pageAmong(
  db: Database,
  all: Array<{ id: number; sortKey: string; place: number }>,
  query: Search,
  options: ListClientsOptions,
): Promise<ClientPage> {
  const size = CLIENTS_PAGE_SIZE;
  const lastStart = all.length === 0 ? 0 : Math.floor((all.length - 1) / size) * size;
  let start = 0;
  if (options.after) {
    const index = all.findIndex((client) => client.place > 0);
    start = index === -1 ? lastStart : index;
  } else if (options.before) {
    const index = all.findIndex((client) => client.place >= 0);
    start = Math.max(0, (index === -1 ? all.length : index) - size);
  } else if (options.page === 'last') {
    start = lastStart;
  } else if (typeof options.page === 'number' && options.page > 1) {
    start = Math.min((Math.trunc(options.page) - 1) * size, lastStart);
  }
  const ids = all.slice(start, start + size).map((client) => client.id);
  const page = db.select(keyedColumns).from(clients).where(sql`${clients.id} = any(${`{${ids.join(',')}}`}::integer[])`).as('page');
  const rows = ids.length ? await withGroups(db, page, 'after') : [];
  const access = rows.length ? groupsOverviewOf(rows) : await clientGroupsOverview(db, []);
  return pageOf(rows, query, { total: all.length, exact: true }, { from: start + 1, hasPrevious: start > 0, hasNext: start + size < all.length }, access);
}

// The whole list (`totals` null: its rows carry the total), or a search with
// many matches, read by key from the cursor.
async function keysetPage(db: Database, query: Search, totals: Totals | null, options: ListClientsOptions): Promise<ClientPage> {
  const size = CLIENTS_PAGE_SIZE;
  const read = (direction: Direction, cursor: ClientCursor | undefined, limit: number, offset = 0) =>
    query.query || query.noAccess ? readMatches(db, query, direction, cursor, limit, offset) : readClients(db, direction, cursor, limit, offset);
  const lastPage = () => keysetPage(db, query, totals, { page: 'last' });
  const page = async (rows: PageRow[], place: { from: number | null; hasPrevious: boolean; hasNext: boolean }) => {
    const known = totals ?? { total: rows[0]?.total ?? (await countClients(db)), exact: true };
    const access = rows.length ? groupsOverviewOf(rows) : await clientGroupsOverview(db, []);
    return pageOf(rows, query, known, place, access);
  };
  const at = options.at ?? null;

  if (options.after) {
    const rows = await read('after', options.after, size + 1);
    // Nothing after the cursor any more: the end of the list is the nearest page.
    if (rows.length === 0) return lastPage();
    return page(rows.slice(0, size), { from: at, hasPrevious: true, hasNext: rows.length > size });
  }
  if (options.before) {
    const rows = await read('before', options.before, size + 1);
    if (rows.length > size) return page(rows.slice(0, size).reverse(), { from: at, hasPrevious: true, hasNext: true });
    // Less than a page before it: that is the first page, shown full.
  } else if (options.page === 'last') {
    const rows = await read('before', undefined, size + 1);
    const total = totals ?? { total: rows[0]?.total ?? 0, exact: true };
    // With an exact total the last page holds what the full pages before it
    // leave, so Previous from it walks the same pages as Next from the first.
    const count = total.exact && total.total > 0 ? ((total.total - 1) % size) + 1 : size;
    const shown = rows.slice(0, count).reverse();
    const from = total.exact ? Math.max(1, total.total - shown.length + 1) : null;
    return page(shown, { from, hasPrevious: rows.length > count, hasNext: false });
  } else if (typeof options.page === 'number' && options.page > 1) {
    const offset = (Math.trunc(options.page) - 1) * size;
    // The last page (or beyond) is read from the end, not by counting up to it.
    const known = totals ?? { total: await countClients(db), exact: true };
    if (known.exact && offset >= (Math.ceil(known.total / size) - 1) * size) return lastPage();
    const rows = await read('after', undefined, size + 1, offset);
    if (rows.length === 0) return lastPage();
    return page(rows.slice(0, size), { from: offset + 1, hasPrevious: true, hasNext: rows.length > size });
  }
  const rows = await read('after', undefined, size + 1);
  return page(rows.slice(0, size), { from: 1, hasPrevious: false, hasNext: rows.length > size });
}

function pageOf(
  rows: KeyedClient[],
  search: Search,
  totals: Totals,
  place: { from: number | null; hasPrevious: boolean; hasNext: boolean },
  access: ClientGroupsOverview,
): ClientPage {
  const first = rows[0];
  const last = rows.at(-1);
  return {
    clients: rows.map(({ id, name, authType, username, updatedAt, lastSeenAt, certFingerprint, lastClientId }) => ({ id, name, authType, username, updatedAt, lastSeenAt, certFingerprint, lastClientId })),
    query: search.query,
    noAccess: search.noAccess !== undefined,
    total: totals.total,
    totalIsLowerBound: !totals.exact,
    from: place.from,
    previous: place.hasPrevious && first ? { id: first.id, key: first.sortKey } : null,
    next: place.hasNext && last ? { id: last.id, key: last.sortKey } : null,
    page: place.from === null ? null : Math.floor((place.from - 1) / CLIENTS_PAGE_SIZE) + 1,
    pageCount: totals.exact ? Math.max(1, Math.ceil(totals.total / CLIENTS_PAGE_SIZE)) : null,
    access,
  };
}

function readClients(db: Database, direction: Direction, cursor: ClientCursor | undefined, limit: number, offset: number): Promise<PageRow[]> {
  const page = db
    .select(keyedColumns)
    .from(clients)
    .where(cursor ? beyond(sortKey, clients.id, direction, cursor) : undefined)
    .orderBy(...inOrder(sortKey, clients.id, direction))
    .limit(limit)
    .offset(offset)
    .as('page');
  return withGroups(db, page, direction, true);
}

// First among the next SEARCH_WINDOW clients in order, which finds matches
// spread over the list at the cost of a short index walk; when those hold too
// few (the matches are rare here, or bunched elsewhere), from all matches
// through the search index. An OFFSET (old page links) reads in order.
async function readMatches(db: Database, query: Search, direction: Direction, cursor: ClientCursor | undefined, limit: number, offset: number): Promise<PageRow[]> {
  const nearby = db
    .select(keyedColumns)
    .from(clients)
    .where(cursor ? beyond(sortKey, clients.id, direction, cursor) : undefined)
    .orderBy(...inOrder(sortKey, clients.id, direction))
    .limit(offset ? 2_147_483_647 : SEARCH_WINDOW)
    .as('nearby');
  const nearMatches = db
    .select()
    .from(nearby)
    .where(matches(nearby, query))
    .orderBy(...inOrder(nearby.sortKey, nearby.id, direction))
    .limit(limit)
    .offset(offset)
    .as('near_matches');
  const near = await withGroups(db, nearMatches, direction);
  if (near.length === limit || offset) return near;
  // The LIMIT keeps the planner from merging this into the outer query and
  // walking the whole list in order for matches: it reads the matches through
  // the trigram index and sorts them.
  const all = db.select(keyedColumns).from(clients).where(matches(clients, query)).limit(2_147_483_647).as('all_matches');
  const firstMatches = db
    .select()
    .from(all)
    .where(cursor ? beyond(all.sortKey, all.id, direction, cursor) : undefined)
    .orderBy(...inOrder(all.sortKey, all.id, direction))
    .limit(limit)
    .as('first_matches');
  return withGroups(db, firstMatches, direction);
}

// `page` is already cut to the page, so the groups are read for its rows
// only, never for rows an OFFSET or a search passed over.
function withGroups(db: Database, page: SubqueryWithSelection<typeof keyedColumns, string>, direction: Direction, total = false): Promise<PageRow[]> {
  return db
    .select({
      ...page._.selectedFields,
      groupNames: groupNamesOf(page._.alias),
      anyClientIdRule: anyClientIdRule(),
      ...(total ? { total: sql<number>`(select t.total from ${clientTotals} as t where t.id = 1)` } : {}),
    })
    .from(page)
    .orderBy(...inOrder(page.sortKey, page.id, direction));
}

/** What a list is narrowed to: text in the name or username, clients without access, or both. */
interface Search {
  query: string;
  noAccess?: RuleModel;
}

// The text is matched with the expression the trigram index of migration
// 0005 is built on, so that the index can answer it.
function matches(source: { name: SQLWrapper; username: SQLWrapper } & SeenClientColumns, search: Search): SQL | undefined {
  return and(
    search.query ? sql`(${source.name} || E'\\n' || ${source.username}) ilike ${likePattern(search.query)}` : undefined,
    search.noAccess ? noGroupCondition(search.noAccess, source) : undefined,
  );
}

function beyond(key: SQLWrapper, id: SQLWrapper, direction: Direction, cursor: ClientCursor): SQL {
  return direction === 'after'
    ? sql`(${key}, ${id}) > (${cursor.key}::text, ${cursor.id}::integer)`
    : sql`(${key}, ${id}) < (${cursor.key}::text, ${cursor.id}::integer)`;
}

function comparedTo(cursor: ClientCursor) {
  const row = sql`(${sortKey}, ${clients.id})`;
  const at = sql`(${cursor.key}::text, ${cursor.id}::integer)`;
  return sql<number>`case when ${row} < ${at} then -1 when ${row} = ${at} then 0 else 1 end`.as('place');
}

function inOrder(key: SQLWrapper, id: SQLWrapper, direction: Direction): SQL[] {
  return direction === 'after' ? [asc(key), asc(id)] : [desc(key), desc(id)];
}

/** `%` and `_` typed by the user are matched literally. */
export function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** Names and usernames for pickers, by name (at most `limit`). */
export async function listClientChoices(db: Database, limit = 2000): Promise<Array<{ name: string; username: string }>> {
  return db
    .select({ name: clients.name, username: clients.username })
    .from(clients)
    .orderBy(asc(sql`lower(${clients.name})`), asc(clients.id))
    .limit(limit);
}
