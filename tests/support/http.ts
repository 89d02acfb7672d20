import type { Hono } from 'hono';

type App = Pick<Hono<any>, 'request'>;

/** Form fields; a list of pairs can repeat a name (table rows, checkboxes). */
export type FormFields = Record<string, string> | Array<[string, string]>;

/** A form POST through `app.request()`. */
export function postForm(app: App, path: string, fields: FormFields, headers: Record<string, string> = {}, method = 'POST') {
  return app.request(path, {
    method,
    body: new URLSearchParams(fields).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
  });
}

/** A request without a body (GET, DELETE) through `app.request()`. */
export function send(app: App, path: string, options: { method?: string; headers?: Record<string, string> } = {}) {
  return app.request(path, { method: options.method ?? 'GET', headers: options.headers ?? {} });
}

export const htmx = { 'hx-request': 'true' };

/** The notice a redirect after a change left for the next page (its flash cookie), decoded; undefined if none. */
export function noticeOf(res: Response): string | undefined {
  const cookie = res.headers.getSetCookie().find((c) => c.startsWith('gatehouse_notice='));
  return cookie ? decodeURIComponent(cookie.split(';')[0]!.slice('gatehouse_notice='.length)) : undefined;
}
