/**
 * Pipelines at run time, on each node: the mapping matcher the broker's
 * `onPublishAccepted` hook reads, the outbox writer behind it, one delivery
 * loop per pipeline, the janitor that enforces each outbox's limits, and the
 * figures the console and /metrics show.
 *
 * What invalidates what is kept here: the pipelines and mappings are read
 * again on every change announced on the access-change channel (tables
 * `pipelines` and `pipeline_mappings`, any node's console or psql), when
 * hearing resumes after a break, and every few seconds while it is not heard.
 */
import type { AccessChanges } from '../db/changes';
import type { Database } from '../db';
import { MappingMatcher } from '../domain/pipelines/matcher';
import {
  claimOutboxRows,
  completeOutboxRows,
  createOutboxWriter,
  deadLetterOutboxRows,
  dropOldestOutboxRows,
  expireOutboxRows,
  latestOutboxRow,
  measureOutboxes,
  releaseOutboxRows,
  retryOutboxRows,
  releaseAllOutboxLeases,
  DROP_REASONS,
  type AcceptedMessage,
  type DropReason,
  type OutboxRow,
  type OutboxUsage,
  type OutboxWriter,
  type PublishingSession,
} from '../domain/pipelines/outbox';
import { loadRunnablePipelines, type RunnablePipeline } from '../domain/pipelines/pipelines';
import { BRIDGE_HOP_PROPERTY, createDestination, type Destination, type DestinationOptions, type SendOutcome, type TestOutcome } from './destinations';

export type PipelineState = 'healthy' | 'degraded' | 'failing' | 'paused';

/** Per pipeline, on this node since it started (queue figures: across every node). */
export interface PipelineFigures {
  id: number;
  state: PipelineState;
  /** Why it is failing, when it is. */
  reason: string | null;
  matched: number;
  delivered: number;
  retried: number;
  failed: number;
  dropped: Record<DropReason, number>;
  queueRows: number;
  queueBytes: number;
  /** Age of the oldest message waiting, in seconds. */
  queueAgeS: number;
  /** Accepted → forwarded, in seconds: bucket upper bounds and counts (cumulative, Prometheus style). */
  latency: { buckets: number[]; counts: number[]; sum: number; count: number };
  /** The last hour, a minute a row: delivered and failed (retries and dead letters) per minute. */
  history: Array<{ at: number; delivered: number; failed: number }>;
  lastError: string | null;
}

export interface PipelineServiceOptions {
  /** Idle delivery loops look for work this often (messages written on other nodes, retries due). */
  pollMs?: number;
  /** How long a claimed row is leased to this node before another may take it. */
  leaseMs?: number;
  /** Limits (age, bytes) enforced and queues measured this often. */
  janitorMs?: number;
  /** First retry after this, doubling with each attempt (with jitter) up to `retryMaxMs`. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Consecutive failures that open a pipeline's circuit. */
  breakerThreshold?: number;
  /** Rows a delivery loop claims at once (without batching). */
  claimLimit?: number;
  /** Topics forwarded at once by one pipeline (without batching). */
  concurrency?: number;
  /** After a write wakes an idle delivery loop, it waits this long for more before it claims. */
  gatherMs?: number;
  /** This process is the only node (the embedded database): leases left by a killed process are freed at start. */
  singleNode?: boolean;
}

export interface PipelineServiceDeps {
  db: Database;
  secretKey: string | undefined;
  changes?: AccessChanges;
  destination: DestinationOptions;
  options?: PipelineServiceOptions;
  log?: (message: string) => void;
}

export interface PipelineService {
  /** The broker's `onPublishAccepted` hook (see OutboxWriter.write). */
  onPublishAccepted(message: AcceptedMessage, session: PublishingSession): Promise<void> | void;
  /** Reads the pipelines and mappings again (done by itself on every change). */
  reload(): Promise<void>;
  figures(): PipelineFigures[];
  figuresOf(id: number): PipelineFigures | null;
  /** Renders a recent real message of the pipeline and sends it once (not through the outbox). */
  test(id: number): Promise<TestOutcome | { error: string }>;
  /** Waits for every outbox write handed over so far. */
  flush(): Promise<void>;
  /** Starts the delivery loops and the janitor (the matcher works from creation). */
  start(): Promise<void>;
  close(): Promise<void>;
}

function hasHopMark(message: AcceptedMessage): boolean {
  const user = message.properties?.userProperties as Record<string, unknown> | undefined;
  return Boolean(user && Object.hasOwn(user, BRIDGE_HOP_PROPERTY));
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600];
const MINUTE = 60_000;

