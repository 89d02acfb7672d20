import { and, count, desc, gt, gte, lt, sql } from 'drizzle-orm';
import type { Database } from '../db';
import { groups, metricSamples } from '../db/schema';
import { countClients } from './clients';

/** What a node counted between two samples (or since its last sample). */
export interface SampleCounts {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** CONNECTs refused, for any reason. */
  authFailures: number;
  /** Publishes and subscriptions refused by the permissions. */
  refusals: number;
}

/** One row of `metric_samples`. */
export interface NodeSample extends SampleCounts {
  nodeId: string;
  at: Date;
  /** Seconds the counts cover. */
  seconds: number;
  /** Open MQTT connections at `at`. */
  connections: number;
}

/** This node as it is now, between two samples. */
export interface LocalNode {
  nodeId: string;
  connections: number;
  /** Counted since this node's last sample, not yet in the database. */
  unsampled: SampleCounts;
}

/** How often each node writes a sample. */
export const SAMPLE_INTERVAL_MS = 60_000;

/**
 * A node whose latest sample is older than this is not counted as live (it
 * stopped, or cannot reach the database): 2.5 sample intervals.
 */
export const FRESH_SAMPLE_MS = 150_000;

/** The ranges the overview's charts show, each with the step its rows are bucketed to. */
export const RANGES = {
  '1h': { seconds: 3600, step: 60, label: 'Last hour', stepLabel: 'minute' },
  '24h': { seconds: 86_400, step: 900, label: 'Last 24 hours', stepLabel: '15 minutes' },
  '7d': { seconds: 604_800, step: 3600, label: 'Last 7 days', stepLabel: 'hour' },
} as const;

export type RangeName = keyof typeof RANGES;

export function isRangeName(value: string | undefined): value is RangeName {
  return value !== undefined && Object.hasOwn(RANGES, value);
}

export async function recordSample(db: Database, sample: NodeSample): Promise<void> {
  await db.insert(metricSamples).values(sample);
}

/** Deletes samples older than `before`; returns how many. */
export async function deleteSamplesBefore(db: Database, before: Date): Promise<number> {
  const deleted = await db.delete(metricSamples).where(lt(metricSamples.at, before)).returning({ id: metricSamples.id });
  return deleted.length;
}

/** One bucket of a chart: `t` is its start (epoch seconds, UTC-aligned to the step). */
export interface SeriesPoint {
  t: number;
  /** The most connections seen at once in the bucket (all nodes together). */
  connections: number;
  messagesInPerSecond: number;
  messagesOutPerSecond: number;
  bytesInPerSecond: number;
  bytesOutPerSecond: number;
  authFailures: number;
  refusals: number;
}

/**
 * The samples of `range` up to `now`, all nodes summed minute by minute, then
 * bucketed to the range's step. Rates divide by the seconds the samples
 * cover, so a bucket still filling up, or with a gap, is not understated.
 * Buckets without a sample are absent.
 */
