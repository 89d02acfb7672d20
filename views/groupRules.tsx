import type { FieldErrors } from '../src/domain/errors';
import { MATCH_BY_LABELS, type RuleChange } from '../src/domain/groupRules';
import { ErrorText } from './groups';
import { FormAlert, formatTime, Layout, Notice, PageTitle, TableRegion } from './layout';

/** One rule as typed on the page. */
export interface RuleFormRow {
  matchBy: string;
  /** The client's username (by client) or the client id / pattern. */
  value: string;
  /** Group ids, as strings. */
  groups: string[];
}

export interface RulesPageProps {
  rows: RuleFormRow[];
  groups: Array<{ id: number; name: string }>;
  clients: Array<{ name: string; username: string }>;
  revision: string;
  errors?: FieldErrors;
  focus?: string;
  notice?: string;
  changes: RuleChange[];
  /** Text the rows are narrowed to (the others stay in the form, hidden, and are saved as they are). */
  query?: string;
  /** The form holds changes not saved yet (it came back from New rule, Delete or a refused Save). */
  unsaved?: boolean;
}

/** Whether a rule row shows for `query`: found in its value, its client's name, or its groups' names (any case). */
export function ruleRowMatches(row: RuleFormRow, query: string, groups: RulesPageProps['groups'], clients: RulesPageProps['clients']): boolean {
  const q = query.trim().toLowerCase();
  // A new row (nothing typed yet) always shows.
  if (!q || row.value.trim() === '') return true;
  const names = [
    row.value,
    row.matchBy === 'client' ? (clients.find((c) => c.username === row.value.trim())?.name ?? '') : '',
    ...groups.filter((g) => row.groups.includes(String(g.id))).map((g) => g.name),
  ];
  return names.some((text) => text.toLowerCase().includes(q));
}

/** How many rows of the form give each group. */
function ruleCounts(rows: RuleFormRow[], groups: RulesPageProps['groups']): Map<number, number> {
  const counts = new Map(groups.map((g) => [g.id, 0]));
  for (const row of rows) for (const id of new Set(row.groups)) if (counts.has(Number(id))) counts.set(Number(id), counts.get(Number(id))! + 1);
  return counts;
}

/** `/group-rules`: every rule on one form, saved all at once. */
export function GroupRulesPage(props: RulesPageProps) {
  return (
    <Layout title="Group rules" section="group-rules">
      <PageTitle title="Group rules">Which clients get which groups. A connection gets the groups of every rule it matches.</PageTitle>
      <Notice message={props.notice} />
      <RuleChanges changes={props.changes} />
      <form method="get" action="/group-rules" class="search-form rules-search" aria-label="Search the group rules">
        <div role="search">
          <input
            type="search"
            name="q"
            value={props.query ?? ''}
            placeholder="Search by client, client ID or group"
            aria-label="Search the group rules"
            data-filter-rules="#rules-form"
            autocomplete="off"
          />
          <button type="submit">Search</button>
        </div>
      </form>
      <GroupRulesForm {...props} />
    </Layout>
  );
}

function RuleChanges(props: { changes: RuleChange[] }) {
  if (props.changes.length === 0) return null;
  return (
    <section aria-labelledby="rule-changes-title" class="rule-changes">
      <h2 id="rule-changes-title">Changed by deletions</h2>
      {props.changes.map((change) => (
        <article id={`rule-change-${change.id}`}>
          <p>
            <strong>{change.summary}</strong> {formatTime(change.createdAt)}
          </p>
          <ul>
            {change.details.map((line) => (
              <li>{line}</li>
            ))}
          </ul>
          <form method="post" action={`/group-rules/changes/${change.id}/dismiss`}>
            <button type="submit" class="secondary outline" aria-label={`Dismiss: ${change.summary}`}>
              Dismiss
            </button>
          </form>
        </article>
      ))}
    </section>
  );
}

/**
 * The rules form. Add and Remove post the form back without saving (htmx
 * swaps it in place; without JavaScript the page reloads); Save applies every
 * row or, if one is wrong, none.
 */
