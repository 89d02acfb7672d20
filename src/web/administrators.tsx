import { type Context, Hono } from 'hono';
import {
  type Administrator,
  type SignInGuard,
  countAdministrators,
  createAdministrator,
  deleteAdministrator,
  getAdministrator,
  LastAdministratorError,
  listAdministrators,
} from '../domain/administrators';
import { ConflictError, ValidationError } from '../domain/errors';
import {
  AdministratorRow,
  AdministratorsPage,
  ChangePasswordForm,
  ChangePasswordPage,
  NewAdministratorForm,
  NewAdministratorPage,
  RemoveAdministratorPage,
} from '../../views/administrators';
import { NotFoundPage } from '../../views/layout';
import { startSession } from './auth';
import type { AppEnv } from './env';
import { isHtmx, parseId, readForm, redirectAfterPost } from './http';
import { clearSessionCookie, clientAddress } from './session';

/** Notices named in `?notice=`: only these texts are ever shown. */
const NOTICES: Record<string, string> = {
  added: 'Administrator added. They can sign in now.',
  removed: 'Administrator removed. Their sessions have ended.',
  password: 'Your password is changed. Every other session of yours has ended.',
};

/** `/administrators`: list, add, remove, and one's own password. */
export function administratorRoutes(deps: { signIn: SignInGuard; trustProxy: boolean }) {
  const admins = new Hono<AppEnv>();

  admins.get('/', async (c) => {
    const list = await listAdministrators(c.var.db);
    return c.html(<AdministratorsPage administrators={list} currentId={me(c).id} notice={NOTICES[c.req.query('notice') ?? '']} />);
  });

  admins.get('/new', (c) => c.html(<NewAdministratorPage values={{ username: '' }} />));

  admins.post('/', async (c) => {
    const form = await readForm(c);
    try {
      await createAdministrator(c.var.db, { username: form.username, password: form.password }, c.var.actor);
      return redirectAfterPost(c, '/administrators?notice=added');
    } catch (error) {
      if (!(error instanceof ValidationError || error instanceof ConflictError)) throw error;
      const values = { username: form.username ?? '' };
      const status = error instanceof ConflictError ? 409 : 422;
      if (isHtmx(c)) return c.html(<NewAdministratorForm values={values} errors={error.fieldErrors} />, status);
      return c.html(<NewAdministratorPage values={values} errors={error.fieldErrors} />, status);
    }
  });

  admins.get('/password', (c) => c.html(<ChangePasswordPage />));

  admins.post('/password', async (c) => {
    const form = await readForm(c);
    const administrator = await getAdministrator(c.var.db, me(c).id);
    if (!administrator) return notFound(c);
    const showErrors = (errors: Record<string, string>, status: 422 | 429) =>
      isHtmx(c) ? c.html(<ChangePasswordForm errors={errors} />, status) : c.html(<ChangePasswordPage errors={errors} />, status);
    try {
      const result = await deps.signIn.changePassword(administrator, form, clientAddress(c, deps.trustProxy));
      if (!result.ok) {
        const seconds = Math.max(1, Math.ceil(result.retryAfterMs / 1000));
        c.header('Retry-After', String(seconds));
        return showErrors({ form: `Too many wrong passwords. Wait ${seconds} ${seconds === 1 ? 'second' : 'seconds'} and try again.` }, 429);
      }
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      return showErrors(error.fieldErrors, 422);
    }
    // Every session of this administrator has ended; this browser gets a new one.
    await startSession(c, administrator.id, deps.trustProxy);
    return redirectAfterPost(c, '/administrators?notice=password');
  });

  admins.get('/:id/remove', async (c) => {
    const administrator = await findAdministrator(c);
    if (!administrator) return notFound(c);
    return c.html(<RemoveAdministratorPage administrator={administrator} isCurrent={administrator.id === me(c).id} />);
  });

  admins.post('/:id/remove', (c) =>
    remove(c, {
      refused: (administrator, isCurrent, message) =>
        c.html(<RemoveAdministratorPage administrator={administrator} isCurrent={isCurrent} error={message} />, 409),
      removed: () => redirectAfterPost(c, '/administrators?notice=removed'),
    }),
  );

  admins.delete('/:id', (c) =>
    remove(c, {
      refused: (administrator, isCurrent, message) =>
        c.html(<AdministratorRow administrator={administrator} isCurrent={isCurrent} canRemove={false} error={message} />, 409),
      removed: async () => {
        // The one left can no longer be removed: show the page as it now is.
        if ((await countAdministrators(c.var.db)) <= 1) c.header('HX-Refresh', 'true');
        // The row that asked is swapped for nothing: it disappears.
        return c.body('', 200);
      },
    }),
  );

  /**
   * Removes the administrator of the path; `refused` renders the last-one
   * refusal, `removed` the answer after removing someone else. Removing
   * oneself ends one's session and leads to the sign-in page.
   */
  async function remove(
    c: Context<AppEnv>,
    answer: {
      refused: (administrator: Administrator, isCurrent: boolean, message: string) => Response | Promise<Response>;
      removed: () => Response | Promise<Response>;
    },
  ) {
    const administrator = await findAdministrator(c);
    if (!administrator) return notFound(c);
    const isCurrent = administrator.id === me(c).id;
    try {
      if (!(await deleteAdministrator(c.var.db, administrator.id, c.var.actor))) return notFound(c);
    } catch (error) {
      if (!(error instanceof LastAdministratorError)) throw error;
      return answer.refused(administrator, isCurrent, error.message);
    }
    if (!isCurrent) return answer.removed();
    // One's own account: its sessions went with it.
    clearSessionCookie(c, deps.trustProxy);
    return redirectAfterPost(c, '/login');
  }

  return admins;
}

async function findAdministrator(c: Context<AppEnv>) {
  const id = parseId(c.req.param('id'));
  return id === null ? null : getAdministrator(c.var.db, id);
}

/** The signed-in administrator; the guard guarantees one on these routes. */
function me(c: Context<AppEnv>) {
  const administrator = c.var.administrator;
  if (!administrator) throw new Error('administrator routes reached without a session');
  return administrator;
}

function notFound(c: Context<AppEnv>) {
  return c.html(
    <NotFoundPage message="This administrator does not exist (they may have been removed)." section="administrators" />,
    404,
  );
}
