import { AUDIT_CSV_MAX_ROWS, AUDIT_KINDS, AUDIT_VIEWS, clientUsernameOf, formatAuditCursor, isAuditKind, type AuditCursor, type AuditEvent, type AuditGroupPage, type AuditPage as AuditResult, type AuditView } from '../src/domain/audit';
import type { FieldErrors } from '../src/domain/errors';
import { Field, FormAlert, Layout, PageTitle, TableRegion, Truncated } from './layout';

/** The filters as typed (kept in the form and in every link). */
export interface AuditFilterValues {
  kind: string;
  actor: string;
  q: string;
  from: string;
  to: string;
  view: AuditView;
}

function filterParams(filters: AuditFilterValues): URLSearchParams {
  const params = new URLSearchParams();
  if (filters.view !== 'changes') params.set('view', filters.view);
  for (const key of ['kind', 'actor', 'q', 'from', 'to'] as const) if (filters[key]) params.set(key, filters[key]);
  return params;
}

/** Whether any filter besides the view is set. */
function hasFilters(filters: AuditFilterValues): boolean {
  return [filters.kind, filters.actor, filters.q, filters.from, filters.to].some(Boolean);
}

/** Client ids by username: the events' usernames link to their client. */
type ClientLinks = ReadonlyMap<string, number>;

function auditHref(path: string, filters: AuditFilterValues, place: { older?: AuditCursor; newer?: AuditCursor } = {}): string {
  const params = filterParams(filters);
  if (place.older) params.set('older', formatAuditCursor(place.older));
  if (place.newer) params.set('newer', formatAuditCursor(place.newer));
  const search = params.toString();
  return search ? `${path}?${search}` : path;
}

