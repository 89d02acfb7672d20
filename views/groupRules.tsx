import type { FieldErrors } from '../src/domain/errors';
import { MATCH_BY_LABELS, matchByWord, ruleRevision, ruleValueText, type GroupRule, type RuleChange } from '../src/domain/groupRules';
import { ErrorText } from './groups';
import { ConfirmFooter, ConfirmPage, DangerMenuItem, FormAlert, formatTime, GroupChips, Layout, NoticePartial, PageTitle, RowMenu, TableRegion, Truncated } from './layout';

/** One rule as typed in a form (the add form, or a row being edited). */
export interface RuleFormValues {
  matchBy: string;
  /** The client's username (by client), the client id or pattern, or the fingerprint. */
  value: string;
  /** Group ids, as strings. */
  groups: string[];
}

export type GroupChoice = { id: number; name: string };
export type ClientChoice = { name: string; username: string };

/** A row of the table open for editing: the rule, what was typed, and what is wrong with it. */
export interface RuleEditing {
  rule: GroupRule;
  values: RuleFormValues;
  /** The revision the form carries: the rule's own, or the current one after a conflict. */
  revision: string;
  errors?: FieldErrors;
}

export interface RulesPageProps {
  /** Every rule (the search narrows what the table shows, not the counts). */
  rules: GroupRule[];
  groups: GroupChoice[];
  clients: ClientChoice[];
  changes: RuleChange[];
  query: string;
  /** A row open for editing (without JavaScript: `?edit=ID`, or a refused Save). */
  editing?: RuleEditing;
  /** Rows open for editing in the browser, kept as they are by a search (htmx `hx-preserve`). */
  keep?: ReadonlySet<number>;
  /** The add form as typed, and what is wrong with it. */
  adding?: { values: RuleFormValues; errors?: FieldErrors };
}

export const BLANK_RULE: RuleFormValues = { matchBy: 'client', value: '', groups: [] };

/** The values of a saved rule, as its edit form shows them. */
export function ruleValues(rule: GroupRule): RuleFormValues {
  return { matchBy: rule.matchBy, value: ruleValueText(rule), groups: rule.groups.map((g) => String(g.id)) };
}

/** Whether `rule` shows for `query`: found in its value, its client's name or username, or its groups' names (any case). */
export function ruleMatches(rule: GroupRule, query: string): boolean {
  const q = query.trim().toLowerCase();
  if (!q) return true;
  return [rule.value, rule.clientName ?? '', rule.clientUsername ?? '', ...rule.groups.map((g) => g.name)].some((text) => text.toLowerCase().includes(q));
}

/** The rules that show for `query`. */
function matchingRules(rules: readonly GroupRule[], query: string): GroupRule[] {
  return rules.filter((rule) => ruleMatches(rule, query));
}

/** How many rules give each group. */
export function ruleCounts(rules: readonly GroupRule[], groups: readonly GroupChoice[]): Map<number, number> {
  const counts = new Map(groups.map((g) => [g.id, 0]));
  for (const rule of rules) for (const g of rule.groups) if (counts.has(g.id)) counts.set(g.id, counts.get(g.id)! + 1);
  return counts;
}

/** `/group-rules` with the search `query` (when there is one) and `extra` parameters. */
export const rulesHref = (query: string, extra?: Record<string, string>) => {
  const params = new URLSearchParams({ ...(query ? { q: query } : {}), ...extra });
  const search = params.toString();
  return search ? `/group-rules?${search}` : '/group-rules';
};

