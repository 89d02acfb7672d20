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
  /** Reads counters kept elsewhere when Prometheus scrapes. */
  watch(sources: { connections(): Record<Transport, number>; authenticator: Authenticator }): void;
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
  const handshakeFailures = new Counter({
    name: 'gatehouse_tls_handshake_failures_total',
    help: 'TLS handshakes that failed (refused or unknown certificate, protocol error, timeout), by listener',
    labelNames: ['listener'],
    registers: [registry],
  });
  handshakeFailures.inc({ listener: 'mqtts' }, 0);
  handshakeFailures.inc({ listener: 'https' }, 0);
  // Pre-create the series so a scrape shows zeros rather than nothing.
  for (const result of ['accepted', 'bad_credentials', 'missing_credentials', 'throttled', 'unavailable', 'bad_client_id', 'certificate_refused']) connects.labels(result);
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
    tlsHandshakeFailed: (listener) => handshakeFailures.labels(listener).inc(),
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
