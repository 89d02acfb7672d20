import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { timingSafeEqual } from 'node:crypto';
import { Hono, type MiddlewareHandler } from 'hono';
import type { Registry } from 'prom-client';
import { contextStorage } from 'hono/context-storage';
import type { Database } from '../db';
import { isDatabaseUnavailable } from '../db/errors';
import { createSignInGuard, type SignInGuard } from '../domain/administrators';
import { createAuditRecorder, type AuditRecorder } from '../domain/audit';
import type { SetupToken } from '../domain/setup';
import { ErrorPage, NotFoundPage } from '../../views/layout';
import { administratorRoutes } from './administrators';
import { authRoutes } from './auth';
import { clientAccessRoutes } from './clientAccess';
import { certificateRoutes } from './certificates';
import { clientRoutes } from './clients';
import { connectionRoutes } from './connections';
import type { AccessControl, AppEnv, LiveState, TlsControl } from './env';
import { loadAccess, readRuleModel } from '../domain/access/query';
import { groupRuleRoutes } from './groupRules';
import { groupRoutes } from './groups';
import { topicRoutes } from './topics';
import { overviewRoutes } from './overview';
import { securityHeaders } from './security';
import { isHtmx, readFlash } from './http';
import { auditRoutes } from './audit';
import { bodyLimits, formatBytes } from './bodyLimits';
import { API_BASE, apiRoutes } from './api';
import { problemResponse } from './api/problems';
import { tokenRoutes } from './tokens';
import { transferRoutes } from './transfer';
import { pipelineRoutes, type PipelineControl } from './pipelines';
import { createFailureTracker, type FailureTracker } from '../domain/passwordGate';
import { TOKEN_FAILURES_BEFORE_BACKOFF, TOKEN_MAX_BACKOFF_MS } from './api/auth';
import { clientAddress, requireAdministrator, sameOriginGuard } from './session';

export interface AppDeps {
  db: Database;
  live?: LiveState;
  log?: (message: string) => void;
  /** Honour X-Forwarded-Proto/-Host/-For (TRUST_PROXY=1). */
  trustProxy?: boolean;
  /** The one-time setup token, when Gatehouse started without an administrator. */
  setup?: SetupToken;
  /** Sign-in checks and their throttle (one per process by default). */
  signIn?: SignInGuard;
  /** What `/readyz` checks: the names of the parts not ready (empty: ready). */
  notReady?: () => Promise<string[]>;
  /** The TLS listeners, for the certificates page; absent: the page says TLS cannot be changed here. */
  tls?: TlsControl;
  /** `/metrics`, for a bearer of `token`; absent: `/metrics` is not found. */
  metrics?: { registry: Registry; token: string };
  /** Pipelines at run time (figures, Test) and SECRET_KEY for their secrets; absent: the pages still edit them. */
  pipelines?: PipelineControl;
  /** The audit trail's buffer; one of its own by default. */
  audit?: AuditRecorder;
  /** Failed API token attempts per address; in this process's memory by default (several nodes: Redis). */
  apiTokenFailures?: FailureTracker;
  /** Access as CONNECT finds it (in memory); by default read from the database, with nothing to wait for. */
  access?: AccessControl;
}

const root = fileURLToPath(new URL('../../', import.meta.url));

/** Files served under /static: ours from public/, the rest from node_modules. */
const staticFiles: Record<string, { path: string; type: string }> = {
  'pico.min.css': { path: 'node_modules/@picocss/pico/css/pico.min.css', type: 'text/css; charset=utf-8' },
  'htmx.min.js': { path: 'node_modules/htmx.org/dist/htmx.min.js', type: 'text/javascript; charset=utf-8' },
  'mqtt.min.js': { path: 'node_modules/mqtt/dist/mqtt.min.js', type: 'text/javascript; charset=utf-8' },
  'uPlot.iife.min.js': { path: 'node_modules/uplot/dist/uPlot.iife.min.js', type: 'text/javascript; charset=utf-8' },
  'uPlot.min.css': { path: 'node_modules/uplot/dist/uPlot.min.css', type: 'text/css; charset=utf-8' },
  'overview.js': { path: 'public/overview.js', type: 'text/javascript; charset=utf-8' },
  'try-it.js': { path: 'public/try-it.js', type: 'text/javascript; charset=utf-8' },
  'pipelines.js': { path: 'public/pipelines.js', type: 'text/javascript; charset=utf-8' },
  'app.css': { path: 'public/app.css', type: 'text/css; charset=utf-8' },
  'app.js': { path: 'public/app.js', type: 'text/javascript; charset=utf-8' },
  'import.js': { path: 'public/import.js', type: 'text/javascript; charset=utf-8' },
  'favicon.svg': { path: 'public/favicon.svg', type: 'image/svg+xml' },
};

/**
 * htmx 4 swaps 4xx/5xx answers like any other, so a 404 or 500 page for a
 * row action (a client another operator already deleted) would land inside
 * the table row. For htmx requests, an error page (403, 404, 5xx; form errors,
 * 409 and 422, are fragments meant for their form) replaces the page's <main>.
 */
function errorPagesReplaceMain(): MiddlewareHandler {
  return async (c, next) => {
    await next();
    const status = c.res.status;
    if (!isHtmx(c) || !(status === 403 || status === 404 || status >= 500)) return;
    if (c.res.headers.get('hx-redirect')) return;
    c.header('HX-Retarget', 'main');
    c.header('HX-Reswap', 'outerHTML');
    c.header('HX-Reselect', 'main');
  };
}

