import { Hono } from 'hono';
import {
  AUDIT_CSV_HEADER,
  auditEventCsvLine,
  csvLine,
  listAuditEvents,
  parseAuditCursor,
  parseAuditFilters,
  readAuditEventsForExport,
  type AuditFilters,
} from '../domain/audit';
import { ValidationError } from '../domain/errors';
import { AuditPage } from '../../views/audit';
import type { AppEnv } from './env';

/** `/audit` (the trail, filtered and paged) and `/audit.csv` (the same filters, exported). */
export function auditRoutes() {
  const audit = new Hono<AppEnv>();

  audit.get('/audit', async (c) => {
    const query = c.req.query();
    let filters: AuditFilters;
    try {
      filters = parseAuditFilters(query);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      const typed = { kind: query.kind ?? '', actor: query.actor ?? '', q: query.q ?? '', from: query.from ?? '', to: query.to ?? '' };
      return c.html(<AuditPage filters={typed} errors={error.fieldErrors} />, 422);
    }
    const result = await listAuditEvents(c.var.db, filters, {
      older: parseAuditCursor(query.older) ?? undefined,
      newer: parseAuditCursor(query.newer) ?? undefined,
    });
    return c.html(<AuditPage filters={filters.text} result={result} />);
  });

  audit.get('/audit.csv', async (c) => {
    let filters: AuditFilters;
    try {
      filters = parseAuditFilters(c.req.query());
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      return c.text(`The filters are not valid: ${Object.values(error.fieldErrors).join(' ')}`, 422);
    }
    const db = c.var.db;
    const encoder = new TextEncoder();
    const batches = readAuditEventsForExport(db, filters);
    // Streamed a batch at a time, newest first: memory stays flat however long the trail.
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode(csvLine(AUDIT_CSV_HEADER)));
      },
      async pull(controller) {
        try {
          const next = await batches.next();
          if (next.done) {
            if (next.value.truncated) controller.enqueue(encoder.encode(csvLine(['', 'export.truncated', '', 'more events match: narrow the filters', '', '', ''])));
            controller.close();
            return;
          }
          controller.enqueue(encoder.encode(next.value.map(auditEventCsvLine).join('')));
        } catch (error) {
          controller.error(error);
        }
      },
      async cancel() {
        await batches.return({ truncated: false });
      },
    });
    const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
    c.header('Content-Type', 'text/csv; charset=utf-8');
    c.header('Content-Disposition', `attachment; filename="gatehouse-audit-${stamp}.csv"`);
    return c.body(body);
  });

  return audit;
}
