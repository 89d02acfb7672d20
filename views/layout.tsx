import { tryGetContext } from 'hono/context-storage';
import { raw } from 'hono/html';
import type { Child } from 'hono/jsx';
import type { AppEnv } from '../src/web/env';

export type Section = 'overview' | 'clients' | 'connections' | 'topics' | 'groups' | 'group-rules' | 'administrators' | 'pipelines' | 'certificates' | 'audit' | 'tokens' | 'transfer';

interface NavItem {
  section: Section;
  href: string;
  label: string;
}

/** The main navigation, in labelled parts; later sections add themselves here. */
export const navigation: Array<{ label: string; items: NavItem[] }> = [
  { label: 'Broker', items: [
    { section: 'overview', href: '/', label: 'Overview' },
    { section: 'connections', href: '/connections', label: 'Connections' },
    { section: 'topics', href: '/topics', label: 'Topics' },
    { section: 'pipelines', href: '/pipelines', label: 'Pipelines' },
  ] },
  { label: 'Access', items: [
    { section: 'clients', href: '/clients', label: 'Clients' },
    { section: 'groups', href: '/groups', label: 'Groups' },
    { section: 'group-rules', href: '/group-rules', label: 'Group rules' },
    { section: 'transfer', href: '/transfer', label: 'Import and export' },
  ] },
  { label: 'Console', items: [
    { section: 'audit', href: '/audit', label: 'Audit trail' },
    { section: 'certificates', href: '/certificates', label: 'Certificates' },
    { section: 'administrators', href: '/administrators', label: 'Administrators' },
    { section: 'tokens', href: '/tokens', label: 'API tokens' },
  ] },
];

/** The request being rendered's context, when there is one (views rendered in tests have none). */
function requestContext() {
  return tryGetContext<AppEnv>();
}

/**
 * Whether the TLS listeners are on now; undefined when this console has none
 * to ask (views rendered without a broker).
 */
export function tlsIsOn(): boolean | undefined {
  const tls = requestContext()?.var.tls;
  return tls ? tls.status().source !== null : undefined;
}

/**
 * The page frame: a skip link, the app shell (navigation beside the page from
 * 64rem, a Menu button above it on narrower screens: a `<details>`, so it
 * opens without JavaScript), and `<main>` with the page's notices first.
 * Scripts are files only (the CSP forbids inline script); htmx is told not to
 * inject its indicator <style> for the same reason.
 */
export function Layout(props: {
  title: string;
  section?: Section;
  children: Child;
  /** Stylesheets and scripts (files under /static) only this page needs, after the shared ones. */
  styles?: string[];
  scripts?: string[];
  /** A page that is wider than a form: lets `<main>` use the whole width. */
  wide?: boolean;
}) {
  const context = requestContext();
  const administrator = context?.var.administrator;
  const flash = context?.var.flash;
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
        <body class={administrator ? 'app' : 'public'}>
          <a href="#main" class="skip-link">
            Skip to content
          </a>
          {administrator ? (
            <AppNavigation section={props.section} username={administrator.username} />
          ) : (
            <header class="public-header">
              <a href="/" class="brand">
                <strong>Gatehouse</strong>
              </a>
            </header>
          )}
          <main id="main" tabindex={-1} class={administrator ? 'app-main' : 'public-main'}>
            <div id="notices" class="notices" role="status">
              {flash ? <p class="notice">{flash}</p> : null}
            </div>
            {props.children}
          </main>
        </body>
      </html>
    </>
  );
}

/**
 * The navigation and the signed-in administrator's menu. One `<details>`
 * holds both: on a narrow screen it is the Menu button; from 64rem the CSS
 * shows its content as a sidebar whether it is open or not.
 */
function AppNavigation(props: { section?: Section; username: string }) {
  return (
    <header class="app-sidebar">
      <a href="/" class="brand">
        <strong>Gatehouse</strong>
      </a>
      <details class="app-menu">
        <summary>Menu</summary>
        <div class="app-menu-panel">
        <nav aria-label="Main">
          <ul>
            {navigation.map((part, i) => (
              <li class="nav-part">
                <span class="nav-part-label" id={`nav-part-${i}`}>
                  {part.label}
                </span>
                <ul aria-labelledby={`nav-part-${i}`}>
                  {part.items.map((item) => (
                    <li>
                      <a href={item.href} aria-current={props.section === item.section ? 'page' : undefined}>
                        {item.label}
                      </a>
                    </li>
                  ))}
                </ul>
              </li>
            ))}
          </ul>
        </nav>
        <section class="app-user" aria-label="Your account">
          <p class="signed-in-as">
            Signed in as <strong>{props.username}</strong>
          </p>
          <a href="/administrators/password">Change your password</a>
          <form method="post" action="/logout" class="sign-out">
            <button type="submit" class="secondary outline">
              Sign out
            </button>
          </form>
        </section>
        </div>
      </details>
    </header>
  );
}

