import type { Decision } from '../src/domain/access/acl';
import type { AccessSnapshot, Action, GrantedPermission, RuleRef } from '../src/domain/access/types';
import type { Client } from '../src/domain/clients';
import type { FieldErrors } from '../src/domain/errors';
import type { Child } from 'hono/jsx';
import { ErrorText } from './groups';
import { Layout, TableRegion } from './layout';
import { TryItPanel, type TryItContext } from './tryIt';

export interface CheckValues {
  clientId: string;
  action: Action;
  topic: string;
  /** Certificate clients: the fingerprint of the certificate it connects with (rules by certificate fingerprint). */
  fingerprint?: string;
}

interface Props {
  client: Client;
  access: AccessSnapshot;
  check: CheckValues;
  errors: FieldErrors;
  decision?: Decision;
  /** Where the client id judged comes from: the device's live or last session, its username (never seen), or typed in the checker. */
  idFrom: 'live' | 'last' | 'username' | 'entered';
}

/** `/clients/:id`: a client's groups, merged permissions, and the access checker. */
export function ClientAccessPage(props: Props & { sessions?: Child; importedPasswordFormat?: string | null; tryIt?: TryItContext }) {
  const { client } = props;
  return (
    <Layout title={client.name} section="clients" scripts={['/static/mqtt.min.js', '/static/try-it.js']}>
      <nav aria-label="breadcrumb">
        <ul>
          <li>
            <a href="/clients">Clients</a>
          </li>
          <li>{client.name}</li>
        </ul>
      </nav>
      <hgroup class="page-title">
        <h1>{client.name}</h1>
        <p>
          Username <code>{client.username}</code> · <a href={`/clients/${client.id}/edit`}>Edit client</a>
        </p>
      </hgroup>
      {props.importedPasswordFormat ? (
        <p class="notice">
          Password stored as {props.importedPasswordFormat}: it is replaced by Argon2id at the device’s first successful connection.
        </p>
      ) : null}
      <div class="client-workbench">
        <ClientAccessSection {...props} />
        {props.sessions}
        <TryItPanel client={client} context={props.tryIt ?? { clientId: client.username, from: 'username', liveIds: [], tlsOn: false, mqttsPort: null }} />
      </div>
    </Layout>
  );
}

/** Everything that depends on the client id being checked: htmx swaps it whole. */
export function ClientAccessSection(props: Props) {
  const { client, access, check, errors } = props;
  const field = (name: string) => ({
    'aria-invalid': errors[name] ? ('true' as const) : undefined,
    'aria-describedby': errors[name] ? `check-${name}-error` : undefined,
  });
  return (
    <section id="access" aria-labelledby="access-title">
      <h2 id="access-title">What it may do</h2>
      <AccessSummary access={access} idFrom={props.idFrom} />
      <GroupsThrough client={client} access={access} />
      <MergedPermissions access={access} />
      <h3>Check a topic</h3>
      <p class="help">
        Change the client ID to see what a device connecting with another would get: the broker decides with the same functions when
        the device connects.
      </p>
      <form
        method="get"
        action={`/clients/${client.id}`}
        hx-get={`/clients/${client.id}`}
        hx-target="#access"
        hx-swap="outerHTML"
        hx-push-url="true"
        class="checker"
        novalidate
      >
        <fieldset class="grid">
          <label for="check-clientId">
            MQTT client ID
            <input id="check-clientId" name="clientId" type="text" value={check.clientId} autocomplete="off" spellcheck={false} {...field('clientId')} />
            <ErrorText id="check-clientId-error" message={errors.clientId} />
          </label>
          {check.fingerprint !== undefined ? (
            <label for="check-fingerprint">
              Certificate fingerprint (SHA-256)
              <input
                id="check-fingerprint"
                name="fingerprint"
                type="text"
                value={check.fingerprint}
                autocomplete="off"
                spellcheck={false}
                {...field('fingerprint')}
              />
              <ErrorText id="check-fingerprint-error" message={errors.fingerprint} />
            </label>
          ) : null}
          <label for="check-action">
            Action
            <select id="check-action" name="action">
              <option value="publish" selected={check.action === 'publish'}>
                Publish
              </option>
              <option value="subscribe" selected={check.action === 'subscribe'}>
                Subscribe
              </option>
            </select>
          </label>
          <label for="check-topic">
            Topic (or filter, to subscribe)
            <input id="check-topic" name="topic" type="text" value={check.topic} autocomplete="off" spellcheck={false} {...field('topic')} />
            <ErrorText id="check-topic-error" message={errors.topic} />
          </label>
        </fieldset>
        <button type="submit" id="check-submit">
          Check access
        </button>
      </form>
      {props.decision ? <DecisionResult decision={props.decision} check={check} /> : null}
    </section>
  );
}

