import { type Context, Hono } from 'hono';
import { ConflictError, ValidationError } from '../domain/errors';
import { listClientChoices } from '../domain/clients';
import {
  dismissRuleChange,
  listGroupRules,
  listRuleChanges,
  MAX_GROUP_RULES,
  replaceGroupRules,
  rulesRevision,
  type GroupRule,
} from '../domain/groupRules';
import { listGroupChoices } from '../domain/groups';
import { GroupRulesForm, GroupRulesPage, type RuleFormRow, type RulesPageProps } from '../../views/groupRules';
import { NotFoundPage } from '../../views/layout';
import type { AppEnv } from './env';
import { isHtmx, parseId, readFormAll, redirectAfterPost, type FormValues } from './http';

const BLANK_RULE: RuleFormRow = { matchBy: 'client', value: '', groups: [] };

/** `/group-rules`: every rule on one page, saved all at once. */
export function groupRuleRoutes() {
  const rules = new Hono<AppEnv>();

  rules.get('/', async (c) => {
    const saved = await listGroupRules(c.var.db);
    return c.html(
      <GroupRulesPage
        {...await pageData(c)}
        rows={saved.map(formRow)}
        revision={rulesRevision(saved)}
        query={c.req.query('q') ?? ''}
        notice={c.req.query('saved') === '1' ? 'Group rules saved. They apply to devices as they next connect.' : undefined}
      />,
    );
  });

  rules.post('/', async (c) => {
    const form = await readFormAll(c);
    const rows = ruleFormRows(form);
    const action = form.first('_action') ?? 'save';
    let revision = form.first('revision') ?? '';
    const render = async (options: { errors?: Record<string, string>; focus?: string }, status: 200 | 409 | 422) => {
      const props: RulesPageProps = { ...(await pageData(c)), rows, revision, query: (form.first('q') ?? '').slice(0, 200), unsaved: true, ...options };
      return c.html(isHtmx(c) ? <GroupRulesForm {...props} /> : <GroupRulesPage {...props} />, status);
    };

    if (action === 'add') {
      if (rows.length >= MAX_GROUP_RULES) return render({ errors: { form: `There can be at most ${MAX_GROUP_RULES} group rules.` } }, 422);
      rows.push({ ...BLANK_RULE, groups: [] });
      return render({ focus: `row:${rows.length - 1}` }, 200);
    }
    const removing = /^remove:(\d{1,4})$/.exec(action);
    if (removing) {
      const index = Number(removing[1]);
      rows.splice(index, 1);
      return render({ focus: index < rows.length ? `row:${index}` : 'add' }, 200);
    }

    try {
      await replaceGroupRules(c.var.db, rows, revision, c.var.actor);
      return redirectAfterPost(c, '/group-rules?saved=1');
    } catch (error) {
      if (error instanceof ConflictError) {
        // Shown with the operator's rows; saving again knowingly replaces the other edit.
        revision = rulesRevision(await listGroupRules(c.var.db));
        return render({ errors: error.fieldErrors }, 409);
      }
      if (error instanceof ValidationError) return render({ errors: error.fieldErrors }, 422);
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
  const [groups, clients, changes] = await Promise.all([listGroupChoices(c.var.db), listClientChoices(c.var.db), listRuleChanges(c.var.db)]);
  return { groups, clients, changes };
}

function formRow(rule: GroupRule): RuleFormRow {
  return {
    matchBy: rule.matchBy,
    value: rule.matchBy === 'client' ? (rule.clientUsername ?? '') : rule.value,
    groups: rule.groups.map((g) => String(g.id)),
  };
}

/** Rows in page order: each row posts a `rule` marker holding its field prefix. */
function ruleFormRows(form: FormValues): RuleFormRow[] {
  const markers = [...new Set(form.all('rule').filter((m) => /^\d{1,4}$/.test(m)))].slice(0, MAX_GROUP_RULES + 1);
  return markers.map((m) => ({
    matchBy: form.first(`rule-${m}-matchBy`) ?? '',
    value: form.first(`rule-${m}-value`) ?? '',
    groups: form.all(`rule-${m}-groups`),
  }));
}
