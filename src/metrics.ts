import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { BrokerMetrics } from './broker';
import type { Authenticator } from './domain/access/authenticate';
import type { AccessModel } from './domain/access/model';
import type { Transport } from './domain/access/types';
import type { PipelineFigures } from './pipelines/service';
import { DROP_REASONS } from './domain/pipelines/outbox';

/**
 * Prometheus metrics (prom-client), named by Prometheus' conventions: base
 * units in the name, `_total` on counters, labels of low cardinality only
 * (never a client id, a username or a topic). prom-client's default metrics
 * cover the process: memory, CPU, event-loop lag, garbage collection.
 */
export interface Metrics {
  registry: Registry;
  /** What the broker reports as it goes. */
  broker: BrokerMetrics;
  /** A TLS handshake that failed (bad certificate, wrong protocol, timeout…), by listener. */
  tlsHandshakeFailed(listener: 'mqtts' | 'https'): void;
  /** What the counters hold now, summed over their labels (the overview's sampler reads them). */
  totals(): Promise<MetricTotals>;
  /**
   * The pipelines' figures, read when Prometheus scrapes. Their label is the
   * pipeline's id: as many series as pipelines an operator made (names could
   * change and hold anything); a deleted pipeline's series go with it.
   */
  watchPipelines(figures: () => PipelineFigures[]): void;
  /** Reads counters kept elsewhere when Prometheus scrapes. */
  watch(sources: { connections(): Record<Transport, number>; authenticator: Authenticator; accessModel?: AccessModel }): void;
}

/** Counters since the process started. */
export interface MetricTotals {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** CONNECTs refused, for any reason. */
  authFailures: number;
  /** Publishes and subscriptions refused by the permissions. */
  refusals: number;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  // The broker's counts are plain numbers on its hot paths (every CONNECT,
  // every message), handed to prom-client only when Prometheus scrapes.
  const connectResults = ['accepted', 'bad_credentials', 'missing_credentials', 'throttled', 'unavailable', 'bad_client_id', 'certificate_refused'] as const;
  const connects = tally(registry, 'gatehouse_mqtt_connects_total', 'CONNECTs answered, by result (accepted, or why not)', 'result', connectResults);
  const qosLevels = ['0', '1', '2'] as const;
  const messagesIn = tally(registry, 'gatehouse_mqtt_received_messages_total', 'PUBLISH packets received from clients, by QoS', 'qos', qosLevels);
  const bytesIn = tally(registry, 'gatehouse_mqtt_received_payload_bytes_total', 'Payload bytes of PUBLISH packets received from clients');
  const messagesOut = tally(registry, 'gatehouse_mqtt_sent_messages_total', 'PUBLISH packets sent to subscribers, by QoS', 'qos', qosLevels);
  const bytesOut = tally(registry, 'gatehouse_mqtt_sent_payload_bytes_total', 'Payload bytes of PUBLISH packets sent to subscribers');
  const refusedActions = ['publish', 'subscribe'] as const;
  const refused = tally(registry, 'gatehouse_mqtt_refused_total', 'Publishes and subscriptions refused by the permissions of the session', 'action', refusedActions);
  const refusedConnectionReasons = ['max_connections', 'pending_per_address'] as const;
  const refusedConnections = tally(
    registry,
    'gatehouse_mqtt_connections_refused_total',
    'MQTT connections closed on arrival, by reason: max_connections (MQTT_MAX_CONNECTIONS open), pending_per_address (MQTT_MAX_PENDING_PER_ADDRESS of its address not past CONNECT)',
    'reason',
    refusedConnectionReasons,
  );
  const handshakeFailures = tally(
    registry,
    'gatehouse_tls_handshake_failures_total',
    'TLS handshakes that failed (refused or unknown certificate, protocol error, timeout), by listener',
    'listener',
    ['mqtts', 'https'],
  );

