import { parse as parseCsv } from 'csv-parse/sync';
import type { AuthType } from '../access/types';
import { emqxPasswordHash, passwordHashProblem, type EmqxHashOptions } from '../password';

/**
 * Files an import reads, each turned into the same plan: clients, groups
 * (with their permission rows) and group rules. Nothing here touches the
 * database: `plan.ts` compares a plan with what is stored and applies it.
 */

export interface PlannedClient {
  /** Where it came from: a line (CSV, NDJSON, password file) or an item number (JSON). */
  line: number;
  name: string;
  username: string;
  authType: AuthType;
  /** Plaintext, hashed with Argon2id when applied. */
  password?: string;
  /** A hash in a format password.ts verifies (ours or a foreign one). */
  passwordHash?: string;
  certFingerprint?: string | null;
}

export interface PlannedPermission {
  effect: string;
  action: string;
  topic: string;
}

export interface PlannedGroup {
  line: number;
  name: string;
  description: string;
  permissions: PlannedPermission[];
}

export interface PlannedRule {
  line: number;
  matchBy: string;
  /** By client: the client's username. */
  value: string;
  /** Group names. */
  groups: string[];
}

export interface ImportPlan {
  clients: PlannedClient[];
  /** Null: the file says nothing of groups (sync then leaves them alone). */
  groups: PlannedGroup[] | null;
  /** Null: the file says nothing of rules. */
  rules: PlannedRule[] | null;
  /** Rows that could not be read at all. */
  errors: Array<{ line: number; key: string; message: string }>;
  /** What the source had that Gatehouse has no place for, said once each. */
  notes: string[];
}

export const IMPORT_FORMATS = ['gatehouse', 'csv', 'ndjson', 'mosquitto-passwd', 'mosquitto-dynsec', 'emqx'] as const;
export type ImportFormat = (typeof IMPORT_FORMATS)[number];

/** The export bundle's format name and version: an import reads this version. */
export const BUNDLE_FORMAT = 'gatehouse-export';
export const BUNDLE_VERSION = 1;

const AUTH_TYPES = new Set(['password', 'certificate', 'certificate_password']);

function emptyPlan(): ImportPlan {
  return { clients: [], groups: null, rules: null, errors: [], notes: [] };
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : undefined;
}

/** A client object as the bundle, NDJSON and CSV write it. */
function clientFrom(plan: ImportPlan, line: number, raw: Record<string, unknown>): void {
  const username = text(raw.username)?.trim() ?? '';
  const authType = (text(raw.authType)?.trim() || 'password') as AuthType;
  const password = text(raw.password) || undefined;
  const passwordHash = text(raw.passwordHash)?.trim() || undefined;
  const fail = (message: string): void => void plan.errors.push({ line, key: username || `#${line}`, message });
  if (!username) return fail('No username.');
  if (!AUTH_TYPES.has(authType)) return fail(`Unknown authType “${authType.slice(0, 40)}”: password, certificate or certificate_password.`);
  if (password && passwordHash) return fail('Give password or passwordHash, not both.');
  const hashProblem = passwordHash ? passwordHashProblem(passwordHash) : null;
  if (hashProblem) return fail(`passwordHash: ${hashProblem}`);
  plan.clients.push({
    line,
    name: text(raw.name)?.trim() || username,
    username,
    authType,
    password,
    passwordHash,
    certFingerprint: text(raw.certFingerprint)?.trim() || null,
  });
}

function groupFrom(plan: ImportPlan, line: number, raw: Record<string, unknown>): void {
  const name = text(raw.name)?.trim() ?? '';
  if (!name) return void plan.errors.push({ line, key: `#${line}`, message: 'A group without a name.' });
  const permissions = Array.isArray(raw.permissions) ? raw.permissions : [];
  (plan.groups ??= []).push({
    line,
    name,
    description: text(raw.description) ?? '',
    permissions: permissions.map((p: Record<string, unknown>) => ({ effect: text(p?.effect) ?? '', action: text(p?.action) ?? '', topic: text(p?.topic) ?? '' })),
  });
}