const ID_FROM: Record<Props['idFrom'], string> = {
  live: 'the client ID of its live session',
  last: 'the client ID its last session used',
  username: 'its username as client ID (it has not connected yet)',
  entered: 'the client ID entered below',
};

/**
 * First on the page: with which client ID it was judged and why, its groups
 * and what their rows allow, or that it has no access.
 */
function AccessSummary(props: { access: AccessSnapshot; idFrom: Props['idFrom'] }) {
  const { access } = props;
  const judged = access.mqttClientId === undefined ? null : (
    <>
      Judged with {ID_FROM[props.idFrom]}, <code>{access.mqttClientId}</code>
    </>
  );
  if (access.groups.length === 0) {
    return (
      <p class="warning" id="no-access" role="note">
        <strong>No access.</strong> {judged}
        {judged ? ': ' : ''}no rule gives it a group, so it can connect but can neither publish nor subscribe.{' '}
        <a href="#groups-title">Give it groups</a> on its form, or <a href="/group-rules">edit the group rules</a>.
      </p>
    );
  }
  const filters = (effect: 'allow' | 'deny', action: Action) => [
    ...new Set(access.permissions.filter((p) => p.effect === effect && p.action === action && p.filter !== null).map((p) => p.filter!)),
  ];
  const line = (action: Action, label: string) => {
    const allowed = filters('allow', action);
    const denied = filters('deny', action);
    return (
      <li>
        {label}:{' '}
        {allowed.length === 0
          ? 'nothing'
          : allowed.map((f, i) => (
              <>
                {i > 0 ? ', ' : ''}
                <code>{f}</code>
              </>
            ))}
        {allowed.length && denied.length ? (
          <>
            {' '}
            except{' '}
            {denied.map((f, i) => (
              <>
                {i > 0 ? ', ' : ''}
                <code>{f}</code>
              </>
            ))}
          </>
        ) : null}
      </li>
    );
  };
  return (
    <div id="access-summary">
      <p>
        {judged}
        {judged ? ': ' : ''}
        {access.groups.length === 1 ? 'group' : 'groups'}{' '}
        {access.groups.map((g, i) => (
          <>
            {i > 0 ? ', ' : ''}
            <a href={`/groups/${g.id}/edit`}>{g.name}</a>
          </>
        ))}
        .
      </p>
      <ul>
        {line('publish', 'Publish')}
        {line('subscribe', 'Subscribe')}
      </ul>
    </div>
  );
}

function DecisionResult(props: { decision: Decision; check: CheckValues }) {
  const { decision, check } = props;
  const verb = check.action === 'publish' ? 'publish to' : 'subscribe to';
  return (
    <div id="check-result" class={decision.allowed ? 'decision allowed' : 'decision denied'} role="status">
      <p>
        <strong>{decision.allowed ? 'Allowed' : 'Denied'}</strong>: client ID <code>{check.clientId}</code> {decision.allowed ? 'may' : 'may not'}{' '}
        {verb} <code>{check.topic}</code>.
      </p>
      <p>
        {decision.reason === 'reserved'
          ? 'Topics starting with $ belong to the broker: no permission row can open them.'
          : decision.reason === 'no_match'
            ? check.action === 'publish'
              ? 'No Allow/Publish row matches this topic, and nothing matching means deny.'
              : 'No Allow/Subscribe row covers every topic this filter can match, and nothing matching means deny.'
            : decision.permission
              ? (
                  <>
                    Decided by <PermissionName permission={decision.permission} />.
                  </>
                )
              : null}
      </p>
      {decision.allowed ? null : (
        <p id="check-answer">
          {check.action === 'publish' ? (
            <>
              The device is told: over MQTT 5.0, <code>PUBACK</code>/<code>PUBREC</code> reason code <code>0x87</code> (Not authorized; QoS 0 is
              dropped); over MQTT 3.1.1, nothing (acknowledged as usual, delivered to no one).
            </>
          ) : (
            <>
              The device is told: over MQTT 5.0, <code>SUBACK</code> reason code <code>0x87</code> (Not authorized) for this filter; over MQTT 3.1.1,{' '}
              <code>SUBACK</code> <code>0x80</code>.
            </>
          )}
        </p>
      )}
      {decision.withheld?.length ? (
        <p>
          Messages on topics matching{' '}
          {decision.withheld.map((p, i) => (
            <>
              {i > 0 ? ', ' : ''}
              <PermissionName permission={p} />
            </>
          ))}{' '}
          are never delivered on this subscription.
        </p>
      ) : null}
    </div>
  );
}

