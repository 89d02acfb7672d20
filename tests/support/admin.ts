import type { Hono } from 'hono';
import type { Database } from '../../src/db';
import { createAdministrator, type Administrator } from '../../src/domain/administrators';
import { createSession } from '../../src/domain/sessions';
import { SESSION_COOKIE } from '../../src/web/session';

type App = Pick<Hono<any>, 'request'>;

/** The origin `app.request()` uses: state-changing requests must come from it. */
export const TEST_ORIGIN = 'http://localhost';

export interface SignedInApp {
  request: App['request'];
  administrator: Administrator;
  /** `gatehouse_session=…`, for requests made by hand. */
  cookie: string;
}

let counter = 0;

/**
 * An administrator with a live session, and `request()` that sends its
 * cookie and the console's own Origin (as a browser on the console would).
 * Headers given per request win, so a test can still send another Origin.
 */
export async function signIn(app: App, db: Database, username = `test-admin-${process.pid}-${++counter}`): Promise<SignedInApp> {
  const administrator = await createAdministrator(db, { username, password: 'test-admin-password' });
  const session = await createSession(db, administrator.id);
  const cookie = `${SESSION_COOKIE}=${session.token}`;
  const request: App['request'] = (input, init, ...rest) => {
    const headers = new Headers(init?.headers);
    if (!headers.has('cookie')) headers.set('cookie', cookie);
    if (!headers.has('origin')) headers.set('origin', TEST_ORIGIN);
    return app.request(input, { ...init, headers }, ...rest);
  };
  return { request, administrator, cookie };
}

/**
 * Signs a browser context in: an administrator with a live session, its
 * cookie set for `baseUrl`. For browser suites that test something other
 * than the sign-in itself.
 */
export async function signInBrowser(
  context: { addCookies(cookies: Array<{ name: string; value: string; url: string; httpOnly?: boolean; sameSite?: 'Lax' }>): Promise<void> },
  baseUrl: string,
  db: Database,
  username = `browser-admin-${process.pid}-${++counter}`,
): Promise<Administrator> {
  const administrator = await createAdministrator(db, { username, password: 'test-admin-password' });
  const session = await createSession(db, administrator.id);
  await context.addCookies([{ name: SESSION_COOKIE, value: session.token, url: baseUrl, httpOnly: true, sameSite: 'Lax' }]);
  return administrator;
}
