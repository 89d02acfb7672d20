import type { MiddlewareHandler } from 'hono';

/**
 * No inline script, no eval: htmx 4 needs neither as long as no `hx-on`,
 * `js:` values or trigger filters are used, and its indicator <style> is off
 * (htmx-config in the layout). Pico's icons are data: SVGs.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self' ws: wss:",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['Content-Security-Policy', CONTENT_SECURITY_POLICY],
  ['X-Content-Type-Options', 'nosniff'],
  ['Referrer-Policy', 'same-origin'],
  ['X-Frame-Options', 'DENY'],
  ['Cross-Origin-Opener-Policy', 'same-origin'],
  ['Cross-Origin-Resource-Policy', 'same-origin'],
];

/**
 * On every response, errors and static files included. Console pages are
 * `no-store`: after sign-out, Back must not show a page from a cache (and
 * `no-store` keeps them out of the back/forward cache). Static files set
 * their own Cache-Control, which replaces this default.
 *
 * Set before the handler runs, so the response is made with them: a header
 * set on a response already made has Hono copy it (the whole page turned into
 * a stream, once per header), which took a tenth of the clients list's CPU.
 * A response made without the context's headers gets them afterwards.
 */
export function securityHeaders(): MiddlewareHandler {
  return async (c, next) => {
    for (const [name, value] of SECURITY_HEADERS) c.header(name, value);
    c.header('Cache-Control', 'no-store');
    await next();
    if (c.res.headers.has('Content-Security-Policy')) return;
    for (const [name, value] of SECURITY_HEADERS) c.header(name, value);
    if (!c.res.headers.has('Cache-Control')) c.header('Cache-Control', 'no-store');
  };
}