function ruleFrom(plan: ImportPlan, line: number, raw: Record<string, unknown>): void {
  const groups = Array.isArray(raw.groups) ? raw.groups.map((g) => text(g) ?? '') : [];
  (plan.rules ??= []).push({ line, matchBy: text(raw.matchBy) ?? '', value: text(raw.value) ?? '', groups });
}

/**
 * What an import reads at most. The body is bounded (IMPORT_MAX_BYTES), but
 * what a few bytes turn into is not: 30 MB of `{}` lines made 10 million
 * error rows (1.5 GB, 50 s of one core with the event loop, and so every
 * device, waiting), and 60 MB of nested brackets kept JSON.parse busy for a
 * minute. So the rows are counted, and a JSON text is measured (depth,
 * values) before anything is parsed. A fleet larger than MAX_IMPORT_ROWS
 * comes in several files (upsert).
 */
export const MAX_IMPORT_ROWS = 250_000;
/** The deepest JSON an import reads: its formats need 5 levels. */
export const MAX_JSON_DEPTH = 16;
/** Values (objects, arrays, and items after commas) in one import's JSON: about 16 per row. */
export const MAX_JSON_VALUES = 4_000_000;

/**
 * Why `source` (JSON text) is beyond the import's bounds, or null. Counts
 * against `budget.values`, shared by the lines of an NDJSON file. Linear,
 * and strings are skipped with indexOf, not read character by character.
 */
