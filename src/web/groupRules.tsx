import { type Context, Hono } from 'hono';
import { ConflictError, ValidationError, type FieldErrors } from '../domain/errors';
import { listClientChoices } from '../domain/clients';
import {
  addGroupRule,
  deleteGroupRule,
  dismissRuleChange,
  getGroupRule,
  listGroupRules,
  listRuleChanges,
  RuleChangedError,
  ruleRevision,
  updateGroupRule,
  type GroupRule,
} from '../domain/groupRules';
import { listGroupChoices } from '../domain/groups';
import {
  AddRuleForm,
  BLANK_RULE,
  DeleteRulePage,
  GroupRulesPage,
  RuleEditRow,
  RuleRow,
  ruleName,
  rulesHref,
  RuleTotalsPartials,
  ruleValues,
  type RuleEditing,
  type RuleFormValues,
  type RulesPageProps,
} from '../../views/groupRules';
import { NoticePartial, NotFoundPage } from '../../views/layout';
import type { AppEnv } from './env';
import { flash, isHtmx, parseId, readFormAll, redirectAfterPost } from './http';

/** Rows open for editing in the browser that a search or a change keeps as they are (sent by public/app.js). */
const KEEP_HEADER = 'x-rules-editing';
const MAX_KEPT = 50;
/** An answer of notices only that still removes the row that asked (htmx skips an empty swap beside partials otherwise). */
const REMOVE_ROW = 'outerHTML swapEmpty:true';

/**
 * `/group-rules`: the rules as a table. Each rule is added, edited (in its
 * row with htmx, on the page as `?edit=ID` without) and deleted on its own,
 * audited, and checked against a concurrent change to that rule.
 */
export function groupRuleRoutes() {
  const rules = new Hono<AppEnv>();

  rules.get('/', async (c) => {
    const editId = parseId(c.req.query('edit'));
    const editRule = editId === null ? null : await getGroupRule(c.var.db, editId);
    const editing = editRule ? { rule: editRule, values: ruleValues(editRule), revision: ruleRevision(editRule) } : undefined;
    return renderPage(c, { editing }, 200);
  });

  rules.post('/', async (c) => {
    const form = await readFormAll(c);
    const values = formValues(form);
    const query = queryOf(form.first('q'));
    try {
      const rule = await addGroupRule(c.var.db, values, c.var.actor);
      const notice = `Rule for “${ruleName(rule)}” added. It applies to devices as they next connect.`;
      if (!isHtmx(c)) {
        flash(c, notice);
        return redirectAfterPost(c, `${rulesHref(query)}#rule-${rule.id}`);
      }
      const data = await pageData(c);
      return c.html(
        <>
          <AddRuleForm values={BLANK_RULE} groups={data.groups} query={query} focus />
          <hx-partial hx-target="#rule-rows" hx-swap="beforeend">
            <RuleRow rule={rule} query={query} />
          </hx-partial>
          <RuleTotalsPartials rules={data.rules} groups={data.groups} query={query} notice={notice} />
        </>,
      );
    } catch (error) {
      const errors = formErrorsOf(error);
      const status = error instanceof ConflictError ? 409 : 422;
      if (isHtmx(c)) return c.html(<AddRuleForm values={values} errors={errors} groups={await listGroupChoices(c.var.db)} query={query} />, status);
      return renderPage(c, { query, adding: { values, errors } }, status);
    }
  });

  rules.get('/:id/edit', async (c) => {
    const rule = await findRule(c);
    if (!rule) return ruleGone(c);
    const editing = { rule, values: ruleValues(rule), revision: ruleRevision(rule) };
    if (!isHtmx(c)) return renderPage(c, { editing }, 200);
    return c.html(<RuleEditRow editing={editing} groups={await listGroupChoices(c.var.db)} query={queryOf(c.req.query('q'))} />);
  });

  // Cancel in an edit row: the rule as it is now.
  rules.get('/:id/row', async (c) => {
    const rule = await findRule(c);
    if (!rule) return ruleGone(c);
    return c.html(<RuleRow rule={rule} query={queryOf(c.req.query('q'))} focus />);
  });

  rules.post('/:id', async (c) => {
    const id = parseId(c.req.param('id'));
    if (id === null) return ruleGone(c);
    const form = await readFormAll(c);
    const values = formValues(form);
    const query = queryOf(form.first('q'));
    const revision = form.first('revision') ?? '';
    try {
      const rule = await updateGroupRule(c.var.db, id, values, revision, c.var.actor);
      const notice = `Rule for “${ruleName(rule)}” saved. It applies to devices as they next connect.`;
      if (!isHtmx(c)) {
        flash(c, notice);
        return redirectAfterPost(c, `${rulesHref(query)}#rule-${rule.id}`);
      }
      const data = await pageData(c);
      return c.html(
        <>
          <RuleRow rule={rule} query={query} focus />
          <RuleTotalsPartials rules={data.rules} groups={data.groups} query={query} notice={notice} />
        </>,
      );
    } catch (error) {
      const errors = formErrorsOf(error);
      const status = error instanceof ConflictError ? 409 : 422;
      // After a change by someone else the form carries the revision read just
      // now, so saving again is a deliberate overwrite; otherwise it keeps its own.
      const current = error instanceof RuleChangedError ? error.current : await getGroupRule(c.var.db, id);
      if (!current) {
        const message = errors.form ?? 'Someone else deleted this rule meanwhile, so your change was not saved.';
        if (isHtmx(c)) {
          c.header('HX-Reswap', REMOVE_ROW);
          return c.html(<NoticePartial message={message} />, 409);
        }
        flash(c, message);
        return redirectAfterPost(c, '/group-rules');
      }
      const editing: RuleEditing = { rule: current, values, errors, revision: error instanceof RuleChangedError ? ruleRevision(current) : revision };
      if (isHtmx(c)) return c.html(<RuleEditRow editing={editing} groups={await listGroupChoices(c.var.db)} query={query} />, status);
      return renderPage(c, { query, editing }, status);
    }
  });

  rules.get('/:id/delete', async (c) => {
    const rule = await findRule(c);
    if (!rule) return ruleGone(c);
    return c.html(<DeleteRulePage rule={rule} />);
  });

  rules.post('/:id/delete', async (c) => {
    const id = parseId(c.req.param('id'));
    const form = await readFormAll(c);
    try {
      const deleted = id === null ? null : await deleteGroupRule(c.var.db, id, form.first('revision') ?? '', c.var.actor);
      if (!deleted) return ruleGone(c);
      flash(c, `Rule for “${ruleName(deleted)}” deleted.`);
      return redirectAfterPost(c, '/group-rules');
    } catch (error) {
      if (error instanceof RuleChangedError && error.current) return c.html(<DeleteRulePage rule={error.current} message={error.message} />, 409);
      throw error;
    }
  });

  // Delete with htmx, after the confirmation dialog: the row is swapped for nothing.
  rules.delete('/:id', async (c) => {
    const id = parseId(c.req.param('id'));
    try {
      const deleted = id === null ? null : await deleteGroupRule(c.var.db, id, c.req.query('revision') ?? '', c.var.actor);
      if (!deleted) return c.html(<NoticePartial message="This rule was already deleted." />);
      const data = await pageData(c);
      return c.html(<RuleTotalsPartials rules={data.rules} groups={data.groups} query={queryOf(c.req.query('q'))} notice={`Rule for “${ruleName(deleted)}” deleted.`} />);
    } catch (error) {
      if (error instanceof RuleChangedError && error.current) {
        // The row comes back as it is now, with why it was not deleted.
        return c.html(
          <>
            <RuleRow rule={error.current} focus />
            <NoticePartial message={error.message} />
          </>,
          409,
        );
      }
      throw error;
    }
  });

  rules.post('/changes/:id/dismiss', async (c) => {
    const id = parseId(c.req.param('id'));
    if (id === null || !(await dismissRuleChange(c.var.db, id))) {
      return c.html(<NotFoundPage message="This notice was already dismissed." section="group-rules" />, 404);
    }
    return redirectAfterPost(c, '/group-rules');
  });

  return rules;
}

