import type { FieldErrors } from '../src/domain/errors';
import { AUTH_TYPE_LABELS, CLIENTS_PAGE_SIZE, formatClientCursor, type Client, type ClientCursor, type ClientPage, type ListedClient } from '../src/domain/clients';
import { describeRule, type GroupRule, type RuleChange } from '../src/domain/groupRules';
import { accessFor, type RuleModel } from '../src/domain/access/acl';
import { lastSeenWho, type SeenClient } from '../src/domain/access/lastSeen';
import { DisconnectAllMenuItem } from './connections';
import { RuleChangeNotice } from './groups';
import { ApplyChoice, ConfirmFooter, ConfirmPage, DangerMenuItem, Field, FormAlert, formatDate, formatTime, Layout, Notice, PageLinks, PageTitle, RowMenu, TableRegion, tlsIsOn, Truncated } from './layout';

export interface ClientFormValues {
  /** The version the form was loaded with, sent back to catch lost updates. */
  version?: number;
  name: string;
  username: string;
  authType?: string;
  /** The certificate fingerprint as typed (or stored). */
  fingerprint?: string;
  /** Editing: `now` to disconnect the client's sessions once saved. */
  apply?: string;
  /** A password the server generated, kept (with its token) when the form comes back with an error. */
  generatedPassword?: { password: string; token: string };
  /** Group ids chosen (the page forms; the in-row form leaves groups alone). */
  groups?: number[];
}

/** Groups a client's page form offers. */
export type GroupChoices = Array<{ id: number; name: string }>;

const COLUMNS = 8;

/**
 * What the Access column knows about one client, judged with the client id
 * of its newest live session when it is connected, else as it was last seen
 * (see access/lastSeen.ts).
 */
export interface ClientAccessCell {
  /** Its groups, and whether each came only through a rule by MQTT client ID. */
  groups: Array<{ id: number; name: string; byClientId: boolean }>;
  /** The client id it was judged with (its live session's, else its last session's); null: never seen. */
  clientId: string | null;
  /** The client id is its live session's. */
  live: boolean;
  /** Some rule by client id exists: a client never seen may still match one. */
  clientIdRules: boolean;
}

/** The Access column of `client` under `model`; `liveClientId`: its newest live session's client id, when connected. */
export function accessCellFor(model: RuleModel, client: SeenClient, liveClientId?: string): ClientAccessCell {
  const judged = liveClientId === undefined ? client : { ...client, lastClientId: liveClientId };
  const access = accessFor(model, lastSeenWho(judged));
  return {
    groups: access.groups.map((group) => ({ id: group.id, name: group.name, byClientId: group.via.every((rule) => rule.matchBy === 'client_id') })),
    clientId: judged.lastClientId,
    live: liveClientId !== undefined,
    clientIdRules: model.allByClientId.length > 0,
  };
}

/** `/clients`: search, the table and paging. */
export function ClientsPage(props: {
  result: ClientPage;
  /** The rules the Access column is judged by. */
  rules: RuleModel;
  sessions: ReadonlyMap<number, number>;
  /** The client id of each connected client's newest live session. */
  liveClientIds: ReadonlyMap<number, string>;
  notice?: string;
  ruleChange?: RuleChange | null;
}) {
  return (
    <Layout title="Clients" section="clients">
      <PageTitle title="Clients">Credentials devices use to connect over MQTT.</PageTitle>
      <div id="clients-notice">
        <Notice message={props.notice} />
        {props.ruleChange ? <RuleChangeNotice change={props.ruleChange} /> : null}
      </div>
      <div class="toolbar">
        <form
          method="get"
          action="/clients"
          class="search-form"
          aria-label="Search clients"
          hx-get="/clients"
          hx-trigger="input changed delay:300ms, submit"
          hx-target="#clients-results"
          hx-select="#clients-results"
          hx-swap="outerHTML"
          hx-push-url="true"
        >
          <div role="search">
            <input
              type="search"
              name="q"
              value={props.result.query}
              placeholder="Search by name or username"
              aria-label="Search clients"
            />
            <button type="submit">Search</button>
          </div>
          <label class="inline-check">
            <input type="checkbox" name="access" value="none" checked={props.result.noAccess} /> No access only
          </label>
        </form>
        <a href="/clients/new" role="button">
          New client
        </a>
      </div>
      <ClientsResults result={props.result} rules={props.rules} sessions={props.sessions} liveClientIds={props.liveClientIds} />
    </Layout>
  );
}

