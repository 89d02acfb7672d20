import type { Client as AedesClient } from 'aedes';
import type { LiveSession } from '../domain/connections';
import { peerCertificateOf } from './access';
import type { ConnectionRegistry } from './connections';
import { SUBSCRIPTION_FILTERS_SHOWN } from '../domain/connections';
import { streamOf, subscriptionCount, subscriptionFilters } from './engine';
import { disconnectClient, isMqtt5, protocolVersionOf, ReasonCode, sessionExpiryOf } from './mqtt5';
import type { BrokerSessions } from './types';

/**
 * The authenticated sessions open on this node: counted per client row (and
 * told to `onSessionChange`), described for the Connections page, and ended
 * on request.
 */
export function createSessionRegistry(deps: { registry: ConnectionRegistry; nodeId: string; onSessionChange?(clientRowId: number, delta: 1 | -1, mqttClientId: string): void }) {
  const { registry, nodeId } = deps;
  const sessionCounts = new Map<number, number>();
  /** Open sessions by id, in the order they opened; and who waits for one to end. */
  const sessions = new Map<string, { client: AedesClient; session: LiveSession }>();
  const endWaiters = new Map<string, Array<() => void>>();
  let sessionSequence = 0;

  const api: BrokerSessions = {
    sessionsByClient: () => sessionCounts,
    *liveSessions() {
      for (const { client, session } of sessions.values()) {
        session.subscriptions = subscriptionCount(client);
        session.subscriptionFilters = subscriptionFilters(client, SUBSCRIPTION_FILTERS_SHOWN);
        yield session;
      }
    },
    liveSession(sessionId) {
      const open = sessions.get(sessionId);
      if (!open) return undefined;
      open.session.subscriptions = subscriptionCount(open.client);
      open.session.subscriptionFilters = subscriptionFilters(open.client, SUBSCRIPTION_FILTERS_SHOWN);
      return open.session;
    },
    async endSessions(sessionIds) {
      const ending: Array<Promise<LiveSession>> = [];
      for (const id of sessionIds) {
        const open = sessions.get(id);
        if (!open) continue;
        ending.push(
          new Promise<LiveSession>((resolve) => {
            const waiters = endWaiters.get(id) ?? [];
            waiters.push(() => resolve(open.session));
            endWaiters.set(id, waiters);
          }),
        );
        // 5.0: DISCONNECT 0x98 (Administrative action) first.
        if (isMqtt5(open.client)) disconnectClient(open.client, ReasonCode.ADMINISTRATIVE_ACTION);
        else streamOf(open.client).destroy();
      }
      return Promise.all(ending);
    },
  };

  return {
    api,
    /** At shutdown: each 5.0 session is sent DISCONNECT 0x8B (Server shutting down), for at most a second. */
    async tellShutdown(): Promise<void> {
      const told: Array<Promise<void>> = [];
      for (const { client } of sessions.values()) {
        if (!isMqtt5(client)) continue;
        told.push(
          new Promise<void>((resolve) => {
            setTimeout(resolve, 1000).unref();
            disconnectClient(client, ReasonCode.SERVER_SHUTTING_DOWN, resolve);
          }),
        );
      }
      await Promise.all(told);
    },
    /** A session opened (the engine's `client` event). */
    opened(client: AedesClient) {
      const state = registry.get(client);
      if (!state?.principal) return;
      state.counted = true;
      const { clientRowId } = state.principal;
      const session: LiveSession = {
        id: `${nodeId}.${++sessionSequence}`,
        node: nodeId,
        mqttClientId: client.id,
        clientRowId,
        username: state.principal.username,
        remoteAddress: state.remoteAddress ?? null,
        transport: state.transport,
        keepaliveS: state.keepaliveS ?? 0,
        connectedAt: Date.now(),
        subscriptions: 0,
        subscriptionFilters: [],
        messagesIn: 0,
        bytesIn: 0,
        messagesOut: 0,
        bytesOut: 0,
        groups: state.groups ?? [],
        tlsVersion: state.tlsSocket?.getProtocol() ?? null,
        protocolVersion: protocolVersionOf(client) ?? 4,
        sessionExpiryS: sessionExpiryOf(client),
        certFingerprint: state.tlsSocket ? (peerCertificateOf(state.tlsSocket)?.fingerprint256 ?? null) : null,
      };
      state.session = session;
      sessions.set(session.id, { client, session });
      sessionCounts.set(clientRowId, (sessionCounts.get(clientRowId) ?? 0) + 1);
      deps.onSessionChange?.(clientRowId, 1, client.id);
    },
    /** A session ended (the engine's `clientDisconnect` event). */
    ended(client: AedesClient) {
      const state = registry.get(client);
      if (!state?.principal || !state.counted) return;
      state.counted = false;
      const principal = state.principal;
      if (state.session) {
        const id = state.session.id;
        sessions.delete(id);
        for (const resolve of endWaiters.get(id) ?? []) resolve();
        endWaiters.delete(id);
      }
      const left = (sessionCounts.get(principal.clientRowId) ?? 1) - 1;
      if (left > 0) sessionCounts.set(principal.clientRowId, left);
      else sessionCounts.delete(principal.clientRowId);
      deps.onSessionChange?.(principal.clientRowId, -1, client.id);
    },
  };
}