  return {
    registry,
    broker: {
      connect: (result) => connects[connectResults.indexOf(result as (typeof connectResults)[number])]!++,
      received(qos, bytes) {
        messagesIn[qos]!++;
        bytesIn[0]! += bytes;
      },
      sent(qos, bytes) {
        messagesOut[qos]!++;
        bytesOut[0]! += bytes;
      },
      refused: (action) => refused[action === 'publish' ? 0 : 1]!++,
      connectionRefused: (reason) => refusedConnections[refusedConnectionReasons.indexOf(reason)]!++,
    },
    async totals() {
      // The plain numbers themselves: no need to wait for a scrape.
      const sum = (counts: number[], keep: (index: number) => boolean = () => true) => counts.reduce((total, value, i) => (keep(i) ? total + value : total), 0);
      const accepted = connectResults.indexOf('accepted');
      return {
        messagesIn: sum(messagesIn),
        messagesOut: sum(messagesOut),
        bytesIn: sum(bytesIn),
        bytesOut: sum(bytesOut),
        authFailures: sum(connects, (i) => i !== accepted),
        refusals: sum(refused),
      };
    },
    watchPipelines(figures) {
      const outcomes = ['matched', 'delivered', 'retried', 'failed'] as const;
      const reported = new Map<string, number>();
      /** Adds to `counter` what `value` gained since the last scrape (a pipeline recreated starts again). */
      const mirror = (counter: Counter<string>, name: string, labels: Record<string, string>, value: number) => {
        const key = JSON.stringify([name, labels]);
        const before = reported.get(key) ?? 0;
        counter.inc(labels, Math.max(0, value - before));
        reported.set(key, value);
      };
      let known = new Set<string>();
      const forget = (ids: Set<string>) => {
        for (const id of known) {
          if (ids.has(id)) continue;
          for (const metric of [queueMessages, queueBytes, queueAge]) metric.remove({ pipeline: id });
          for (const outcome of outcomes) messages.remove({ pipeline: id, outcome });
          for (const reason of DROP_REASONS) dropped.remove({ pipeline: id, reason });
          for (const s of states) state.remove({ pipeline: id, state: s });
          for (const key of [...reported.keys()]) if (key.includes(`"pipeline":"${id}"`)) reported.delete(key);
        }
        known = ids;
      };
      const messages = new Counter({
        name: 'gatehouse_pipeline_messages_total',
        help: 'Messages of each pipeline on this node, by outcome: matched (written to the outbox), delivered, retried (an attempt failed and will be repeated), failed (moved to the dead letters)',
        labelNames: ['pipeline', 'outcome'],
        registers: [registry],
        collect() {
          const all = figures();
          forget(new Set(all.map((f) => String(f.id))));
          for (const f of all) for (const outcome of outcomes) mirror(this, 'messages', { pipeline: String(f.id), outcome }, f[outcome]);
        },
      });
      const dropped = new Counter({
        name: 'gatehouse_pipeline_dropped_messages_total',
        help: 'Messages a pipeline dropped on this node, by reason: overflow_oldest, overflow_newest, refused (publish refused, outbox full), expired (older than the age limit), write_failed (a QoS 0 message the outbox could not take)',
        labelNames: ['pipeline', 'reason'],
        registers: [registry],
        collect() {
          for (const f of figures()) for (const [reason, n] of Object.entries(f.dropped)) mirror(this, 'dropped', { pipeline: String(f.id), reason }, n);
        },
      });
      const gauge = (name: string, help: string, read: (f: PipelineFigures) => number) =>
        new Gauge({
          name,
          help,
          labelNames: ['pipeline'],
          registers: [registry],
          collect() {
            for (const f of figures()) this.set({ pipeline: String(f.id) }, read(f));
          },
        });
      const queueMessages = gauge('gatehouse_pipeline_queue_messages', 'Messages waiting in a pipeline’s outbox (every node’s)', (f) => f.queueRows);
      const queueBytes = gauge('gatehouse_pipeline_queue_bytes', 'Bytes waiting in a pipeline’s outbox (every node’s)', (f) => f.queueBytes);
      const queueAge = gauge('gatehouse_pipeline_queue_age_seconds', 'Age of the oldest message waiting in a pipeline’s outbox', (f) => f.queueAgeS);
      const states = ['healthy', 'degraded', 'failing', 'paused'] as const;
      const state = new Gauge({
        name: 'gatehouse_pipeline_state',
        help: 'A pipeline’s state on this node: 1 for the state it is in (healthy, degraded, failing, paused), 0 for the others',
        labelNames: ['pipeline', 'state'],
        registers: [registry],
        collect() {
          for (const f of figures()) for (const s of states) this.set({ pipeline: String(f.id), state: s }, f.state === s ? 1 : 0);
        },
      });
      // prom-client's Histogram only takes observations: the service's buckets are reported as they are.
      registry.registerMetric({
        name: 'gatehouse_pipeline_delivery_latency_seconds',
        help: 'Seconds from the broker accepting a message to the destination acknowledging it, per pipeline, on this node',
        type: 'histogram',
        aggregator: 'sum',
        get: async () => {
          const values: Array<{ value: number; labels: Record<string, string | number>; metricName: string }> = [];
          for (const f of figures()) {
            const id = String(f.id);
            f.latency.buckets.forEach((le, i) => values.push({ value: f.latency.counts[i]!, labels: { pipeline: id, le }, metricName: 'gatehouse_pipeline_delivery_latency_seconds_bucket' }));
            values.push({ value: f.latency.count, labels: { pipeline: id, le: '+Inf' }, metricName: 'gatehouse_pipeline_delivery_latency_seconds_bucket' });
            values.push({ value: f.latency.sum, labels: { pipeline: id }, metricName: 'gatehouse_pipeline_delivery_latency_seconds_sum' });
            values.push({ value: f.latency.count, labels: { pipeline: id }, metricName: 'gatehouse_pipeline_delivery_latency_seconds_count' });
          }
          return { name: 'gatehouse_pipeline_delivery_latency_seconds', help: 'Seconds from the broker accepting a message to the destination acknowledging it, per pipeline, on this node', type: 'histogram', values, aggregator: 'sum' };
        },
        reset() {},
      } as never);
    },
    tlsHandshakeFailed: (listener) => handshakeFailures[listener === 'mqtts' ? 0 : 1]!++,
    watch(sources) {
      new Gauge({
        name: 'gatehouse_mqtt_connections',
        help: 'Open MQTT connections, by transport',
        labelNames: ['transport'],
        registers: [registry],
        collect() {
          for (const [transport, count] of Object.entries(sources.connections())) this.labels(transport).set(count);
        },
      });
      const stats = () => sources.authenticator.stats();
      // Counters kept by the authenticator, read at scrape time.
      const mirrored = (name: string, help: string, read: () => number) => {
        let seen = 0;
        new Counter({
          name,
          help,
          registers: [registry],
          collect() {
            const now = read();
            this.inc(Math.max(0, now - seen));
            seen = now;
          },
        });
      };
      mirrored('gatehouse_password_verifies_total', 'Argon2id verifies run (unknown usernames included)', () => stats().verifies);
      mirrored('gatehouse_connect_cache_hits_total', 'CONNECTs whose password was already verified (no Argon2id)', () => stats().cacheHits);
      mirrored('gatehouse_connect_database_reads_total', 'Database reads made for CONNECTs (what memory did not hold)', () => stats().databaseReads);
      new Gauge({
        name: 'gatehouse_password_verifies_waiting',
        help: 'Argon2id verifies waiting for a slot',
        registers: [registry],
        collect() {
          this.set(stats().waitingVerifies);
        },
      });
      const model = sources.accessModel;
      if (!model) return;
      const modelGauge = (name: string, help: string, read: () => number) =>
        new Gauge({
          name,
          help,
          registers: [registry],
          collect() {
            this.set(read());
          },
        });
      modelGauge('gatehouse_access_model_clients', 'Clients held in memory for CONNECT', () => model.stats().clients);
      modelGauge('gatehouse_access_model_credential_bytes', 'Bytes the in-memory credentials hold on to (columns, indexes and their bytes)', () => model.stats().credentialBytes);
      modelGauge('gatehouse_access_model_load_seconds', 'Seconds the first read of every client and rule took at start', () => model.stats().loadMs / 1000);
      modelGauge('gatehouse_access_model_current', '1 while the access model answers for the database (read, and hearing every change since), else 0', () => (model.current() ? 1 : 0));
    },
  };
}

/**
 * A counter kept as plain numbers (one per label value, in `values` order; one
 * without a label), reported to prom-client at scrape time. Every series
 * exists from the start, so a scrape shows zeros rather than nothing.
 */
function tally(registry: Registry, name: string, help: string, labelName?: string, values: readonly string[] = ['']): number[] {
  const counts = values.map(() => 0);
  const reported = values.map(() => 0);
  const counter = new Counter({
    name,
    help,
    labelNames: labelName ? [labelName] : [],
    registers: [registry],
    collect() {
      values.forEach((value, i) => {
        const delta = counts[i]! - reported[i]!;
        reported[i] = counts[i]!;
        if (delta <= 0) return;
        if (labelName) this.labels(value).inc(delta);
        else this.inc(delta);
      });
    },
  });
  // `labels()` alone makes no series: an increment by 0 does.
  if (labelName) for (const value of values) counter.inc({ [labelName]: value }, 0);
  else counter.inc(0);
  return counts;
}
