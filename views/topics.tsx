import type { FieldErrors } from '../src/domain/errors';
import { PAYLOAD_PREVIEW_BYTES, previewPayload, type PayloadView, type TopicNode } from '../src/domain/retained';
import type { RetainedMessage, TappedMessage } from '../src/broker/engine';
import { ConfirmFooter, ConfirmPage, Field, Layout, Notice, PageTitle, TableRegion } from './layout';

export interface TopicsPageProps {
  tree: TopicNode<RetainedMessage>[];
  total: number;
  /** More retained messages than were read. */
  more: boolean;
  /** Now, to tell ages (ms since the epoch). */
  now: number;
  notice?: string;
  live: LiveProps;
}

export interface LiveProps {
  filter: string;
  errors?: FieldErrors;
  /** The messages collected without JavaScript (null: nothing collected yet). */
  collected?: { messages: TappedMessage[]; skipped: number; seconds: number } | null;
  /** How payloads are shown (`?payload=`): automatically, as text or as hex. */
  view: PayloadView;
}

/** `/topics`: the retained messages as a tree, and the live tail of a filter. */
export function TopicsPage(props: TopicsPageProps) {
  const { view } = props.live;
  return (
    <Layout title="Topics" section="topics" wide>
      <PageTitle title="Topics">Retained messages by topic, and the messages of a filter as they pass through the broker.</PageTitle>
      <Notice message={props.notice} />
      <PayloadViewLinks view={view} filter={props.live.errors?.filter ? '' : props.live.filter} />
      <LiveSection {...props.live} />
      <section aria-labelledby="retained-title" id="retained">
        <h2 id="retained-title">Retained messages</h2>
        <p>
          {props.total === 0
            ? 'No retained messages.'
            : `${props.total}${props.more ? '+' : ''} retained ${props.total === 1 ? 'message' : 'messages'}${props.more ? ` (the first ${props.total} read)` : ''}.`}{' '}
          {VIEW_SENTENCES[view]}, their first {PAYLOAD_PREVIEW_BYTES} bytes.
        </p>
        {props.tree.length ? (
          <ul class="topic-tree">
            {props.tree.map((node) => (
              <TopicBranch node={node} now={props.now} view={view} />
            ))}
          </ul>
        ) : null}
      </section>
    </Layout>
  );
}

const VIEW_SENTENCES: Record<PayloadView, string> = {
  auto: 'Payloads show as text when they are readable, else as hex',
  text: 'Payloads show as text (bytes that are not UTF-8 as �, control characters as their symbols)',
  hex: 'Payloads show as hex',
};

const VIEW_LABELS: Record<PayloadView, string> = { auto: 'Automatic', text: 'Text', hex: 'Hex' };

/** Links that choose how payloads show (a query parameter: no JavaScript needed), keeping the filter. */
function PayloadViewLinks(props: { view: PayloadView; filter: string }) {
  const href = (view: PayloadView) => {
    const params = new URLSearchParams();
    if (props.filter) params.set('filter', props.filter);
    if (view !== 'auto') params.set('payload', view);
    const search = params.toString();
    return search ? `/topics?${search}` : '/topics';
  };
  return (
    <nav aria-label="Show payloads as" class="payload-views">
      <span>Show payloads as:</span>
      <ul>
        {(Object.keys(VIEW_LABELS) as PayloadView[]).map((view) => (
          <li>
            <a href={href(view)} aria-current={view === props.view ? 'true' : undefined}>
              {VIEW_LABELS[view]}
            </a>
          </li>
        ))}
      </ul>
    </nav>
  );
}

function TopicBranch(props: { node: TopicNode<RetainedMessage>; now: number; view: PayloadView }) {
  const { node } = props;
  const label = (
    <>
      <code class="topic-level">{node.level === '' ? '(empty level)' : node.level}</code>{' '}
      <span class="topic-count">{node.count === 1 ? '1 message' : `${node.count} messages`}</span>
    </>
  );
  const message = node.message ? <RetainedEntry message={node.message} now={props.now} view={props.view} /> : null;
  if (node.children.length === 0) {
    return (
      <li>
        {label}
        {message}
      </li>
    );
  }
  return (
    <li>
      <details open={node.count <= 20}>
        <summary>{label}</summary>
        {message}
        <ul>
          {node.children.map((child) => (
            <TopicBranch node={child} now={props.now} view={props.view} />
          ))}
        </ul>
      </details>
    </li>
  );
}