/** `/audit`: the views, the filters, the events (newest first) and their paging. */
export function AuditPage(props: { filters: AuditFilterValues; result?: AuditResult; grouped?: AuditGroupPage; clients?: ClientLinks; paged?: boolean; errors?: FieldErrors }) {
  const { filters } = props;
  const errors = props.errors ?? {};
  const kinds = AUDIT_VIEWS[filters.view].kinds;
  return (
    <Layout title="Audit trail" section="audit">
      <PageTitle title="Audit trail">
        Who changed what in the console, who signed in, and what the broker refused. Times are UTC.
      </PageTitle>
      <nav aria-label="Audit views" class="tabs">
        <ul>
          {(Object.keys(AUDIT_VIEWS) as AuditView[]).map((view) => (
            <li>
              <a href={view === 'changes' ? '/audit' : `/audit?view=${view}`} aria-current={view === filters.view ? 'page' : undefined}>
                {AUDIT_VIEWS[view].label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <form
        method="get"
        action="/audit"
        aria-label="Filter the audit trail"
        class="filter-bar"
        hx-get="/audit"
        hx-target="#audit-results"
        hx-select="#audit-results"
        hx-swap="outerHTML"
        hx-push-url="true"
        novalidate
      >
        {filters.view !== 'changes' ? <input type="hidden" name="view" value={filters.view} /> : null}
        <div class="filter-fields">
          <label for="audit-kind">
            Kind
            <select id="audit-kind" name="kind" aria-invalid={errors.kind ? 'true' : undefined} aria-describedby={errors.kind ? 'audit-kind-error' : undefined}>
              <option value="" selected={!filters.kind}>
                {filters.view === 'all' ? 'All kinds' : `All ${AUDIT_VIEWS[filters.view].label.toLowerCase()}`}
              </option>
              {kinds.map((kind) => (
                <option value={kind} selected={filters.kind === kind}>
                  {AUDIT_KINDS[kind]}
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
          <Field label="Text" name="q" id="audit-q" value={filters.q} error={errors.q} hint="In the subject, address or details." maxlength={200} autocomplete="off" />
          <Field label="From (UTC)" name="from" id="audit-from" type="datetime-local" value={filters.from} error={errors.from} />
          <Field label="To (UTC)" name="to" id="audit-to" type="datetime-local" value={filters.to} error={errors.to} hint="That minute included." />
        </div>
        <div class="form-actions">
          <button type="submit">Filter</button>
          <a href={filters.view === 'changes' ? '/audit' : `/audit?view=${filters.view}`} role="button" class="secondary outline">
            Clear filters
          </a>
        </div>
      </form>
      <AuditResults filters={filters} result={props.result} grouped={props.grouped} clients={props.clients} paged={props.paged} errors={props.errors} />
    </Layout>
  );
}

/** The part the filter form replaces. */
export function AuditResults(props: { filters: AuditFilterValues; result?: AuditResult; grouped?: AuditGroupPage; clients?: ClientLinks; paged?: boolean; errors?: FieldErrors }) {
  const { result, filters } = props;
  const clients = props.clients ?? new Map<string, number>();
  const messages = Object.values(props.errors ?? {});
  return (
    <section id="audit-results" aria-label="Audit events">
      {messages.length ? <FormAlert message={`Nothing was searched: ${messages.join(' ')}`} /> : null}
      {result || props.grouped ? (
        <p class="audit-export">
          <a href={auditHref('/audit.csv', filters)} download>
            Download CSV
          </a>{' '}
          <span class="help">of every event these filters match, newest first (at most {AUDIT_CSV_MAX_ROWS.toLocaleString('en-US')}).</span>
        </p>
      ) : null}
      {props.grouped ? <GroupedResults filters={filters} page={props.grouped} clients={clients} paged={props.paged ?? false} /> : null}
      {!result ? null : result.events.length === 0 ? (
        <p class="empty-state">{hasFilters(filters) ? 'No event matches these filters.' : 'Nothing has been recorded yet.'}</p>
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
                  <AuditRow event={event} clients={clients} />
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

/** A username shown as a link to its client when one has it (the broker's events, clients' changes). */
function ClientName(props: { username: string; clients: ClientLinks }) {
  const id = props.clients.get(props.username);
  if (id === undefined) return <Truncated text={props.username} code />;
  return (
    <a href={`/clients/${id}`} class="truncate" title={props.username}>
      <code>{props.username}</code>
    </a>
  );
}

/** The actor and subject cells of an event; the one that names a client links to it. */
function ActorSubject(props: { event: AuditEvent; clients: ClientLinks }) {
  const { event, clients } = props;
  const username = clientUsernameOf(event);
  const actor =
    event.actor === null ? (
      <span class="help">{typeof event.details.via === 'string' ? event.details.via : '—'}</span>
    ) : event.actor === '' ? (
      <span class="help">(no username)</span>
    ) : username === event.actor ? (
      <ClientName username={event.actor} clients={clients} />
    ) : (
      <Truncated text={event.actor} code />
    );
  const subject = !event.subject ? '' : username === event.subject && event.kind.startsWith('client.') ? <ClientName username={event.subject} clients={clients} /> : <Truncated text={event.subject} />;
  return (
    <>
      <td>{actor}</td>
      <td>{subject}</td>
    </>
  );
}

function AuditRow(props: { event: AuditEvent; clients: ClientLinks }) {
  const { event } = props;
  const iso = event.at.toISOString();
  const perMinute = event.kind === 'mqtt.auth_failed';
  return (
    <tr>
      <td>
        <time datetime={iso}>{perMinute ? `${iso.slice(0, 10)} ${iso.slice(11, 16)} (that minute)` : `${iso.slice(0, 10)} ${iso.slice(11, 19)}`}</time>
      </td>
      <td>{isAuditKind(event.kind) ? AUDIT_KINDS[event.kind] : event.kind}</td>
      <ActorSubject event={event} clients={props.clients} />
      <td class="nowrap">{event.address ?? ''}</td>
      <td>{event.count}</td>
      <td>
        <DetailsCell details={event.details} />
      </td>
    </tr>
  );
}

/** The refusals view: identical events as one row, with how many and from when to when. */
function GroupedResults(props: { filters: AuditFilterValues; page: AuditGroupPage; clients: ClientLinks; paged: boolean }) {
  const { page, filters } = props;
  if (page.groups.length === 0) return <p class="empty-state">{hasFilters(filters) ? 'No refusal matches these filters.' : 'The broker has refused nothing yet.'}</p>;
  const day = (date: Date) => date.toISOString().slice(0, 16).replace('T', ' ');
  return (
    <>
      <p class="help">Identical refusals (same kind, username, topic, address and reason) are one row, with how many there were.</p>
      <TableRegion label="Broker refusals table">
        <table class="striped audit-table">
          <thead>
            <tr>
              <th scope="col">Last (UTC)</th>
              <th scope="col">Kind</th>
              <th scope="col">Username</th>
              <th scope="col">Topic</th>
              <th scope="col">Address</th>
              <th scope="col">Times</th>
              <th scope="col">Details</th>
            </tr>
          </thead>
          <tbody>
            {page.groups.map((group) => {
              const event = group.latest;
              return (
                <tr>
                  <td class="nowrap">
                    <time datetime={group.last.toISOString()}>{day(group.last)}</time>
                  </td>
                  <td>{isAuditKind(event.kind) ? AUDIT_KINDS[event.kind] : event.kind}</td>
                  <ActorSubject event={event} clients={props.clients} />
                  <td class="nowrap">{event.address ?? ''}</td>
                  <td class="nowrap">
                    <strong>{group.count.toLocaleString('en-US')}</strong>
                    {group.rows > 1 ? (
                      <>
                        <br />
                        <small>
                          since <time datetime={group.first.toISOString()}>{day(group.first)}</time>
                        </small>
                      </>
                    ) : null}
                  </td>
                  <td>
                    <DetailsCell details={event.details} />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </TableRegion>
      {page.older || props.paged ? (
        <nav aria-label="Pages" class="pagination">
          <ul>
            <li>{props.paged ? <a href={auditHref('/audit', filters)}>Newest</a> : <span aria-disabled="true">Newest</span>}</li>
            <li>{page.older ? <a href={auditHref('/audit', filters, { older: page.older })} rel="next">Older</a> : <span aria-disabled="true">Older</span>}</li>
          </ul>
        </nav>
      ) : null}
    </>
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
