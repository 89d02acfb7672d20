import { AUDIT_CSV_MAX_ROWS, AUDIT_KINDS, formatAuditCursor, isAuditKind, type AuditCursor, type AuditEvent, type AuditPage as AuditResult } from '../src/domain/audit';
import type { FieldErrors } from '../src/domain/errors';
import { Field, FormAlert, Layout, PageTitle, TableRegion, Truncated } from './layout';

/** The filters as typed (kept in the form and in every link). */
export interface AuditFilterValues {
  kind: string;
  actor: string;
  q: string;
  from: string;
  to: string;
}

function filterParams(filters: AuditFilterValues): URLSearchParams {
  const params = new URLSearchParams();
  for (const key of ['kind', 'actor', 'q', 'from', 'to'] as const) if (filters[key]) params.set(key, filters[key]);
  return params;
}

function auditHref(path: string, filters: AuditFilterValues, place: { older?: AuditCursor; newer?: AuditCursor } = {}): string {
  const params = filterParams(filters);
  if (place.older) params.set('older', formatAuditCursor(place.older));
  if (place.newer) params.set('newer', formatAuditCursor(place.newer));
  const search = params.toString();
  return search ? `${path}?${search}` : path;
}

/** `/audit`: the filters, the events (newest first) and their paging. */
export function AuditPage(props: { filters: AuditFilterValues; result?: AuditResult; errors?: FieldErrors }) {
  const { filters } = props;
  const errors = props.errors ?? {};
  return (
    <Layout title="Audit trail" section="audit">
      <PageTitle title="Audit trail">
        Who changed what in the console, who signed in, and what the broker refused. Times are UTC.
      </PageTitle>
      <form
        method="get"
        action="/audit"
        role="search"
        aria-label="Filter the audit trail"
        class="audit-filters"
        hx-get="/audit"
        hx-target="#audit-results"
        hx-select="#audit-results"
        hx-swap="outerHTML"
        hx-push-url="true"
        novalidate
      >
        <div class="grid">
          <label for="audit-kind">
            Kind
            <select id="audit-kind" name="kind" aria-invalid={errors.kind ? 'true' : undefined} aria-describedby={errors.kind ? 'audit-kind-error' : undefined}>
              <option value="" selected={!filters.kind}>
                All kinds
              </option>
              {Object.entries(AUDIT_KINDS).map(([kind, label]) => (
                <option value={kind} selected={filters.kind === kind}>
                  {label}
                </option>
              ))}
            </select>
            {errors.kind ? (
              <small id="audit-kind-error" class="field-error">
                {errors.kind}
              </small>
            ) : null}
          </label>
          <Field label="Actor" name="actor" id="audit-actor" value={filters.actor} error={errors.actor} hint="Exactly: an administrator or a username tried." maxlength={200} autocomplete="off" />
          <Field label="Text" name="q" id="audit-q" value={filters.q} error={errors.q} hint="Found in the subject, the address or the details." maxlength={200} autocomplete="off" />
        </div>
        <div class="grid">
          <Field label="From (UTC)" name="from" id="audit-from" type="datetime-local" value={filters.from} error={errors.from} />
          <Field label="To (UTC)" name="to" id="audit-to" type="datetime-local" value={filters.to} error={errors.to} hint="That minute included." />
        </div>
        <div class="form-actions">
          <button type="submit">Filter</button>
          <a href="/audit" role="button" class="secondary outline">
            Clear filters
          </a>
        </div>
      </form>
      <AuditResults filters={filters} result={props.result} errors={props.errors} />
    </Layout>
  );
}

/** The part the filter form replaces. */
export function AuditResults(props: { filters: AuditFilterValues; result?: AuditResult; errors?: FieldErrors }) {
  const { result, filters } = props;
  const messages = Object.values(props.errors ?? {});
  return (
    <section id="audit-results" aria-label="Audit events">
      {messages.length ? <FormAlert message={`Nothing was searched: ${messages.join(' ')}`} /> : null}
      {result ? (
        <p class="audit-export">
          <a href={auditHref('/audit.csv', filters)} download>
            Download CSV
          </a>{' '}
          <span class="help">of every event these filters match, newest first (at most {AUDIT_CSV_MAX_ROWS.toLocaleString('en-US')}).</span>
        </p>
      ) : null}
      {!result ? null : result.events.length === 0 ? (
        <p class="empty-state">{filterParams(filters).size ? 'No event matches these filters.' : 'Nothing has been recorded yet.'}</p>
      ) : (
        <>
          <TableRegion label="Audit events table">
            <table class="striped audit-table">
              <thead>
                <tr>
                  <th scope="col">Time (UTC)</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Actor</th>
                  <th scope="col">Subject</th>
                  <th scope="col">Address</th>
                  <th scope="col">Count</th>
                  <th scope="col">Details</th>
                </tr>
              </thead>
              <tbody>
                {result.events.map((event) => (
                  <AuditRow event={event} />
                ))}
              </tbody>
            </table>
          </TableRegion>
          <AuditPageLinks filters={filters} result={result} />
        </>
      )}
    </section>
  );
}