function RetainedEntry(props: { message: RetainedMessage; now: number; view: PayloadView }) {
  const { message } = props;
  return (
    <div class="retained-entry" data-topic={message.topic}>
      <Payload payload={message.payload} view={props.view} />
      <small class="retained-meta">
        {message.payload.length} B · QoS {message.qos} · {message.at === undefined ? 'age unknown (kept from before this node saw it)' : `${formatAge(props.now - message.at)} old`}
      </small>
      <a href={`/topics/clear?topic=${encodeURIComponent(message.topic)}`} class="danger-link" aria-label={`Clear the retained message of ${message.topic}`}>
        Clear
      </a>
    </div>
  );
}

/** A payload as text or hex, in text nodes only. */
export function Payload(props: { payload: Uint8Array; view?: PayloadView }) {
  const preview = previewPayload(props.payload, PAYLOAD_PREVIEW_BYTES, props.view);
  if (preview.kind === 'empty') return <span class="payload payload-empty">(empty)</span>;
  return (
    <code class={`payload payload-${preview.kind}`} data-kind={preview.kind}>
      {preview.kind === 'hex' ? `hex ${preview.text}` : preview.text}
      {preview.cut ? ` … (${preview.size} B)` : ''}
    </code>
  );
}

export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86_400)} d`;
}

/**
 * The live tail: the filter form (a GET), the messages streamed by
 * /topics/live (server-sent events, app.js) with Pause and Clear, and without
 * JavaScript "Collect for 5 seconds", which answers with what arrived.
 */
function LiveSection(props: LiveProps) {
  const error = props.errors?.filter;
  const ready = props.filter !== '' && !error;
  return (
    <section aria-labelledby="live-title" id="live">
      <h2 id="live-title">Live messages</h2>
      <form method="get" action="/topics" class="live-form">
        {props.view !== 'auto' ? <input type="hidden" name="payload" value={props.view} /> : null}
        <Field
          label="Topic filter"
          name="filter"
          value={props.filter}
          error={error}
          autocomplete="off"
          maxlength={1024}
          hint="Messages matching it on every node, as they are published: at most 10 a second are shown, the rest counted. Watching is recorded in the audit trail."
        />
        <div class="form-actions">
          <button type="submit" name="collect" value="5">
            Collect for 5 seconds
          </button>
        </div>
      </form>
      {ready ? (
        <div class="live-tail" data-live-stream={`/topics/live?filter=${encodeURIComponent(props.filter)}${props.view === 'auto' ? '' : `&payload=${props.view}`}`} hidden>
          <div class="try-log-head">
            <span class="live-status" role="status">
              Watching <code>{props.filter}</code>
            </span>
            <button type="button" class="secondary outline" data-live-pause>
              Pause
            </button>
            <button type="button" class="secondary outline" data-live-clear>
              Clear
            </button>
          </div>
          <TableRegion label="Live messages">
            <table class="striped">
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Topic</th>
                  <th scope="col">Payload</th>
                  <th scope="col">Size</th>
                </tr>
              </thead>
              <tbody data-live-rows></tbody>
            </table>
          </TableRegion>
        </div>
      ) : null}
      {props.collected ? <Collected {...props.collected} view={props.view} /> : null}
    </section>
  );
}

function Collected(props: { messages: TappedMessage[]; skipped: number; seconds: number; view: PayloadView }) {
  return (
    <div id="collected">
      <p role="status">
        {props.messages.length === 0 ? 'No message' : props.messages.length === 1 ? '1 message' : `${props.messages.length} messages`} in {props.seconds} seconds
        {props.skipped ? `, and ${props.skipped} more not shown` : ''}.
      </p>
      {props.messages.length ? (
        <TableRegion label="Collected messages">
          <table class="striped">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Topic</th>
                <th scope="col">Payload</th>
                <th scope="col">Size</th>
              </tr>
            </thead>
            <tbody>
              {props.messages.map((m) => (
                <tr>
                  <td>{new Date(m.at).toISOString().slice(11, 23)}</td>
                  <td>
                    <code>{m.topic}</code>
                    {m.retain ? ' (retained)' : ''}
                  </td>
                  <td>
                    <Payload payload={m.payload} view={props.view} />
                  </td>
                  <td>{m.payload.length} B</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableRegion>
      ) : null}
    </div>
  );
}

/** `/topics/clear?topic=…`: the confirmation. */
export function ClearRetainedPage(props: { message: RetainedMessage }) {
  return (
    <ConfirmPage title="Clear a retained message" section="topics" heading="Clear this retained message?">
      <p>
        <code>{props.message.topic}</code> holds <Payload payload={props.message.payload} />. Devices subscribing later will no longer get it;
        those subscribed now get an empty message on this topic, as when a device clears it.
      </p>
      <ConfirmFooter action="/topics/clear" confirmLabel="Clear retained message" cancelHref="/topics" cancelLabel="Keep it">
        <input type="hidden" name="topic" value={props.message.topic} />
      </ConfirmFooter>
    </ConfirmPage>
  );
}
