import {
  CONNECTIONS_PAGE_SIZE,
  formatSessionCursor,
  type LiveSession,
  type SessionCursor,
  type SessionOrder,
  type SessionPage,
} from '../src/domain/connections';
import { ConfirmFooter, DangerMenuItem, formatTime, GroupChips, Layout, Notice, PageLinks, PageTitle, RowMenu, TableRegion, Truncated } from './layout';

/** Seconds between refreshes of the table while the page is open. */
export const REFRESH_SECONDS = 5;

/** Client names by `clients` row id, for the sessions shown. */
export type ClientNames = ReadonlyMap<number, string>;

const TRANSPORT_LABELS = { tcp: 'TCP', ws: 'WebSocket', tls: 'TLS', wss: 'WebSocket over TLS' } as const;

const PROTOCOL_LABELS: Record<number, string> = { 3: 'MQTT 3.1', 4: 'MQTT 3.1.1', 5: 'MQTT 5.0' };

/** The MQTT protocol level and, for 5.0, the session expiry it was granted. */
function protocolText(session: LiveSession): string {
  const label = PROTOCOL_LABELS[session.protocolVersion!] ?? `MQTT level ${session.protocolVersion}`;
  if (session.protocolVersion !== 5) return label;
  const expiry = session.sessionExpiryS ?? 0;
  return `${label}, session expiry ${expiry === 0 ? 'none' : `${expiry} s`}`;
}

/** The transport, with the MQTT protocol, the TLS version and the client certificate's fingerprint when there are. */
function TransportCell(props: { session: LiveSession }) {
  const { session } = props;
  return (
    <td>
      {TRANSPORT_LABELS[session.transport]}
      {session.protocolVersion ? (
        <>
          <br />
          <small>{protocolText(session)}</small>
        </>
      ) : null}
      {session.tlsVersion ? (
        <>
          <br />
          <small>{session.tlsVersion}</small>
        </>
      ) : null}
      {session.certFingerprint ? (
        <>
          <br />
          <small>
            Certificate <Fingerprint value={session.certFingerprint} />
          </small>
        </>
      ) : null}
    </td>
  );
}

const formatCount = (n: number) => n.toLocaleString('en-US');

/** A SHA-256 fingerprint in a table: its start, the whole in the title (and for screen readers). */
export function Fingerprint(props: { value: string }) {
  return (
    <code class="truncate fingerprint-short" title={props.value}>
      {props.value}
    </code>
  );
}

/** `/connections`: search, the live table and paging. */
export function ConnectionsPage(props: { page: SessionPage; names: ClientNames; notice?: string; groups: string[] }) {
  const group = props.page.request.group;
  return (
    <Layout title="Connections" section="connections">
      <PageTitle title="Connections">MQTT sessions open now, on every node. The table refreshes itself every {REFRESH_SECONDS} seconds.</PageTitle>
      <div id="connections-notice">
        <Notice message={props.notice} />
      </div>
      <div class="toolbar">
        <form
          method="get"
          action="/connections"
          class="search-form"
          aria-label="Search connections"
          hx-get="/connections"
          hx-trigger="input changed delay:300ms, change, submit"
          hx-target="#connections-results"
          hx-select="#connections-results"
          hx-swap="outerHTML"
          hx-push-url="true"
        >
          {props.page.request.order !== 'newest' ? <input type="hidden" name="order" value={props.page.request.order} /> : null}
          <div role="search">
            <input type="search" name="q" value={props.page.request.query} placeholder="Search by MQTT client ID or username" aria-label="Search connections" />
            <button type="submit">Search</button>
          </div>
          <select name="group" class="group-filter" aria-label="Only the connections of a group">
            <option value="any" selected={group === undefined}>
              Any group
            </option>
            <option value="none" selected={group === ''}>
              No group
            </option>
            {props.groups.map((name) => (
              <option value={`g:${name}`} selected={group === name}>
                {name}
              </option>
            ))}
          </select>
        </form>
      </div>
      <ConnectionsResults page={props.page} names={props.names} />
    </Layout>
  );
}

function connectionsHref(place: { query: string; group?: string; order: SessionOrder; after?: SessionCursor; before?: SessionCursor; page?: 'last' }): string {
  const params = new URLSearchParams();
  if (place.query) params.set('q', place.query);
  if (place.group !== undefined) params.set('group', place.group === '' ? 'none' : `g:${place.group}`);
  if (place.order !== 'newest') params.set('order', place.order);
  if (place.after) params.set('after', formatSessionCursor(place.after));
  if (place.before) params.set('before', formatSessionCursor(place.before));
  if (place.page) params.set('page', place.page);
  const search = params.toString();
  return search ? `/connections?${search}` : '/connections';
}

