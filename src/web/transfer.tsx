import { Hono } from 'hono';
import { ValidationError } from '../domain/errors';
import { clientsCsv, exportBundle } from '../domain/transfer/export';
import { IMPORT_FORMATS, type ImportFormat } from '../domain/transfer/parse';
import { BLANK_IMPORT, TransferPage, type ImportFormValues } from '../../views/transfer';
import { importFile } from './api/transfer';
import type { AppEnv } from './env';

function stamp(): string {
  return new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
}

function pick<T extends string>(value: unknown, allowed: readonly T[], fallback: T): T {
  return typeof value === 'string' && (allowed as readonly string[]).includes(value) ? (value as T) : fallback;
}

/** `/transfer`: export the bundle or the clients, and import a file (a dry run first). */
export function transferRoutes() {
  const routes = new Hono<AppEnv>();

  routes.get('/', (c) => c.html(<TransferPage values={BLANK_IMPORT} />));

  routes.get('/export.json', async (c) => {
    c.header('Content-Disposition', `attachment; filename="gatehouse-export-${stamp()}.json"`);
    return c.json(await exportBundle(c.var.db));
  });

  routes.get('/clients.csv', async (c) => {
    c.header('Content-Type', 'text/csv; charset=utf-8');
    c.header('Content-Disposition', `attachment; filename="gatehouse-clients-${stamp()}.csv"`);
    return c.body(clientsCsv(await exportBundle(c.var.db)));
  });

  // A plain multipart form (public/import.js only adds upload progress): the
  // answer is the page with the report, a dry run unless "Import" was pressed.
  routes.post('/import', async (c) => {
    const form = await c.req.formData().catch(() => null);
    const field = (name: string) => {
      const value = form?.get(name);
      return typeof value === 'string' ? value : '';
    };
    const values: ImportFormValues = {
      format: pick(field('format'), IMPORT_FORMATS, 'gatehouse'),
      mode: pick(field('mode'), ['upsert', 'create-only', 'sync'] as const, 'upsert'),
      emqxAlgorithm: pick(field('emqxAlgorithm'), ['sha256', 'sha512', 'pbkdf2', 'bcrypt'] as const, 'sha256'),
      emqxSaltPosition: pick(field('emqxSaltPosition'), ['prefix', 'suffix', 'disable'] as const, 'prefix'),
      emqxMacFun: pick(field('emqxMacFun'), ['sha1', 'sha256', 'sha512'] as const, 'sha256'),
      emqxIterations: /^[1-9][0-9]{0,6}$/.test(field('emqxIterations')) ? field('emqxIterations') : '4096',
    };
    const file = form?.get('file');
    if (!file || typeof file === 'string' || file.size === 0) return c.html(<TransferPage values={values} errors={{ file: 'Choose a file to import.' }} />, 422);
    try {
      const report = await importFile(
        c.var.db,
        await file.text(),
        {
          format: values.format as ImportFormat,
          mode: values.mode as 'upsert',
          dryRun: field('run') === 'apply' ? 'false' : 'true',
          confirm: field('confirm') === 'true' ? 'true' : 'false',
          emqxAlgorithm: values.emqxAlgorithm as 'sha256',
          emqxSaltPosition: values.emqxSaltPosition as 'prefix',
          emqxMacFun: values.emqxMacFun as 'sha256',
          emqxIterations: values.emqxIterations,
        },
        c.var.actor,
      );
      return c.html(<TransferPage values={values} report={report} />, !report.dryRun && !report.applied ? 409 : 200);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      return c.html(<TransferPage values={values} errors={error.fieldErrors} />, 422);
    }
  });

  return routes;
}
