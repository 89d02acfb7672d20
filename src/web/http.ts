import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';

/** True for requests made by htmx (it always sends `HX-Request: true`). */
export function isHtmx(c: Context): boolean {
  return c.req.header('hx-request') === 'true';
}

/**
 * After a successful POST: a 303 for a plain form; for htmx, a 200 with
 * `HX-Redirect`, which htmx 4 follows with a full page load (a 303 would be
 * followed silently by fetch and its page swapped into the form).
 */
export function redirectAfterPost(c: Context, location: string): Response {
  if (isHtmx(c)) {
    c.header('HX-Redirect', location);
    return c.body(null, 200);
  }
  return c.redirect(location, 303);
}

const FLASH_COOKIE = 'gatehouse_notice';
const MAX_FLASH_LENGTH = 500;

/**
 * Leaves `message` for the next page this browser loads (the one a redirect
 * after a change leads to): "Client “Boiler” created." It travels in a
 * short-lived cookie, so it works without JavaScript and with htmx's
 * HX-Redirect alike, and no address carries text a link could forge.
 */
export function flash(c: Context, message: string): void {
  // hono/cookie encodes the value (and getCookie decodes it).
  setCookie(c, FLASH_COOKIE, message.slice(0, MAX_FLASH_LENGTH), { path: '/', httpOnly: true, sameSite: 'Lax', maxAge: 60 });
}

/** Takes the notice left by `flash()` on a full page load (not on htmx's fragment requests), once. */
export function readFlash(): MiddlewareHandler<{ Variables: { flash?: string } }> {
  return async (c, next) => {
    const page = c.req.method === 'GET' && !isHtmx(c) && !c.req.path.startsWith('/static/');
    const value = page ? getCookie(c, FLASH_COOKIE) : undefined;
    if (value !== undefined) {
      deleteCookie(c, FLASH_COOKIE, { path: '/' });
      const message = value.slice(0, MAX_FLASH_LENGTH);
      if (message) c.set('flash', message);
    }
    await next();
  };
}

/** A positive integer id from a path segment, or null. */
export function parseId(value: string | undefined): number | null {
  if (!value || !/^[1-9][0-9]{0,9}$/.test(value)) return null;
  const id = Number(value);
  return id <= 2_147_483_647 ? id : null;
}

/** The string fields of a form body, in document order; files are skipped. */
async function formEntries(c: Context): Promise<Array<[string, string]>> {
  const type = c.req.header('content-type') ?? '';
  if (!type.includes('application/x-www-form-urlencoded') && !type.includes('multipart/form-data')) return [];
  const body = await c.req.formData().catch(() => null);
  return [...(body?.entries() ?? [])].flatMap(([key, value]): Array<[string, string]> => (typeof value === 'string' ? [[key, value]] : []));
}

/** Form fields as strings (repeated fields: the first wins). */
export async function readForm(c: Context): Promise<Record<string, string>> {
  const form: Record<string, string> = {};
  for (const [key, value] of await formEntries(c)) if (!(key in form)) form[key] = value;
  return form;
}

/** Form fields with every value of a repeated key, in document order (rows of a table form, checked boxes). */
export async function readFormAll(c: Context): Promise<FormValues> {
  const values = new Map<string, string[]>();
  for (const [key, value] of await formEntries(c)) {
    const list = values.get(key);
    if (list) list.push(value);
    else values.set(key, [value]);
  }
  return {
    first: (key) => values.get(key)?.[0],
    all: (key) => values.get(key) ?? [],
  };
}

export interface FormValues {
  /** The first value of `key`, if any. */
  first(key: string): string | undefined;
  /** Every value of `key`, in order. */
  all(key: string): string[];
}

/** Largest uploaded file read as text (a certificate fits many times over). */
export const MAX_UPLOAD_BYTES = 64 * 1024;

/**
 * The text of the file chosen for `name` in a multipart form; undefined when
 * none was chosen. A larger file than MAX_UPLOAD_BYTES reads as '' + a marker
 * the caller's parser refuses.
 */
export async function readFormFile(c: Context, name: string): Promise<string | undefined> {
  if (!(c.req.header('content-type') ?? '').includes('multipart/form-data')) return undefined;
  const body = await c.req.formData().catch(() => null);
  const file = body?.get(name);
  if (!file || typeof file === 'string' || file.size === 0) return undefined;
  if (file.size > MAX_UPLOAD_BYTES) return 'file too large';
  return file.text();
}