/** Where the page being shown is: what a refresh asks for again. */
function currentHref(page: SessionPage): string {
  const { query, group, order, after, before, last } = page.request;
  return connectionsHref({ query, group, order, after, before, page: last ? 'last' : undefined });
}

/**
 * The part a search replaces and that refreshes itself: it polls its own
 * address (search and page kept) and swaps itself. public/app.js skips a
 * refresh while a row menu or a confirmation is open, or focus is inside.
 */
export function ConnectionsResults(props: { page: SessionPage; names: ClientNames }) {
  const { page } = props;
  const here = currentHref(page);
  return (
    <section
      id="connections-results"
      aria-label="Connections"
      hx-get={here}
      hx-trigger={`every ${REFRESH_SECONDS}s`}
      hx-target="this"
      hx-select="#connections-results"
      hx-swap="outerHTML"
      data-live-refresh
    >
      <p class="table-summary">
        <span id="connections-count">{summaryText(page)}</span> <a href={here}>Refresh</a>
      </p>
      {page.missing ? <p class="notice">{page.missing}</p> : null}
      {page.sessions.length === 0 ? (
        <div class="empty-state">
          {page.request.query || page.request.group !== undefined ? (
            <p>
              No connection matches your search. <a href="/connections">Show all connections</a>
            </p>
          ) : page.total > 0 ? (
            <p>
              Nothing on this page any more. <a href="/connections">Back to the first page</a>
            </p>
          ) : (
            <p>Nobody is connected right now. Devices appear here as soon as they connect.</p>
          )}
        </div>
      ) : (
        <TableRegion label="Connections table">
          <table class="striped">
            <thead>
              <tr>
                <th scope="col">MQTT Client ID</th>
                <th scope="col">Client</th>
                <th scope="col">IP Address</th>
                <th scope="col">Transport</th>
                <th scope="col">Keep-Alive</th>
                <ConnectedAtHeader page={page} />
                <th scope="col">Subscriptions</th>
                <th scope="col">Messages in / out</th>
                <th scope="col">Groups</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody id="connections-rows">
              {page.sessions.map((session) => (
                <ConnectionRow session={session} name={props.names.get(session.clientRowId)} />
              ))}
            </tbody>
          </table>
        </TableRegion>
      )}
      <ConnectionsPageLinks page={page} />
    </section>
  );
}

function summaryText(page: SessionPage): string {
  const count = formatCount(page.total);
  const query = page.request.query;
  const group = page.request.group;
  if (group !== undefined) {
    const of = group === '' ? 'with no group' : `of group “${group}”`;
    return `${count} ${page.total === 1 ? 'connection' : 'connections'} ${of}${query ? ` matching “${query}”` : ''}.`;
  }
  if (!query) return `${count} ${page.total === 1 ? 'connection' : 'connections'}.`;
  return `${count} ${page.total === 1 ? 'connection matches' : 'connections match'} “${query}”.`;
}

/** The sortable column: its link turns the order round (and goes back to the first page). */
function ConnectedAtHeader(props: { page: SessionPage }) {
  const { query, group, order } = props.page.request;
  const other: SessionOrder = order === 'newest' ? 'oldest' : 'newest';
  return (
    <th scope="col" aria-sort={order === 'newest' ? 'descending' : 'ascending'}>
      <a href={connectionsHref({ query, group, order: other })} title={other === 'oldest' ? 'Show the oldest first' : 'Show the newest first'}>
        Connected At <span aria-hidden="true">{order === 'newest' ? '↓' : '↑'}</span>
        <span class="visually-hidden">{other === 'oldest' ? ', newest first; sort oldest first' : ', oldest first; sort newest first'}</span>
      </a>
    </th>
  );
}

function ConnectionsPageLinks(props: { page: SessionPage }) {
  const { page } = props;
  const { query, group, order } = page.request;
  const shown = page.sessions.length;
  const position = shown > 0 ? `${formatCount(page.from)}–${formatCount(page.from + shown - 1)} of ${formatCount(page.total)}` : `0 of ${formatCount(page.total)}`;
  // Less than a page before this one: Previous is the first page, shown full.
  const previous = page.previous ? (page.from - 1 <= CONNECTIONS_PAGE_SIZE ? connectionsHref({ query, group, order }) : connectionsHref({ query, group, order, before: page.previous })) : null;
  return (
    <PageLinks
      position={position}
      first={page.previous ? connectionsHref({ query, group, order }) : null}
      previous={previous}
      next={page.next ? connectionsHref({ query, group, order, after: page.next }) : null}
      last={page.next ? connectionsHref({ query, group, order, page: 'last' }) : null}
    />
  );
}

