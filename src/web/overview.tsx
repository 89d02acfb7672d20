import { Hono } from 'hono';
import { z } from 'zod';
import { isDatabaseUnavailable } from '../db/errors';
import { loadOverview, loadSeries, type RangeName } from '../domain/overview';
import { OverviewCountsSection, OverviewHistory, OverviewPage } from '../../views/overview';
import type { AppEnv } from './env';
import { isHtmx } from './http';
import { certificateInUseWarning } from '../domain/certificates';
import { loadAttention } from '../domain/attention';

/** An unknown range shows the last hour rather than an error: it only chooses a view. */
const rangeSchema = z.enum(['1h', '24h', '7d']).catch('1h');

/** `/`: the overview, the page after sign-in. */
export function overviewRoutes() {
  const routes = new Hono<AppEnv>();

  routes.get('/', async (c) => {
    const range: RangeName = rangeSchema.parse(c.req.query('range'));
    const now = new Date();
    const series = await loadSeries(c.var.db, range, now);
    // A range link swaps the history section only; a history restore wants the page.
    if (isHtmx(c) && c.req.header('hx-history-restore-request') !== 'true') return c.html(<OverviewHistory range={range} series={series} />);
    const counts = await loadOverview(c.var.db, { now, local: await c.var.live.thisNode?.() });
    const tls = c.var.tls?.status();
    const warnings = [tls ? certificateInUseWarning(tls.certificate, tls.source, now) : null].filter((w): w is string => w !== null);
    const attention = await loadAttention(c.var.db, now);
    return c.html(<OverviewPage counts={counts} range={range} series={series} warnings={warnings} attention={attention} />);
  });

  routes.get('/overview/counts', async (c) => {
    // A fragment for htmx's refresh; a browser that opens it by hand gets the page.
    if (!isHtmx(c)) return c.redirect('/');
    try {
      const counts = await loadOverview(c.var.db, { local: await c.var.live.thisNode?.() });
      return c.html(<OverviewCountsSection counts={counts} />);
    } catch (error) {
      // A refresh in the background must not replace the page with the 503
      // page: 204, which htmx does not swap, keeps the numbers shown.
      if (isDatabaseUnavailable(error)) return c.body(null, 204);
      throw error;
    }
  });

  return routes;
}