function AuditRow(props: { event: AuditEvent }) {
  const { event } = props;
  const iso = event.at.toISOString();
  const perMinute = event.kind === 'mqtt.auth_failed';
  return (
    <tr>
      <td>
        <time datetime={iso}>{perMinute ? `${iso.slice(0, 10)} ${iso.slice(11, 16)} (that minute)` : `${iso.slice(0, 10)} ${iso.slice(11, 19)}`}</time>
      </td>
      <td>{isAuditKind(event.kind) ? AUDIT_KINDS[event.kind] : event.kind}</td>
      <td>{event.actor === null ? <span class="help">{typeof event.details.via === 'string' ? event.details.via : '—'}</span> : event.actor === '' ? <span class="help">(no username)</span> : <Truncated text={event.actor} code />}</td>
      <td>{event.subject ? <Truncated text={event.subject} /> : ''}</td>
      <td class="nowrap">{event.address ?? ''}</td>
      <td>{event.count}</td>
      <td>
        <DetailsCell details={event.details} />
      </td>
    </tr>
  );
}

const show = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

/** The changes of a before/after pair, field by field; other details as "key: value". */
export function describeDetails(details: Record<string, unknown>): string[] {
  const lines: string[] = [];
  const before = details.before;
  const after = details.after;
  const isRecord = (v: unknown): v is Record<string, unknown> => Boolean(v) && typeof v === 'object' && !Array.isArray(v);
  if (Array.isArray(before) || Array.isArray(after)) {
    const b = Array.isArray(before) ? before.length : 0;
    const a = Array.isArray(after) ? after.length : 0;
    const same = JSON.stringify(before) === JSON.stringify(after);
    lines.push(same ? `unchanged (${a} ${a === 1 ? 'entry' : 'entries'})` : `${b} → ${a} ${a === 1 ? 'entry' : 'entries'}`);
  } else if (isRecord(before) && isRecord(after)) {
    for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
      if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) lines.push(`${key}: ${show(before[key])} → ${show(after[key])}`);
    }
  } else if (isRecord(after)) {
    for (const [key, value] of Object.entries(after)) lines.push(`${key}: ${show(value)}`);
  } else if (isRecord(before)) {
    for (const [key, value] of Object.entries(before)) lines.push(`${key} was ${show(value)}`);
  }
  for (const [key, value] of Object.entries(details)) {
    if (key === 'before' || key === 'after') continue;
    lines.push(`${key}: ${Array.isArray(value) ? value.map(show).join('; ') : show(value)}`);
  }
  return lines;
}

function DetailsCell(props: { details: Record<string, unknown> }) {
  const lines = describeDetails(props.details);
  const hasSnapshots = 'before' in props.details || 'after' in props.details;
  return (
    <>
      {lines.length ? (
        <ul class="audit-details">
          {lines.map((line) => (
            <li>{line}</li>
          ))}
        </ul>
      ) : null}
      {hasSnapshots ? (
        <details class="audit-json">
          <summary>Before and after</summary>
          <pre>{JSON.stringify({ before: props.details.before ?? null, after: props.details.after ?? null }, null, 2)}</pre>
        </details>
      ) : null}
    </>
  );
}

function AuditPageLinks(props: { filters: AuditFilterValues; result: AuditResult }) {
  const { filters, result } = props;
  if (!result.newer && !result.older) return null;
  const link = (href: string | null, label: string, rel?: string) =>
    href === null ? (
      <span aria-disabled="true">{label}</span>
    ) : (
      <a href={href} rel={rel}>
        {label}
      </a>
    );
  return (
    <nav aria-label="Pages" class="pagination">
      <ul>
        <li>{link(result.newer ? auditHref('/audit', filters) : null, 'Newest')}</li>
        <li>{link(result.newer ? auditHref('/audit', filters, { newer: result.newer }) : null, 'Newer', 'prev')}</li>
        <li>{link(result.older ? auditHref('/audit', filters, { older: result.older }) : null, 'Older', 'next')}</li>
      </ul>
    </nav>
  );
}