function jsonShapeProblem(source: string, budget: { values: number }): string | null {
  const structure = /["[\]{},]/g;
  let depth = 0;
  for (let found = structure.exec(source); found !== null; found = structure.exec(source)) {
    const c = source.charCodeAt(found.index);
    if (c === 0x22) {
      // A string: to its closing quote (one not escaped by an odd run of backslashes).
      let end = found.index;
      for (;;) {
        end = source.indexOf('"', end + 1);
        if (end < 0) return null;
        let slashes = 0;
        while (source.charCodeAt(end - 1 - slashes) === 0x5c) slashes++;
        if (slashes % 2 === 0) break;
      }
      structure.lastIndex = end + 1;
      continue;
    }
    if (c === 0x7d || c === 0x5d) {
      depth--;
      continue;
    }
    if ((c === 0x7b || c === 0x5b) && ++depth > MAX_JSON_DEPTH) return `It is nested deeper than ${MAX_JSON_DEPTH} levels; no import format is.`;
    if (--budget.values < 0) return `It holds more than ${MAX_JSON_VALUES.toLocaleString('en')} values: import at most ${MAX_IMPORT_ROWS.toLocaleString('en')} rows at a time.`;
  }
  return null;
}

/** Refuses a file with more lines than an import reads, before it is split. */
function checkLineCount(source: string): void {
  let lines = 0;
  for (let at = source.indexOf('\n'); at !== -1; at = source.indexOf('\n', at + 1)) {
    // A header line and a last line without its newline are allowed for.
    if (++lines > MAX_IMPORT_ROWS + 1) throw new ImportFileError(`The file has more than ${MAX_IMPORT_ROWS.toLocaleString('en')} rows: import it in parts (upsert).`);
  }
}

/** Refuses a plan of more rows than an import reads. */
function checkRowCount(rows: number): void {
  if (rows > MAX_IMPORT_ROWS) throw new ImportFileError(`The file has more than ${MAX_IMPORT_ROWS.toLocaleString('en')} rows: import it in parts (upsert).`);
}

/**
 * Parses JSON after measuring it. A parse error names where, never what it
 * read there: V8's message quotes the text, which may be a password.
 */
function readJson(source: string): unknown {
  const problem = jsonShapeProblem(source, { values: MAX_JSON_VALUES });
  if (problem) throw new ImportFileError(`The file is not read: ${problem}`);
  try {
    return JSON.parse(source);
  } catch (error) {
    const message = (error as Error).message;
    const position = /at position (\d+)/.exec(message)?.[1];
    const token = /^Unexpected token '(.)'/u.exec(message)?.[1];
    const where =
      position !== undefined ? ` (the error is at character ${Number(position) + 1})` : token !== undefined ? ` (it has ${JSON.stringify(token)} where that cannot be)` : message.includes('end of JSON') ? ' (it ends too soon)' : '';
    throw new ImportFileError(`The file is not JSON${where}.`);
  }
}

/** A CSV error as the file's sender may be shown it: its kind and line, never the cell it quotes. */
function csvError(error: unknown): ImportFileError {
  const { code, lines } = error as { code?: string; lines?: number };
  return new ImportFileError(`The file is not CSV${code ? ` (${code.replace(/^CSV_/, '').toLowerCase().replace(/_/g, ' ')}${lines ? ` at line ${lines}` : ''})` : ''}.`);
}

/** A file that cannot be read as the format it was said to be. */
export class ImportFileError extends Error {}

/** Gatehouse's own export bundle (`{ format, version, clients, groups, rules }`). */
export function parseBundle(source: string): ImportPlan {
  const data = readJson(source) as Record<string, unknown>;
  if (!data || typeof data !== 'object' || data.format !== BUNDLE_FORMAT) throw new ImportFileError(`This is not a Gatehouse export (its "format" is not "${BUNDLE_FORMAT}").`);
  if (data.version !== BUNDLE_VERSION) throw new ImportFileError(`This export is version ${String(data.version)}; this Gatehouse reads version ${BUNDLE_VERSION}.`);
  const plan = emptyPlan();
  checkRowCount([data.clients, data.groups, data.rules].reduce<number>((sum, list) => sum + (Array.isArray(list) ? list.length : 0), 0));
  (Array.isArray(data.clients) ? data.clients : []).forEach((raw, i) => clientFrom(plan, i + 1, raw as Record<string, unknown>));
  if (Array.isArray(data.groups)) {
    plan.groups = [];
    data.groups.forEach((raw, i) => groupFrom(plan, i + 1, raw as Record<string, unknown>));
  }
  if (Array.isArray(data.rules)) {
    plan.rules = [];
    data.rules.forEach((raw, i) => ruleFrom(plan, i + 1, raw as Record<string, unknown>));
  }
  return plan;
}

/** Clients as CSV with a header: name, username, authType, password, passwordHash, certFingerprint (any order; username required). */
export function parseClientsCsv(source: string): ImportPlan {
  checkLineCount(source);
  let records: Array<Record<string, string>>;
  try {
    records = parseCsv(source, { columns: (header: string[]) => header.map((h) => h.trim()), skip_empty_lines: true, bom: true, relax_column_count: true });
  } catch (error) {
    throw csvError(error);
  }
  const plan = emptyPlan();
  // Our export guards the names and usernames a spreadsheet would run as
  // formulas with a leading ' (and a leading ' with another: clientsCsv):
  // undone here, in those columns only. A password is taken as it is written.
  const unguard = (value: string) => (/^'[=+\-@\t\r']/.test(value) ? value.slice(1) : value);
  records.forEach((record, i) => {
    const { name, username } = record;
    clientFrom(plan, i + 2, { ...record, ...(typeof name === 'string' ? { name: unguard(name) } : {}), ...(typeof username === 'string' ? { username: unguard(username) } : {}) });
  });
  return plan;
}

/** One JSON object per line: a client (as in the bundle), or `{"group": {…}}` / `{"rule": {…}}`. */
export function parseNdjson(source: string): ImportPlan {
  checkLineCount(source);
  const plan = emptyPlan();
  const budget = { values: MAX_JSON_VALUES };
  source.split(/\r?\n/).forEach((lineText, i) => {
    if (!lineText.trim()) return;
    const problem = jsonShapeProblem(lineText, budget);
    if (budget.values < 0) throw new ImportFileError(`The file is not read: ${problem}`);
    let raw: Record<string, unknown>;
    try {
      if (problem) throw new Error(problem);
      raw = JSON.parse(lineText);
    } catch {
      plan.errors.push({ line: i + 1, key: `#${i + 1}`, message: problem ?? 'Not a JSON object.' });
      return;
    }
    if (raw && typeof raw.group === 'object') groupFrom(plan, i + 1, raw.group as Record<string, unknown>);
    else if (raw && typeof raw.rule === 'object') ruleFrom(plan, i + 1, raw.rule as Record<string, unknown>);
    else clientFrom(plan, i + 1, raw ?? {});
  });
  return plan;
}

