import { type Context, Hono } from 'hono';
import {
  AUDIT_CSV_HEADER,
  auditEventCsvLine,
  clientUsernameOf,
  csvLine,
  isAuditView,
  listAuditEvents,
  listAuditGroups,
  parseAuditCursor,
  parseAuditFilters,
  readAuditEventsForExport,
  type AuditEvent,
  type AuditFilters,
  type AuditView,
} from '../domain/audit';
import { getClientIdsByUsername } from '../domain/clients';
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
      // The console opens on the administrators' changes; refusals have a view of their own.
      filters = parseAuditFilters(query, 'changes');
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      const view = isAuditView(query.view ?? '') ? (query.view as AuditView) : 'changes';
      const typed = { kind: query.kind ?? '', actor: query.actor ?? '', q: query.q ?? '', from: query.from ?? '', to: query.to ?? '', view };
      return c.html(<AuditPage filters={typed} errors={error.fieldErrors} />, 422);
    }
    const typed = { ...filters.text, view: filters.view ?? 'changes' };
    const older = parseAuditCursor(query.older) ?? undefined;
    if (filters.view === 'refusals') {
      // Identical refusals folded into one row with their count.
      const grouped = await listAuditGroups(c.var.db, filters, { older });
      const links = await clientLinks(c, grouped.groups.map((group) => group.latest));
      return c.html(<AuditPage filters={typed} grouped={grouped} clients={links} paged={older !== undefined} />);
    }
    const result = await listAuditEvents(c.var.db, filters, { older, newer: parseAuditCursor(query.newer) ?? undefined });
    return c.html(<AuditPage filters={typed} result={result} clients={await clientLinks(c, result.events)} />);
  });

  audit.get('/audit.csv', async (c) => {
    let filters: AuditFilters;
    try {
      filters = parseAuditFilters(c.req.query(), 'changes');
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

/** Client ids by username, for the events shown: their usernames link to the client's page. */
async function clientLinks(c: Context<AppEnv>, events: AuditEvent[]): Promise<ReadonlyMap<string, number>> {
  return getClientIdsByUsername(c.var.db, events.map(clientUsernameOf).filter((u): u is string => u !== null));
}
