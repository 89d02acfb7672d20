import { createRoute, z } from '@hono/zod-openapi';
import { ValidationError } from '../../domain/errors';
import { clientsCsv, exportBundle } from '../../domain/transfer/export';
import type { Database } from '../../db';
import type { AuditActor } from '../../domain/audit';
import { IMPORT_FORMATS, ImportFileError, parseImport, type ImportFormat, type ImportPlan } from '../../domain/transfer/parse';
import { runImport, type ImportReport } from '../../domain/transfer/plan';
import { requireScope } from './auth';
import { scope, type Api } from './common';
import { ApiProblem, problems } from './problems';

/** Body types the import reads besides JSON: never a form encoding (no CSRF surface). */
export const IMPORT_BODY_TYPES = ['text/csv', 'application/x-ndjson', 'application/octet-stream'];

const rowSchema = z.object({
  line: z.number().int(),
  kind: z.enum(['client', 'group', 'rule']),
  key: z.string(),
  action: z.enum(['create', 'update', 'unchanged', 'conflict', 'error', 'delete']),
  message: z.string().optional(),
});

export const importReportSchema = z
  .object({
    mode: z.enum(['create-only', 'upsert', 'sync']),
    dryRun: z.boolean(),
    applied: z.boolean(),
    counts: z.object({ create: z.number(), update: z.number(), unchanged: z.number(), conflict: z.number(), error: z.number(), delete: z.number() }),
    rows: z.array(rowSchema).openapi({ description: 'What each row does (the first 10,000; counts cover all).' }),
    notes: z.array(z.string()),
  })
  .openapi('ImportReport');

export const importQuerySchema = z.object({
  format: z.enum(IMPORT_FORMATS).openapi({
    description:
      'gatehouse (an export bundle), csv (clients), ndjson, mosquitto-passwd (a password file), mosquitto-dynsec (dynamic-security JSON), emqx (a built-in database user export, JSON or CSV).',
  }),
  mode: z.enum(['create-only', 'upsert', 'sync']).optional().openapi({ description: 'Default upsert. sync also deletes what the file does not name (needs confirm=true).' }),
  dryRun: z.enum(['true', 'false']).optional().openapi({ description: 'Default true: report what each row would do, write nothing.' }),
  confirm: z.enum(['true', 'false']).optional().openapi({ description: 'Confirms a sync.' }),
  allOrNothing: z.enum(['true', 'false']).optional().openapi({ description: 'Default true: a row in error or conflict and nothing is written. false: such rows are skipped.' }),
  emqxAlgorithm: z.enum(['sha256', 'sha512', 'pbkdf2', 'bcrypt']).optional().openapi({ description: 'EMQX: the authenticator’s password_hash_algorithm (default sha256).' }),
  emqxSaltPosition: z.enum(['prefix', 'suffix', 'disable']).optional().openapi({ description: 'EMQX sha256/sha512: salt_position (default prefix).' }),
  emqxMacFun: z.enum(['sha1', 'sha256', 'sha512']).optional().openapi({ description: 'EMQX pbkdf2: mac_fun (default sha256).' }),
  emqxIterations: z.string().regex(/^[1-9][0-9]{0,6}$/).optional().openapi({ description: 'EMQX pbkdf2: iterations (default 4096).' }),
});

export type ImportQuery = z.infer<typeof importQuerySchema>;

type ImportQueryOf = Partial<ImportQuery> & { format: ImportFormat };

/** Reads an import file as the format the query names; throws ValidationError for a file it cannot read. */
export function readImportFile(source: string, query: ImportQueryOf): ImportPlan {
  try {
    return parseImport(query.format, source, {
      algorithm: query.emqxAlgorithm ?? 'sha256',
      saltPosition: query.emqxSaltPosition,
      macFun: query.emqxMacFun,
      iterations: query.emqxIterations ? Number(query.emqxIterations) : undefined,
    });
  } catch (error) {
    if (error instanceof ImportFileError) throw new ValidationError({ file: error.message });
    throw error;
  }
}

