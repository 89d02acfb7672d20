import type { Context, MiddlewareHandler } from 'hono';
import { allows, checkApiToken, type ApiToken, type TokenAccess, type TokenResource } from '../../domain/apiTokens';
import type { FailureTracker } from '../../domain/passwordGate';
import type { AppEnv } from '../env';
import { clientAddress } from '../session';
import { ApiProblem, problemResponse } from './problems';

/** What every API route can read from `c.var`: the console's, plus the token. */
export interface ApiEnv {
  Variables: AppEnv['Variables'] & {
    /** The token the request authenticated with. */
    token: ApiToken;
  };
}

/** Failures before an address is locked out, and the longest lock-out (as console sign-in: 20, 5 minutes). */
export const TOKEN_FAILURES_BEFORE_BACKOFF = 20;
export const TOKEN_MAX_BACKOFF_MS = 5 * 60_000;

/**
 * `Authorization: Bearer gat_…`, and nothing else: never a query string,
 * never a cookie (the console's session cookie does not authorize the API).
 * Failed attempts are counted per address, as sign-ins are (shared through
 * Redis with several nodes); a locked address is answered 429 without
 * looking at its token. A success sets `token` and the audit actor (the
 * token's name), and does not reset the address's count.
 */
export function bearerToken(options: { failures: FailureTracker; trustProxy: boolean; now?: () => Date }): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const address = clientAddress(c, options.trustProxy);
    const key = address ?? 'unknown';
    let wait: number;
    try {
      wait = await options.failures.retryAfterMs(key);
    } catch {
      // Counts that cannot be read throttle, as for sign-in: never unlimited guesses.
      wait = 1000;
    }
    if (wait > 0) {
      const seconds = Math.max(1, Math.ceil(wait / 1000));
      return problemResponse(c, 429, `Too many failed token attempts from this address: wait ${seconds} s.`, undefined, { 'Retry-After': String(seconds) });
    }
    const header = c.req.header('authorization') ?? '';
    const presented = /^Bearer ([^\s]+)$/i.exec(header)?.[1];
    const refuse = async (detail: string) => {
      await options.failures.fail(key).catch(() => {});
      return problemResponse(c, 401, detail, undefined, { 'WWW-Authenticate': 'Bearer realm="gatehouse"' });
    };
    if (!presented) return refuse('Send an API token as “Authorization: Bearer gat_…” (create one on the API tokens page).');
    const checked = await checkApiToken(c.var.db, presented, address, options.now?.());
    if (!checked.ok) {
      return refuse(
        checked.reason === 'expired'
          ? 'This token has expired.'
          : checked.reason === 'address'
            ? 'This token may not be used from this address.'
            : 'This token is not valid (it may have been revoked).',
      );
    }
    c.set('token', checked.token);
    c.set('actor', { username: checked.token.name, address, via: 'API token' });
    await next();
  };
}

/** Throws 403 unless the request's token may do `access` on `resource`. */
export function requireScope(c: Context<ApiEnv>, resource: TokenResource, access: TokenAccess): void {
  if (!allows(c.var.token.scopes, resource, access)) {
    throw new ApiProblem(403, `This token may not ${access === 'write' ? 'change' : 'read'} ${resource}: it needs the scope ${resource}:${access}.`);
  }
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * The API reads JSON (and, for imports, CSV or NDJSON) bodies only: a form
 * post (urlencoded, multipart, text/plain, which a page elsewhere could send
 * without asking) is refused before anything runs, so the API has no CSRF
 * surface even apart from its bearer tokens.
 */
export function jsonBodiesOnly(extraTypes: readonly string[] = []): MiddlewareHandler {
  return async (c, next) => {
    if (!BODY_METHODS.has(c.req.method)) return next();
    const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    const hasBody = type !== '' || (c.req.header('content-length') ?? '0') !== '0' || c.req.header('transfer-encoding') !== undefined;
    if (!hasBody) return next();
    if (type === 'application/json' || type.endsWith('+json') || extraTypes.includes(type)) return next();
    return problemResponse(c, 415, `Send the body as application/json${extraTypes.length ? ` (or ${extraTypes.join(', ')} where documented)` : ''}.`);
  };
}
