import type { Administrator } from '../src/domain/administrators';
import type { FieldErrors } from '../src/domain/errors';
import { ConfirmFooter, DangerMenuItem, Field, FormAlert, formatTime, Layout, Notice, PageTitle, RowMenu, TableRegion, Truncated } from './layout';

/** `/administrators`: who may sign in to the console. */
export function AdministratorsPage(props: { administrators: Administrator[]; currentId: number; notice?: string; error?: string }) {
  const canRemove = props.administrators.length > 1;
  return (
    <Layout title="Administrators" section="administrators">
      <PageTitle title="Administrators">People who may sign in to this console.</PageTitle>
      <Notice message={props.notice} />
      <FormAlert message={props.error} />
      <div class="toolbar">
        <a href="/administrators/password" role="button" class="secondary outline">
          Change your password
        </a>
        <a href="/administrators/new" role="button">
          New administrator
        </a>
      </div>
      <p id="administrators-count">{`${props.administrators.length} ${props.administrators.length === 1 ? 'administrator' : 'administrators'}.`}</p>
      <TableRegion label="Administrators table">
        <table class="striped">
          <thead>
            <tr>
              <th scope="col">Username</th>
              <th scope="col">Created</th>
              <th scope="col">Password changed</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody id="administrators-rows">
            {props.administrators.map((administrator) => (
              <AdministratorRow administrator={administrator} isCurrent={administrator.id === props.currentId} canRemove={canRemove} />
            ))}
          </tbody>
        </table>
      </TableRegion>
    </Layout>
  );
}

/** One row; its menu removes the administrator (htmx DELETE, or a confirmation page without JS). */
export function AdministratorRow(props: { administrator: Administrator; isCurrent: boolean; canRemove: boolean; error?: string }) {
  const { administrator, isCurrent } = props;
  const id = `administrator-${administrator.id}`;
  return (
    <tr id={id}>
      <th scope="row">
        <Truncated text={administrator.username} />
        {isCurrent ? <small> (you)</small> : null}
        {props.error ? (
          <small role="alert" class="field-error">
            <br />
            {props.error}
          </small>
        ) : null}
      </th>
      <td>{formatTime(administrator.createdAt)}</td>
      <td>{formatTime(administrator.updatedAt)}</td>
      <td class="row-actions">
        <RowMenu name={administrator.username}>
          {isCurrent ? (
            <li>
              <a href="/administrators/password">Change password</a>
            </li>
          ) : null}
          {props.canRemove ? (
            <DangerMenuItem
              label="Remove"
              href={`/administrators/${administrator.id}/remove`}
              action={`/administrators/${administrator.id}`}
              confirm={
                isCurrent
                  ? 'Remove your own account? You will be signed out and cannot sign in again.'
                  : `Remove the administrator “${administrator.username}”? They are signed out at once.`
              }
              confirmLabel="Remove administrator"
              target={`#${id}`}
              swap="outerHTML"
            />
          ) : (
            <li>
              <span aria-disabled="true">The last administrator cannot be removed</span>
            </li>
          )}
        </RowMenu>
      </td>
    </tr>
  );
}

export interface NewAdministratorValues {
  username: string;
}

/** `/administrators/new`. */
export function NewAdministratorPage(props: { values: NewAdministratorValues; errors?: FieldErrors }) {
  return (
    <Layout title="New administrator" section="administrators">
      <Breadcrumb title="New administrator" />
      <h1>New administrator</h1>
      <NewAdministratorForm values={props.values} errors={props.errors} />
    </Layout>
  );
}

/** Page form; htmx posts it and swaps it back with messages on a 4xx. */
export function NewAdministratorForm(props: { values: NewAdministratorValues; errors?: FieldErrors }) {
  const errors = props.errors ?? {};
  return (
    <form id="administrator-form" method="post" action="/administrators" hx-post="/administrators" hx-target="this" hx-swap="outerHTML" novalidate>
      <FormAlert message={errors.form} />
      <Field
        label="Username"
        name="username"
        value={props.values.username}
        error={errors.username}
        hint="What they type to sign in. No spaces; case matters."
        required
        maxlength={128}
        autocomplete="off"
      />
      <Field
        label="Password"
        name="password"
        type="password"
        error={errors.password}
        hint="At least 12 characters. Give it to them by a safe channel; they can change it after signing in."
        required
        maxlength={256}
        autocomplete="new-password"
      >
        <div class="password-tools" hidden data-password-tools="password">
          <button type="button" class="secondary outline" data-generate-password="password">
            Generate strong password
          </button>
          <button type="button" class="secondary outline" data-copy-password="password">
            Copy
          </button>
          <span role="status" class="copy-status" data-copy-status="password"></span>
        </div>
      </Field>
      <div class="form-actions">
        <button type="submit">Create administrator</button>
        <a href="/administrators" role="button" class="secondary outline">
          Cancel
        </a>
      </div>
    </form>
  );
}

/** `/administrators/password`: the signed-in administrator's own password. */
export function ChangePasswordPage(props: { errors?: FieldErrors }) {
  return (
    <Layout title="Change your password" section="administrators">
      <Breadcrumb title="Change your password" />
      <h1>Change your password</h1>
      <p>Every other session of yours ends: other browsers signed in as you must sign in again.</p>
      <ChangePasswordForm errors={props.errors} />
    </Layout>
  );
}

export function ChangePasswordForm(props: { errors?: FieldErrors }) {
  const errors = props.errors ?? {};
  return (
    <form
      id="password-form"
      method="post"
      action="/administrators/password"
      hx-post="/administrators/password"
      hx-target="this"
      hx-swap="outerHTML"
      novalidate
    >
      <FormAlert message={errors.form} />
      <Field
        label="Current password"
        name="current_password"
        type="password"
        error={errors.current_password}
        required
        maxlength={256}
        autocomplete="current-password"
      />
      <Field
        label="New password"
        name="new_password"
        type="password"
        error={errors.new_password}
        hint="At least 12 characters."
        required
        maxlength={256}
        autocomplete="new-password"
      />
      <Field
        label="Repeat the new password"
        name="confirm_password"
        type="password"
        error={errors.confirm_password}
        required
        maxlength={256}
        autocomplete="new-password"
      />
      <div class="form-actions">
        <button type="submit">Change password</button>
        <a href="/administrators" role="button" class="secondary outline">
          Cancel
        </a>
      </div>
    </form>
  );
}

/** The no-JavaScript removal confirmation. */
export function RemoveAdministratorPage(props: { administrator: Administrator; isCurrent: boolean; error?: string }) {
  const { administrator } = props;
  return (
    <Layout title={`Remove ${administrator.username}`} section="administrators">
      <article>
        <header>
          <h1>Remove administrator “{administrator.username}”?</h1>
        </header>
        <FormAlert message={props.error} />
        <p>
          {props.isCurrent
            ? 'This is your own account: you are signed out at once and cannot sign in again.'
            : 'They are signed out at once and cannot sign in again.'}
        </p>
        <ConfirmFooter
          action={`/administrators/${administrator.id}/remove`}
          confirmLabel="Remove administrator"
          cancelHref="/administrators"
          cancelLabel="Keep them"
        />
      </article>
    </Layout>
  );
}

function Breadcrumb(props: { title: string }) {
  return (
    <nav aria-label="breadcrumb">
      <ul>
        <li>
          <a href="/administrators">Administrators</a>
        </li>
        <li>{props.title}</li>
      </ul>
    </nav>
  );
}
