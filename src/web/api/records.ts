import { createRoute, z } from '@hono/zod-openapi';
import {
  AUDIT_CSV_HEADER,
  auditEventCsvLine,
  csvLine,
  formatAuditCursor,
  listAuditEvents,
  parseAuditCursor,
  parseAuditFilters,
  readAuditEventsForExport,
  TOKEN_VISIBLE_KINDS,
  tokenSees,
  type AuditEvent,
} from '../../domain/audit';
import type { ApiToken } from '../../domain/apiTokens';
import { checkTlsMaterial, type CertificateSummary } from '../../domain/certificates';
import { getTlsSettings } from '../../domain/tlsSettings';
import { applyCertificateAction, CERTIFICATE_ACTIONS, uploadCertificates, type CertificateAction } from '../certificateActions';
import { requireScope } from './auth';
import { dateTime, scope, type Api } from './common';
import { ApiProblem, problems } from './problems';
import type { TlsControl } from '../env';

const summarySchema = z
  .object({
    subject: z.string(),
    issuer: z.string(),
    subjectAltNames: z.string(),
    fingerprint256: z.string(),
    validFrom: dateTime,
    validTo: dateTime,
    isCa: z.boolean(),
  })
  .openapi('CertificateSummary');

const certificatesSchema = z
  .object({
    source: z.enum(['files', 'console']).nullable().openapi({ description: 'Where the TLS listeners’ material comes from now; null: TLS is off.' }),
    enabled: z.boolean().openapi({ description: 'Certificates enabled on the Certificates page.' }),
    requireClientCert: z.boolean(),
    filesInUse: z.boolean().openapi({ description: 'TLS_CERT_FILE is set: the files win over uploads.' }),
    hasKey: z.boolean().openapi({ description: 'A private key is stored (it is never shown).' }),
    mqttsPort: z.number().int().nullable(),
    httpsPort: z.number().int().nullable(),
    ca: summarySchema.nullable(),
    cert: summarySchema.nullable(),
    warnings: z.array(z.string()),
    updatedAt: dateTime.nullable(),
  })
  .openapi('Certificates');

const auditEventSchema = z
  .object({
    id: z.number().int(),
    at: dateTime,
    kind: z.string(),
    actor: z.string().nullable(),
    subject: z.string().nullable(),
    address: z.string().nullable(),
    count: z.number().int(),
    details: z.record(z.string(), z.unknown()),
  })
  .openapi('AuditEvent');

function toApiEvent(event: AuditEvent) {
  return {
    id: event.id,
    at: event.at.toISOString(),
    kind: event.kind,
    actor: event.actor,
    subject: event.subject,
    address: event.address,
    count: event.count,
    details: event.details,
  };
}

const auditQuery = z.object({
  kind: z.enum(TOKEN_VISIBLE_KINDS as [string, ...string[]]).optional(),
  actor: z
    .string()
    .max(200)
    .optional()
    .openapi({ description: 'Exactly this actor as shown: a device’s username, this token’s own name, `administrator` or `API token`.' }),
  q: z.string().max(200).optional().openapi({ description: 'Text found in the subject, address or details.' }),
  from: z.string().max(40).optional().openapi({ description: 'UTC, e.g. 2026-05-01T12:30.' }),
  to: z.string().max(40).optional().openapi({ description: 'UTC; a time to the minute includes that minute.' }),
});

function summaryOf(summary: CertificateSummary | undefined) {
  return summary ? { ...summary, validFrom: summary.validFrom.toISOString(), validTo: summary.validTo.toISOString() } : null;
}

/** The filters of a query, read as `token` may read the trail (tokenSees). */
function auditFilters(query: z.infer<typeof auditQuery>, token: ApiToken) {
  return { ...parseAuditFilters({ kind: query.kind, actor: query.actor, q: query.q, from: query.from, to: query.to }), seenByToken: token.name };
}

/** Events as the token sees them. */
function seenBy(token: ApiToken, events: AuditEvent[]): AuditEvent[] {
  return events.flatMap((event) => tokenSees(event, token.name) ?? []);
}

