import { tryGetContext } from 'hono/context-storage';
import { raw } from 'hono/html';
import type { Child } from 'hono/jsx';
import type { AppEnv } from '../src/web/env';

export type Section = 'pipelines' | 'overview' | 'clients' | 'connections' | 'groups' | 'group-rules' | 'administrators' | 'certificates' | 'audit' | 'tokens';

/** Links in the main navigation; later sections add themselves here. */
export const navigation: Array<{ section: Section; href: string; label: string }> = [
  { section: 'overview', href: '/', label: 'Overview' },
  { section: 'clients', href: '/clients', label: 'Clients' },
  { section: 'connections', href: '/connections', label: 'Connections' },
  { section: 'groups', href: '/groups', label: 'Groups' },
  { section: 'group-rules', href: '/group-rules', label: 'Group rules' },
  { section: 'administrators', href: '/administrators', label: 'Administrators' },
  { section: 'pipelines', href: '/pipelines', label: 'Pipelines' },
  { section: 'certificates', href: '/certificates', label: 'Certificates' },
  { section: 'audit', href: '/audit', label: 'Audit trail' },
  { section: 'tokens', href: '/tokens', label: 'API tokens' },
];

/** The administrator of the request being rendered, if one is signed in. */
function signedInAdministrator() {
  return tryGetContext<AppEnv>()?.var.administrator;
}

/**
 * The page frame. Scripts are files only (the CSP forbids inline script);
 * htmx is told not to inject its indicator <style> for the same reason.
 */
export function Layout(props: {
  title: string;
  section?: Section;
  children: Child;
  header?: Child;
  /** Stylesheets and scripts (files under /static) only this page needs, after the shared ones. */
  styles?: string[];
  scripts?: string[];
}) {
  const administrator = signedInAdministrator();
  return (
    <>
      {raw('<!doctype html>')}
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="htmx-config" content='{"includeIndicatorCSS":false}' />
        <title>{`${props.title} · Gatehouse`}</title>
        <link rel="icon" href="/static/favicon.svg" type="image/svg+xml" />
        <link rel="stylesheet" href="/static/pico.min.css" />
        {props.styles?.map((href) => <link rel="stylesheet" href={href} />)}
        <link rel="stylesheet" href="/static/app.css" />
        <script src="/static/htmx.min.js" defer></script>
        <script src="/static/app.js" defer></script>
        {props.scripts?.map((src) => <script src={src} defer></script>)}
      </head>
      <body>
        <header class="container">
          <nav aria-label="Main">
            <ul>
              <li>
                <a href="/" class="brand">
                  <strong>Gatehouse</strong>
                </a>
              </li>
            </ul>
            {administrator ? (
              <ul>
                {navigation.map((item) => (
                  <li>
                    <a href={item.href} aria-current={props.section === item.section ? 'page' : undefined}>
                      {item.label}
                    </a>
                  </li>
                ))}
                {props.header}
                <li class="signed-in-as">
                  <small>
                    Signed in as <strong>{administrator.username}</strong>
                  </small>
                </li>
                <li>
                  <form method="post" action="/logout" class="sign-out">
                    <button type="submit" class="secondary outline">
                      Sign out
                    </button>
                  </form>
                </li>
              </ul>
            ) : (
              props.header && <ul>{props.header}</ul>
            )}
          </nav>
        </header>
        <main class="container">{props.children}</main>
      </body>
    </html>
    </>
  );
}

/** A labelled input with its error message, wired for screen readers. */
export function Field(props: {
  label: string;
  name: string;
  id?: string;
  type?: string;
  value?: string;
  error?: string;
  hint?: string;
  autocomplete?: string;
  required?: boolean;
  maxlength?: number;
  children?: Child;
}) {
  const id = props.id ?? props.name;
  const describedBy = [props.error ? `${id}-error` : '', props.hint ? `${id}-hint` : ''].filter(Boolean).join(' ');
  return (
    <label for={id}>
      {props.label}
      <input
        id={id}
        name={props.name}
        type={props.type ?? 'text'}
        value={props.value ?? ''}
        autocomplete={props.autocomplete}
        required={props.required}
        maxlength={props.maxlength}
        aria-invalid={props.error ? 'true' : undefined}
        aria-describedby={describedBy || undefined}
      />
      {props.children}
      {props.error ? <small id={`${id}-error`} class="field-error">{props.error}</small> : null}
      {props.hint ? <small id={`${id}-hint`}>{props.hint}</small> : null}
    </label>
  );
}

/** A page's heading and the line that says what the page is for. */
export function PageTitle(props: { title: string; children: Child }) {
  return (
    <hgroup class="page-title">
      <h1>{props.title}</h1>
      <p>{props.children}</p>
    </hgroup>
  );
}

/** A passing message (saved, removed…), announced politely to screen readers. */
export function Notice(props: { message?: string }) {
  if (!props.message) return null;
  return (
    <p role="status" class="notice">
      {props.message}
    </p>
  );
}

/** "3 clients." or "1 client matches “boiler”." above a searchable table. */
export function SearchSummary(props: { total: number; query: string; one: string; many: string; id?: string }) {
  const { total, query } = props;
  return (
    <p id={props.id}>
      {query
        ? `${total} ${total === 1 ? `${props.one} matches` : `${props.many} match`} “${query}”.`
        : `${total} ${total === 1 ? props.one : props.many}.`}
    </p>
  );
}

