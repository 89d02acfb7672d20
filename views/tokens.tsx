import {
  presetOf,
  READ_ONLY_RESOURCES,
  TOKEN_PRESET_LABELS,
  TOKEN_PRESETS,
  TOKEN_RESOURCE_LABELS,
  TOKEN_RESOURCES,
  type ApiToken,
  type TokenScopes,
} from '../src/domain/apiTokens';
import { ConfirmFooter, DangerMenuItem, Field, FormAlert, formatTime, Layout, Notice, PageTitle, RowMenu, TableRegion } from './layout';

/** "Viewer", "Editor"… or the resources one by one. */
export function describeScopes(scopes: TokenScopes): string {
  const preset = presetOf(scopes);
  if (preset) return preset[0]!.toUpperCase() + preset.slice(1);
  return TOKEN_RESOURCES.filter((r) => scopes[r])
    .map((r) => `${r} ${scopes[r] === 'write' ? 'read-write' : 'read'}`)
    .join(', ');
}

export function TokensPage(props: { tokens: ApiToken[]; notice?: string; now?: Date }) {
  const now = props.now ?? new Date();
  return (
    <Layout title="API tokens" section="tokens">
      <PageTitle title="API tokens">
        Scripts reach <code>/api/v1</code> with <code>Authorization: Bearer …</code>; the reference is at{' '}
        <a href="/api/v1/reference">/api/v1/reference</a>.
      </PageTitle>
      <div id="tokens-notice">
        <Notice message={props.notice} />
      </div>
      <p>
        <a href="/tokens/new" role="button">
          New token
        </a>
      </p>
      {props.tokens.length === 0 ? (
        <p>No API token yet.</p>
      ) : (
        <TableRegion label="API tokens table">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Token</th>
                <th scope="col">Scope</th>
                <th scope="col">Expires</th>
                <th scope="col">Last used</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {props.tokens.map((token) => (
                <TokenRow token={token} now={now} />
              ))}
            </tbody>
          </table>
        </TableRegion>
      )}
    </Layout>
  );
}

function TokenRow(props: { token: ApiToken; now: Date }) {
  const { token } = props;
  const expired = token.expiresAt !== null && token.expiresAt <= props.now;
  return (
    <tr id={`token-${token.id}`}>
      <td>{token.name}</td>
      <td>
        <code>{`gat_…${token.last4}`}</code>
      </td>
      <td>
        {describeScopes(token.scopes)}
        {token.allowedAddresses.length > 0 ? (
          <>
            <br />
            <small>from {token.allowedAddresses.join(', ')}</small>
          </>
        ) : null}
      </td>
      <td>{token.expiresAt ? <>{formatTime(token.expiresAt)}{expired ? ' (expired)' : ''}</> : 'never'}</td>
      <td>
        {token.lastUsedAt ? (
          <>
            {formatTime(token.lastUsedAt)}
            <br />
            <small>{token.lastUsedAddress ?? 'unknown address'}</small>
          </>
        ) : (
          'never'
        )}
      </td>
      <td>
        <RowMenu name={token.name}>
          <DangerMenuItem
            label="Revoke"
            href={`/tokens/${token.id}/revoke`}
            action={`/tokens/${token.id}`}
            confirm={`Revoke the token “${token.name}”? Scripts using it are refused at once, on every node.`}
            confirmLabel="Revoke"
            target={`#token-${token.id}`}
          />
        </RowMenu>
      </td>
    </tr>
  );
}

export interface TokenFormValues {
  name: string;
  preset: string;
  scopes: Record<string, string>;
  expiresInDays: string;
  allowedAddresses: string;
}

export const BLANK_TOKEN_FORM: TokenFormValues = { name: '', preset: 'viewer', scopes: {}, expiresInDays: '90', allowedAddresses: '' };