export function registerRecordRoutes(api: Api, deps: { tls?: TlsControl }) {
  const tls = deps.tls;

  async function certificatesNow(db: import('../../db').Database) {
    const settings = await getTlsSettings(db);
    const check = settings.caPem || settings.certPem ? checkTlsMaterial({ caPem: settings.caPem ?? undefined, certPem: settings.certPem ?? undefined }) : undefined;
    const status = tls?.status();
    return {
      source: status?.source ?? null,
      enabled: settings.enabled,
      requireClientCert: settings.requireClientCert,
      filesInUse: tls?.filesInUse ?? false,
      hasKey: settings.hasKey,
      mqttsPort: status?.mqttsPort ?? null,
      httpsPort: status?.httpsPort ?? null,
      ca: summaryOf(check?.ca),
      cert: summaryOf(check?.cert),
      warnings: check?.warnings ?? [],
      updatedAt: settings.updatedAt?.toISOString() ?? null,
    };
  }
  const certificatesResponse = { 200: { description: 'The TLS settings now (never the private key).', content: { 'application/json': { schema: certificatesSchema } } } };

  api.openapi(
    createRoute({
      method: 'get',
      path: '/certificates',
      tags: ['Certificates'],
      summary: 'TLS status: where the certificates come from, what they are, whether client certificates are required',
      security: scope('certificates', 'read'),
      responses: { ...certificatesResponse, ...problems(401, 403, 429) },
    }),
    async (c) => {
      requireScope(c, 'certificates', 'read');
      return c.json(await certificatesNow(c.var.db), 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'put',
      path: '/certificates',
      tags: ['Certificates'],
      summary: 'Upload a CA certificate, a server certificate and its private key (PEM); parts left out are kept',
      description: 'The key is stored encrypted under SECRET_KEY and never shown again. New connections get the new certificate; established ones keep theirs.',
      security: scope('certificates', 'write'),
      request: {
        body: {
          required: true,
          content: {
            'application/json': {
              schema: z
                .object({ ca: z.string().max(64 * 1024).optional(), cert: z.string().max(64 * 1024).optional(), key: z.string().max(64 * 1024).optional() })
                .openapi('CertificateUpload'),
            },
          },
        },
      },
      responses: { ...certificatesResponse, ...problems(401, 403, 415, 422, 429) },
    }),
    async (c) => {
      requireScope(c, 'certificates', 'write');
      const upload = c.req.valid('json');
      await uploadCertificates(c.var.db, tls, upload);
      c.var.audit.record({
        kind: 'certificates.changed',
        actor: c.var.actor?.username,
        subject: 'certificates',
        address: c.var.actor?.address,
        details: { change: 'uploaded', via: 'API token', ...(upload.key?.trim() ? { note: 'private key replaced' } : {}) },
      });
      return c.json(await certificatesNow(c.var.db), 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'post',
      path: '/certificates/{action}',
      tags: ['Certificates'],
      summary: 'Enable or disable the console’s certificates, require client certificates (mTLS) or not',
      security: scope('certificates', 'write'),
      request: {
        params: z.object({
          action: z.enum(['enable', 'disable', 'require-client-cert', 'allow-without-client-cert']).openapi({ param: { name: 'action', in: 'path' } }),
        }),
      },
      responses: { ...certificatesResponse, ...problems(401, 403, 422, 429) },
    }),
    async (c) => {
      requireScope(c, 'certificates', 'write');
      const action = c.req.valid('param').action as CertificateAction;
      if (!CERTIFICATE_ACTIONS.has(action)) throw new ApiProblem(404, 'No such action.');
      await applyCertificateAction(c.var.db, tls, action);
      c.var.audit.record({ kind: 'certificates.changed', actor: c.var.actor?.username, subject: 'certificates', address: c.var.actor?.address, details: { change: action, via: 'API token' } });
      return c.json(await certificatesNow(c.var.db), 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'get',
      path: '/audit',
      tags: ['Audit'],
      summary: 'The audit trail, newest first, 50 a page by key',
      description:
        'Sign-ins, administrators, tokens and pipelines are never shown to tokens. A change made by an administrator names its actor `administrator`, one made by another token `API token`, neither with its address; this token’s own changes keep its name and address; devices’ events are shown as they are.',
      security: scope('audit', 'read'),
      request: {
        query: auditQuery.extend({
          older: z.string().max(60).optional().openapi({ description: 'The `older` cursor of the page before.' }),
          newer: z.string().max(60).optional().openapi({ description: 'The `newer` cursor of the page after.' }),
        }),
      },
      responses: {
        200: {
          description: 'A page of events.',
          content: {
            'application/json': {
              schema: z.object({ items: z.array(auditEventSchema), older: z.string().nullable(), newer: z.string().nullable() }).openapi('AuditPage'),
            },
          },
        },
        ...problems(401, 403, 422, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'audit', 'read');
      const query = c.req.valid('query');
      const filters = auditFilters(query, c.var.token);
      const older = query.older === undefined ? undefined : parseAuditCursor(query.older);
      const newer = query.newer === undefined ? undefined : parseAuditCursor(query.newer);
      if (older === null || newer === null) throw new ApiProblem(422, 'This cursor is not one the API gave.', { [older === null ? 'older' : 'newer']: 'Pass a page’s cursor as it came.' });
      const page = await listAuditEvents(c.var.db, filters, { older, newer });
      return c.json(
        {
          items: seenBy(c.var.token, page.events).map(toApiEvent),
          older: page.older ? formatAuditCursor(page.older) : null,
          newer: page.newer ? formatAuditCursor(page.newer) : null,
        },
        200,
      );
    },
  );

  api.openapi(
    createRoute({
      method: 'get',
      path: '/audit.csv',
      tags: ['Audit'],
      summary: 'The audit trail as CSV (RFC 4180; at most 100,000 rows, newest first)',
      security: scope('audit', 'read'),
      request: { query: auditQuery },
      responses: { 200: { description: 'CSV, streamed.', content: { 'text/csv': { schema: z.string() } } }, ...problems(401, 403, 422, 429) },
    }),
    async (c) => {
      requireScope(c, 'audit', 'read');
      const filters = auditFilters(c.req.valid('query'), c.var.token);
      const token = c.var.token;
      const batches = readAuditEventsForExport(c.var.db, filters);
      const encoder = new TextEncoder();
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
            controller.enqueue(encoder.encode(seenBy(token, next.value).map(auditEventCsvLine).join('')));
          } catch (error) {
            controller.error(error);
          }
        },
        async cancel() {
          await batches.return({ truncated: false });
        },
      });
      c.header('Content-Type', 'text/csv; charset=utf-8');
      return c.body(body, 200) as never;
    },
  );
}