/** Runs an import read by `readImportFile` as the query asks (a dry run unless dryRun=false). */
export function runImportFile(db: Database, plan: ImportPlan, query: ImportQueryOf, by: AuditActor | undefined): Promise<ImportReport> {
  return runImport(
    db,
    plan,
    { mode: query.mode ?? 'upsert', dryRun: query.dryRun !== 'false', confirmSync: query.confirm === 'true', allOrNothing: query.allOrNothing !== 'false' },
    by,
    query.format,
  );
}

/** Reads and runs an import as the console takes it (an administrator may change everything in it). */
export function importFile(db: Database, source: string, query: ImportQueryOf, by: AuditActor | undefined): Promise<ImportReport> {
  return runImportFile(db, readImportFile(source, query), query, by);
}

export function registerTransferRoutes(api: Api) {
  api.openapi(
    createRoute({
      method: 'get',
      path: '/export',
      tags: ['Import and export'],
      summary: 'Everything to rebuild these grants elsewhere: clients with their password hashes, groups, permissions, rules (never keys, administrators or tokens)',
      description: 'Pipelines are not exported: their secrets never leave in clear. Copy them with GET /pipelines and POST /pipelines, giving the secrets again.',
      security: scope('clients', 'write', 'groups:read'),
      responses: {
        200: { description: 'The versioned bundle (`format`: gatehouse-export, `version`: 1).', content: { 'application/json': { schema: z.record(z.string(), z.unknown()).openapi('ExportBundle') } } },
        ...problems(401, 403, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'clients', 'write');
      requireScope(c, 'groups', 'read');
      return c.json((await exportBundle(c.var.db)) as Record<string, unknown>, 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'get',
      path: '/export/clients.csv',
      tags: ['Import and export'],
      summary: 'The clients as CSV: name, username, authType, passwordHash, certFingerprint',
      security: scope('clients', 'write'),
      responses: { 200: { description: 'CSV.', content: { 'text/csv': { schema: z.string() } } }, ...problems(401, 403, 429) },
    }),
    async (c) => {
      requireScope(c, 'clients', 'write');
      c.header('Content-Type', 'text/csv; charset=utf-8');
      return c.body(clientsCsv(await exportBundle(c.var.db)), 200) as never;
    },
  );

  api.openapi(
    createRoute({
      method: 'post',
      path: '/import',
      tags: ['Import and export'],
      summary: 'Import clients, groups and rules: a dry run by default, then create-only, upsert or sync, all or nothing',
      description:
        'The file is the body: application/json (gatehouse, mosquitto-dynsec, emqx), text/csv (csv, emqx), application/x-ndjson (ndjson), application/octet-stream (mosquitto-passwd, or any). Plaintext passwords are hashed with Argon2id; pre-hashed ones are kept and replaced by Argon2id at each device’s first CONNECT. A file that holds groups or rules (a bundle with them, dynamic security, NDJSON `group`/`rule` lines) also needs the scope groups:write, for a dry run too.',
      security: scope('clients', 'write'),
      request: {
        query: importQuerySchema,
        body: {
          required: true,
          content: {
            // A plain schema, not zod: a zod one has the validator parse the body
            // before the import has measured it (src/domain/transfer/parse.ts).
            'application/json': { schema: { description: 'The file, read as `format` says.' } },
            'text/csv': { schema: z.string() },
            'application/x-ndjson': { schema: z.string() },
            'application/octet-stream': { schema: z.string() },
          },
        },
      },
      responses: {
        200: { description: 'The report: a dry run, or applied.', content: { 'application/json': { schema: importReportSchema } } },
        409: { description: 'Nothing was written: some rows are in error or conflict (all or nothing). The report says which.', content: { 'application/json': { schema: importReportSchema } } },
        ...problems(401, 403, 413, 415, 422, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'clients', 'write');
      const query = c.req.valid('query');
      const source = await c.req.text();
      if (!source.trim()) throw new ApiProblem(422, 'The file is empty.', { file: 'Send the file as the body.' });
      const plan = readImportFile(source, query);
      // Groups and rules belong to the groups scope. What the file was read as
      // decides, never its text: a sync that names groups deletes the others.
      if (plan.groups !== null || plan.rules !== null) requireScope(c, 'groups', 'write');
      const report = await runImportFile(c.var.db, plan, query, c.var.actor);
      if (!report.dryRun && !report.applied) return c.json(report, 409);
      return c.json(report, 200);
    },
  );
}