async function pageData(c: Context<AppEnv>) {
  const [rules, groups] = await Promise.all([listGroupRules(c.var.db), listGroupChoices(c.var.db)]);
  return { rules, groups };
}

/** The whole page; `query` defaults to `?q=`, and rows open for editing in the browser are kept (htmx search). */
async function renderPage(c: Context<AppEnv>, props: Partial<RulesPageProps>, status: 200 | 409 | 422) {
  const [data, clients, changes] = await Promise.all([pageData(c), listClientChoices(c.var.db), listRuleChanges(c.var.db)]);
  const keep = isHtmx(c) ? keptRows(c.req.header(KEEP_HEADER)) : undefined;
  return c.html(<GroupRulesPage {...data} clients={clients} changes={changes} query={queryOf(c.req.query('q'))} keep={keep} {...props} />, status);
}

function keptRows(header: string | undefined): Set<number> | undefined {
  if (!header || header.length > 1000) return undefined;
  const ids = header.split(',').slice(0, MAX_KEPT).map(parseId);
  return new Set(ids.filter((id): id is number => id !== null));
}

/** The search text, bounded. */
function queryOf(value: string | undefined): string {
  return (value ?? '').trim().slice(0, 200);
}

function formValues(form: Awaited<ReturnType<typeof readFormAll>>): RuleFormValues {
  return { matchBy: form.first('matchBy') ?? '', value: form.first('value') ?? '', groups: form.all('groups') };
}

function formErrorsOf(error: unknown): FieldErrors {
  if (error instanceof ValidationError || error instanceof ConflictError) return error.fieldErrors;
  throw error;
}

async function findRule(c: Context<AppEnv>): Promise<GroupRule | null> {
  const id = parseId(c.req.param('id'));
  return id === null ? null : getGroupRule(c.var.db, id);
}

/** A rule that is not there (deleted, by someone else or in another tab). */
function ruleGone(c: Context<AppEnv>) {
  const message = 'This rule does not exist any more: someone else may have deleted it.';
  if (isHtmx(c)) {
    // The row that asked disappears; the notice says why.
    c.header('HX-Reswap', REMOVE_ROW);
    return c.html(<NoticePartial message={message} />);
  }
  return c.html(<NotFoundPage message={message} section="group-rules" />, 404);
}
