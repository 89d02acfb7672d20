import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { BrokerMetrics } from './broker';
import type { Authenticator, Transport } from './domain/authenticate';

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
  /** Reads counters kept elsewhere when Prometheus scrapes. */
  watch(sources: { connections(): Record<Transport, number>; authenticator: Authenticator }): void;
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