export function GroupRulesForm(props: RulesPageProps) {
  const errors = props.errors ?? {};
  const rowErrors = Object.keys(errors).some((key) => key.startsWith('rules.'));
  const query = props.query?.trim() ?? '';
  const counts = ruleCounts(props.rows, props.groups);
  const shown = props.rows.filter((row) => ruleRowMatches(row, query, props.groups, props.clients)).length;
  return (
    <form
      id="rules-form"
      method="post"
      action="/group-rules"
      hx-post="/group-rules"
      hx-target="this"
      hx-swap="outerHTML"
      novalidate
      data-unsaved={props.unsaved ? 'true' : undefined}
    >
      {/* First in the form: Enter in a field saves instead of pressing the first Remove. */}
      <button type="submit" name="_action" value="save" hidden tabindex={-1}>
        Save
      </button>
      <input type="hidden" name="revision" value={props.revision} />
      <input type="hidden" name="q" value={query} />
      {props.unsaved ? (
        <p class="notice" role="status">
          Not saved yet: Save rules applies these rows.
        </p>
      ) : null}
      {props.groups.length ? (
        <p class="help rule-counts">
          Rules per group:{' '}
          {props.groups.map((g, i) => (
            <>
              {i > 0 ? ' · ' : ''}
              <a href={`/groups/${g.id}/edit`}>{g.name}</a> {counts.get(g.id) ?? 0}
            </>
          ))}
        </p>
      ) : null}
      {query ? (
        <p class="help" id="rules-shown">
          {shown} of {props.rows.length} rules match “{query}”; the others are kept as they are. <a href="/group-rules">Show all</a>
        </p>
      ) : null}
      <FormAlert message={errors.form ?? (rowErrors ? 'Nothing was saved: some rules need attention (see the messages below).' : undefined)} />
      {props.groups.length === 0 ? (
        <p class="notice">
          There are no groups yet. <a href="/groups/new">Create a group</a> first: a rule gives groups to clients.
        </p>
      ) : null}
      {props.rows.length === 0 ? (
        <p class="empty-state">No rules: every client can connect, and no client can publish or subscribe.</p>
      ) : (
        <TableRegion label="Group rules">
          <table class="rule-rows">
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Match By</th>
                <th scope="col">Value</th>
                <th scope="col">Groups</th>
                <th scope="col">
                  <span class="visually-hidden">Remove</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {props.rows.map((row, index) => (
                <RuleRowFields
                  row={row}
                  index={index}
                  errors={errors}
                  groups={props.groups}
                  clients={props.clients}
                  focus={props.focus}
                  hidden={!ruleRowMatches(row, query, props.groups, props.clients) && !Object.keys(errors).some((key) => key.startsWith(`rules.${index}.`))}
                />
              ))}
            </tbody>
          </table>
        </TableRegion>
      )}
      <datalist id="client-usernames">
        {props.clients.map((client) => (
          <option value={client.username}>{client.name}</option>
        ))}
      </datalist>
      <p id="rule-help" class="help">
        <strong>Client</strong>: the username of a client. <strong>MQTT Client ID</strong>: the client ID a device sends, exactly, or a
        pattern where <code>*</code> stands for any characters (<code>sensor-*</code>). Changes apply to devices as they next connect.
      </p>
      <div class="form-actions sticky-actions">
        <button type="submit" name="_action" value="add" class="secondary outline" autofocus={props.focus === 'add'}>
          New rule
        </button>
        <button type="submit" name="_action" value="save">
          Save rules
        </button>
        <a href="/group-rules" role="button" class="secondary outline">
          Discard changes
        </a>
      </div>
    </form>
  );
}

function RuleRowFields(props: {
  row: RuleFormRow;
  index: number;
  errors: FieldErrors;
  groups: Array<{ id: number; name: string }>;
  clients: Array<{ name: string; username: string }>;
  focus?: string;
  /** Left out by the search: kept in the form, not shown. */
  hidden?: boolean;
}) {
  const { row, index, errors } = props;
  const n = index + 1;
  const id = (field: string) => `rule-${index}-${field}`;
  const error = (field: string) => errors[`rules.${index}.${field}`];
  const describedBy = (field: string, extra?: string) => [error(field) ? `${id(field)}-error` : '', extra ?? ''].filter(Boolean).join(' ') || undefined;
  const byClient = row.matchBy === 'client';
  const clientName = byClient ? props.clients.find((c) => c.username === row.value.trim())?.name : undefined;
  const chosen = props.groups.filter((g) => row.groups.includes(String(g.id)));
  const invalid = error('matchBy') || error('value') || error('groups');
  return (
    <tr id={`rule-${index}`} class={invalid ? 'invalid' : undefined} hidden={props.hidden} data-rule-text={[row.value, clientName ?? '', ...chosen.map((g) => g.name)].join('\n').toLowerCase()}>
      <td>
        {n}
        <input type="hidden" name="rule" value={String(index)} />
      </td>
      <td>
        <select
          name={id('matchBy')}
          id={id('matchBy')}
          aria-label={`Match by, rule ${n}`}
          aria-invalid={error('matchBy') ? 'true' : undefined}
          aria-describedby={describedBy('matchBy')}
          data-match-by={id('value')}
          autofocus={props.focus === `row:${index}`}
        >
          {Object.entries(MATCH_BY_LABELS).map(([value, label]) => (
            <option value={value} selected={row.matchBy === value}>
              {label}
            </option>
          ))}
        </select>
        <ErrorText id={`${id('matchBy')}-error`} message={error('matchBy')} />
      </td>
      <td>
        <input
          type="text"
          name={id('value')}
          id={id('value')}
          value={row.value}
          list={byClient ? 'client-usernames' : undefined}
          placeholder={byClient ? 'client username' : row.matchBy === 'certificate' ? 'SHA-256 fingerprint' : 'sensor-*'}
          aria-label={`Value, rule ${n}`}
          aria-invalid={error('value') ? 'true' : undefined}
          aria-describedby={describedBy('value', clientName ? `${id('client')}-name` : 'rule-help')}
          autocomplete="off"
          spellcheck={false}
        />
        {clientName ? <small id={`${id('client')}-name`}>{`Client “${clientName}”`}</small> : null}
        <ErrorText id={`${id('value')}-error`} message={error('value')} />
      </td>
      <td>
        <details class="dropdown group-picker">
          <summary aria-describedby={error('groups') ? `${id('groups')}-error` : undefined} aria-invalid={error('groups') ? 'true' : undefined}>
            <span class="visually-hidden">{`Groups for rule ${n}: `}</span>
            {chosen.length ? chosen.map((g) => g.name).join(', ') : 'Choose groups'}
          </summary>
          <ul>
            {props.groups.map((group) => (
              <li>
                <label>
                  <input type="checkbox" name={id('groups')} value={String(group.id)} checked={row.groups.includes(String(group.id))} />
                  {group.name}
                </label>
              </li>
            ))}
          </ul>
        </details>
        <ErrorText id={`${id('groups')}-error`} message={error('groups')} />
      </td>
      <td>
        <button type="submit" name="_action" value={`remove:${index}`} class="secondary outline danger-outline" aria-label={`Delete rule ${n}`}>
          Delete
        </button>
      </td>
    </tr>
  );
}
