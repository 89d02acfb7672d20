import { type Context, Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { EngineTopics, TappedMessage } from '../broker/engine';
import { recordChange } from '../domain/audit';
import { parsePayloadView, PAYLOAD_PREVIEW_BYTES, previewPayload, RETAINED_LIMIT, topicTree, type PayloadView } from '../domain/retained';
import { topicFilterProblem, topicNameProblem } from '../domain/topics';
import { NotFoundPage } from '../../views/layout';
import { ClearRetainedPage, TopicsPage, type LiveProps } from '../../views/topics';
import type { AppEnv } from './env';
import { flash, readForm, redirectAfterPost } from './http';

/** The live tail shows at most this many messages a second (after a burst of LIVE_BURST); the rest are counted. */
export const LIVE_PER_SECOND = 10;
export const LIVE_BURST = 20;
/** A live stream ends after this long (the page's EventSource opens another). */
const LIVE_STREAM_MS = 15 * 60_000;
/** Messages waiting to be written to one slow reader before more are counted as skipped. */
const LIVE_BACKLOG = 50;
/** Without JavaScript: how long a collect listens, and how many it shows. */
const COLLECT_SECONDS = 5;
const COLLECT_LIMIT = 100;

/**
 * Messages of `filter` through a token bucket: `deliver` gets at most
 * LIVE_PER_SECOND a second after a burst of LIVE_BURST, `skip` the others.
 */
export async function watch(topics: EngineTopics, filter: string, deliver: (message: TappedMessage) => void, skip: () => void): Promise<() => Promise<void>> {
  let tokens = LIVE_BURST;
  let last = Date.now();
  return topics.tap(filter, (message) => {
    const now = Date.now();
    tokens = Math.min(LIVE_BURST, tokens + ((now - last) / 1000) * LIVE_PER_SECOND);
    last = now;
    if (tokens >= 1) {
      tokens -= 1;
      deliver(message);
    } else {
      skip();
    }
  });
}

/** A message as the live tail sends it: text or hex, never markup (app.js puts it in text nodes). */
function liveEvent(message: TappedMessage, view: PayloadView) {
  const preview = previewPayload(message.payload, PAYLOAD_PREVIEW_BYTES, view);
  return { at: message.at, topic: message.topic, retain: message.retain, qos: message.qos, size: preview.size, kind: preview.kind, text: preview.text, cut: preview.cut };
}

/** `/topics`: retained messages and the live tail (administrators only, as the whole console). */
export function topicRoutes() {
  const routes = new Hono<AppEnv>();

  routes.get('/', async (c) => {
    const topics = c.var.live.topics;
    const filter = (c.req.query('filter') ?? '').slice(0, 1024);
    const problem = filter === '' ? null : topicFilterProblem(filter);
    const view = parsePayloadView(c.req.query('payload'));
    const live: LiveProps = { filter, errors: problem ? { filter: problem } : undefined, collected: null, view };
    if (topics && filter && !problem && c.req.query('collect')) {
      noteWatching(c, filter, 'collected for 5 seconds');
      const messages: TappedMessage[] = [];
      let skipped = 0;
      const stop = await watch(topics, filter, (m) => (messages.length < COLLECT_LIMIT ? messages.push(m) : skipped++), () => skipped++);
      await new Promise((resolve) => setTimeout(resolve, COLLECT_SECONDS * 1000));
      await stop();
      live.collected = { messages, skipped, seconds: COLLECT_SECONDS };
    }
    const { messages, more } = topics ? await topics.retained(RETAINED_LIMIT) : { messages: [], more: false };
    return c.html(<TopicsPage tree={topicTree(messages)} total={messages.length} more={more} now={Date.now()} live={live} />, problem ? 422 : 200);
  });

  // Server-sent events: `message` per message shown, `skipped` with how many were not.
  routes.get('/live', async (c) => {
    const topics = c.var.live.topics;
    const filter = c.req.query('filter') ?? '';
    const view = parsePayloadView(c.req.query('payload'));
    const problem = topicFilterProblem(filter);
    if (!topics || problem) return c.text(problem ?? 'No broker runs here.', problem ? 422 : 404);
    noteWatching(c, filter, 'watched live');
    return streamSSE(c, async (stream) => {
      let backlog = 0;
      let skipped = 0;
      let id = 0;
      const send = (event: string, data: unknown) => {
        backlog++;
        stream
          .writeSSE({ event, data: JSON.stringify(data), id: String(++id) })
          .catch(() => {})
          .finally(() => backlog--);
      };
      const stop = await watch(
        topics,
        filter,
        (message) => (backlog < LIVE_BACKLOG ? send('message', liveEvent(message, view)) : skipped++),
        () => skipped++,
      );
      const tell = setInterval(() => {
        if (skipped === 0) return;
        send('skipped', { count: skipped });
        skipped = 0;
      }, 1000);
      let ended!: () => void;
      const done = new Promise<void>((resolve) => (ended = resolve));
      const limit = setTimeout(ended, LIVE_STREAM_MS);
      stream.onAbort(() => ended());
      send('ready', { filter });
      await done;
      clearInterval(tell);
      clearTimeout(limit);
      await stop();
    });
  });

  routes.get('/clear', async (c) => {
    const topic = c.req.query('topic') ?? '';
    const message = await retainedAt(c, topic);
    if (!message) return c.html(<NotFoundPage message="No retained message on this topic (it may have been cleared)." section="topics" />, 404);
    return c.html(<ClearRetainedPage message={message} />);
  });

  routes.post('/clear', async (c) => {
    const form = await readForm(c);
    const topic = form.topic ?? '';
    const topics = c.var.live.topics;
    const message = await retainedAt(c, topic);
    if (!topics || !message) return c.html(<NotFoundPage message="No retained message on this topic (it may have been cleared)." section="topics" />, 404);
    await topics.clearRetained(topic);
    await recordChange(c.var.db, c.var.actor, { kind: 'retained.cleared', subject: topic, details: { size: message.payload.length, qos: message.qos } });
    flash(c, `The retained message of “${topic}” was cleared.`);
    return redirectAfterPost(c, '/topics');
  });

  return routes;
}

async function retainedAt(c: Context<AppEnv>, topic: string) {
  const topics = c.var.live.topics;
  if (!topics || topicNameProblem(topic)) return undefined;
  return topics.retainedOf(topic);
}

function noteWatching(c: Context<AppEnv>, filter: string, how: string) {
  c.var.audit.record({
    kind: 'topics.watched',
    actor: c.var.administrator?.username ?? 'unknown',
    address: c.var.actor?.address ?? null,
    subject: filter,
    details: { how },
  });
}