/** The part of the page a search replaces. */
export function ClientsResults(props: { result: ClientPage; rules: RuleModel; sessions: ReadonlyMap<number, number>; liveClientIds: ReadonlyMap<number, string> }) {
  const { result } = props;
  return (
    <section id="clients-results" aria-label="Clients">
      <ClientsSummary result={result} />
      {result.clients.length === 0 ? (
        <div class="empty-state">
          {result.noAccess && !result.query ? (
            <p>
              Every client has a group. <a href="/clients">Show all clients</a>
            </p>
          ) : result.query || result.noAccess ? (
            <p>
              No client matches your search. <a href="/clients">Show all clients</a>
            </p>
          ) : (
            <p>
              No clients yet. <a href="/clients/new">Create the first client</a> to let a device connect.
            </p>
          )}
        </div>
      ) : (
        <TableRegion label="Clients table">
          <table class="striped clients-table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Username</th>
                <th scope="col">Access</th>
                <th scope="col">Authentication</th>
                <th scope="col">Live sessions</th>
                <th scope="col">Last seen</th>
                <th scope="col">Updated</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody id="clients-rows">
              {result.clients.map((client) => (
                <ClientRow
                  client={client}
                  access={accessCellFor(props.rules, client, props.liveClientIds.get(client.id))}
                  sessions={props.sessions.get(client.id) ?? 0}
                />
              ))}
            </tbody>
          </table>
        </TableRegion>
      )}
      <ClientsPageLinks result={result} />
    </section>
  );
}

const formatCount = (n: number) => n.toLocaleString('en-US');

function ClientsSummary(props: { result: ClientPage }) {
  const { total, query, totalIsLowerBound, noAccess } = props.result;
  const count = formatCount(total);
  let text: string;
  if (!query && !noAccess) text = `${count} ${total === 1 ? 'client' : 'clients'}.`;
  else {
    const what = [noAccess ? 'have no access' : '', query ? `match “${query}”` : ''].filter(Boolean).join(' and ');
    if (totalIsLowerBound) text = `More than ${count} clients ${what}.`;
    else text = `${count} ${total === 1 ? 'client' : 'clients'} ${what}.`.replace(/^1 client have/, '1 client has').replace(/^1 client match /, '1 client matches ');
  }
  return (
    <p id="clients-count">
      {text}
      {noAccess ? <span class="help"> Judged as each was last seen: rules by client, by certificate, and by the client ID of its last session (a connected client's Access column shows its live session's).</span> : null}
    </p>
  );
}

// `at` is where the page's first client is expected in the list: shown, never trusted for paging.
function clientsHref(place: { query?: string; noAccess?: boolean; after?: ClientCursor; before?: ClientCursor; page?: 'last'; at?: number | null }): string {
  const params = new URLSearchParams();
  if (place.query) params.set('q', place.query);
  if (place.noAccess) params.set('access', 'none');
  if (place.after) params.set('after', formatClientCursor(place.after));
  if (place.before) params.set('before', formatClientCursor(place.before));
  if (place.page) params.set('page', place.page);
  if (place.at && place.at > 0) params.set('at', String(place.at));
  const search = params.toString();
  return search ? `/clients?${search}` : '/clients';
}

function ClientsPageLinks(props: { result: ClientPage }) {
  const { result } = props;
  const { from, previous, next } = result;
  const query = { query: result.query, noAccess: result.noAccess };
  const shown = result.clients.length;
  const total = result.totalIsLowerBound ? `more than ${formatCount(result.total)}` : formatCount(result.total);
  const position = from !== null && shown > 0 ? `${formatCount(from)}–${formatCount(from + shown - 1)} of ${total}` : `${formatCount(shown)} of ${total}`;
  return (
    <PageLinks
      position={position}
      first={previous ? clientsHref(query) : null}
      previous={previous ? clientsHref({ ...query, before: previous, at: from === null ? null : from - CLIENTS_PAGE_SIZE }) : null}
      next={next ? clientsHref({ ...query, after: next, at: from === null ? null : from + shown }) : null}
      last={next ? clientsHref({ ...query, page: 'last' }) : null}
    />
  );
}

