import type { Client as AedesClient } from 'aedes';

/** What the pacer keeps per connection (see connections.ts). */
interface Paced {
  nextPublishAt?: number;
  throttleLogged?: boolean;
  principal?: { username: string };
}

/** Broker limits, chosen on purpose (README, "Broker limits"). */
export interface BrokerLimits {
  drainTimeoutMs: number;
  concurrency: number;
  connectTimeoutMs: number;
  keepaliveLimitS: number;
  maxClientIdLength: number;
  queueLimit: number;
  maxPacketBytes: number;
  maxConnections: number;
  maxBufferedBytes: number;
  maxSubscriptions: number;
  /** Longest subscription filter, in bytes (UTF-8); a longer one is refused (0x80). */
  maxFilterBytes: number;
  /** Bytes of filters one session may hold in all; beyond, filters are refused (0x80). */
  maxSessionFilterBytes: number;
  /** Connections from one address that have not yet completed CONNECT. */
  maxPendingPerAddress: number;
  /** PUBLISH packets one connection may send per second; 0: no limit. */
  maxPublishRate: number;
  /** The longest MQTT 5 Session Expiry Interval granted, in seconds. */
  maxSessionExpiryS: number;
  /** MQTT 5 Receive Maximum advertised and enforced; also QoS 2 messages awaiting PUBREL for 3.1.1. */
  receiveMaximum: number;
  /** MQTT 5 Topic Alias Maximum advertised and accepted. */
  topicAliasMaximum: number;
  /**
   * MQTT 5: QoS 1/2 messages that may wait, per client, for room in the
   * Receive Maximum the client asked for; further ones are dropped (as
   * Mosquitto's max_queued_messages, 1,000 by default too).
   */
  outgoingQueueLimit: number;
}

export const defaultBrokerLimits: BrokerLimits = {
  drainTimeoutMs: 5000,
  concurrency: 1000,
  connectTimeoutMs: 10000,
  keepaliveLimitS: 0,
  maxClientIdLength: 128,
  queueLimit: 100,
  maxPacketBytes: 1024 * 1024,
  maxConnections: 10000,
  maxBufferedBytes: 1024 * 1024,
  maxSubscriptions: 1000,
  maxFilterBytes: 1024,
  maxSessionFilterBytes: 256 * 1024,
  maxPendingPerAddress: 256,
  maxPublishRate: 0,
  maxSessionExpiryS: 7 * 24 * 3600,
  receiveMaximum: 1000,
  topicAliasMaximum: 64,
  outgoingQueueLimit: 1000,
};

/** A connection over its publish rate waits at most this long per packet before it is closed. */
export const MAX_PUBLISH_DELAY_MS = 10_000;

/**
 * With MQTT_MAX_PUBLISH_RATE: how long a PUBLISH must wait for its turn.
 * Waiting holds Aedes' reading of the connection (it reads the next chunk
 * once this one's packets are handled), so a fast publisher slows itself
 * down instead of queueing work the others wait behind.
 */
export function createPublishPacer(limits: Pick<BrokerLimits, 'maxPublishRate'>, registry: { get(client: AedesClient): Paced | undefined }, log: (message: string) => void) {
  return function publishDelay(client: AedesClient, now = Date.now()): number {
    if (limits.maxPublishRate <= 0) return 0;
    const state = registry.get(client);
    if (!state) return 0;
    const at = Math.max(now, state.nextPublishAt ?? now);
    state.nextPublishAt = at + 1000 / limits.maxPublishRate;
    const delay = at - now;
    if (delay > 0 && !state.throttleLogged) {
      state.throttleLogged = true;
      log(`slowing client id ${JSON.stringify(client.id)} (${JSON.stringify(state.principal?.username ?? '?')}) down to ${limits.maxPublishRate} messages a second (MQTT_MAX_PUBLISH_RATE)`);
    }
    return delay;
  };
}