/** The id of a session's row (a session id holds a dot, which a CSS id selector would misread). */
export function sessionRowId(session: Pick<LiveSession, 'id'>): string {
  return `session-${session.id.replace('.', '-')}`;
}

function describe(session: LiveSession): string {
  return `“${session.mqttClientId}” (username ${session.username})`;
}

/** One live session; its menu disconnects it (the row then goes). */
export function ConnectionRow(props: { session: LiveSession; name?: string }) {
  const { session } = props;
  const disconnect = `/connections/${session.id}`;
  return (
    <tr id={sessionRowId(session)}>
      <th scope="row">
        <Truncated text={session.mqttClientId} code />
      </th>
      <td>
        {props.name !== undefined ? <Truncated text={props.name} href={`/clients/${session.clientRowId}`} /> : <span>(deleted client)</span>}
        <br />
        <small>
          <Truncated text={session.username} code />
        </small>
      </td>
      <td class="nowrap">{session.remoteAddress ?? 'unknown'}</td>
      <TransportCell session={session} />
      <td>{keepAliveText(session.keepaliveS)}</td>
      <td class="nowrap">{formatTime(new Date(session.connectedAt))}</td>
      <td>
        <SubscriptionsCell session={session} />
      </td>
      <td class="nowrap">
        {formatCount(session.messagesIn ?? 0)} in · {formatBytes(session.bytesIn ?? 0)}
        <br />
        {formatCount(session.messagesOut ?? 0)} out · {formatBytes(session.bytesOut ?? 0)}
      </td>
      <td>{session.groups.length ? <GroupChips groups={session.groups} /> : <span class="no-access">No group</span>}</td>
      <td class="row-actions">
        <RowMenu name={session.mqttClientId}>
          <li>
            <a href={`/clients/${session.clientRowId}`}>Client</a>
          </li>
          <DangerMenuItem
            label="Disconnect"
            href={`${disconnect}/disconnect`}
            action={disconnect}
            confirm={`Disconnect the session ${describe(session)} now? The device may connect again at once.`}
            confirmLabel="Disconnect"
            target="closest tr"
          />
        </RowMenu>
      </td>
    </tr>
  );
}

/** Its subscription count, and its first filters. */
function SubscriptionsCell(props: { session: LiveSession }) {
  const { session } = props;
  const filters = session.subscriptionFilters ?? [];
  const more = session.subscriptions - filters.length;
  return (
    <>
      {session.subscriptions}
      {filters.length ? (
        <ul class="compact-list subscription-filters">
          {filters.map((filter) => (
            <li>
              <Truncated text={filter} code />
            </li>
          ))}
          {more > 0 ? <li>{more} more</li> : null}
        </ul>
      ) : null}
    </>
  );
}

/** Payload bytes in short: 950 B, 3.4 kB, 12.0 MB. */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1_000_000) return `${(bytes / 1000).toFixed(1)} kB`;
  if (bytes < 1_000_000_000) return `${(bytes / 1_000_000).toFixed(1)} MB`;
  return `${(bytes / 1_000_000_000).toFixed(1)} GB`;
}

export function keepAliveText(seconds: number): string {
  return seconds > 0 ? `${seconds} s` : 'none';
}

/** The no-JavaScript confirmation for one session. */
export function DisconnectSessionPage(props: { session: LiveSession; name?: string }) {
  const { session } = props;
  return (
    <Layout title="Disconnect session" section="connections">
      <article>
        <header>
          <h1>Disconnect {session.mqttClientId}?</h1>
        </header>
        <p>
          The session of the MQTT client ID <code>{session.mqttClientId}</code> (client {props.name ? `“${props.name}”, ` : ''}username{' '}
          <code>{session.username}</code>), connected from {session.remoteAddress ?? 'an unknown address'} over {TRANSPORT_LABELS[session.transport]} since{' '}
          {formatTime(new Date(session.connectedAt))}, is closed at once. Its will message, if it has one, is published. The device may connect again
          at once: to keep it out, change or delete its client.
        </p>
        <ConfirmFooter action={`/connections/${session.id}/disconnect`} confirmLabel="Disconnect" cancelHref="/connections" cancelLabel="Keep it connected" />
      </article>
    </Layout>
  );
}

/** A session already gone when the confirmation was asked for. */
export function SessionEndedPage() {
  return (
    <Layout title="Session ended" section="connections">
      <h1>This session has ended</h1>
      <p>It is no longer connected (it disconnected, or another operator disconnected it).</p>
      <p>
        <a href="/connections">Back to connections</a>
      </p>
    </Layout>
  );
}

