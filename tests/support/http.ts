import type { Hono } from 'hono';

type App = Pick<Hono<any>, 'request'>;

/** A form POST through `app.request()`. */
export function postForm(app: App, path: string, fields: Record<string, string>, headers: Record<string, string> = {}, method = 'POST') {
  return app.request(path, {
    method,
    body: new URLSearchParams(fields).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
  });
}

export const htmx = { 'hx-request': 'true' };

/** The text of the element with `id` (a rough cut, enough for assertions). */
export function idOf(html: string, id: string): boolean {
  return html.includes(`id="${id}"`);
}