export async function loadSeries(db: Database, range: RangeName, now = new Date()): Promise<SeriesPoint[]> {
  const { seconds, step } = RANGES[range];
  const since = new Date(now.getTime() - seconds * 1000);
  const minute = sql`date_trunc('minute', ${metricSamples.at})`;
  const perMinute = db.$with('per_minute').as(
    db
      .select({
        minute: sql<number>`extract(epoch from ${minute})::float8`.as('minute'),
        seconds: sql<number>`max(${metricSamples.seconds})::float8`.as('seconds'),
        connections: sql<number>`sum(${metricSamples.connections})::float8`.as('connections'),
        messagesIn: sql<number>`sum(${metricSamples.messagesIn})::float8`.as('messages_in'),
        messagesOut: sql<number>`sum(${metricSamples.messagesOut})::float8`.as('messages_out'),
        bytesIn: sql<number>`sum(${metricSamples.bytesIn})::float8`.as('bytes_in'),
        bytesOut: sql<number>`sum(${metricSamples.bytesOut})::float8`.as('bytes_out'),
        authFailures: sql<number>`sum(${metricSamples.authFailures})::float8`.as('auth_failures'),
        refusals: sql<number>`sum(${metricSamples.refusals})::float8`.as('refusals'),
      })
      .from(metricSamples)
      .where(and(gt(metricSamples.at, since), lt(metricSamples.at, now)))
      .groupBy(minute),
  );
  // `step` comes from RANGES, never from a request: written into the SQL so
  // the select and the group by are the same expression.
  const bucket = sql<number>`floor(${perMinute.minute} / ${sql.raw(String(step))}) * ${sql.raw(String(step))}`;
  const perSecond = (column: unknown) => sql<number>`coalesce(sum(${column}) / nullif(sum(${perMinute.seconds}), 0), 0)`.mapWith(Number);
  return db
    .with(perMinute)
    .select({
      t: bucket.mapWith(Number),
      connections: sql<number>`max(${perMinute.connections})`.mapWith(Number),
      messagesInPerSecond: perSecond(perMinute.messagesIn),
      messagesOutPerSecond: perSecond(perMinute.messagesOut),
      bytesInPerSecond: perSecond(perMinute.bytesIn),
      bytesOutPerSecond: perSecond(perMinute.bytesOut),
      authFailures: sql<number>`sum(${perMinute.authFailures})`.mapWith(Number),
      refusals: sql<number>`sum(${perMinute.refusals})`.mapWith(Number),
    })
    .from(perMinute)
    .groupBy(bucket)
    .orderBy(bucket);
}

export interface OverviewCounts {
  clients: number;
  groups: number;
  /** Nodes counted: this one, and others with a fresh sample. */
  nodes: number;
  /** Open MQTT connections on every node; null when nothing is known yet. */
  connections: number | null;
  /** Over every node's latest sample (about the last minute); null before the first sample. */
  messagesInPerSecond: number | null;
  messagesOutPerSecond: number | null;
  authFailuresLastHour: number;
  refusalsLastHour: number;
}

/**
 * The numbers at the top of the overview. Several nodes: the latest fresh
 * sample of each is summed; this node (when given) counts with its live
 * connections and what it counted since its last sample.
 */
export async function loadOverview(db: Database, options: { now?: Date; local?: LocalNode } = {}): Promise<OverviewCounts> {
  const now = options.now ?? new Date();
  const local = options.local;
  const [clients, [groupRow], latest, [lastHour]] = await Promise.all([
    countClients(db),
    db.select({ total: count() }).from(groups),
    db
      .selectDistinctOn([metricSamples.nodeId], {
        nodeId: metricSamples.nodeId,
        seconds: metricSamples.seconds,
        connections: metricSamples.connections,
        messagesIn: metricSamples.messagesIn,
        messagesOut: metricSamples.messagesOut,
      })
      .from(metricSamples)
      .where(gte(metricSamples.at, new Date(now.getTime() - FRESH_SAMPLE_MS)))
      .orderBy(metricSamples.nodeId, desc(metricSamples.at)),
    db
      .select({
        authFailures: sql<number>`coalesce(sum(${metricSamples.authFailures}), 0)`.mapWith(Number),
        refusals: sql<number>`coalesce(sum(${metricSamples.refusals}), 0)`.mapWith(Number),
      })
      .from(metricSamples)
      .where(gte(metricSamples.at, new Date(now.getTime() - 3_600_000))),
  ]);
  const others = latest.filter((sample) => sample.nodeId !== local?.nodeId);
  const sampled = latest.length > 0;
  const rate = (pick: (s: (typeof latest)[number]) => number) =>
    sampled ? latest.reduce((total, s) => total + pick(s) / Math.max(1, s.seconds), 0) : null;
  return {
    clients,
    groups: groupRow?.total ?? 0,
    nodes: others.length + (local ? 1 : 0),
    connections: local || others.length > 0 ? (local?.connections ?? 0) + others.reduce((total, s) => total + s.connections, 0) : null,
    messagesInPerSecond: rate((s) => s.messagesIn),
    messagesOutPerSecond: rate((s) => s.messagesOut),
    authFailuresLastHour: (lastHour?.authFailures ?? 0) + (local?.unsampled.authFailures ?? 0),
    refusalsLastHour: (lastHour?.refusals ?? 0) + (local?.unsampled.refusals ?? 0),
  };
}