/** `/group-rules`: the rules as a searchable table, each row edited or deleted on its own, and a form to add one. */
export function GroupRulesPage(props: RulesPageProps) {
  return (
    <Layout title="Group rules" section="group-rules">
      <PageTitle title="Group rules">Which clients get which groups. A connection gets the groups of every rule it matches.</PageTitle>
      <RuleChanges changes={props.changes} />
      <div class="toolbar">
        <form
          method="get"
          action="/group-rules"
          class="search-form rules-search"
          aria-label="Search the group rules"
          hx-get="/group-rules"
          hx-trigger="input changed delay:300ms, submit"
          hx-target="#rule-results"
          hx-select="#rule-results"
          hx-swap="outerHTML"
          hx-push-url="true"
        >
          <div role="search">
            <input type="search" name="q" value={props.query} placeholder="Search by client, client ID or group" aria-label="Search the group rules" autocomplete="off" />
            <button type="submit">Search</button>
          </div>
        </form>
        <a href="#add-rule" role="button" class="secondary outline">
          New rule
        </a>
      </div>
      <RuleCounts counts={ruleCounts(props.rules, props.groups)} groups={props.groups} />
      {props.groups.length === 0 ? (
        <p class="notice">
          There are no groups yet. <a href="/groups/new">Create a group</a> first: a rule gives groups to clients.
        </p>
      ) : null}
      <RuleResults {...props} />
      <section id="add-rule" aria-labelledby="add-rule-title">
        <h2 id="add-rule-title">Add a rule</h2>
        <AddRuleForm values={props.adding?.values ?? BLANK_RULE} errors={props.adding?.errors} groups={props.groups} query={props.query} />
      </section>
      <datalist id="client-usernames">
        {props.clients.map((client) => (
          <option value={client.username}>{client.name}</option>
        ))}
      </datalist>
      <p id="rule-help" class="help">
        <strong>Client</strong>: the username of a client. <strong>MQTT Client ID</strong>: the client ID a device sends, exactly, or a pattern where{' '}
        <code>*</code> stands for any characters (<code>sensor-*</code>). <strong>Certificate fingerprint</strong>: the SHA-256 fingerprint of a
        client certificate. Changes apply to devices as they next connect.
      </p>
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

/** "Rules per group: Office 10 · Plant 20", over every rule whatever the search. */
export function RuleCounts(props: { counts: Map<number, number>; groups: GroupChoice[] }) {
  return (
    <p id="rule-counts" class="help rule-counts">
      {props.groups.length ? (
        <>
          Rules per group:{' '}
          {props.groups.map((g, i) => (
            <>
              {i > 0 ? ' · ' : ''}
              <a href={`/groups/${g.id}/edit`}>{g.name}</a> {props.counts.get(g.id) ?? 0}
            </>
          ))}
        </>
      ) : null}
    </p>
  );
}

/** "3 of 30 rules match “line”." above the table. */
export function RuleSummary(props: { shown: number; total: number; query: string }) {
  const { shown, total, query } = props;
  return (
    <p id="rule-summary">
      {query ? (
        <>
          {`${shown} of ${total} ${total === 1 ? 'rule matches' : 'rules match'} “${query}”. `}
          <a href="/group-rules">Show all</a>
        </>
      ) : (
        `${total} ${total === 1 ? 'rule' : 'rules'}.`
      )}
    </p>
  );
}

/** The part of the page a search replaces: the summary and the table. */
export function RuleResults(props: RulesPageProps) {
  const { editing, keep } = props;
  const matching = new Set(matchingRules(props.rules, props.query));
  const rows = props.rules.filter((rule) => rule.id === editing?.rule.id || keep?.has(rule.id) || matching.has(rule));
  return (
    <section id="rule-results" aria-label="Group rules">
      <RuleSummary shown={matching.size} total={props.rules.length} query={props.query} />
      <TableRegion label="Group rules table">
        <table class="rule-table">
          <thead>
            <tr>
              <th scope="col">Match by</th>
              <th scope="col">Client, client ID or fingerprint</th>
              <th scope="col">Groups</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody id="rule-rows">
            {rows.map((rule) =>
              rule.id === editing?.rule.id ? (
                <RuleEditRow editing={editing} groups={props.groups} query={props.query} />
              ) : keep?.has(rule.id) ? (
                <tr id={`rule-${rule.id}`} class="editing" hx-preserve="true"></tr>
              ) : (
                <RuleRow rule={rule} query={props.query} />
              ),
            )}
            <tr class="empty-row">
              <td colspan={RULE_COLUMNS}>{props.query ? `No rule matches “${props.query}”.` : 'No rules: every client can connect, and no client can publish or subscribe.'}</td>
            </tr>
          </tbody>
        </table>
      </TableRegion>
    </section>
  );
}

const RULE_COLUMNS = 4;

/** A rule's match in a few words, naming its row's actions: "line-4-*", "front-door". */
export function ruleName(rule: GroupRule): string {
  return ruleValueText(rule, '?');
}

/** "Delete the rule for MQTT Client ID “line-4-*”?": what Delete asks, with JavaScript or without. */
function deleteQuestion(rule: GroupRule): string {
  return `Delete the rule for ${matchByWord(rule.matchBy)} “${ruleName(rule)}”?`;
}

/** One rule; Edit swaps it for its edit row, Delete asks first and removes it. */
export function RuleRow(props: { rule: GroupRule; query?: string; focus?: boolean }) {
  const { rule } = props;
  const query = props.query ?? '';
  return (
    <tr id={`rule-${rule.id}`}>
      <td class="nowrap">{MATCH_BY_LABELS[rule.matchBy]}</td>
      {/* Back from the edit row (saved or cancelled), focus returns to the row. */}
      <th scope="row" tabindex={props.focus ? -1 : undefined} autofocus={props.focus}>
        {rule.matchBy === 'client' ? (
          <>
            <a href={`/clients/${rule.clientRowId}`} class="truncate" title={rule.clientName ?? ''}>
              {rule.clientName}
            </a>{' '}
            <Truncated text={rule.clientUsername ?? ''} code />
          </>
        ) : (
          <Truncated text={rule.value} code class={rule.matchBy === 'certificate' ? 'fingerprint-short' : undefined} />
        )}
      </th>
      <td>
        <GroupChips groups={rule.groups} />
      </td>
      <td class="row-actions">
        <RowMenu name={`rule ${ruleName(rule)}`}>
          <li>
            <a
              href={`${rulesHref(query, { edit: String(rule.id) })}#rule-${rule.id}`}
              hx-get={`/group-rules/${rule.id}/edit`}
              hx-target={`#rule-${rule.id}`}
              hx-swap="outerHTML"
            >
              Edit
            </a>
          </li>
          <DangerMenuItem
            label="Delete"
            href={`/group-rules/${rule.id}/delete`}
            action={`/group-rules/${rule.id}?revision=${ruleRevision(rule)}`}
            confirm={`${deleteQuestion(rule)} Devices it matches lose ${rule.groups.length === 1 ? `the group “${rule.groups[0]!.name}”` : `its ${rule.groups.length} groups`} at their next connection, unless another rule gives ${rule.groups.length === 1 ? 'it' : 'them'}.`}
            confirmLabel="Delete rule"
            target={`#rule-${rule.id}`}
          />
        </RowMenu>
      </td>
    </tr>
  );
}

/**
 * A row open for editing: a form in the row. With htmx Save and Cancel swap
 * the row back; without JavaScript Save posts and the page comes back, and
 * Cancel is a link to the page.
 */
export function RuleEditRow(props: { editing: RuleEditing; groups: GroupChoice[]; query?: string }) {
  const { rule, values, errors } = props.editing;
  const id = `rule-${rule.id}`;
  const query = props.query ?? '';
  const dirty = errors && Object.keys(errors).length > 0;
  return (
    <tr id={id} class="editing">
      <td colspan={RULE_COLUMNS}>
        <form
          method="post"
          action={`/group-rules/${rule.id}`}
          hx-post={`/group-rules/${rule.id}`}
          hx-target={`#${id}`}
          hx-swap="outerHTML"
          aria-label={`Edit the rule for ${ruleName(rule)}`}
          data-rule-form=""
          data-unsaved={dirty ? 'true' : undefined}
          novalidate
        >
          <input type="hidden" name="revision" value={props.editing.revision} />
          <input type="hidden" name="q" value={query} />
          <RuleFields idPrefix={`${id}-`} values={values} errors={errors} groups={props.groups} autofocus />
          <div class="form-actions">
            <button type="submit">Save</button>
            <a
              href={`${rulesHref(query)}#${id}`}
              role="button"
              class="secondary outline"
              hx-get={`/group-rules/${rule.id}/row`}
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

/** The form that adds a rule; with htmx it comes back blank after each rule added (or as typed, with what is wrong). */
export function AddRuleForm(props: { values: RuleFormValues; errors?: FieldErrors; groups: GroupChoice[]; query?: string; focus?: boolean }) {
  const errors = props.errors ?? {};
  const dirty = Object.keys(errors).length > 0;
  return (
    <form
      id="add-rule-form"
      method="post"
      action="/group-rules"
      hx-post="/group-rules"
      hx-target="this"
      hx-swap="outerHTML"
      aria-labelledby="add-rule-title"
      data-rule-form=""
      data-unsaved={dirty ? 'true' : undefined}
      novalidate
    >
      <input type="hidden" name="q" value={props.query ?? ''} />
      <RuleFields idPrefix="new-rule-" values={props.values} errors={errors} groups={props.groups} autofocus={props.focus || dirty} />
      <div class="form-actions">
        <button type="submit">Add rule</button>
      </div>
    </form>
  );
}

/** Match by, value and groups, shared by the add form and the edit row. */
function RuleFields(props: { idPrefix: string; values: RuleFormValues; errors?: FieldErrors; groups: GroupChoice[]; autofocus?: boolean }) {
  const { values } = props;
  const errors = props.errors ?? {};
  const id = (field: string) => `${props.idPrefix}${field}`;
  const describedBy = (field: string, extra?: string) => [errors[field] ? `${id(field)}-error` : '', extra ?? ''].filter(Boolean).join(' ') || undefined;
  const focused = props.autofocus ? (['matchBy', 'value', 'groups'].find((f) => errors[f]) ?? 'matchBy') : undefined;
  const byClient = values.matchBy === 'client';
  const chosen = props.groups.filter((g) => values.groups.includes(String(g.id)));
  return (
    <>
      <FormAlert message={errors.form} />
      <div class="rule-fields">
        <div class="select-field">
          <label for={id('matchBy')}>Match by</label>
          <select
            name="matchBy"
            id={id('matchBy')}
            aria-invalid={errors.matchBy ? 'true' : undefined}
            aria-describedby={describedBy('matchBy')}
            data-match-by={id('value')}
            autofocus={focused === 'matchBy'}
          >
            {Object.entries(MATCH_BY_LABELS).map(([value, label]) => (
              <option value={value} selected={values.matchBy === value}>
                {label}
              </option>
            ))}
          </select>
          <ErrorText id={`${id('matchBy')}-error`} message={errors.matchBy} />
        </div>
        <div>
          <label for={id('value')}>Username, client ID or fingerprint</label>
          <input
            type="text"
            name="value"
            id={id('value')}
            value={values.value}
            list={byClient ? 'client-usernames' : undefined}
            placeholder={byClient ? 'client username' : values.matchBy === 'certificate' ? 'SHA-256 fingerprint' : 'sensor-*'}
            aria-invalid={errors.value ? 'true' : undefined}
            aria-describedby={describedBy('value', 'rule-help')}
            autocomplete="off"
            spellcheck={false}
            maxlength={4096}
            autofocus={focused === 'value'}
          />
          <ErrorText id={`${id('value')}-error`} message={errors.value} />
        </div>
        <div>
          <span class="field-label" id={id('groups-label')}>
            Groups
          </span>
          <details class="dropdown group-picker">
            <summary
              aria-labelledby={`${id('groups-label')} ${id('groups-chosen')}`}
              aria-describedby={errors.groups ? `${id('groups')}-error` : undefined}
              aria-invalid={errors.groups ? 'true' : undefined}
              autofocus={focused === 'groups'}
            >
              <span id={id('groups-chosen')} data-chosen="">{chosen.length ? chosen.map((g) => g.name).join(', ') : 'Choose groups'}</span>
            </summary>
            <ul>
              {props.groups.map((group) => (
                <li>
                  <label>
                    <input type="checkbox" name="groups" value={String(group.id)} checked={values.groups.includes(String(group.id))} />
                    {group.name}
                  </label>
                </li>
              ))}
            </ul>
          </details>
          <ErrorText id={`${id('groups')}-error`} message={errors.groups} />
        </div>
      </div>
    </>
  );
}

/** The no-JavaScript delete confirmation. */
export function DeleteRulePage(props: { rule: GroupRule; message?: string }) {
  const { rule } = props;
  return (
    <ConfirmPage title="Delete rule" section="group-rules" heading={deleteQuestion(rule)}>
      <FormAlert message={props.message} />
      <p>
        It gives {rule.groups.map((g) => `“${g.name}”`).join(', ')}. Devices it matches lose {rule.groups.length === 1 ? 'this group' : 'these groups'} at their
        next connection, unless another rule gives {rule.groups.length === 1 ? 'it' : 'them'}.
      </p>
      <ConfirmFooter action={`/group-rules/${rule.id}/delete`} confirmLabel="Delete rule" cancelHref="/group-rules" cancelLabel="Keep it">
        <input type="hidden" name="revision" value={ruleRevision(rule)} />
      </ConfirmFooter>
    </ConfirmPage>
  );
}

/** What an htmx change sends with its row: the counts and summary up to date, and a notice. */
export function RuleTotalsPartials(props: { rules: GroupRule[]; groups: GroupChoice[]; query: string; notice: string }) {
  return (
    <>
      <hx-partial hx-target="#rule-counts" hx-swap="outerHTML">
        <RuleCounts counts={ruleCounts(props.rules, props.groups)} groups={props.groups} />
      </hx-partial>
      <hx-partial hx-target="#rule-summary" hx-swap="outerHTML">
        <RuleSummary shown={matchingRules(props.rules, props.query).length} total={props.rules.length} query={props.query} />
      </hx-partial>
      <NoticePartial message={props.notice} />
    </>
  );
}