/** One table row; its menu swaps the row for the edit form, or removes it. */
export function ClientRow(props: { client: ListedClient; sessions: number; access?: ClientAccessCell; focus?: boolean }) {
  const { client } = props;
  const tlsOff = tlsIsOn() === false;
  return (
    <tr id={`client-${client.id}`}>
      <th scope="row">
        {/* Back from the in-row form (saved or cancelled), focus returns to the row. */}
        <a href={`/clients/${client.id}`} class="truncate" title={client.name} autofocus={props.focus}>
          {client.name}
        </a>
      </th>
      <td>
        <Truncated text={client.username} code />
      </td>
      <td class="access-cell">{props.access ? <AccessCell client={client} access={props.access} /> : null}</td>
      <td class="nowrap">
        {AUTH_TYPE_LABELS[client.authType]}
        {client.authType !== 'password' && tlsOff ? (
          <>
            <br />
            <small class="no-access">TLS is off: cannot connect</small>
          </>
        ) : null}
      </td>
      <td>{props.sessions}</td>
      <td class="nowrap">{props.sessions > 0 ? 'connected' : client.lastSeenAt ? formatTime(client.lastSeenAt) : 'never'}</td>
      <td>{formatDate(client.updatedAt)}</td>
      <td class="row-actions">
        <RowMenu name={client.name}>
          <li>
            <a href={`/clients/${client.id}/edit`} hx-get={`/clients/${client.id}/edit`} hx-target={`#client-${client.id}`} hx-swap="outerHTML">
              Edit
            </a>
          </li>
          <li>
            <a href={`/clients/${client.id}`}>Permissions</a>
          </li>
          {props.sessions > 0 ? <DisconnectAllMenuItem client={client} /> : null}
          <DangerMenuItem
            label="Delete"
            href={`/clients/${client.id}/delete`}
            action={`/clients/${client.id}`}
            confirm={`Delete the client “${client.name}”? Devices using it can no longer connect, and group rules naming it are removed.${props.sessions > 0 ? ` ${props.sessions === 1 ? 'Its live session stays' : `Its ${props.sessions} live sessions stay`} connected unless you disconnect ${props.sessions === 1 ? 'it' : 'them'} too.` : ''}`}
            confirmLabel="Delete client"
            target={`#client-${client.id}`}
            option={props.sessions > 0 ? { name: 'disconnect', label: `Also disconnect its ${props.sessions === 1 ? 'live session' : `${props.sessions} live sessions`} now` } : undefined}
          />
        </RowMenu>
      </td>
    </tr>
  );
}

/**
 * The client's groups, judged with its live session's client id when it is
 * connected, else as it was last seen: through rules by client or
 * certificate, and rules by MQTT client ID that match that id. With none, it
 * can connect but do nothing.
 */
function AccessCell(props: { client: ListedClient; access: ClientAccessCell }) {
  const { client, access } = props;
  if (access.groups.length > 0) {
    const byClientId = access.groups.some((group) => group.byClientId);
    return (
      <>
        {access.groups.map((group, i) => (
          <>
            {i > 0 ? ', ' : ''}
            <a href={`/groups/${group.id}/edit`} class="badge">
              {group.name}
            </a>
          </>
        ))}
        {byClientId && access.clientId !== null ? (
          <small class="access-note">
            {' '}
            by {access.live ? 'live ' : ''}client ID <Truncated text={access.clientId} code />
          </small>
        ) : null}
      </>
    );
  }
  return (
    <>
      <a href={`/clients/${client.id}`} class="badge no-access">
        No access
      </a>
      <small class="access-note">
        {access.clientId === null && access.clientIdRules
          ? ' never seen: rules by client ID match once it connects'
          : access.live
            ? ' connected, cannot publish or subscribe'
            : ' can connect, cannot publish or subscribe'}
      </small>
    </>
  );
}

/** The edit form swapped into the table in place of a row. */
export function ClientEditRow(props: { client: Client; values: ClientFormValues; errors?: FieldErrors }) {
  const { client } = props;
  const id = `client-${client.id}`;
  return (
    <tr id={id} class="editing">
      <td colspan={COLUMNS}>
        <form
          method="post"
          action={`/clients/${client.id}`}
          enctype="multipart/form-data"
          hx-post={`/clients/${client.id}`}
          hx-target={`#${id}`}
          hx-swap="outerHTML"
          aria-label={`Edit ${client.name}`}
          novalidate
        >
          <input type="hidden" name="_view" value="row" />
          <ClientFields values={props.values} errors={props.errors} idPrefix={`${id}-`} editing autofocus />
          <div class="form-actions">
            <button type="submit">Save</button>
            <a
              href="/clients"
              role="button"
              class="secondary outline"
              hx-get={`/clients/${client.id}/row`}
              hx-target={`#${id}`}
              hx-swap="outerHTML"
            >
              Cancel
            </a>
          </div>
        </form>
      </td>
    </tr>
  );
}

