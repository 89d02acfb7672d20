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

/**
 * On every response, errors and static files included. Console pages are
 * `no-store`: after sign-out, Back must not show a page from a cache (and
 * `no-store` keeps them out of the back/forward cache). Static files set
 * their own Cache-Control.
 */
export function securityHeaders(): MiddlewareHandler {
  return async (c, next) => {
    await next();
    c.header('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Referrer-Policy', 'same-origin');
    c.header('X-Frame-Options', 'DENY');
    c.header('Cross-Origin-Opener-Policy', 'same-origin');
    c.header('Cross-Origin-Resource-Policy', 'same-origin');
    if (!c.res.headers.has('Cache-Control')) c.header('Cache-Control', 'no-store');
  };
}