/**
 * The three-dot menu of a table row: a `<details>` dropdown, so it opens by
 * keyboard and without JavaScript. `children` are its `<li>` items.
 */
export function RowMenu(props: { name: string; children: Child }) {
  return (
    <details class="dropdown">
      <summary aria-label={`Actions for ${props.name}`} role="button" class="outline secondary menu-button">
        ⋮
      </summary>
      <ul dir="rtl">{props.children}</ul>
    </details>
  );
}

/**
 * A destructive row-menu item: without JavaScript a link to the confirmation
 * page `href`; with htmx a DELETE of `action` after a `<dialog>` asking
 * `confirm`, whose answer replaces the row `target`.
 */
export function DangerMenuItem(props: { label: string; href: string; action: string; confirm: string; confirmLabel: string; target: string; swap?: string }) {
  return (
    <li>
      <a
        href={props.href}
        hx-delete={props.action}
        hx-confirm={props.confirm}
        data-confirm-label={props.confirmLabel}
        hx-target={props.target}
        hx-swap={props.swap ?? 'outerHTML swapEmpty:true'}
        class="danger"
      >
        {props.label}
      </a>
    </li>
  );
}

/** The buttons of a no-JavaScript confirmation page: do it (POST `action`), or go back. */
export function ConfirmFooter(props: { action: string; confirmLabel: string; cancelHref: string; cancelLabel: string }) {
  return (
    <footer>
      <form method="post" action={props.action} class="form-actions">
        <button type="submit" class="danger">
          {props.confirmLabel}
        </button>
        <a href={props.cancelHref} role="button" class="secondary outline">
          {props.cancelLabel}
        </a>
      </form>
    </footer>
  );
}

/** A message at the top of a form, for errors that belong to no single field. */
export function FormAlert(props: { message?: string }) {
  if (!props.message) return null;
  return (
    <p role="alert" class="form-alert">
      {props.message}
    </p>
  );
}

/** The day only, for tables; the exact time is in the title and datetime. */
export function formatDate(date: Date) {
  const iso = date.toISOString();
  return (
    <time datetime={iso} title={`${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`}>
      {iso.slice(0, 10)}
    </time>
  );
}

export function formatTime(date: Date) {
  const iso = date.toISOString();
  return <time datetime={iso}>{`${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`}</time>;
}

export function NotFoundPage(props: { message?: string; section?: Section }) {
  return (
    <Layout title="Not found" section={props.section}>
      <h1>Not found</h1>
      <p>{props.message ?? 'There is nothing at this address.'}</p>
      <p>
        <a href="/clients">Back to clients</a>
      </p>
    </Layout>
  );
}

export function ErrorPage(props: { status: number; message: string }) {
  return (
    <Layout title="Error">
      <h1>{props.status === 403 ? 'Forbidden' : props.status === 503 ? 'Database unavailable' : props.status === 413 ? 'Too large' : 'Something went wrong'}</h1>
      <p>{props.message}</p>
    </Layout>
  );
}

/** Previous / Page N of M / Next, keeping the search query. */
export function Pagination(props: { path: string; page: number; pageCount: number; query: string }) {
  const { page, pageCount, query } = props;
  if (pageCount <= 1) return null;
  const href = (p: number) => `${props.path}?${new URLSearchParams({ ...(query ? { q: query } : {}), page: String(p) })}`;
  return (
    <nav aria-label="Pages" class="pagination">
      <ul>
        <li>{page > 1 ? <a href={href(page - 1)}>Previous</a> : <span aria-disabled="true">Previous</span>}</li>
        <li aria-current="page">{`Page ${page} of ${pageCount}`}</li>
        <li>{page < pageCount ? <a href={href(page + 1)}>Next</a> : <span aria-disabled="true">Next</span>}</li>
      </ul>
    </nav>
  );
}

/**
 * First / Previous / where we are / Next / Last, for a list paged by key
 * rather than by page number: each link comes whole, null where there is no
 * such page (then it shows disabled).
 */
export function PageLinks(props: { position: string; first: string | null; previous: string | null; next: string | null; last: string | null }) {
  if (props.previous === null && props.next === null) return null;
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
        <li>{link(props.first, 'First')}</li>
        <li>{link(props.previous, 'Previous', 'prev')}</li>
        <li aria-current="page">{props.position}</li>
        <li>{link(props.next, 'Next', 'next')}</li>
        <li>{link(props.last, 'Last')}</li>
      </ul>
    </nav>
  );
}

/**
 * On an edit form: when a saved change reaches the sessions it affects. By
 * default at their next connection; "now" disconnects them, and devices
 * reconnect under what was saved.
 */
export function ApplyChoice(props: { value?: string; affects: string }) {
  const now = props.value === 'now';
  return (
    <fieldset class="apply-choice">
      <legend>Apply the change</legend>
      <label>
        <input type="radio" name="apply" value="next" checked={!now} />
        At each session’s next connection
      </label>
      <label>
        <input type="radio" name="apply" value="now" checked={now} />
        Now: disconnect {props.affects}, so they reconnect under it
      </label>
    </fieldset>
  );
}
