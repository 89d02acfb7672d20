import type { Client as AedesClient, PublishPacket } from 'aedes';
import type { ConnectionRegistry } from './connections';
import { isRepeatedDelivery, streamOf } from './engine';
import type { BrokerLimits } from './limits';
import type { BrokerMetrics } from './types';

/**
 * Flow control on the way out, called for every message about to be written
 * to a subscriber (the engine's authorizeForward). A QoS 0 message for a
 * subscriber whose socket is already full is dropped (as Mosquitto does)
 * instead of parking a delivery slot until it drains; a subscriber that stays
 * full past the drain timeout is disconnected. Before that: a message
 * (retained or live) whose topic the session's permissions do not let it
 * receive is never written.
 */
export function createForwarding(deps: { registry: ConnectionRegistry; limits: Pick<BrokerLimits, 'maxBufferedBytes' | 'drainTimeoutMs'>; metrics: BrokerMetrics; log: (message: string) => void }) {
  const { registry, limits, metrics, log } = deps;
  return function authorizeForward<P extends PublishPacket>(client: AedesClient, packet: P, now = Date.now()): P | null {
    if (!registry.decisionsOf(client).mayDeliver(packet.topic)) return null;
    // The queued copy of a message already sent live (engine/delivery.ts).
    if (isRepeatedDelivery(client, packet)) return null;
    const conn = streamOf(client);
    const state = registry.get(client);
    if (conn.writableLength > limits.maxBufferedBytes) {
      const since = state?.stalledSince;
      if (since === undefined) {
        if (state) state.stalledSince = now;
      } else if (now - since > limits.drainTimeoutMs) {
        log(`disconnecting client id ${JSON.stringify(client.id)}: not reading for ${now - since} ms`);
        conn.destroy(new Error('subscriber stalled'));
        return null;
      }
      if (packet.qos === 0) return null;
    } else if (state) {
      state.stalledSince = undefined;
    }
    metrics.sent(packet.qos, packet.payload.length);
    const session = state?.session;
    if (session) {
      session.messagesOut = (session.messagesOut ?? 0) + 1;
      session.bytesOut = (session.bytesOut ?? 0) + packet.payload.length;
    }
    return packet;
  };
}
