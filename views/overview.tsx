import type { Child } from 'hono/jsx';
import { RANGES, type OverviewCounts, type RangeName, type SeriesPoint } from '../src/domain/overview';
import type { Attention } from '../src/domain/attention';
import { formatTime, Layout, PageTitle, TableRegion, Truncated } from './layout';

const integer = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat('en', { maximumFractionDigits: 2 });

/** `/`: the page after sign-in. */
export function OverviewPage(props: { counts: OverviewCounts; range: RangeName; series: SeriesPoint[]; warnings?: string[]; attention?: Attention }) {
  return (
    <Layout title="Overview" section="overview" wide styles={['/static/uPlot.min.css']} scripts={['/static/uPlot.iife.min.js', '/static/overview.js']}>
      <PageTitle title="Overview">The broker at a glance, and over time.</PageTitle>
      {props.warnings?.length ? (
        <section aria-label="Needs attention" class="attention">
          {props.warnings.map((warning) => (
            <p class="warning">
              {warning} <a href="/certificates">Certificates</a>
            </p>
          ))}
        </section>
      ) : null}
      <OverviewCountsSection counts={props.counts} />
      {props.attention ? <AttentionLists attention={props.attention} /> : null}
      <OverviewHistory range={props.range} series={props.series} />
    </Layout>
  );
}

/** How a refused CONNECT's reason (audit details) reads. */
const CONNECT_REFUSED_REASONS: Record<string, string> = {
  missing_credentials: 'no username or password',
  bad_credentials: 'wrong password',
  throttled: 'too many failures',
  unavailable: 'database unavailable',
  bad_client_id: 'client ID refused',
  certificate_refused: 'certificate refused',
};

const countOf = (n: number, one: string, many: string) => `${integer.format(n)} ${n === 1 ? one : many}`;

/** What to look at: devices refused at CONNECT, and who the broker refuses most. */
function AttentionLists(props: { attention: Attention }) {
  const { refusedConnects, topRefused } = props.attention;
  const { unknown } = refusedConnects;
  const refusedAuditLink = '/audit?view=refusals&kind=mqtt.auth_failed';
  return (
    <section id="overview-attention" aria-labelledby="overview-attention-title">
      <h2 id="overview-attention-title">To look at</h2>
      <div class="attention-lists">
        <article id="refused-connects" aria-labelledby="refused-connects-title">
          <h3 id="refused-connects-title">Refused at CONNECT, last 24 hours</h3>
          {refusedConnects.clients.length === 0 && unknown.usernames === 0 ? (
            <p>No device was refused at CONNECT in the last 24 hours.</p>
          ) : (
            <>
              <p class="help">Devices that tried to connect and could not: they have no access until what they send or their client is fixed.</p>
              {refusedConnects.clients.length > 0 ? (
                <ul>
                  {refusedConnects.clients.map((client) => (
                    <li>
                      <Truncated text={client.name} href={`/clients/${client.id}`} /> <strong>{integer.format(client.attempts)}</strong>{' '}
                      <small>
                        {CONNECT_REFUSED_REASONS[client.reason] ?? client.reason}, last {formatTime(client.lastAt)}
                      </small>{' '}
                      <a href={`${refusedAuditLink}&actor=${encodeURIComponent(client.username)}`} aria-label={`Refused CONNECTs of ${client.name}`}>
                        refusals
                      </a>
                    </li>
                  ))}
                </ul>
              ) : null}
              {refusedConnects.clientCount > refusedConnects.clients.length ? (
                <p>
                  <small>And {countOf(refusedConnects.clientCount - refusedConnects.clients.length, 'other client', 'other clients')}.</small>
                </p>
              ) : null}
              {unknown.usernames > 0 ? (
                <p id="refused-unknown">
                  {countOf(unknown.usernames, 'username', 'usernames')} no client has: {countOf(unknown.attempts, 'attempt', 'attempts')}.{' '}
                  <a href={refusedAuditLink}>All refused CONNECTs</a>
                </p>
              ) : (
                <a href={refusedAuditLink}>All refused CONNECTs</a>
              )}
              {refusedConnects.partial ? <p class="help">Counted over the latest refusals only: there were more.</p> : null}
            </>
          )}
        </article>
        <article id="top-refused" aria-labelledby="top-refused-title">
          <h3 id="top-refused-title">Refused most, last 24 hours</h3>
          {topRefused.length === 0 ? (
            <p>The broker refused nobody in the last 24 hours.</p>
          ) : (
            <>
              <p class="help">CONNECTs, publishes and subscriptions refused, by username.</p>
              <ul>
                {topRefused.map((row) => (
                  <li>
                    {row.client ? <Truncated text={row.client.name} href={`/clients/${row.client.id}`} /> : <Truncated text={row.username} code />}{' '}
                    <strong>{integer.format(row.refusals)}</strong> <small>last {formatTime(row.lastAt)}</small>{' '}
                    <a href={`/audit?view=refusals&actor=${encodeURIComponent(row.username)}`} aria-label={`Refusals of ${row.username}`}>
                      refusals
                    </a>
                  </li>
                ))}
              </ul>
            </>
          )}
        </article>
      </div>
    </section>
  );
}

function Stat(props: { id: string; label: string; value: Child; note?: Child }) {
  return (
    <div class="stat" id={`stat-${props.id}`}>
      <dt>{props.label}</dt>
      <dd>
        <strong class="stat-value">{props.value}</strong>
        {props.note ? <small>{props.note}</small> : null}
      </dd>
    </div>
  );
}