interface Runner {
  pipeline: RunnablePipeline;
  destination: Destination | null;
  figures: Omit<PipelineFigures, 'state' | 'reason' | 'queueRows' | 'queueBytes' | 'queueAgeS'>;
  wake: (() => void) | null;
  /** Rows written on this node since the last claim, and when the first of them was. */
  pendingHere: number;
  firstPendingAt: number;
  consecutiveFailures: number;
  openUntil: number;
  opens: number;
  lastTroubleAt: number;
  loop: Promise<void> | null;
  stopped: boolean;
  /** The last message matched on this node: what Test renders first. */
  recent: OutboxRow | null;
}

export function createPipelineService(deps: PipelineServiceDeps): PipelineService {
  const { db } = deps;
  const log = deps.log ?? (() => {});
  const options = {
    pollMs: 1000,
    leaseMs: 120_000,
    janitorMs: 5000,
    retryBaseMs: 1000,
    retryMaxMs: 300_000,
    breakerThreshold: 5,
    claimLimit: 256,
    concurrency: 16,
    gatherMs: 10,
    ...deps.options,
  };
  const runners = new Map<number, Runner>();
  let matcher = new MappingMatcher<RunnablePipeline>([]);
  let usage = new Map<number, OutboxUsage>();
  /** Bytes written on this node since the janitor last measured. */
  const writtenSince = new Map<number, number>();
  let started = false;
  let closed = false;
  let janitor: NodeJS.Timeout | undefined;
  let reloading: Promise<void> | null = null;
  let reloadAgain = false;

  const writer: OutboxWriter = createOutboxWriter({
    db,
    match(message, session) {
      const found = matcher.match(message.topic, { username: session.username ?? null, mqttClientId: session.mqttClientId ?? null, groups: session.groups ?? [] });
      // Loop prevention: what a Gatehouse bridge forwarded (MQTT 5 user property) is not bridged again.
      if (found.length > 0 && hasHopMark(message)) return found.filter((pipeline) => pipeline.kind !== 'mqtt');
      return found;
    },
    usage: (id) => (usage.get(id)?.bytes ?? 0) + (writtenSince.get(id) ?? 0),
    written(rows) {
      const now = Date.now();
      for (const row of rows) {
        writtenSince.set(row.pipelineId, (writtenSince.get(row.pipelineId) ?? 0) + row.bytes);
        const runner = runners.get(row.pipelineId);
        if (!runner) continue;
        runner.figures.matched++;
        if (runner.pendingHere === 0) runner.firstPendingAt = now;
        runner.pendingHere++;
        runner.recent = {
          id: 0,
          pipelineId: row.pipelineId,
          messageId: row.messageId,
          orderKey: row.message.topic,
          topic: row.message.topic,
          payload: row.message.payload,
          qos: row.message.qos,
          retain: row.message.retain,
          clientRowId: row.session.clientRowId ?? null,
          username: row.session.username ?? null,
          mqttClientId: row.session.mqttClientId ?? null,
          receivedAt: row.receivedAt,
          attempts: 0,
          bytes: row.bytes,
        };
      }
      for (const runner of new Set(rows.map((row) => runners.get(row.pipelineId)))) poke(runner);
    },
    dropped: (id, reason) => countDrop(id, reason),
    log,
  });

  function countDrop(id: number, reason: DropReason, n = 1) {
    const runner = runners.get(id);
    if (runner) runner.figures.dropped[reason] += n;
  }

  function poke(runner: Runner | undefined) {
    const wake = runner?.wake;
    if (!wake || !runner) return;
    const batch = runner.destination?.batch;
    // Batching: wait for a full batch or for the oldest to have waited its time.
    if (batch && runner.pendingHere < batch.maxMessages && Date.now() - runner.firstPendingAt < batch.maxWaitMs) return;
    runner.wake = null;
    // A claim costs a few statements whatever it takes: the writes of the next
    // few milliseconds are gathered into one (each group commit would otherwise
    // wake a claim of a handful of rows).
    if (options.gatherMs > 0) setTimeout(wake, options.gatherMs).unref();
    else wake();
  }

  function newFigures(id: number): Runner['figures'] {
    return {
      id,
      matched: 0,
      delivered: 0,
      retried: 0,
      failed: 0,
      dropped: Object.fromEntries(DROP_REASONS.map((reason) => [reason, 0])) as Record<DropReason, number>,
      latency: { buckets: LATENCY_BUCKETS, counts: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 },
      history: [],
      lastError: null,
    };
  }

  function historyNow(runner: Runner) {
    const at = Math.floor(Date.now() / MINUTE) * MINUTE;
    const history = runner.figures.history;
    let last = history[history.length - 1];
    if (!last || last.at !== at) {
      last = { at, delivered: 0, failed: 0 };
      history.push(last);
      while (history.length > 0 && history[0]!.at <= at - 60 * MINUTE) history.shift();
    }
    return last;
  }

  function noteDelivered(runner: Runner, rows: OutboxRow[]) {
    const now = Date.now();
    runner.figures.delivered += rows.length;
    historyNow(runner).delivered += rows.length;
    const latency = runner.figures.latency;
    for (const row of rows) {
      const seconds = Math.max(0, (now - row.receivedAt.getTime()) / 1000);
      latency.sum += seconds;
      latency.count++;
      for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]!) latency.counts[i]!++;
    }
  }

  function noteTrouble(runner: Runner, outcome: SendOutcome, rows: number) {
    runner.lastTroubleAt = Date.now();
    runner.figures.lastError = `${outcome.status === null ? '' : `${outcome.status} `}${outcome.answer}`.slice(0, 300);
    historyNow(runner).failed += rows;
  }

  function backoffMs(attempts: number, retryAfterMs?: number): number {
    const exponential = Math.min(options.retryMaxMs, options.retryBaseMs * 2 ** Math.min(attempts, 20));
    // "Equal jitter": between half and all of the exponential delay.
    const jittered = exponential / 2 + Math.random() * (exponential / 2);
    return Math.min(Math.max(jittered, retryAfterMs ?? 0), 3_600_000);
  }

  function sleep(runner: Runner, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        runner.wake = null;
        resolve();
      }, ms);
      timer.unref();
      runner.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Sends one group of rows; returns false when the rest of their topics must wait. */
  async function sendGroup(runner: Runner, destination: Destination, rows: OutboxRow[], done: number[]): Promise<'ok' | 'retry' | 'dead'> {
    let outcome: SendOutcome;
    try {
      outcome = await destination.send(rows);
    } catch (error) {
      outcome = { ok: false, status: null, retry: true, answer: (error as Error).message };
    }
    if (outcome.ok) {
      done.push(...rows.map((row) => row.id));
      noteDelivered(runner, rows);
      runner.consecutiveFailures = 0;
      return 'ok';
    }
    noteTrouble(runner, outcome, rows.length);
    if (outcome.retry) {
      runner.figures.retried += rows.length;
      runner.consecutiveFailures++;
      const attempts = Math.max(...rows.map((row) => row.attempts));
      await retryOutboxRows(db, rows.map((row) => row.id), backoffMs(attempts, outcome.retryAfterMs), outcome.status, outcome.answer);
      return 'retry';
    }
    runner.figures.failed += rows.length;
    await deadLetterOutboxRows(db, rows.map((row) => row.id), outcome.status, outcome.answer);
    return 'dead';
  }

  async function deliver(runner: Runner, destination: Destination, rows: OutboxRow[]) {
    const done: number[] = [];
    const release: number[] = [];
    try {
      if (destination.batch) {
        // Batches in id order, each within the message and byte limits.
        const batches: OutboxRow[][] = [];
        let current: OutboxRow[] = [];
        let bytes = 0;
        for (const row of rows) {
          if (current.length > 0 && (current.length >= destination.batch.maxMessages || bytes + row.bytes > destination.batch.maxBytes)) {
            batches.push(current);
            current = [];
            bytes = 0;
          }
          current.push(row);
          bytes += row.bytes;
        }
        if (current.length) batches.push(current);
        for (let i = 0; i < batches.length; i++) {
          const result = await sendGroup(runner, destination, batches[i]!, done);
          if (result === 'retry') {
            for (const later of batches.slice(i + 1)) release.push(...later.map((row) => row.id));
            break;
          }
        }
        return;
      }
      // One topic's rows one after the other; topics side by side.
      const byTopic = new Map<string, OutboxRow[]>();
      for (const row of rows) {
        const list = byTopic.get(row.orderKey);
        if (list) list.push(row);
        else byTopic.set(row.orderKey, [row]);
      }
      const queues = [...byTopic.values()];
      const work = async () => {
        for (let queue = queues.shift(); queue; queue = queues.shift()) {
          for (let i = 0; i < queue.length; i++) {
            if (closed) {
              release.push(...queue.slice(i).map((row) => row.id));
              break;
            }
            const result = await sendGroup(runner, destination, [queue[i]!], done);
            if (result === 'retry') {
              release.push(...queue.slice(i + 1).map((row) => row.id));
              break;
            }
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(options.concurrency, queues.length) }, work));
    } finally {
      await completeOutboxRows(db, done);
      await releaseOutboxRows(db, release);
    }
  }

  async function run(runner: Runner) {
    while (!runner.stopped) {
      try {
        const pipeline = runner.pipeline;
        if (!pipeline.enabled || pipeline.secretsError) {
          await sleep(runner, options.pollMs * 5);
          continue;
        }
        const now = Date.now();
        if (runner.openUntil > now) {
          await sleep(runner, runner.openUntil - now);
          continue;
        }
        runner.destination ??= createDestination(pipeline, deps.destination);
        const destination = runner.destination;
        const halfOpen = runner.consecutiveFailures >= options.breakerThreshold;
        const limit = halfOpen ? 1 : destination.batch ? destination.batch.maxMessages * 4 : options.claimLimit;
        runner.pendingHere = 0;
        const rows = await claimOutboxRows(db, pipeline.id, limit, options.leaseMs, options.singleNode === true);
        if (rows.length === 0) {
          await sleep(runner, options.pollMs);
          continue;
        }
        const batch = destination.batch;
        if (batch && !halfOpen && rows.length < batch.maxMessages) {
          // Not a full batch yet: it waits until its oldest message has waited its time.
          const waited = Date.now() - rows[0]!.receivedAt.getTime();
          const bytes = rows.reduce((sum, row) => sum + row.bytes, 0);
          if (waited < batch.maxWaitMs && bytes < batch.maxBytes) {
            await releaseOutboxRows(db, rows.map((row) => row.id));
            runner.firstPendingAt = rows[0]!.receivedAt.getTime();
            runner.pendingHere += rows.length;
            await sleep(runner, batch.maxWaitMs - waited);
            continue;
          }
        }
        await deliver(runner, destination, rows);
        if (runner.consecutiveFailures >= options.breakerThreshold) {
          // The circuit opens: no request for a while, then one to probe.
          runner.opens++;
          runner.openUntil = Date.now() + Math.min(60_000, options.retryBaseMs * 2 ** Math.min(runner.opens, 6));
        } else if (runner.consecutiveFailures === 0) {
          runner.opens = 0;
        }
      } catch (error) {
        if (runner.stopped) return;
        runner.figures.lastError = `the outbox could not be read: ${(error as Error).message}`.slice(0, 300);
        runner.lastTroubleAt = Date.now();
        await sleep(runner, options.pollMs * 2);
      }
    }
  }

  async function doReload() {
    const loaded = await loadRunnablePipelines(db, deps.secretKey);
    const seen = new Set<number>();
    for (const pipeline of loaded) {
      seen.add(pipeline.id);
      const runner = runners.get(pipeline.id);
      if (!runner) {
        if (pipeline.secretsError) log(`pipeline ${JSON.stringify(pipeline.name)}: ${pipeline.secretsError}; its messages are kept and none forwarded`);
        const created: Runner = {
          pipeline,
          destination: null,
          figures: newFigures(pipeline.id),
          wake: null,
          pendingHere: 0,
          firstPendingAt: 0,
          consecutiveFailures: 0,
          openUntil: 0,
          opens: 0,
          lastTroubleAt: 0,
          loop: null,
          stopped: false,
          recent: null,
        };
        runners.set(pipeline.id, created);
        if (started) created.loop = run(created);
        continue;
      }
      if (runner.pipeline.version !== pipeline.version) {
        const old = runner.destination;
        runner.destination = null;
        runner.pipeline = pipeline;
        runner.consecutiveFailures = 0;
        runner.openUntil = 0;
        void old?.close();
        runner.wake?.();
      }
    }
    for (const [id, runner] of runners) {
      if (seen.has(id)) continue;
      runners.delete(id);
      runner.stopped = true;
      runner.wake?.();
      void runner.loop?.then(() => runner.destination?.close());
    }
    matcher = new MappingMatcher(loaded);
  }

  function reload(): Promise<void> {
    if (reloading) {
      reloadAgain = true;
      return reloading;
    }
    reloading = doReload().finally(() => {
      reloading = null;
      if (reloadAgain && !closed) {
        reloadAgain = false;
        void reload().catch((error: unknown) => log(`could not read the pipelines: ${(error as Error).message}`));
      }
    });
    return reloading;
  }

  deps.changes?.onChange((payload) => {
    if (payload !== 'pipelines' && payload !== 'pipeline_mappings' && payload !== 'resumed') return;
    reload().catch((error: unknown) => log(`could not read the pipelines after a change: ${(error as Error).message}`));
  });

  let janitorRunning = false;
  async function tidy() {
    if (janitorRunning) return;
    janitorRunning = true;
    try {
      if (deps.changes && !deps.changes.live()) await reload();
      // No pipeline, no outbox to look after: no query at all.
      if (runners.size === 0) {
        usage = new Map();
        return;
      }
      for (const runner of runners.values()) {
        const { id, maxAgeSeconds } = runner.pipeline;
        const expired = await expireOutboxRows(db, id, maxAgeSeconds);
        if (expired > 0) {
          countDrop(id, 'expired', expired);
          log(`pipeline ${JSON.stringify(runner.pipeline.name)}: dropped ${expired} messages older than ${maxAgeSeconds / 3600} hours`);
        }
      }
      // What is written while the outbox is measured counts in both for a moment: the limit errs on the full side.
      const counted = new Map(writtenSince);
      const measured = await measureOutboxes(db);
      for (const [id, bytes] of counted) {
        const left = (writtenSince.get(id) ?? 0) - bytes;
        if (left > 0) writtenSince.set(id, left);
        else writtenSince.delete(id);
      }
      usage = measured;
      for (const runner of runners.values()) {
        const { id, maxOutboxBytes, overflow } = runner.pipeline;
        const used = usage.get(id);
        if (overflow === 'drop_oldest' && used && used.bytes > maxOutboxBytes) {
          const dropped = await dropOldestOutboxRows(db, id, used.bytes - maxOutboxBytes, used.bytes / Math.max(1, used.rows));
          countDrop(id, 'overflow_oldest', dropped);
        }
      }
    } catch (error) {
      log(`pipelines: the outbox limits could not be checked: ${(error as Error).message}`);
    } finally {
      janitorRunning = false;
    }
  }

  function figuresOf(runner: Runner): PipelineFigures {
    const used = usage.get(runner.pipeline.id);
    const now = Date.now();
    let state: PipelineState = 'healthy';
    let reason: string | null = null;
    if (!runner.pipeline.enabled) state = 'paused';
    else if (runner.pipeline.secretsError) {
      state = 'failing';
      reason = runner.pipeline.secretsError;
    } else if (runner.consecutiveFailures >= options.breakerThreshold || runner.openUntil > now) {
      state = 'failing';
      reason = runner.figures.lastError;
    } else if (now - runner.lastTroubleAt < MINUTE) {
      state = 'degraded';
      reason = runner.figures.lastError;
    }
    return {
      ...runner.figures,
      dropped: { ...runner.figures.dropped },
      history: runner.figures.history.map((h) => ({ ...h })),
      state,
      reason,
      queueRows: used?.rows ?? 0,
      queueBytes: used?.bytes ?? 0,
      queueAgeS: used?.oldest ? Math.max(0, (now - used.oldest.getTime()) / 1000) : 0,
    };
  }

  return {
    onPublishAccepted: (message, session) => writer.write(message, session),
    reload,
    figures: () => [...runners.values()].map(figuresOf),
    figuresOf(id) {
      const runner = runners.get(id);
      return runner ? figuresOf(runner) : null;
    },
    async test(id) {
      await reload();
      const runner = runners.get(id);
      if (!runner) return { error: 'This pipeline does not exist (any more).' };
      if (runner.pipeline.secretsError) return { error: runner.pipeline.secretsError };
      const row = runner.recent ?? (await latestOutboxRow(db, id));
      if (!row) return { error: 'No message has reached this pipeline yet: publish one to a mapped topic, then test again.' };
      const destination = createDestination(runner.pipeline, deps.destination);
      try {
        return await destination.test(row);
      } finally {
        await destination.close();
      }
    },
    flush: () => writer.flush(),
    async start() {
      if (started) return;
      started = true;
      if (options.singleNode) await releaseAllOutboxLeases(db).catch((error: unknown) => log(`pipelines: could not free the outbox's leases: ${(error as Error).message}`));
      for (const runner of runners.values()) runner.loop ??= run(runner);
      janitor = setInterval(() => void tidy(), options.janitorMs);
      janitor.unref();
      void tidy();
    },
    async close() {
      closed = true;
      clearInterval(janitor);
      await writer.flush();
      for (const runner of runners.values()) {
        runner.stopped = true;
        runner.wake?.();
      }
      await Promise.all([...runners.values()].map((runner) => runner.loop));
      await Promise.all([...runners.values()].map((runner) => runner.destination?.close()));
      while (janitorRunning) await new Promise((resolve) => setTimeout(resolve, 20));
    },
  };
}
