import { type Context, Hono } from 'hono';
import { ConflictError, ValidationError } from '../domain/errors';
import { getRuleChange } from '../domain/groupRules';
import {
  createGroup,
  deleteGroup,
  getGroup,
  groupDeletionImpact,
  listGroups,
  MAX_PERMISSIONS_PER_GROUP,
  updateGroup,
  type Group,
} from '../domain/groups';
import {
  BLANK_PERMISSION,
  DeleteGroupPage,
  GroupDeletedFragment,
  GroupForm,
  GroupFormPage,
  GroupsPage,
  type GroupFormValues,
} from '../../views/groups';
import { NotFoundPage } from '../../views/layout';
import { disconnectGroupSessions } from '../domain/connections';
import { actorOf, disconnectDeps } from './connections';
import { disconnectedNotice } from './clients';
import type { AppEnv } from './env';
import { flash, isHtmx, parseId, readFormAll, redirectAfterPost, type FormValues } from './http';

/** `/groups`: the groups console. */
export function groupRoutes(options: { log: (message: string) => void }) {
  const groups = new Hono<AppEnv>();

  groups.get('/', async (c) => {
    const page = Number.parseInt(c.req.query('page') ?? '1', 10);
    const result = await listGroups(c.var.db, { query: c.req.query('q') ?? '', page });
    const changeId = parseId(c.req.query('change'));
    const notice = changeId === null ? null : await getRuleChange(c.var.db, changeId);
    return c.html(<GroupsPage result={result} notice={notice} message={disconnectedNotice(c.req.query('disconnected'))} />);
  });

  groups.get('/new', (c) => c.html(<GroupFormPage values={{ name: '', description: '', permissions: [{ ...BLANK_PERMISSION }] }} />));

  groups.post('/', (c) => submit(c, null, options.log));

  groups.get('/:id/edit', async (c) => {
    const group = await findGroup(c);
    if (!group) return notFound(c);
    return c.html(
      <GroupFormPage group={group} values={{ version: group.version, name: group.name, description: group.description, permissions: group.permissions }} />,
    );
  });

  groups.post('/:id', async (c) => {
    const group = await findGroup(c);
    if (!group) return notFound(c);
    return submit(c, group, options.log);
  });

  groups.get('/:id/delete', async (c) => {
    const group = await findGroup(c);
    if (!group) return notFound(c);
    return c.html(<DeleteGroupPage group={group} impact={await groupDeletionImpact(c.var.db, group.id)} />);
  });

  groups.post('/:id/delete', async (c) => {
    const id = parseId(c.req.param('id'));
    const deleted = id === null ? null : await deleteGroup(c.var.db, id, c.var.actor);
    if (!deleted) return notFound(c);
    flash(c, `Group “${deleted.group.name}” deleted.`);
    return redirectAfterPost(c, deleted.change ? `/groups?change=${deleted.change.id}` : '/groups');
  });

  groups.delete('/:id', async (c) => {
    const id = parseId(c.req.param('id'));
    const deleted = id === null ? null : await deleteGroup(c.var.db, id, c.var.actor);
    if (!deleted) return notFound(c);
    // The row that asked is swapped for nothing; the notice says what changed.
    return c.html(<GroupDeletedFragment group={deleted.group} change={deleted.change} />);
  });

  return groups;
}

/**
 * The group form's one endpoint: `_action` is `add` or `remove:<row>` (echo the
 * form with a row more or less, saving nothing) or `save`.
 */
async function submit(c: Context<AppEnv>, group: Group | null, log: (message: string) => void) {
  const form = await readFormAll(c);
  const values = groupFormValues(form);
  const action = form.first('_action') ?? 'save';
  const render = (options: { errors?: Record<string, string>; focus?: string }, status: 200 | 409 | 422) => {
    const formAction = group ? `/groups/${group.id}` : '/groups';
    if (isHtmx(c)) {
      return c.html(<GroupForm action={formAction} values={values} errors={options.errors} editing={group !== null} focus={options.focus} />, status);
    }
    return c.html(<GroupFormPage group={group ?? undefined} values={values} errors={options.errors} focus={options.focus} />, status);
  };

  if (action === 'add') {
    if (values.permissions.length >= MAX_PERMISSIONS_PER_GROUP) {
      return render({ errors: { permissions: `A group holds at most ${MAX_PERMISSIONS_PER_GROUP} permission rows.` } }, 422);
    }
    values.permissions.push({ ...BLANK_PERMISSION });
    return render({ focus: `row:${values.permissions.length - 1}` }, 200);
  }
  const removing = /^remove:(\d{1,4})$/.exec(action);
  if (removing) {
    const index = Number(removing[1]);
    values.permissions.splice(index, 1);
    return render({ focus: index < values.permissions.length ? `row:${index}` : 'add' }, 200);
  }

  try {
    const saved = group ? await updateGroup(c.var.db, group.id, values, c.var.actor) : await createGroup(c.var.db, values, c.var.actor);
    if (!saved) return notFound(c);
    let message = `Group “${saved.name}” ${group ? 'saved' : 'created'}.`;
    if (group && form.first('apply') === 'now') {
      // Sessions know the group by the name it had when they connected.
      const ended = await disconnectGroupSessions(disconnectDeps(c, log), actorOf(c), group.name);
      message += ` ${disconnectedNotice(String(ended.length))}`;
    }
    flash(c, message);
    return redirectAfterPost(c, '/groups');
  } catch (error) {
    if (error instanceof ValidationError || error instanceof ConflictError) {
      // After a lost-update conflict the form carries the version read just
      // now, so saving again is a deliberate overwrite.
      if (error instanceof ConflictError && error.field === 'form' && group) values.version = group.version;
      return render({ errors: error.fieldErrors }, error instanceof ConflictError ? 409 : 422);
    }
    throw error;
  }
}

/** The rows of the form: parallel lists of effects, actions and topics. */
function groupFormValues(form: FormValues): GroupFormValues {
  const effects = form.all('permission-effect');
  const actions = form.all('permission-action');
  const topics = form.all('permission-topic');
  // One more than allowed, so the limit is reported rather than silently applied.
  const count = Math.min(Math.max(effects.length, actions.length, topics.length), MAX_PERMISSIONS_PER_GROUP + 1);
  const version = form.first('version') ?? '';
  return {
    version: /^[0-9]{1,9}$/.test(version) ? Number(version) : undefined,
    name: form.first('name') ?? '',
    description: form.first('description') ?? '',
    apply: form.first('apply') === 'now' ? 'now' : undefined,
    permissions: Array.from({ length: count }, (_, i) => ({
      effect: effects[i] ?? '',
      action: actions[i] ?? '',
      topic: topics[i] ?? '',
    })),
  };
}

async function findGroup(c: Context<AppEnv>) {
  const id = parseId(c.req.param('id'));
  return id === null ? null : getGroup(c.var.db, id);
}

function notFound(c: Context<AppEnv>) {
  return c.html(<NotFoundPage message="This group does not exist (it may have been deleted)." section="groups" />, 404);
}
