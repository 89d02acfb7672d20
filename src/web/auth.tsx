import { type Context, Hono } from 'hono';
import { type Administrator, type SignInGuard, countAdministrators, createFirstAdministrator } from '../domain/administrators';
import { ValidationError } from '../domain/errors';
import { createSession, deleteSession } from '../domain/sessions';
import type { SetupToken } from '../domain/setup';
import { LoginPage, SetupInvalidPage, SetupPage } from '../../views/auth';
import type { AppEnv } from './env';
import { readForm, redirectAfterPost } from './http';
import { clearSessionCookie, clientAddress, readSession, safeNextPath, writeSessionCookie } from './session';

export interface AuthRouteDeps {
  signIn: SignInGuard;
  /** The one-time setup token, while no administrator exists. */
  setup?: SetupToken;
  trustProxy: boolean;
  log: (message: string) => void;
}

/** Starts a fresh session for `administrator` in this browser, ending the one it had. */
export async function startSession(c: Context<AppEnv>, administratorId: number, trustProxy: boolean): Promise<void> {
  const previous = c.var.sessionTokenHash ?? (await readSession(c, trustProxy))?.tokenHash;
  // A new token at every sign-in: a token planted before sign-in is worthless.
  if (previous) await deleteSession(c.var.db, previous);
  const session = await createSession(c.var.db, administratorId);
  writeSessionCookie(c, trustProxy, session);
  c.set('sessionTokenHash', session.tokenHash);
}

/** `/login`, `/logout` and `/setup`: the only pages open without a session. */
export function authRoutes(deps: AuthRouteDeps) {
  const auth = new Hono<AppEnv>();

  auth.get('/login', async (c) => {
    const next = safeNextPath(c.req.query('next'));
    if (await readSession(c, deps.trustProxy)) return c.redirect(next ?? '/', 302);
    const needsSetup = (await countAdministrators(c.var.db)) === 0;
    const notice = c.req.query('signed-out') === '1' ? 'You are signed out.' : undefined;
    return c.html(<LoginPage next={next} needsSetup={needsSetup} notice={notice} />);
  });

  auth.post('/login', async (c) => {
    const form = await readForm(c);
    const next = safeNextPath(form.next);
    const username = form.username ?? '';
    const address = clientAddress(c, deps.trustProxy);
    try {
      const result = await deps.signIn.signIn({ username, password: form.password, address });
      // The username tried, never the password; nor a username that is no
      // administrator's, which is often a password typed in the wrong field.
      c.var.audit.record(
        result.ok
          ? { kind: 'console.signed_in', actor: result.administrator.username, subject: result.administrator.username, address }
          : result.knownUsername === false
            ? { kind: 'console.sign_in_failed', actor: null, subject: null, address, details: { reason: result.reason, username: 'not an administrator (not recorded)' } }
            : { kind: 'console.sign_in_failed', actor: username, subject: username, address, details: { reason: result.reason } },
      );
      if (result.ok) {
        await startSession(c, result.administrator.id, deps.trustProxy);
        return redirectAfterPost(c, next ?? '/');
      }
      if (result.reason === 'throttled') {
        const seconds = Math.max(1, Math.ceil(result.retryAfterMs / 1000));
        c.header('Retry-After', String(seconds));
        const message = `Too many failed sign-ins. Wait ${seconds} ${seconds === 1 ? 'second' : 'seconds'} and try again.`;
        return c.html(<LoginPage username={username} next={next} errors={{ form: message }} />, 429);
      }
      // Never which half was wrong.
      return c.html(<LoginPage username={username} next={next} errors={{ form: 'Wrong username or password.' }} />, 401);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      return c.html(<LoginPage username={username} next={next} errors={error.fieldErrors} />, 422);
    }
  });

  auth.post('/logout', async (c) => {
    const session = await readSession(c, deps.trustProxy);
    if (session) await deleteSession(c.var.db, session.tokenHash);
    clearSessionCookie(c, deps.trustProxy);
    // Drops the browser's copies of console pages (back/forward cache included).
    c.header('Clear-Site-Data', '"cache"');
    return redirectAfterPost(c, '/login?signed-out=1');
  });

  auth.get('/setup', async (c) => {
    if ((await countAdministrators(c.var.db)) > 0) {
      deps.setup?.consume();
      return c.redirect('/login', 302);
    }
    const token = c.req.query('token');
    if (!deps.setup?.matches(token)) return c.html(<SetupInvalidPage />, 403);
    return c.html(<SetupPage token={token!} values={{ username: '' }} />);
  });

  auth.post('/setup', async (c) => {
    const form = await readForm(c);
    if (!deps.setup?.matches(form.token)) return c.html(<SetupInvalidPage />, 403);
    const values = { username: form.username ?? '' };
    let administrator: Administrator | null;
    try {
      administrator = await createFirstAdministrator(
        c.var.db,
        { username: form.username, password: form.password, confirm_password: form.confirm_password ?? '' },
        { username: null, address: clientAddress(c, deps.trustProxy), via: 'setup link' },
      );
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      return c.html(<SetupPage token={form.token!} values={values} errors={error.fieldErrors} />, 422);
    }
    deps.setup.consume();
    if (!administrator) return redirectAfterPost(c, '/login');
    deps.log(`Administrator ${JSON.stringify(administrator.username)} created through the setup link; the link no longer works.`);
    await startSession(c, administrator.id, deps.trustProxy);
    return redirectAfterPost(c, '/');
  });

  return auth;
}
