import type { Child } from 'hono/jsx';
import type { FieldErrors } from '../src/domain/errors';
import type { Group, GroupPage, GroupSummary, RuleImpact } from '../src/domain/groups';
import type { RuleChange } from '../src/domain/groupRules';
import { ApplyChoice, ConfirmFooter, DangerMenuItem, Field, FormAlert, Layout, Notice, NoticePartial, PageTitle, Pagination, RowMenu, SearchSummary, TableRegion, Truncated } from './layout';

/** A permission row as typed: any string, so bad input can be shown again. */
export interface PermissionFormRow {
  effect: string;
  action: string;
  topic: string;
}

export interface GroupFormValues {
  /** The version the form was loaded with, sent back to catch lost updates. */
  version?: number;
  name: string;
  description: string;
  permissions: PermissionFormRow[];
  /** Editing: `now` to disconnect the group's sessions once saved. */
  apply?: string;
}

export const BLANK_PERMISSION: PermissionFormRow = { effect: 'allow', action: 'publish', topic: '' };

/** `/groups`: search, the table and paging. */
export function GroupsPage(props: { result: GroupPage; notice?: RuleChange | null; message?: string }) {
  return (
    <Layout title="Groups" section="groups">
      <PageTitle title="Groups">Bundles of topic permissions. Group rules decide which clients get which groups.</PageTitle>
      <div id="groups-notice">
        {props.notice ? <RuleChangeNotice change={props.notice} /> : null}
        <Notice message={props.message} />
      </div>
      <div class="toolbar">
        <form
          method="get"
          action="/groups"
          role="search"
          hx-get="/groups"
          hx-trigger="input changed delay:300ms from:find input, submit"
          hx-target="#groups-results"
          hx-select="#groups-results"
          hx-swap="outerHTML"
          hx-push-url="true"
        >
          <input type="search" name="q" value={props.result.query} placeholder="Search by name" aria-label="Search groups" />
          <button type="submit">Search</button>
        </form>
        <a href="/groups/new" role="button">
          New group
        </a>
      </div>
      <GroupsResults result={props.result} />
    </Layout>
  );
}

/** What a deletion did to the group rules, with a way to review them. */
export function RuleChangeNotice(props: { change: RuleChange }) {
  return (
    <div role="status" class="notice">
      <p>
        <strong>{props.change.summary}</strong> The group rules changed:
      </p>
      <ul>
        {props.change.details.map((line) => (
          <li>{line}</li>
        ))}
      </ul>
      <p>
        <a href="/group-rules">Review the group rules</a>
      </p>
    </div>
  );
}

/** The part of the page a search replaces. */
export function GroupsResults(props: { result: GroupPage }) {
  const { result } = props;
  return (
    <section id="groups-results" aria-label="Groups">
      <SearchSummary total={result.total} query={result.query} one="group" many="groups" />
      {result.groups.length === 0 ? (
        <div class="empty-state">
          {result.query ? (
            <p>
              No group matches your search. <a href="/groups">Show all groups</a>
            </p>
          ) : (
            <p>
              No groups yet. <a href="/groups/new">Create the first group</a>, then give it to clients with a group rule.
            </p>
          )}
        </div>
      ) : (
        <TableRegion label="Groups table">
          <table class="striped">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Description</th>
                <th scope="col">Topics</th>
                <th scope="col">Held by</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {result.groups.map((group) => (
                <GroupRow group={group} />
              ))}
            </tbody>
          </table>
        </TableRegion>
      )}
      <Pagination path="/groups" page={result.page} pageCount={result.pageCount} query={result.query} />
    </section>
  );
}


const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

const SHORT_ACTION = { publish: 'pub', subscribe: 'sub' } as const;

/** Its topics in short: "pub plant/#", deny rows marked, and how many more. */
function GroupTopics(props: { group: GroupSummary }) {
  const { group } = props;
  const topics = group.topics ?? [];
  if (group.permissionCount === 0) return <span class="help">no rows: gives nothing</span>;
  const more = group.permissionCount - topics.length;
  return (
    <ul class="compact-list">
      {topics.map((t) => (
        <li class={t.effect === 'deny' ? 'deny' : undefined}>
          {t.effect === 'deny' ? 'deny ' : ''}
          {SHORT_ACTION[t.action]} <Truncated text={t.topic} code />
        </li>
      ))}
      {more > 0 ? (
        <li>
          <a href={`/groups/${group.id}/edit`}>{plural(more, 'more row', 'more rows')}</a>
        </li>
      ) : null}
    </ul>
  );
}