function PermissionName(props: { permission: GrantedPermission }) {
  const p = props.permission;
  return (
    <>
      row {p.position + 1} of group “{p.groupName}” ({p.effect === 'allow' ? 'Allow' : 'Deny'} {p.action === 'publish' ? 'Publish' : 'Subscribe'}{' '}
      <code>{p.topic}</code>
      {p.filter !== null && p.filter !== p.topic ? (
        <>
          {' '}
          → <code>{p.filter}</code>
        </>
      ) : null}
      )
    </>
  );
}

function describeVia(rule: RuleRef, client: Client) {
  if (rule.matchBy === 'client') return `Client “${client.name}”`;
  if (rule.matchBy === 'certificate') return `Certificate fingerprint ${rule.value}`;
  return `MQTT Client ID ${rule.value.includes('*') ? 'pattern ' : ''}“${rule.value}”`;
}

function GroupsThrough(props: { client: Client; access: AccessSnapshot }) {
  const { access, client } = props;
  const unresolved = access.unresolvedRules.length;
  return (
    <>
      <h3 id="groups-title">Groups, and the rules that give them</h3>
      {access.groups.length === 0 ? (
        <p class="no-access">No group.</p>
      ) : (
        <TableRegion label="Groups of this client">
          <table class="striped">
            <thead>
              <tr>
                <th scope="col">Group</th>
                <th scope="col">Through the rules</th>
              </tr>
            </thead>
            <tbody>
              {access.groups.map((group) => (
                <tr>
                  <th scope="row">
                    <a href={`/groups/${group.id}/edit`}>{group.name}</a>
                  </th>
                  <td>{group.via.map((rule) => describeVia(rule, client)).join('; ')}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableRegion>
      )}
      {unresolved > 0 ? (
        <p>
          {unresolved === 1 ? '1 rule matches' : `${unresolved} rules match`} by MQTT client ID (
          {access.unresolvedRules.map((r) => `“${r.value}”`).join(', ')}): enter the client ID the device uses to see what it adds.
        </p>
      ) : null}
      <p>
        <a href="/group-rules">Edit the group rules</a>
      </p>
    </>
  );
}

function MergedPermissions(props: { access: AccessSnapshot }) {
  const { access } = props;
  if (access.permissions.length === 0) return null;
  return (
    <>
      <h3>Merged permission rows</h3>
      <p>The union of the rows of every group above. A Deny row always wins; with no row matching, the answer is deny.</p>
      <TableRegion label="Merged permission rows">
        <table class="striped">
          <thead>
            <tr>
              <th scope="col">Effect</th>
              <th scope="col">Action</th>
              <th scope="col">Topic filter</th>
              <th scope="col">For this connection</th>
              <th scope="col">Group, row</th>
            </tr>
          </thead>
          <tbody>
            {access.permissions.map((p) => (
              <tr>
                <td>{p.effect === 'allow' ? 'Allow' : 'Deny'}</td>
                <td>{p.action === 'publish' ? 'Publish' : 'Subscribe'}</td>
                <td>
                  <code>{p.topic}</code>
                </td>
                <td>
                  {p.filter !== null ? (
                    <code>{p.filter}</code>
                  ) : access.mqttClientId === undefined && p.topic.includes('%c') ? (
                    'depends on the client ID'
                  ) : (
                    'matches nothing: a substituted value holds +, # or /'
                  )}
                </td>
                <td>{`${p.groupName}, row ${p.position + 1}`}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableRegion>
    </>
  );
}