/** A client's live sessions, on its page. */
export function ClientSessionsTable(props: { page: SessionPage; clientId: number }) {
  const { page } = props;
  if (page.sessions.length === 0) return <p id="client-sessions-none">No live session: this client is not connected.</p>;
  return (
    <>
      <TableRegion label="Live sessions table">
        <table class="striped">
          <thead>
            <tr>
              <th scope="col">MQTT Client ID</th>
              <th scope="col">IP Address</th>
              <th scope="col">Transport</th>
              <th scope="col">Keep-Alive</th>
              <th scope="col">Connected At</th>
              <th scope="col">Subscriptions</th>
            </tr>
          </thead>
          <tbody>
            {page.sessions.map((session) => (
              <tr>
                <th scope="row">
                  <Truncated text={session.mqttClientId} code />
                </th>
                <td class="nowrap">{session.remoteAddress ?? 'unknown'}</td>
                <TransportCell session={session} />
                <td>{keepAliveText(session.keepaliveS)}</td>
                <td class="nowrap">{formatTime(new Date(session.connectedAt))}</td>
                <td>
        <SubscriptionsCell session={session} />
      </td>
      <td class="nowrap">
        {formatCount(session.messagesIn ?? 0)} in · {formatBytes(session.bytesIn ?? 0)}
        <br />
        {formatCount(session.messagesOut ?? 0)} out · {formatBytes(session.bytesOut ?? 0)}
      </td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableRegion>
      {page.total > page.sessions.length ? (
        <p>
          {formatCount(page.total - page.sessions.length)} more on the <a href="/connections">Connections</a> page.
        </p>
      ) : null}
    </>
  );
}

/** The href and attributes of "Disconnect all sessions": a confirmation page without JavaScript, a dialog and DELETE with it. */
function disconnectAllAttributes(client: { id: number; name: string }, target: string, view: 'row' | 'page') {
  return {
    href: `/clients/${client.id}/disconnect${view === 'row' ? '?from=list' : ''}`,
    'hx-delete': `/clients/${client.id}/sessions?view=${view}`,
    'hx-confirm': `Disconnect every live session of the client “${client.name}” now? Its devices may connect again at once.`,
    'data-confirm-label': 'Disconnect all',
    'hx-target': target,
    'hx-swap': 'outerHTML',
  };
}

/** "Disconnect all sessions" in a client's row menu. */
export function DisconnectAllMenuItem(props: { client: { id: number; name: string } }) {
  return (
    <li class="danger-item">
      <a {...disconnectAllAttributes(props.client, `#client-${props.client.id}`, 'row')} class="danger">
        Disconnect all sessions
      </a>
    </li>
  );
}

/** A client's live sessions on its page, with "Disconnect all sessions"; htmx swaps it whole after a disconnect. */
export function ClientSessionsSection(props: { client: { id: number; name: string }; page: SessionPage; notice?: string }) {
  const { client, page } = props;
  return (
    <section id="live-sessions" aria-labelledby="live-sessions-title">
      <h2 id="live-sessions-title">Live sessions</h2>
      <Notice message={props.notice} />
      {page.missing ? <p class="notice">{page.missing}</p> : null}
      <ClientSessionsTable page={page} clientId={client.id} />
      {page.total > 0 ? (
        <p>
          <a role="button" class="danger outline" {...disconnectAllAttributes(client, '#live-sessions', 'page')}>
            Disconnect all sessions
          </a>
        </p>
      ) : null}
    </section>
  );
}

/** The no-JavaScript confirmation for all of a client's sessions. */
export function DisconnectClientPage(props: { client: { id: number; name: string; username: string }; page: SessionPage; fromList: boolean }) {
  const { client, page } = props;
  const back = props.fromList ? '/clients' : `/clients/${client.id}`;
  return (
    <Layout title={`Disconnect ${client.name}`} section="clients">
      <article>
        <header>
          <h1>Disconnect every session of “{client.name}”?</h1>
        </header>
        <p>
          {page.total === 0
            ? 'This client has no live session right now.'
            : `${formatCount(page.total)} ${page.total === 1 ? 'session' : 'sessions'} using the username `}
          {page.total > 0 ? (
            <>
              <code>{client.username}</code> {page.total === 1 ? 'is' : 'are'} closed at once, on every node. Wills are published. The devices may
              connect again at once: to keep them out, change or delete the client.
            </>
          ) : null}
        </p>
        <ClientSessionsTable page={page} clientId={client.id} />
        <ConfirmFooter action={`/clients/${client.id}/disconnect`} confirmLabel="Disconnect all" cancelHref={back} cancelLabel="Keep them connected">
          {props.fromList ? <input type="hidden" name="from" value="list" /> : null}
        </ConfirmFooter>
      </article>
    </Layout>
  );
}