/** Who holds it: the clients, client ids and certificates of the rules that give it, and how many more. */
function GroupHolders(props: { group: GroupSummary }) {
  const { group } = props;
  const holders = group.holders ?? [];
  if (group.ruleCount === 0) return <span class="help">nobody: no group rule gives it</span>;
  const more = group.ruleCount - holders.length;
  return (
    <ul class="compact-list">
      {holders.map((h) => (
        <li>
          {h.matchBy === 'client' && h.client ? (
            <Truncated text={h.client.name} href={`/clients/${h.client.id}`} />
          ) : h.matchBy === 'client_id' ? (
            <>
              client ID <Truncated text={h.value} code />
            </>
          ) : (
            <>
              certificate <Truncated text={h.value} code />
            </>
          )}
        </li>
      ))}
      {more > 0 ? (
        <li>
          <a href="/group-rules">{plural(more, 'more rule', 'more rules')}</a>
        </li>
      ) : null}
    </ul>
  );
}

export function GroupRow(props: { group: GroupSummary }) {
  const { group } = props;
  const id = `group-${group.id}`;
  const usedBy =
    group.ruleCount === 0
      ? 'No group rule gives it.'
      : `${plural(group.ruleCount, 'group rule gives', 'group rules give')} it and will lose it (a rule left with no group is removed).`;
  return (
    <tr id={id}>
      <th scope="row">
        <Truncated text={group.name} href={`/groups/${group.id}/edit`} />
      </th>
      <td>
        <Truncated text={group.description} class="wide" />
      </td>
      <td class="group-topics">
        <GroupTopics group={group} />
      </td>
      <td class="group-holders">
        <GroupHolders group={group} />
      </td>
      <td class="row-actions">
        <RowMenu name={group.name}>
          <li>
            <a href={`/groups/${group.id}/edit`}>Edit</a>
          </li>
          <DangerMenuItem
            label="Delete"
            href={`/groups/${group.id}/delete`}
            action={`/groups/${group.id}`}
            confirm={`Delete the group “${group.name}”? ${usedBy} Connected devices keep their permissions until they reconnect.`}
            confirmLabel="Delete group"
            target={`#${id}`}
          />
        </RowMenu>
      </td>
    </tr>
  );
}

/** The form as a page: `/groups/new` and `/groups/:id/edit`. */
export function GroupFormPage(props: { group?: Group; values: GroupFormValues; errors?: FieldErrors; focus?: string }) {
  const editing = props.group !== undefined;
  const title = editing ? `Edit ${props.group!.name}` : 'New group';
  return (
    <Layout title={title} section="groups">
      <nav aria-label="breadcrumb">
        <ul>
          <li>
            <a href="/groups">Groups</a>
          </li>
          <li>{title}</li>
        </ul>
      </nav>
      <h1>{title}</h1>
      <GroupForm action={editing ? `/groups/${props.group!.id}` : '/groups'} values={props.values} errors={props.errors} editing={editing} focus={props.focus} />
    </Layout>
  );
}

/**
 * The group form. Adding and removing permission rows posts the form back
 * (htmx swaps it, without JavaScript the page reloads) without saving.
 */
export function GroupForm(props: { action: string; values: GroupFormValues; errors?: FieldErrors; editing?: boolean; focus?: string }) {
  const errors = props.errors ?? {};
  const rows = props.values.permissions;
  return (
    <form id="group-form" method="post" action={props.action} hx-post={props.action} hx-target="this" hx-swap="outerHTML" novalidate>
      {/* First in the form: Enter in a field saves instead of pressing the first Remove. */}
      <button type="submit" name="_action" value="save" hidden tabindex={-1}>
        Save
      </button>
      {props.values.version !== undefined ? <input type="hidden" name="version" value={String(props.values.version)} /> : null}
      <FormAlert message={errors.form ?? (hasRowErrors(errors) ? 'Some permission rows need attention: see the messages below.' : undefined)} />
      <Field label="Name" name="name" value={props.values.name} error={errors.name} required maxlength={100} autocomplete="off" />
      <Field label="Description" name="description" value={props.values.description} error={errors.description} maxlength={500} autocomplete="off" hint="Optional: what the group is for." />
      <fieldset>
        <legend>ACL permissions</legend>
        <p id="permission-help" class="help">
          Each row allows or denies publishing or subscribing on a topic filter. <code>+</code> stands for one level, <code>#</code> for any
          levels below (and the level itself). <code>%u</code> is the client's username and <code>%c</code> its MQTT client ID. A Deny row
          always wins; with no row matching, the answer is deny.
        </p>
        {errors.permissions ? (
          <p class="field-error" id="permissions-error">
            {errors.permissions}
          </p>
        ) : null}
        {rows.length === 0 ? (
          <p class="empty-state">No rows: this group allows nothing.</p>
        ) : (
          <TableRegion label="Permission rows">
            <table class="permission-rows">
              <thead>
                <tr>
                  <th scope="col">#</th>
                  <th scope="col">Effect</th>
                  <th scope="col">Action</th>
                  <th scope="col">Topic filter</th>
                  <th scope="col">
                    <span class="visually-hidden">Remove</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {rows.map((row, index) => (
                  <PermissionRowFields row={row} index={index} errors={errors} focus={props.focus} />
                ))}
              </tbody>
            </table>
          </TableRegion>
        )}
        <button type="submit" name="_action" value="add" class="secondary outline" autofocus={props.focus === 'add'}>
          Add permission
        </button>
      </fieldset>
      {props.editing ? (
        <ApplyChoice value={props.values.apply} affects="the sessions that hold this group’s permissions" />
      ) : (
        <p class="help">Changes apply to devices as they next connect; connected devices keep the permissions they connected with.</p>
      )}
      <div class="form-actions">
        <button type="submit" name="_action" value="save">
          {props.editing ? 'Save changes' : 'Create group'}
        </button>
        <a href="/groups" role="button" class="secondary outline">
          Cancel
        </a>
      </div>
    </form>
  );
}