/** The fields shared by the new, edit and in-row forms. */
function ClientFields(props: { values: ClientFormValues; errors?: FieldErrors; idPrefix?: string; editing?: boolean; autofocus?: boolean; groups?: GroupChoices }) {
  const errors = props.errors ?? {};
  const prefix = props.idPrefix ?? '';
  // Swapped in by htmx: focus the first field in error, else the first field.
  const focused = props.autofocus || Object.keys(errors).length > 0 ? (['name', 'authType', 'username', 'fingerprint', 'password', 'groups'].find((f) => errors[f]) ?? 'name') : undefined;
  return (
    <>
      {props.values.version !== undefined ? <input type="hidden" name="version" value={String(props.values.version)} /> : null}
      <FormAlert message={errors.form} />
      <Field label="Client Name" name="name" id={`${prefix}name`} value={props.values.name} error={errors.name} required maxlength={100} autocomplete="off" autofocus={focused === 'name'} />
      {/* The label holds only its text: wrapped around the select it would take the options' words too. */}
      <div class="select-field">
        <label for={`${prefix}authType`}>Authentication Type</label>
        <select
          id={`${prefix}authType`}
          name="authType"
          autofocus={focused === 'authType'}
          aria-invalid={errors.authType ? 'true' : undefined}
          aria-describedby={[errors.authType ? `${prefix}authType-error` : '', `${prefix}authType-hint`].filter(Boolean).join(' ')}
        >
          {(Object.keys(AUTH_TYPE_LABELS) as Array<keyof typeof AUTH_TYPE_LABELS>).map((type) => (
            <option value={type} selected={(props.values.authType ?? 'password') === type}>
              {AUTH_TYPE_LABELS[type]}
            </option>
          ))}
        </select>
        {errors.authType ? (
          <small id={`${prefix}authType-error`} class="field-error">
            {errors.authType}
          </small>
        ) : null}
        <small id={`${prefix}authType-hint`}>
          Certificate clients connect over MQTTS or WSS with their client certificate; Certificate + Password clients send their username and
          password too.
          {tlsIsOn() === false ? (
            <>
              {' '}
              <strong class="no-access">TLS is off now: certificate clients cannot connect until certificates are enabled (Certificates page).</strong>
            </>
          ) : null}
        </small>
      </div>
      <Field
        label="Username"
        name="username"
        id={`${prefix}username`}
        value={props.values.username}
        error={errors.username}
        hint="What the device sends in CONNECT. No spaces; case matters."
        required
        maxlength={128}
        autocomplete="off"
        autofocus={focused === 'username'}
      />
      <fieldset>
        <legend>Client certificate (Certificate and Certificate + Password)</legend>
        <label for={`${prefix}certificateFile`}>
          Upload the certificate
          <input id={`${prefix}certificateFile`} name="certificateFile" type="file" accept=".pem,.crt,.cer" aria-describedby={`${prefix}fingerprint-hint`} />
        </label>
        <Field
          label="or paste its SHA-256 fingerprint"
          name="fingerprint"
          id={`${prefix}fingerprint`}
          value={props.values.fingerprint ?? ''}
          error={errors.fingerprint}
          hint="openssl x509 -noout -fingerprint -sha256 -in device.crt prints it. Only the fingerprint is kept."
          maxlength={200}
          autocomplete="off"
          autofocus={focused === 'fingerprint'}
        />
      </fieldset>
      <Field
        label="Password"
        name="password"
        id={`${prefix}password`}
        type={props.values.generatedPassword ? 'text' : 'password'}
        value={props.values.generatedPassword?.password}
        error={errors.password}
        hint={
          props.editing
            ? 'Password and Certificate + Password clients. Leave empty to keep the current password. 8–256 characters.'
            : 'Password and Certificate + Password clients. 8–256 characters. Shown only until you save.'
        }
        maxlength={256}
        autocomplete="new-password"
        autofocus={focused === 'password'}
      >
        <div class="password-tools" hidden data-password-tools={`${prefix}password`}>
          <button type="button" class="secondary outline" data-generate-password={`${prefix}password`} data-generate-url="/clients/generated-password">
            Generate strong password
          </button>
          {/* The server's token for the password it generated; a typed password has none. */}
          <input type="hidden" name="password_generated" id={`${prefix}password-generated`} value={props.values.generatedPassword?.token ?? ''} />
          <button type="button" class="secondary outline" data-copy-password={`${prefix}password`}>
            Copy
          </button>
          <span role="status" class="copy-status" data-copy-status={`${prefix}password`}>
            {props.values.generatedPassword ? 'The generated password is kept: it is saved with the client once the form is right.' : ''}
          </span>
        </div>
      </Field>
      {props.groups ? <GroupsFieldset choices={props.groups} chosen={props.values.groups ?? []} error={errors.groups} /> : null}
    </>
  );
}

/**
 * The groups a rule by Client gives this client, chosen on its own form
 * (saved with it: see setClientGroups). Rules by MQTT client ID or by
 * certificate may give more; its page shows all of them.
 */