/** A Mosquitto password file (`username:$7$…`, `$6$…`, or a plain password not yet hashed by `mosquitto_passwd -U`). */
export function parseMosquittoPasswordFile(source: string): ImportPlan {
  checkLineCount(source);
  const plan = emptyPlan();
  source.split(/\r?\n/).forEach((lineText, i) => {
    const line = lineText.trim();
    if (!line || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon <= 0) return void plan.errors.push({ line: i + 1, key: `#${i + 1}`, message: 'Not “username:password”.' });
    const username = line.slice(0, colon);
    const secret = line.slice(colon + 1);
    if (/^\$[67]\$/.test(secret)) {
      const problem = passwordHashProblem(secret);
      if (problem) return void plan.errors.push({ line: i + 1, key: username, message: problem });
      plan.clients.push({ line: i + 1, name: username, username, authType: 'password', passwordHash: secret });
    } else {
      plan.clients.push({ line: i + 1, name: username, username, authType: 'password', password: secret });
    }
  });
  return plan;
}

const DYNSEC_ACTIONS: Record<string, 'publish' | 'subscribe'> = { publishClientSend: 'publish', subscribeLiteral: 'subscribe', subscribePattern: 'subscribe' };

/**
 * Mosquitto's dynamic-security JSON (`dynamic-security.json`): roles become
 * groups (their ACLs permission rows, highest priority first), clients keep
 * their PBKDF2 hashes, and each client's roles (its own and its groups')
 * become a rule by client.
 */
export function parseMosquittoDynsec(source: string): ImportPlan {
  const data = readJson(source) as { clients?: unknown[]; groups?: unknown[]; roles?: unknown[] };
  if (!data || typeof data !== 'object' || !Array.isArray(data.clients)) throw new ImportFileError('This is not a Mosquitto dynamic-security file (no "clients" list).');
  checkRowCount(data.clients.length + (Array.isArray(data.roles) ? data.roles.length : 0));
  const plan = emptyPlan();
  plan.groups = [];
  plan.rules = [];
  const skipped = new Set<string>();
  (data.roles ?? []).forEach((raw, i) => {
    const role = raw as { rolename?: string; textdescription?: string; acls?: Array<{ acltype?: string; topic?: string; allow?: boolean; priority?: number }> };
    const acls = [...(role.acls ?? [])].sort((a, b) => (b.priority ?? 0) - (a.priority ?? 0));
    const permissions: PlannedPermission[] = [];
    for (const acl of acls) {
      const action = DYNSEC_ACTIONS[acl.acltype ?? ''];
      if (action) permissions.push({ effect: acl.allow ? 'allow' : 'deny', action, topic: acl.topic ?? '' });
      else if (acl.acltype === 'publishClientReceive' && acl.allow === false) permissions.push({ effect: 'deny', action: 'subscribe', topic: acl.topic ?? '' });
      else skipped.add(acl.acltype ?? '?');
    }
    groupFrom(plan, i + 1, { name: role.rolename, description: role.textdescription ?? '', permissions });
  });
  const groupRoles = new Map<string, string[]>();
  for (const raw of data.groups ?? []) {
    const group = raw as { groupname?: string; roles?: Array<{ rolename?: string }> };
    if (group.groupname) groupRoles.set(group.groupname, (group.roles ?? []).flatMap((r) => (r.rolename ? [r.rolename] : [])));
  }
  data.clients.forEach((raw, i) => {
    const client = raw as {
      username?: string;
      textname?: string;
      password?: string;
      salt?: string;
      iterations?: number;
      clientid?: string;
      roles?: Array<{ rolename?: string }>;
      groups?: Array<{ groupname?: string }>;
    };
    const username = client.username ?? '';
    const line = i + 1;
    if (!username) return void plan.errors.push({ line, key: `#${line}`, message: 'A client without a username.' });
    const hash = client.password && client.salt ? `$7$${client.iterations ?? 101}$${client.salt}$${client.password}` : undefined;
    const problem = hash ? passwordHashProblem(hash) : null;
    if (problem) return void plan.errors.push({ line, key: username, message: problem });
    if (!hash) return void plan.errors.push({ line, key: username, message: 'No password: a dynamic-security client without one cannot connect with a password.' });
    if (client.clientid) skipped.add('client ids bound to a client (give a rule by MQTT client ID instead)');
    plan.clients.push({ line, name: client.textname || username, username, authType: 'password', passwordHash: hash });
    const roles = new Set<string>((client.roles ?? []).flatMap((r) => (r.rolename ? [r.rolename] : [])));
    for (const g of client.groups ?? []) for (const role of groupRoles.get(g.groupname ?? '') ?? []) roles.add(role);
    if (roles.size > 0) plan.rules!.push({ line, matchBy: 'client', value: username, groups: [...roles] });
  });
  for (const what of skipped) plan.notes.push(`Not imported: ${what} (no equivalent in Gatehouse).`);
  return plan;
}