/** True when `header` is `Bearer <token>`, compared in constant time. */
function bearerMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(/^Bearer (.+)$/.exec(header ?? '')?.[1] ?? '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

const READ_ONLY_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Seconds a client is asked to wait while the database is unavailable. */
const DATABASE_RETRY_AFTER_S = 5;

/** The console: every route, given its dependencies. */
export function createApp(deps: AppDeps) {
  const log = deps.log ?? ((message: string) => console.error(message));
  const app = new Hono<AppEnv>();
  const cache = new Map<string, Buffer>();
  const live: LiveState = deps.live ?? { sessionsByClient: async () => new Map() };

  const trustProxy = deps.trustProxy ?? false;
  const signIn = deps.signIn ?? createSignInGuard(deps.db);
  const audit = deps.audit ?? createAuditRecorder(deps.db, { log });
  const access: AccessControl = deps.access ?? { accessOf: (who) => loadAccess(deps.db, who), rules: () => readRuleModel(deps.db), settled: async () => {} };

  app.use(securityHeaders());
  app.use(errorPagesReplaceMain());
  // Before anything reads a body, and before sign-in: a body past its limit is never read.
  app.use(
    bodyLimits({
      refuse: (c, maxBytes) =>
        c.req.path.startsWith(`${API_BASE}/`)
          ? problemResponse(c, 413, `The body is larger than this route accepts (${formatBytes(maxBytes)}); nothing was read or changed.`)
          : c.html(<ErrorPage status={413} message={`What was sent is larger than this page accepts (${formatBytes(maxBytes)}), so it was not read and nothing was saved.`} />, 413),
    }),
  );
  // Lets the layout show who is signed in without every view passing it down.
  app.use(contextStorage());
  app.use(async (c, next) => {
    c.set('db', deps.db);
    c.set('live', live);
    c.set('audit', audit);
    if (deps.tls) c.set('tls', deps.tls);
    c.set('access', access);
    await next();
    // A change saved here (console or API) applies to this node's next
    // CONNECT before the answer leaves: "at the next connection" is exact.
    if (!READ_ONLY_METHODS.has(c.req.method) && c.res.status < 400) await access.settled();
  });
  // Probes and metrics, open like /login (metrics behind their own token).
  app.get('/healthz', (c) => c.text('ok'));
  app.get('/readyz', async (c) => {
    const missing = deps.notReady ? await deps.notReady() : [];
    if (missing.length === 0) return c.text('ready');
    return c.text(`not ready: ${missing.join(', ')}`, 503);
  });
  app.get('/metrics', async (c) => {
    const metrics = deps.metrics;
    if (!metrics) return c.html(<NotFoundPage />, 404);
    if (!bearerMatches(c.req.header('authorization'), metrics.token)) {
      c.header('WWW-Authenticate', 'Bearer realm="metrics"');
      return c.text('A bearer token is required.', 401);
    }
    c.header('Content-Type', metrics.registry.contentType);
    return c.body(await metrics.registry.metrics());
  });
  // The API authenticates with bearer tokens only (never the session cookie)
  // and takes no form posts: neither the CSRF guard nor the console's sign-in
  // applies to it, so it is mounted before them.
  const apiTokenFailures =
    deps.apiTokenFailures ?? createFailureTracker({ threshold: TOKEN_FAILURES_BEFORE_BACKOFF, maxBackoffMs: TOKEN_MAX_BACKOFF_MS, now: Date.now });
  app.route(API_BASE, apiRoutes({ failures: apiTokenFailures, trustProxy, log, tls: deps.tls, pipelines: deps.pipelines }));
  app.use(
    sameOriginGuard({
      trustProxy,
      refuse: (c) => c.html(<ErrorPage status={403} message="This request did not come from a page of this console, so it was refused." />, 403),
    }),
  );
  // Every route below needs a signed-in administrator, except the public paths.
  app.use(requireAdministrator({ trustProxy }));
  app.use(async (c, next) => {
    const administrator = c.var.administrator;
    if (administrator) c.set('actor', { username: administrator.username, address: clientAddress(c, trustProxy) });
    await next();
  });
  app.use(readFlash());

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

  app.get('/favicon.ico', (c) => c.redirect('/static/favicon.svg', 301));
  app.route('/', overviewRoutes());
  app.route('/', authRoutes({ signIn, setup: deps.setup, trustProxy, log }));
  app.route('/clients', clientRoutes({ log }));
  app.route('/clients', clientAccessRoutes());
  app.route('/connections', connectionRoutes({ log }));
  app.route('/topics', topicRoutes());
  app.route('/groups', groupRoutes({ log }));
  app.route('/group-rules', groupRuleRoutes());
  app.route('/administrators', administratorRoutes({ signIn, trustProxy }));
  app.route('/certificates', certificateRoutes({ tls: deps.tls }));
  app.route('/', auditRoutes());
  app.route('/tokens', tokenRoutes());
  app.route('/transfer', transferRoutes());
  app.route('/pipelines', pipelineRoutes(deps.pipelines));

  app.notFound((c) => c.html(<NotFoundPage />, 404));
  let lastOutageLog = 0;
  app.onError((error, c) => {
    if (isDatabaseUnavailable(error)) {
      // Said once a minute, not once per request, while the outage lasts.
      if (Date.now() - lastOutageLog > 60_000) {
        lastOutageLog = Date.now();
        log(`the database is unavailable (${(error.cause as Error | undefined)?.message ?? error.message}); the console answers 503 until it is back`);
      }
      c.header('Retry-After', String(DATABASE_RETRY_AFTER_S));
      return c.html(<ErrorPage status={503} message="The database is unavailable, so the console cannot show or change anything right now. Nothing was saved. This page works again by itself once the database is back: try again in a few seconds." />, 503);
    }
    log(`${c.req.method} ${new URL(c.req.url).pathname} failed: ${error.stack ?? error.message}`);
    return c.html(<ErrorPage status={500} message="The request could not be completed. Try again in a moment." />, 500);
  });
  return app;
}
