import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { type NewSession, type ValidSession, validateSession } from '../domain/sessions';
import type { AppEnv } from './env';
import { isHtmx } from './http';

export const SESSION_COOKIE = 'gatehouse_session';

/** Paths reachable without signing in; everything else needs a session. */
export function isPublicPath(path: string): boolean {
  return (
    path === '/login' ||
    path === '/setup' ||
    // Ends a session if there is one; harmless without.
    path === '/logout' ||
    // Devices reach MQTT over WebSocket with their own MQTT credentials.
    path === '/mqtt' ||
    path === '/favicon.ico' ||
    // The API: bearer tokens of its own, never this cookie (src/web/api).
    path === '/api' ||
    path.startsWith('/api/') ||
    path.startsWith('/static/')
  );
}

/** The scheme the browser used: X-Forwarded-Proto counts only behind a trusted proxy. */
function requestScheme(c: Context, trustProxy: boolean): 'http' | 'https' {
  if (trustProxy) {
    const forwarded = c.req.header('x-forwarded-proto')?.split(',')[0]?.trim().toLowerCase();
    if (forwarded === 'https' || forwarded === 'http') return forwarded;
  }
  return new URL(c.req.url).protocol === 'https:' ? 'https' : 'http';
}

export function isSecureRequest(c: Context, trustProxy: boolean): boolean {
  return requestScheme(c, trustProxy) === 'https';
}

/**
 * The console's own origin as the browser sees it: the request's scheme and
 * Host (behind a trusted proxy, X-Forwarded-Proto and X-Forwarded-Host).
 * A browser always sends the Host it is talking to, so a page elsewhere
 * cannot make this match its own Origin.
 */
export function ownOrigin(c: Context, trustProxy: boolean): string {
  const url = new URL(c.req.url);
  const forwardedHost = trustProxy ? c.req.header('x-forwarded-host')?.split(',')[0]?.trim() : undefined;
  const host = forwardedHost || url.host;
  try {
    return new URL(`${requestScheme(c, trustProxy)}://${host}`).origin.toLowerCase();
  } catch {
    return url.origin.toLowerCase();
  }
}

/** The client's address; behind a trusted proxy, the last hop of X-Forwarded-For. */
export function clientAddress(c: Context, trustProxy: boolean): string | undefined {
  if (trustProxy) {
    const hops = c.req.header('x-forwarded-for')?.split(',').map((hop) => hop.trim()).filter(Boolean);
    if (hops?.length) return hops[hops.length - 1];
  }
  try {
    return getConnInfo(c).remote.address;
  } catch {
    // app.request() in tests: no socket.
    return undefined;
  }
}

const UNSAFE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * CSRF: a state-changing request must come from a page of the console
 * itself. Browsers send Origin on every POST/PUT/PATCH/DELETE (forms and
 * fetch alike) and a page cannot forge it; Referer is the fallback for the
 * rare request without Origin. No Origin and no Referer: refused.
 */
export function sameOriginGuard(options: { trustProxy: boolean; refuse: (c: Context<AppEnv>) => Response | Promise<Response> }): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (!UNSAFE_METHODS.has(c.req.method)) return next();
    const expected = ownOrigin(c, options.trustProxy);
    const origin = c.req.header('origin');
    let source: string | undefined;
    if (origin !== undefined) {
      source = origin.toLowerCase();
    } else {
      const referer = c.req.header('referer');
      if (referer) {
        try {
          source = new URL(referer).origin.toLowerCase();
        } catch {
          source = undefined;
        }
      }
    }
    if (source !== expected) return options.refuse(c);
    return next();
  };
}

/**
 * `next` after sign-in: a path on this site only. `//host`, `/\host`,
 * absolute URLs and anything with control characters (browsers drop tabs and
 * newlines, turning `/\t/host` into `//host`) are refused.
 */
export function safeNextPath(value: unknown): string | null {
  if (typeof value !== 'string' || value.length === 0 || value.length > 2000) return null;
  if (!value.startsWith('/') || value.startsWith('//') || value.startsWith('/\\')) return null;
  if (/[\u0000-\u001f\u007f\\]/.test(value)) return null;
  const base = 'http://gatehouse.invalid';
  let url: URL;
  try {
    url = new URL(value, base);
  } catch {
    return null;
  }
  if (url.origin !== base) return null;
  const path = url.pathname + url.search + url.hash;
  // Going back to these after signing in makes no sense.
  if (url.pathname === '/login' || url.pathname === '/logout' || url.pathname === '/setup') return null;
  return path;
}

/** `/login`, with `next` when it is worth keeping. */
export function loginUrl(next: string | null): string {
  return next && next !== '/' ? `/login?${new URLSearchParams({ next })}` : '/login';
}

/** A path on this site taken from a full URL header (Referer, HX-Current-URL), if it is ours. */
function pathFromOwnUrl(c: Context, header: string | undefined, trustProxy: boolean): string | null {
  if (!header) return null;
  try {
    const url = new URL(header);
    if (url.origin.toLowerCase() !== ownOrigin(c, trustProxy)) return null;
    return safeNextPath(url.pathname + url.search);
  } catch {
    return null;
  }
}

/** Reads and checks the session cookie; renews the cookie when the session slid forward. */
export async function readSession(c: Context<AppEnv>, trustProxy: boolean): Promise<ValidSession | null> {
  const token = getCookie(c, SESSION_COOKIE);
  if (!token) return null;
  const session = await validateSession(c.var.db, token);
  if (!session) {
    clearSessionCookie(c, trustProxy);
    return null;
  }
  if (session.renewed) writeSessionCookie(c, trustProxy, { token, tokenHash: session.tokenHash, expiresAt: session.expiresAt });
  return session;
}

export function writeSessionCookie(c: Context, trustProxy: boolean, session: NewSession): void {
  setCookie(c, SESSION_COOKIE, session.token, {
    httpOnly: true,
    sameSite: 'Lax',
    path: '/',
    secure: isSecureRequest(c, trustProxy),
    maxAge: Math.max(0, Math.floor((session.expiresAt.getTime() - Date.now()) / 1000)),
  });
}

export function clearSessionCookie(c: Context, trustProxy: boolean): void {
  deleteCookie(c, SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'Lax', secure: isSecureRequest(c, trustProxy) });
}

/**
 * Every path but the public ones needs a signed-in administrator. Applied to
 * the whole app, so routes added later are covered without a word. Without a
 * session: a page request is redirected to `/login?next=…`; an htmx request
 * gets 401 with `HX-Redirect`, which htmx follows with a full page load.
 */
export function requireAdministrator(options: { trustProxy: boolean }): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (isPublicPath(c.req.path)) return next();
    const session = await readSession(c, options.trustProxy);
    if (session) {
      c.set('administrator', session.administrator);
      c.set('sessionTokenHash', session.tokenHash);
      return next();
    }
    const method = c.req.method;
    if (isHtmx(c)) {
      const next = pathFromOwnUrl(c, c.req.header('hx-current-url'), options.trustProxy);
      c.header('HX-Redirect', loginUrl(next));
      return c.text('Sign in to continue.', 401);
    }
    if (method === 'GET' || method === 'HEAD') {
      const url = new URL(c.req.url);
      return c.redirect(loginUrl(safeNextPath(url.pathname + url.search)), 302);
    }
    // A form posted after the session ended: back to the page it came from.
    return c.redirect(loginUrl(pathFromOwnUrl(c, c.req.header('referer'), options.trustProxy)), 303);
  };
}