/**
 * An EMQX built-in database user export (JSON array or CSV with
 * `user_id,password_hash,salt,is_superuser`). EMQX keeps the hash algorithm
 * in its authenticator's configuration, so it is given with the import.
 */
export function parseEmqxUsers(source: string, options: EmqxHashOptions): ImportPlan {
  const trimmed = source.trimStart();
  let records: Array<Record<string, unknown>>;
  if (trimmed.startsWith('[')) {
    const data = readJson(source);
    if (!Array.isArray(data)) throw new ImportFileError('An EMQX JSON export is an array of users.');
    checkRowCount(data.length);
    records = data as Array<Record<string, unknown>>;
  } else {
    checkLineCount(source);
    try {
      records = parseCsv(source, { columns: (header: string[]) => header.map((h) => h.trim()), skip_empty_lines: true, bom: true });
    } catch (error) {
      throw csvError(error);
    }
  }
  const plan = emptyPlan();
  let superusers = 0;
  records.forEach((record, i) => {
    const line = trimmed.startsWith('[') ? i + 1 : i + 2;
    const username = text(record.user_id)?.trim() ?? '';
    if (!username) return void plan.errors.push({ line, key: `#${line}`, message: 'No user_id.' });
    const stored = emqxPasswordHash(text(record.password_hash) ?? '', text(record.salt) ?? '', options);
    if (!stored) return void plan.errors.push({ line, key: username, message: `password_hash does not fit the algorithm given (${options.algorithm}).` });
    const problem = passwordHashProblem(stored);
    if (problem) return void plan.errors.push({ line, key: username, message: problem });
    if (record.is_superuser === true || record.is_superuser === 'true') superusers++;
    plan.clients.push({ line, name: username, username, authType: 'password', passwordHash: stored });
  });
  if (superusers > 0) plan.notes.push(`${superusers} users were superusers in EMQX: Gatehouse has none; give them a group with the permissions they need.`);
  return plan;
}

export function parseImport(format: ImportFormat, source: string, emqx?: EmqxHashOptions): ImportPlan {
  switch (format) {
    case 'gatehouse':
      return parseBundle(source);
    case 'csv':
      return parseClientsCsv(source);
    case 'ndjson':
      return parseNdjson(source);
    case 'mosquitto-passwd':
      return parseMosquittoPasswordFile(source);
    case 'mosquitto-dynsec':
      return parseMosquittoDynsec(source);
    case 'emqx':
      return parseEmqxUsers(source, emqx ?? { algorithm: 'sha256', saltPosition: 'prefix' });
  }
}
