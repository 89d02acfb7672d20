import type { Client as AedesClient } from 'aedes';
import type { LiveSession } from '../domain/connections';
import { peerCertificateOf } from './access';
import type { ConnectionRegistry } from './connections';
import { streamOf, subscriptionCount } from './engine';
import type { BrokerSessions } from './types';

/**
 * The authenticated sessions open on this node: counted per client row (and
 * told to `onSessionChange`), described for the Connections page, and ended
 * on request.
 */
export function createSessionRegistry(deps: { registry: ConnectionRegistry; nodeId: string; onSessionChange?(clientRowId: number, delta: 1 | -1): void }) {
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
        yield session;
      }
    },
    liveSession(sessionId) {
      const open = sessions.get(sessionId);
      if (!open) return undefined;
      open.session.subscriptions = subscriptionCount(open.client);
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
        streamOf(open.client).destroy();
      }
      return Promise.all(ending);
    },
  };

  return {
    api,
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
        groups: state.groups ?? [],
        tlsVersion: state.tlsSocket?.getProtocol() ?? null,
        certFingerprint: state.tlsSocket ? (peerCertificateOf(state.tlsSocket)?.fingerprint256 ?? null) : null,
      };
      state.session = session;
      sessions.set(session.id, { client, session });
      sessionCounts.set(clientRowId, (sessionCounts.get(clientRowId) ?? 0) + 1);
      deps.onSessionChange?.(clientRowId, 1);
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
      deps.onSessionChange?.(principal.clientRowId, -1);
    },
  };
}
