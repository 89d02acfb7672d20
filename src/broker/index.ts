import { randomUUID } from 'node:crypto';
import { createAccessHooks, createRefusalNotes } from './access';
import { ConnectionRegistry } from './connections';
import { startEngine, streamOf } from './engine';
import { createForwarding } from './flow';
import { createListeners } from './listeners';
import { createPublishPacer, defaultBrokerLimits } from './limits';
import { createSessionExpiry } from './sessionExpiry';
import { createSessionRegistry } from './sessions';
import { noMetrics, type Broker, type BrokerDeps } from './types';
import { createWills } from './wills';

export { defaultBrokerLimits, type BrokerLimits } from './limits';
export * from './types';

/**
 * The broker: small parts around one engine seam (src/broker/engine/).
 *
 * - limits.ts: the limits and the publish pacer;
 * - connections.ts: what is kept per connection, the connection cap;
 * - access.ts: authentication and authorization hooks, onPublishAccepted;
 * - wills.ts: wills judged at CONNECT and when they fire;
 * - flow.ts: flow control on the way out (slow subscribers);
 * - listeners.ts: TCP, TLS and WebSocket;
 * - sessions.ts: the sessions open on this node;
 * - sessionExpiry.ts: MQTT 5 session expiry across restarts;
 * - and here: the order in which they are made, and shutdown.
 */
export async function createBroker(deps: BrokerDeps): Promise<Broker> {
  const limits = { ...defaultBrokerLimits, ...deps.limits };
  const log = deps.log ?? (() => {});
  const metrics = deps.metrics ?? noMetrics;
  const nodeId = randomUUID();
  const registry = new ConnectionRegistry(limits.maxConnections, limits.maxPendingPerAddress);
  const noteRefusal = createRefusalNotes(registry, deps.audit, log);
  const wills = createWills({ registry, currentAccess: deps.currentAccess, metrics, log, noteRefusal });
  const access = createAccessHooks({
    registry,
    limits,
    authenticate: deps.authenticate,
    onPublishAccepted: deps.onPublishAccepted,
    wills,
    publishDelay: createPublishPacer(limits, registry, log),
    metrics,
    audit: deps.audit,
    log,
    noteRefusal,
  });
  const sessions = createSessionRegistry({ registry, nodeId, onSessionChange: deps.onSessionChange });

  // Set once the engine is up; its events come only after.
  let expiry: ReturnType<typeof createSessionExpiry> | undefined;
  // Checks the engine before anything opens: one that does not fit stops here, named.
  const engine = await startEngine({
    id: nodeId,
    mq: deps.mq,
    persistence: deps.persistence,
    drainTimeoutMs: limits.drainTimeoutMs,
    concurrency: limits.concurrency,
    connectTimeoutMs: limits.connectTimeoutMs,
    keepaliveLimitS: limits.keepaliveLimitS,
    maxClientIdLength: limits.maxClientIdLength,
    queueLimit: limits.queueLimit,
    heartbeatIntervalMs: deps.heartbeatIntervalMs,
    maxPacketBytes: limits.maxPacketBytes,
    maxSessionExpiryS: limits.maxSessionExpiryS,
    receiveMaximum: limits.receiveMaximum,
    topicAliasMaximum: limits.topicAliasMaximum,
    outgoingQueueLimit: limits.outgoingQueueLimit,
    hooks: { ...access.hooks, authorizeForward: createForwarding({ registry, limits, metrics, log }) },
    events: {
      opened(client) {
        registry.settle(streamOf(client));
        sessions.opened(client);
        expiry?.opened(client);
      },
      ended(client) {
        sessions.ended(client);
        expiry?.ended(client);
      },
      sessionExpired: (clientId) => expiry?.expired(clientId),
      unsubscribed: access.unsubscribed,
      clientError(client, error) {
        if (/stalled|drain timeout/.test(error.message)) log(`client id ${JSON.stringify(client.id)} disconnected: ${error.message}`);
        // MQTT 5: a message over the device's Maximum Packet Size, or past what may wait for its Receive Maximum (patch 011).
        else if (/^PUBLISH .*not sent/.test(error.message)) {
          const state = registry.get(client);
          if (state && !state.dropLogged) {
            state.dropLogged = true;
            log(`client id ${JSON.stringify(client.id)}: ${error.message} (said once per connection)`);
          }
        }
      },
    },
  });

  expiry = createSessionExpiry({ store: deps.sessionExpiries, engine, log, onlyNode: engine.onlyNode });
  // Sessions whose expiry passed while no node was up go before any device connects.
  await expiry.start();

  const listeners = createListeners({
    registry,
    limits,
    log,
    refused: (reason) => metrics.connectionRefused?.(reason),
    start(stream, transport, remoteAddress, req, secure) {
      const client = engine.handle(stream, req);
      registry.track(client, { transport, remoteAddress, tlsSocket: secure?.socket, certificateRequired: secure?.certificateRequired });
    },
  });

  return {
    aedes: engine.aedes,
    nodeId,
    topics: engine.topics,
    ...listeners,
    ...sessions.api,
    sessionExpiriesWritten: () => expiry?.written() ?? Promise.resolve(),
    onlyNode: engine.onlyNode,
    async close() {
      await sessions.tellShutdown();
      await listeners.close();
      await engine.close();
      await expiry?.close();
    },
  };
}
