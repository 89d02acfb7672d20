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

  const connects = new Counter({
    name: 'gatehouse_mqtt_connects_total',
    help: 'CONNECTs answered, by result (accepted, or why not)',
    labelNames: ['result'],
    registers: [registry],
  });
  const messagesIn = new Counter({
    name: 'gatehouse_mqtt_received_messages_total',
    help: 'PUBLISH packets received from clients, by QoS',
    labelNames: ['qos'],
    registers: [registry],
  });
  const bytesIn = new Counter({
    name: 'gatehouse_mqtt_received_payload_bytes_total',
    help: 'Payload bytes of PUBLISH packets received from clients',
    registers: [registry],
  });
  const messagesOut = new Counter({
    name: 'gatehouse_mqtt_sent_messages_total',
    help: 'PUBLISH packets sent to subscribers, by QoS',
    labelNames: ['qos'],
    registers: [registry],
  });
  const bytesOut = new Counter({
    name: 'gatehouse_mqtt_sent_payload_bytes_total',
    help: 'Payload bytes of PUBLISH packets sent to subscribers',
    registers: [registry],
  });
  const refused = new Counter({
    name: 'gatehouse_mqtt_refused_total',
    help: 'Publishes and subscriptions refused by the permissions of the session',
    labelNames: ['action'],
    registers: [registry],
  });
  // Pre-create the series so a scrape shows zeros rather than nothing.
  for (const result of ['accepted', 'bad_credentials', 'missing_credentials', 'throttled', 'unavailable', 'bad_client_id']) connects.labels(result);
  for (const qos of ['0', '1', '2']) {
    messagesIn.labels(qos);
    messagesOut.labels(qos);
  }
  for (const action of ['publish', 'subscribe']) refused.labels(action);

  return {
    registry,
    broker: {
      connect: (result) => connects.labels(result).inc(),
      received(qos, bytes) {
        messagesIn.labels(String(qos)).inc();
        bytesIn.inc(bytes);
      },
      sent(qos, bytes) {
        messagesOut.labels(String(qos)).inc();
        bytesOut.inc(bytes);
      },
      refused: (action) => refused.labels(action).inc(),
    },
    async totals() {
      const sum = async (counter: Counter<string>, keep: (labels: Record<string, unknown>) => boolean = () => true) =>
        (await counter.get()).values.reduce((total, v) => (keep(v.labels) ? total + v.value : total), 0);
      return {
        messagesIn: await sum(messagesIn),
        messagesOut: await sum(messagesOut),
        bytesIn: await sum(bytesIn),
        bytesOut: await sum(bytesOut),
        authFailures: await sum(connects, (labels) => labels.result !== 'accepted'),
        refusals: await sum(refused),
      };
    },
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