function hasRowErrors(errors: FieldErrors) {
  return Object.keys(errors).some((key) => key.startsWith('permissions.'));
}

function PermissionRowFields(props: { row: PermissionFormRow; index: number; errors: FieldErrors; focus?: string }) {
  const { row, index, errors } = props;
  const n = index + 1;
  const id = (field: string) => `permission-${index}-${field}`;
  const error = (field: string) => errors[`permissions.${index}.${field}`];
  const described = (field: string, hint?: string) => [error(field) ? `${id(field)}-error` : '', hint ?? ''].filter(Boolean).join(' ') || undefined;
  return (
    <tr id={`permission-${index}`} class={error('topic') || error('effect') || error('action') ? 'invalid' : undefined}>
      <td>{n}</td>
      <td>
        <select
          name="permission-effect"
          id={id('effect')}
          aria-label={`Effect, row ${n}`}
          aria-invalid={error('effect') ? 'true' : undefined}
          aria-describedby={described('effect')}
        >
          <option value="allow" selected={row.effect === 'allow'}>
            Allow
          </option>
          <option value="deny" selected={row.effect === 'deny'}>
            Deny
          </option>
        </select>
        <ErrorText id={`${id('effect')}-error`} message={error('effect')} />
      </td>
      <td>
        <select
          name="permission-action"
          id={id('action')}
          aria-label={`Action, row ${n}`}
          aria-invalid={error('action') ? 'true' : undefined}
          aria-describedby={described('action')}
        >
          <option value="publish" selected={row.action === 'publish'}>
            Publish
          </option>
          <option value="subscribe" selected={row.action === 'subscribe'}>
            Subscribe
          </option>
        </select>
        <ErrorText id={`${id('action')}-error`} message={error('action')} />
      </td>
      <td>
        <input
          type="text"
          name="permission-topic"
          id={id('topic')}
          value={row.topic}
          aria-label={`Topic filter, row ${n}`}
          aria-invalid={error('topic') ? 'true' : undefined}
          aria-describedby={described('topic', 'permission-help')}
          placeholder="sensors/%c/#"
          autocomplete="off"
          spellcheck={false}
          autofocus={props.focus === `row:${index}`}
        />
        <ErrorText id={`${id('topic')}-error`} message={error('topic')} />
      </td>
      <td>
        <button type="submit" name="_action" value={`remove:${index}`} class="secondary outline" aria-label={`Remove row ${n}`}>
          Remove
        </button>
      </td>
    </tr>
  );
}

export function ErrorText(props: { id: string; message?: string }) {
  if (!props.message) return null;
  return (
    <small id={props.id} class="field-error">
      {props.message}
    </small>
  );
}

/** The no-JavaScript delete confirmation, with what it does to the rules. */
export function DeleteGroupPage(props: { group: Group; impact: RuleImpact[] }) {
  const { group, impact } = props;
  return (
    <Layout title={`Delete ${group.name}`} section="groups">
      <article>
        <header>
          <h1>Delete group “{group.name}”?</h1>
        </header>
        {impact.length === 0 ? (
          <p>No group rule gives this group.</p>
        ) : (
          <>
            <p>These group rules change:</p>
            <ul>
              {impact.map((i) => (
                <li>
                  {i.rule}{' '}
                  {i.removed
                    ? 'is removed: this is its only group.'
                    : `loses it and keeps ${i.remainingGroups.map((n) => `“${n}”`).join(', ')}.`}
                </li>
              ))}
            </ul>
          </>
        )}
        <p>Devices connected now keep their permissions until they reconnect.</p>
        <ConfirmFooter action={`/groups/${group.id}/delete`} confirmLabel="Delete group" cancelHref="/groups" cancelLabel="Keep it" />
      </article>
    </Layout>
  );
}

/** The htmx answer to a delete: the row goes, the notice region says what changed. */
export function GroupDeletedFragment(props: { group: Group; change: RuleChange | null }): Child {
  return (
    <>
      <NoticePartial message={`Group “${props.group.name}” deleted.`} />
      {props.change ? (
        <hx-partial hx-target="#groups-notice" hx-swap="innerHTML">
          <RuleChangeNotice change={props.change} />
        </hx-partial>
      ) : null}
    </>
  );
}