function GroupsFieldset(props: { choices: GroupChoices; chosen: number[]; error?: string }) {
  return (
    <fieldset class="group-choices" aria-describedby={['groups-hint', props.error ? 'groups-error' : ''].filter(Boolean).join(' ')} aria-invalid={props.error ? 'true' : undefined}>
      <legend>Groups</legend>
      <input type="hidden" name="groups_shown" value="1" />
      {props.choices.length === 0 ? (
        <p>
          There are no groups yet. <a href="/groups/new">Create a group</a> first.
        </p>
      ) : (
        <div class="group-choice-list">
          {props.choices.map((group) => (
            <label>
              <input type="checkbox" name="groups" value={String(group.id)} checked={props.chosen.includes(group.id)} /> {group.name}
            </label>
          ))}
        </div>
      )}
      {props.error ? (
        <small id="groups-error" class="field-error">
          {props.error}
        </small>
      ) : null}
      <small id="groups-hint">
        Saved as a rule by Client on the Group rules page. Rules by MQTT client ID or certificate may give more: the client’s page shows
        everything it gets. None chosen: it can connect, but cannot publish or subscribe.
      </small>
    </fieldset>
  );
}

/** The form as a page: `/clients/new` and `/clients/:id/edit`. */
export function ClientFormPage(props: { client?: Client; values: ClientFormValues; errors?: FieldErrors; groups: GroupChoices }) {
  const editing = props.client !== undefined;
  const title = editing ? `Edit ${props.client!.name}` : 'New client';
  const action = editing ? `/clients/${props.client!.id}` : '/clients';
  return (
    <Layout title={title} section="clients">
      <nav aria-label="breadcrumb">
        <ul>
          <li>
            <a href="/clients">Clients</a>
          </li>
          <li>{title}</li>
        </ul>
      </nav>
      <h1>{title}</h1>
      {editing ? (
        <p class="help">
          Created {formatTime(props.client!.createdAt)} · last changed {formatTime(props.client!.updatedAt)}
        </p>
      ) : null}
      <ClientForm action={action} values={props.values} errors={props.errors} editing={editing} groups={props.groups} />
    </Layout>
  );
}

/** Page form; htmx posts it and swaps it back with messages on a 4xx. */
export function ClientForm(props: { action: string; values: ClientFormValues; errors?: FieldErrors; editing?: boolean; groups: GroupChoices }) {
  return (
    <form id="client-form" method="post" action={props.action} enctype="multipart/form-data" hx-post={props.action} hx-target="this" hx-swap="outerHTML" novalidate>
      <ClientFields values={props.values} errors={props.errors} editing={props.editing} groups={props.groups} />
      {props.editing ? <ApplyChoice value={props.values.apply} affects="this client’s sessions" /> : null}
      <div class="form-actions">
        <button type="submit">{props.editing ? 'Save changes' : 'Create client'}</button>
        <a href="/clients" role="button" class="secondary outline">
          Cancel
        </a>
      </div>
    </form>
  );
}

/** The no-JavaScript delete confirmation. */
export function DeleteClientPage(props: { client: Client; rules?: GroupRule[]; sessions?: number }) {
  const { client } = props;
  const live = props.sessions ?? 0;
  return (
    <ConfirmPage title={`Delete ${client.name}`} section="clients" heading={`Delete client “${client.name}”?`}>
      <p>
        Devices that use the username <code>{client.username}</code> can no longer connect.
        {live > 0 ? ` ${live === 1 ? 'Its live session stays' : `Its ${live} live sessions stay`} connected until ${live === 1 ? 'it ends' : 'they end'}, unless you disconnect ${live === 1 ? 'it' : 'them'} too.` : ' It has no live session now.'}
      </p>
      {props.rules?.length ? (
        <>
          <p>These group rules name this client and are removed with it:</p>
          <ul>
            {props.rules.map((rule) => (
              <li>
                {describeRule(rule)}
                {rule.groups.length ? `, which gives ${rule.groups.map((g) => `“${g.name}”`).join(', ')}` : ''}
              </li>
            ))}
          </ul>
        </>
      ) : null}
      <ConfirmFooter action={`/clients/${client.id}/delete`} confirmLabel="Delete client" cancelHref="/clients" cancelLabel="Keep it">
        {live > 0 ? (
          <label>
            <input type="checkbox" name="disconnect" value="1" /> Also disconnect its {live === 1 ? 'live session' : `${live} live sessions`} now
          </label>
        ) : null}
      </ConfirmFooter>
    </ConfirmPage>
  );
}