/**
 * A table's own scrolling region, for a table that may be wider than the
 * page (a phone): the page never scrolls sideways, the region does, and it
 * takes focus so a keyboard can scroll it (WCAG 2.1.1, axe's
 * scrollable-region-focusable). Row menus inside open over it (app.css).
 */
export function TableRegion(props: { label: string; children: Child; id?: string; class?: string }) {
  return (
    <div id={props.id} class={props.class ? `table-scroll ${props.class}` : 'table-scroll'} role="region" aria-label={props.label} tabindex={0}>
      {props.children}
    </div>
  );
}

/**
 * A name that may be long, cut to its column with an ellipsis: the whole
 * text stays in the page (screen readers read it), in the title (a pointer
 * shows it), and a focused link shows it whole.
 */
export function Truncated(props: { text: string; href?: string; class?: string; code?: boolean }) {
  const cls = props.class ? `truncate ${props.class}` : 'truncate';
  if (props.code) {
    return (
      <code class={cls} title={props.text}>
        {props.text}
      </code>
    );
  }
  return props.href ? (
    <a href={props.href} class={cls} title={props.text}>
      {props.text}
    </a>
  ) : (
    <span class={cls} title={props.text}>
      {props.text}
    </span>
  );
}

/**
 * Group names as links (to the group, or to a search by its name when only
 * the name is known, as a session knows its groups), each cut to a chip.
 */
export function GroupChips(props: { groups: Array<string | { id: number; name: string }> }) {
  return (
    <ul class="chips">
      {props.groups.map((group) =>
        typeof group === 'string' ? (
          <li>
            <Truncated text={group} href={`/groups?q=${encodeURIComponent(group)}`} />
          </li>
        ) : (
          <li>
            <Truncated text={group.name} href={`/groups/${group.id}/edit`} />
          </li>
        ),
      )}
    </ul>
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
  /** Focus this field when the fragment holding it is swapped in (htmx honours autofocus). */
  autofocus?: boolean;
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
        autofocus={props.autofocus}
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
export function DangerMenuItem(props: {
  label: string;
  href: string;
  action: string;
  confirm: string;
  confirmLabel: string;
  target: string;
  swap?: string;
  /** A checkbox the dialog offers, sent as `?<option.name>=1` when ticked ("Also disconnect its 2 live sessions now"). */
  option?: { name: string; label: string };
}) {
  return (
    <li class="danger-item">
      <a
        href={props.href}
        hx-delete={props.action}
        hx-confirm={props.confirm}
        data-confirm-label={props.confirmLabel}
        data-confirm-option={props.option?.name}
        data-confirm-option-label={props.option?.label}
        hx-target={props.target}
        hx-swap={props.swap ?? 'outerHTML swapEmpty:true'}
        class="danger"
      >
        {props.label}
      </a>
    </li>
  );
}

/**
 * The buttons of a confirmation, the same on every page and in the dialog
 * (public/app.js): the way back first, the action last, marked dangerous
 * when it is. `children` go inside the form, before the buttons (an option
 * such as "also disconnect its sessions").
 */
export function ConfirmFooter(props: { action: string; confirmLabel: string; cancelHref: string; cancelLabel: string; danger?: boolean; children?: Child }) {
  return (
    <footer>
      <form method="post" action={props.action}>
        {props.children}
        <div class="form-actions confirm-actions">
          <a href={props.cancelHref} role="button" class="secondary outline">
            {props.cancelLabel}
          </a>
          <button type="submit" class={props.danger === false ? undefined : 'danger'}>
            {props.confirmLabel}
          </button>
        </div>
      </form>
    </footer>
  );
}

/** A page asking to confirm one action, without JavaScript (with it, the same question comes in a dialog). */
export function ConfirmPage(props: { title: string; section?: Section; heading: string; children: Child }) {
  return (
    <Layout title={props.title} section={props.section}>
      <article class="confirm">
        <header>
          <h1>{props.heading}</h1>
        </header>
        {props.children}
      </article>
    </Layout>
  );
}

/** A notice for the top of the page, sent with an htmx fragment (a row saved or removed in place). */
export function NoticePartial(props: { message: string }) {
  return (
    <hx-partial hx-target="#notices" hx-swap="innerHTML">
      <p class="notice">{props.message}</p>
    </hx-partial>
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