/** The numbers at the top; htmx refreshes them every 30 seconds. */
export function OverviewCountsSection(props: { counts: OverviewCounts }) {
  const { counts } = props;
  const rate = (value: number | null) => (value === null ? '—' : `${decimal.format(value)}/s`);
  const rateNote = counts.messagesInPerSecond === null ? 'no sample yet: each node writes one a minute' : 'over the last minute';
  return (
    <section
      id="overview-counts"
      aria-labelledby="overview-counts-title"
      hx-get="/overview/counts"
      hx-trigger="every 30s"
      hx-swap="outerHTML"
      // A refresh that fails (database unavailable) keeps the numbers shown rather than the error page.
      {...{ 'hx-status:5xx': 'swap:none' }}
    >
      <h2 id="overview-counts-title">Now</h2>
      <dl class="stats">
        <Stat id="clients" label="Clients" value={<a href="/clients">{integer.format(counts.clients)}</a>} />
        <Stat id="groups" label="Groups" value={<a href="/groups">{integer.format(counts.groups)}</a>} />
        <Stat
          id="connections"
          label="Live connections"
          value={counts.connections === null ? '—' : integer.format(counts.connections)}
          note={counts.nodes > 1 ? `on ${counts.nodes} nodes` : 'MQTT over TCP and WebSocket'}
        />
        <Stat id="messages-in" label="Messages in" value={rate(counts.messagesInPerSecond)} note={rateNote} />
        <Stat id="messages-out" label="Messages out" value={rate(counts.messagesOutPerSecond)} note={rateNote} />
        <Stat id="auth-failures" label="Refused CONNECTs" value={integer.format(counts.authFailuresLastHour)} note="in the last hour (authentication failures)" />
        <Stat id="refusals" label="Refused by permissions" value={integer.format(counts.refusalsLastHour)} note="publishes and subscriptions in the last hour" />
      </dl>
    </section>
  );
}

/** The table's columns; the charts are drawn from the same cells. */
const columns = [
  { key: 'connections', label: 'Connections (most at once)', unit: 'connections', format: (p: SeriesPoint) => p.connections, decimals: false },
  { key: 'messagesIn', label: 'Messages in per second', unit: 'messages/s', format: (p: SeriesPoint) => p.messagesInPerSecond, decimals: true },
  { key: 'messagesOut', label: 'Messages out per second', unit: 'messages/s', format: (p: SeriesPoint) => p.messagesOutPerSecond, decimals: true },
  { key: 'authFailures', label: 'Refused CONNECTs', unit: 'count', format: (p: SeriesPoint) => p.authFailures, decimals: false },
  { key: 'refusals', label: 'Refused by permissions', unit: 'count', format: (p: SeriesPoint) => p.refusals, decimals: false },
] as const;

const charts = [
  { id: 'connections', title: 'Live connections', columns: ['connections'] },
  { id: 'messages', title: 'Messages per second, in and out', columns: ['messagesIn', 'messagesOut'] },
  { id: 'failures', title: 'Refusals: CONNECTs, and publishes and subscriptions', columns: ['authFailures', 'refusals'] },
];

function bucketTime(t: number) {
  const iso = new Date(t * 1000).toISOString();
  return <time datetime={iso}>{`${iso.slice(0, 10)} ${iso.slice(11, 16)}`}</time>;
}

/**
 * The history of a range as a table, the page's content without JavaScript;
 * overview.js draws the charts from the table's cells (`data-value`).
 */
export function OverviewHistory(props: { range: RangeName; series: SeriesPoint[] }) {
  const { range, series } = props;
  const chosen = RANGES[range];
  return (
    <section id="overview-history" aria-labelledby="overview-history-title">
      <h2 id="overview-history-title">Over time</h2>
      <nav aria-label="Time range" class="range-picker">
        <ul>
          {(Object.keys(RANGES) as RangeName[]).map((name) => (
            <li>
              <a
                href={`/?range=${name}`}
                hx-get={`/?range=${name}`}
                hx-target="#overview-history"
                hx-swap="outerHTML"
                hx-push-url="true"
                aria-current={name === range ? 'page' : undefined}
              >
                {RANGES[name].label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      {series.length === 0 ? (
        <p id="history-empty">
          No samples in this range yet. Each node writes one a minute; the first appears a minute after it starts.
        </p>
      ) : (
        <>
          <div class="charts" data-charts hidden>
            {charts.map((chart) => (
              <figure>
                <figcaption id={`chart-${chart.id}-title`}>{chart.title}</figcaption>
                <div
                  class="chart"
                  data-chart={chart.id}
                  data-columns={chart.columns.join(' ')}
                  role="img"
                  aria-label={`${chart.title}, ${chosen.label.toLowerCase()}: a chart of the columns of the table below.`}
                ></div>
              </figure>
            ))}
          </div>
          <details open data-history-details>
            <summary>The numbers, one row per {chosen.stepLabel}</summary>
            <TableRegion label="The numbers over time">
              <table class="striped" id="history-table" data-step={chosen.step}>
                <caption>
                  {chosen.label}, one row per {chosen.stepLabel} with samples (times in UTC). Rates are averages over the row's
                  minutes; refusals are counts.
                </caption>
                <thead>
                  <tr>
                    <th scope="col">Time (UTC)</th>
                    {columns.map((column) => (
                      <th scope="col" data-column={column.key} data-unit={column.unit}>
                        {column.label}
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {series.map((point) => (
                    <tr data-t={point.t}>
                      <th scope="row">{bucketTime(point.t)}</th>
                      {columns.map((column) => {
                        const value = column.format(point);
                        return <td data-value={String(value)}>{column.decimals ? decimal.format(value) : integer.format(value)}</td>;
                      })}
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableRegion>
          </details>
        </>
      )}
    </section>
  );
}
