import type { Database } from './db';
import { deleteSamplesBefore, recordSample, SAMPLE_INTERVAL_MS, type LocalNode, type SampleCounts } from './domain/overview';

/**
 * Writes the overview's history: once a minute, on a timer (never on the
 * path of a message), what the metrics counters gained since the previous
 * sample, and the connections open now. A sample that cannot be written is
 * not lost: the next one covers both minutes. Samples older than the
 * retention are deleted once an hour.
 */
export interface Sampler {
  nodeId: string;
  /** Writes one sample now (the timer calls it; tests call it directly). */
  tick(now?: Date): Promise<void>;
  /** This node now: its connections and what it counted since its last sample. */
  local(): Promise<LocalNode>;
  /** Starts the timer, aligned to the minute so the nodes' samples fall in the same minutes. */
  start(): void;
  /** Stops the timer and waits for a sample being written. */
  stop(): Promise<void>;
}

export interface SamplerDeps {
  db: Database;
  nodeId: string;
  connections(): number;
  /** The counters since the process started (src/metrics.ts). */
  totals(): Promise<SampleCounts>;
  retentionDays: number;
  log?: (message: string) => void;
  intervalMs?: number;
}

const PRUNE_EVERY_MS = 3_600_000;
const zero: SampleCounts = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, authFailures: 0, refusals: 0 };

function minus(a: SampleCounts, b: SampleCounts): SampleCounts {
  return {
    messagesIn: a.messagesIn - b.messagesIn,
    messagesOut: a.messagesOut - b.messagesOut,
    bytesIn: a.bytesIn - b.bytesIn,
    bytesOut: a.bytesOut - b.bytesOut,
    authFailures: a.authFailures - b.authFailures,
    refusals: a.refusals - b.refusals,
  };
}

export function createSampler(deps: SamplerDeps): Sampler {
  const log = deps.log ?? (() => {});
  const intervalMs = deps.intervalMs ?? SAMPLE_INTERVAL_MS;
  // The counters start at zero with the process, as this sampler does.
  let previous: SampleCounts = zero;
  let previousAt = Date.now();
  let lastPruneAt = 0;
  let failing = false;
  let running: Promise<void> = Promise.resolve();
  let timeout: NodeJS.Timeout | undefined;
  let interval: NodeJS.Timeout | undefined;

  /** Never rejects: a failure is logged once, and the chain of samples goes on. */
  async function writeSample(now: Date) {
    try {
      const totals = await deps.totals();
      const seconds = Math.max(1, Math.round((now.getTime() - previousAt) / 1000));
      await recordSample(deps.db, { nodeId: deps.nodeId, at: now, seconds, connections: deps.connections(), ...minus(totals, previous) });
      previous = totals;
      previousAt = now.getTime();
      if (now.getTime() - lastPruneAt >= PRUNE_EVERY_MS) {
        lastPruneAt = now.getTime();
        await deleteSamplesBefore(deps.db, new Date(now.getTime() - deps.retentionDays * 86_400_000));
      }
      if (failing) log('overview samples are written again');
      failing = false;
    } catch (error) {
      if (!failing) log(`could not write an overview sample (${(error as Error).message}); the next one covers this minute too`);
      failing = true;
    }
  }

  const sampler: Sampler = {
    nodeId: deps.nodeId,
    tick(now = new Date()) {
      // One at a time: two samples must not count the same messages.
      running = running.then(() => writeSample(now));
      return running;
    },
    async local() {
      return { nodeId: deps.nodeId, connections: deps.connections(), unsampled: minus(await deps.totals(), previous) };
    },
    start() {
      if (timeout || interval) return;
      const tick = () => void sampler.tick();
      timeout = setTimeout(() => {
        timeout = undefined;
        tick();
        interval = setInterval(tick, intervalMs);
        interval.unref();
      }, intervalMs - (Date.now() % intervalMs));
      timeout.unref();
    },
    async stop() {
      clearTimeout(timeout);
      clearInterval(interval);
      timeout = interval = undefined;
      await running;
    },
  };
  return sampler;
}
