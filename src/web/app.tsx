import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import type { Database } from '../db';
import { ErrorPage, NotFoundPage } from '../../views/layout';
import { clientAccessRoutes } from './clientAccess';
import { clientRoutes } from './clients';
import { groupRuleRoutes } from './groupRules';
import { groupRoutes } from './groups';
import type { AppEnv } from './env';
import { securityHeaders } from './security';

export interface AppDeps {
  db: Database;
  log?: (message: string) => void;
}

const root = fileURLToPath(new URL('../../', import.meta.url));

/** Files served under /static: ours from public/, the rest from node_modules. */
const staticFiles: Record<string, { path: string; type: string }> = {
  'pico.min.css': { path: 'node_modules/@picocss/pico/css/pico.min.css', type: 'text/css; charset=utf-8' },
  'htmx.min.js': { path: 'node_modules/htmx.org/dist/htmx.min.js', type: 'text/javascript; charset=utf-8' },
  'mqtt.min.js': { path: 'node_modules/mqtt/dist/mqtt.min.js', type: 'text/javascript; charset=utf-8' },
  'app.css': { path: 'public/app.css', type: 'text/css; charset=utf-8' },
  'app.js': { path: 'public/app.js', type: 'text/javascript; charset=utf-8' },
};

/** The console: every route, given its dependencies. */
export function createApp(deps: AppDeps) {
  const log = deps.log ?? ((message: string) => console.error(message));
  const app = new Hono<AppEnv>();
  const cache = new Map<string, Buffer>();

  app.use(securityHeaders());
  app.use(async (c, next) => {
    c.set('db', deps.db);
    await next();
  });

  app.get('/static/:file', async (c) => {
    const file = staticFiles[c.req.param('file')];
    if (!file) return c.html(<NotFoundPage />, 404);
    let body = cache.get(file.path);
    if (!body) {
      body = await readFile(root + file.path);
      cache.set(file.path, body);
    }
    c.header('Content-Type', file.type);
    c.header('Cache-Control', 'public, max-age=3600');
    return c.body(new Uint8Array(body));
  });

  app.get('/', (c) => c.redirect('/clients'));
  app.route('/clients', clientRoutes());
  app.route('/clients', clientAccessRoutes());
  app.route('/groups', groupRoutes());
  app.route('/group-rules', groupRuleRoutes());

  app.notFound((c) => c.html(<NotFoundPage />, 404));
  app.onError((error, c) => {
    log(`${c.req.method} ${new URL(c.req.url).pathname} failed: ${error.stack ?? error.message}`);
    return c.html(<ErrorPage status={500} message="The request could not be completed. Try again in a moment." />, 500);
  });
  return app;
}