export function NewTokenPage(props: { values: TokenFormValues; errors?: Record<string, string> }) {
  const { values, errors = {} } = props;
  return (
    <Layout title="New API token" section="tokens">
      <PageTitle title="New API token">The token is shown once, when it is created: copy it then.</PageTitle>
      <form method="post" action="/tokens" class="token-form">
        <FormAlert message={errors.form ?? errors.scopes} />
        <Field label="Name" name="name" value={values.name} error={errors.name} required maxlength={100} hint="Who or what uses it: “provisioning script”, “CI”." />
        <fieldset>
          <legend>Scope</legend>
          {(Object.keys(TOKEN_PRESETS) as Array<keyof typeof TOKEN_PRESETS>).map((preset) => (
            <label>
              <input type="radio" name="preset" value={preset} checked={values.preset === preset} />
              {TOKEN_PRESET_LABELS[preset]}
            </label>
          ))}
          <label>
            <input type="radio" name="preset" value="custom" checked={values.preset === 'custom'} />
            Custom, per resource (below)
          </label>
          {errors.preset ? <small class="field-error">{errors.preset}</small> : null}
        </fieldset>
        <fieldset>
          <legend>Custom scope (used when “Custom” is chosen)</legend>
          {TOKEN_RESOURCES.map((resource) => (
            <label for={`scope-${resource}`}>
              {TOKEN_RESOURCE_LABELS[resource]}
              <select
                id={`scope-${resource}`}
                name={`scope-${resource}`}
                aria-invalid={errors[`scopes.${resource}`] ? 'true' : undefined}
                aria-describedby={errors[`scopes.${resource}`] ? `scope-${resource}-error` : undefined}
              >
                <option value="none" selected={!values.scopes[resource] || values.scopes[resource] === 'none'}>
                  No access
                </option>
                <option value="read" selected={values.scopes[resource] === 'read'}>
                  Read only
                </option>
                {READ_ONLY_RESOURCES.has(resource) ? null : (
                  <option value="write" selected={values.scopes[resource] === 'write'}>
                    Read and write
                  </option>
                )}
              </select>
              {errors[`scopes.${resource}`] ? (
                <small id={`scope-${resource}-error`} class="field-error">
                  {errors[`scopes.${resource}`]}
                </small>
              ) : null}
            </label>
          ))}
        </fieldset>
        <Field
          label="Expires after (days)"
          name="expiresInDays"
          value={values.expiresInDays}
          error={errors.expiresInDays}
          maxlength={5}
          hint="Empty: never expires."
        />
        <label for="allowedAddresses">
          Allowed addresses
          <textarea
            id="allowedAddresses"
            name="allowedAddresses"
            rows={3}
            maxlength={5000}
            aria-invalid={errors.allowedAddresses ? 'true' : undefined}
            aria-describedby={errors.allowedAddresses ? 'allowedAddresses-error allowedAddresses-hint' : 'allowedAddresses-hint'}
          >
            {values.allowedAddresses}
          </textarea>
          {errors.allowedAddresses ? (
            <small id="allowedAddresses-error" class="field-error">
              {errors.allowedAddresses}
            </small>
          ) : null}
          <small id="allowedAddresses-hint">IP addresses or CIDR ranges, one per line. Empty: any address.</small>
        </label>
        <div class="form-actions">
          <button type="submit">Create token</button>
          <a href="/tokens" role="button" class="secondary outline">
            Cancel
          </a>
        </div>
      </form>
    </Layout>
  );
}

export function TokenCreatedPage(props: { token: ApiToken; secret: string }) {
  return (
    <Layout title="API token created" section="tokens">
      <PageTitle title="API token created">Copy it now: it is not shown again, and Gatehouse keeps only a digest of it.</PageTitle>
      <label for="token-secret">
        Token “{props.token.name}”
        <input id="token-secret" type="text" readonly value={props.secret} autocomplete="off" spellcheck={false} />
      </label>
      <p>
        Use it as <code>Authorization: Bearer {props.secret.slice(0, 8)}…</code>, for example:
      </p>
      <pre>
        <code>{`curl -H "Authorization: Bearer $GATEHOUSE_TOKEN" http://HOST:PORT/api/v1/clients`}</code>
      </pre>
      <p>
        <a href="/tokens" role="button">
          Done
        </a>
      </p>
    </Layout>
  );
}

export function RevokeTokenPage(props: { token: ApiToken }) {
  return (
    <Layout title="Revoke API token" section="tokens">
      <article>
        <header>
          <h1>Revoke “{props.token.name}”?</h1>
        </header>
        <p>Scripts using it (gat_…{props.token.last4}) are refused at once, on every node. This cannot be undone.</p>
        <ConfirmFooter action={`/tokens/${props.token.id}/revoke`} confirmLabel="Revoke" cancelHref="/tokens" cancelLabel="Keep it" />
      </article>
    </Layout>
  );
}
