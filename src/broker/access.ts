import type tls from 'node:tls';
import type { AedesOptions, Client as AedesClient, PublishPacket } from 'aedes';
import { decideSubscribe, SessionDecisions } from '../domain/access/acl';
import type { AuthFailure, ClientCertificate } from '../domain/access/types';
import type { ConnectionRegistry } from './connections';
import { firstCopy, streamOf } from './engine';
import { MAX_PUBLISH_DELAY_MS, type BrokerLimits } from './limits';
import { REFUSED_PUBLISH_TOPIC, type AcceptedMessage, type BrokerAudit, type BrokerDeps, type BrokerMetrics } from './types';
import type { Wills } from './wills';
import { connackReasonCodes, disconnectClient, isMqtt5, ReasonCode, refusal } from './mqtt5';

const connackCodes: Record<AuthFailure, 2 | 3 | 4 | 5> = {
  bad_client_id: 2,
  certificate_refused: 5,
  missing_credentials: 4,
  bad_credentials: 4,
  throttled: 3,
  unavailable: 3,
};

export interface AccessDeps {
  registry: ConnectionRegistry;
  limits: BrokerLimits;
  authenticate: BrokerDeps['authenticate'];
  onPublishAccepted?: BrokerDeps['onPublishAccepted'];
  wills: Wills;
  publishDelay(client: AedesClient): number;
  metrics: BrokerMetrics;
  audit?: BrokerAudit;
  log: (message: string) => void;
  noteRefusal: NoteRefusal;
}

/** `sent`: the MQTT 5 reason code the device was answered with (none: a 3.1.1 publish dropped, a will). */
export type NoteRefusal = (client: AedesClient, action: 'publish' | 'subscribe', topic: string, sent?: number) => void;

/** Logs and audits a refusal, once per session and topic (at most 20 per session): a looping device does not flood either. */
export function createRefusalNotes(registry: ConnectionRegistry, audit: BrokerAudit | undefined, log: (message: string) => void): NoteRefusal {
  return function noteRefusal(client, action, topic, sent) {
    const state = registry.get(client);
    const key = `${action} ${topic}`;
    if (!state) return;
    state.refusals ??= new Set();
    if (state.refusals.has(key) || state.refusals.size >= 20) return;
    state.refusals.add(key);
    log(`refused ${action} to ${JSON.stringify(topic)} for ${JSON.stringify(state.principal?.username ?? '?')} (client id ${JSON.stringify(client.id)})`);
    audit?.refused({ action, topic, username: state.principal?.username, clientId: client.id, address: state.remoteAddress, transport: state.transport, ...(sent === undefined ? {} : { reasonCode: sent }) });
  };
}


/**
 * The authentication and authorization hooks: each translates an engine
 * callback into a domain decision and the decision into an MQTT answer.
 */
export function createAccessHooks(deps: AccessDeps) {
  const { registry, limits, metrics, audit, log, wills, noteRefusal } = deps;

  /** Judges a PUBLISH by the session's permissions; a refused one is acknowledged and dropped. */
  function authorizeNow(client: AedesClient, packet: PublishPacket, callback: (error: Error | null) => void) {
    metrics.received(packet.qos, packet.payload.length);
    const session = registry.get(client)?.session;
    if (session) {
      session.messagesIn = (session.messagesIn ?? 0) + 1;
      session.bytesIn = (session.bytesIn ?? 0) + packet.payload.length;
    }
    if (!registry.decisionsOf(client).mayPublish(packet.topic)) {
      metrics.refused('publish');
      noteRefusal(client, 'publish', packet.topic, isMqtt5(client) ? ReasonCode.NOT_AUTHORIZED : undefined);
      if (isMqtt5(client)) {
        // PUBACK/PUBREC 0x87 (QoS 0: dropped); the connection stays.
        callback(refusal(ReasonCode.NOT_AUTHORIZED, 'not authorized'));
        return;
      }
      // [MQTT-3.3.5-2] Acknowledged as usual, delivered to no one, never retained.
      packet.topic = REFUSED_PUBLISH_TOPIC;
      packet.retain = false;
      packet.payload = Buffer.alloc(0);
      callback(null);
      return;
    }
    offerAccepted(client, packet, callback);
  }

  /**
   * Hands an allowed PUBLISH to `onPublishAccepted`; QoS 1/2 wait for its
   * answer. A QoS 2 message the device sends again (DUP, same packet id) is
   * handed over once: a copy of one already accepted goes straight on to
   * Aedes, which answers PUBREC and publishes nothing (engine/incoming.ts).
   */
  function offerAccepted(client: AedesClient, packet: PublishPacket, callback: (error: Error | null) => void) {
    const hook = deps.onPublishAccepted;
    const state = registry.get(client);
    if (!hook || !state?.principal) {
      callback(null);
      return;
    }
    const message: AcceptedMessage = { topic: packet.topic, payload: packet.payload as Buffer, qos: packet.qos, retain: packet.retain };
    const properties = (packet as { properties?: Record<string, unknown> }).properties;
    if (properties) message.properties = properties;
    const session = (state.publishing ??= { ...state.principal, groups: state.groups ?? [] });
    if (packet.qos !== 2) {
      offer(client, packet, () => hook(message, session), callback);
      return;
    }
    void firstCopy(client, packet).then((first) => {
      if (!first) {
        callback(null);
        return;
      }
      offer(client, packet, () => hook(message, session), (error) => {
        if (error) {
          first.refuse();
          callback(error);
        } else first.accept(callback);
      });
    });
  }

  /** Runs `hand` (the hook on the message) and answers `callback` as the hook decides. */
  function offer(client: AedesClient, packet: PublishPacket, hand: () => Promise<void> | void, callback: (error: Error | null) => void) {
    let answer: Promise<void> | void;
    try {
      answer = hand();
    } catch (error) {
      answer = Promise.reject(error);
    }
    const refused = (error: unknown) => {
      const reason = error instanceof Error ? error : new Error(String(error));
      log(`publish to ${JSON.stringify(packet.topic)} by client id ${JSON.stringify(client.id)} not accepted: ${JSON.stringify(reason.message)}`);
      return reason;
    };
    if (packet.qos === 0) {
      if (answer) answer.catch(refused);
      callback(null);
      return;
    }
    if (!answer) {
      callback(null);
      return;
    }
    // An error closes an MQTT 3.1.1 connection without PUBACK: the client sends it again.
    answer.then(
      () => callback(null),
      (error: unknown) => {
        const reason = refused(error);
        if (!isMqtt5(client)) {
          callback(reason);
          return;
        }
        // A 5.0 client is told in its PUBACK/PUBREC and stays connected; the
        // hook's own message is not sent (it may name what decided).
        const code = (reason as { reasonCode?: unknown }).reasonCode;
        callback(refusal(typeof code === 'number' && code >= 0x80 && code <= 0xff ? code : ReasonCode.UNSPECIFIED_ERROR, 'not accepted'));
      },
    );
  }

  /**
   * [MQTT-4.7.3-2] Topic names and filters must not hold U+0000: the server
   * closes the connection. (An error alone would be answered with a reason
   * code on MQTT 5 and keep the connection.)
   */
  function closeForNul(client: AedesClient, what: string, topic: string, callback: (error: Error) => void) {
    log(`closing client id ${JSON.stringify(client.id)}: its ${what} ${JSON.stringify(topic)} holds U+0000 [MQTT-4.7.3-2]`);
    streamOf(client).destroy();
    callback(new Error(`${what} holds U+0000`));
  }

  const hooks: Pick<AedesOptions, 'preConnect' | 'authenticate' | 'authorizePublish' | 'authorizeSubscribe'> = {
    preConnect(client, packet, callback) {
      const origin = registry.get(client);
      if (origin) {
        origin.emptyClientId = packet.clientId === '';
        origin.keepaliveS = packet.keepalive ?? 0;
      }
      callback(null, true);
    },

    authenticate(client, username, password, done) {
      const origin = registry.get(client);
      function auditAuthFailure(reason: AuthFailure) {
        const reasonCode = isMqtt5(client) ? connackReasonCodes[reason] : undefined;
        audit?.authFailed({ username: username ?? '', clientId: client.id, address: origin?.remoteAddress, transport: origin?.transport ?? 'tcp', reason, ...(reasonCode === undefined ? {} : { reasonCode }) });
      }
      // [MQTT-3.1.3-8] 3.1.1: a session that outlives the connection needs
      // the client's own id: an empty one with clean session 0 is refused.
      // 5.0 assigns one instead, whatever the session expiry, and names it in
      // CONNACK (Assigned Client Identifier, [MQTT-3.1.3-6/7]).
      if (origin?.emptyClientId && !client.clean && !isMqtt5(client)) {
        metrics.connect('bad_client_id');
        auditAuthFailure('bad_client_id');
        done(authError(2, 'bad_client_id'), false);
        return;
      }
      deps
        .authenticate({
          username,
          password,
          clientId: client.id,
          transport: origin?.transport ?? 'tcp',
          remoteAddress: origin?.remoteAddress,
          clientCertificate: origin?.tlsSocket ? peerCertificateOf(origin.tlsSocket) : undefined,
          certificateRequired: origin?.certificateRequired,
        })
        .then(
          (result) => {
            metrics.connect(result.ok ? 'accepted' : result.reason);
            if (!result.ok) {
              auditAuthFailure(result.reason);
              done(authError(connackCodes[result.reason], result.reason), false);
              return;
            }
            if (origin) {
              origin.principal = result.principal;
              origin.decisions = new SessionDecisions(result.access);
              origin.groups = result.access.groups.map((group) => group.name);
            }
            wills.vet(client, result.access, result.principal);
            done(null, true);
          },
          (error: unknown) => {
            log(`authentication failed unexpectedly: ${(error as Error).message}`);
            metrics.connect('unavailable');
            auditAuthFailure('unavailable');
            done(authError(3, 'unavailable'), false);
          },
        );
    },

    /**
     * Also called for a client's will when it fires: on this node as its
     * connection ends (`client` is the session), or by any node for a
     * session whose node died (`client` is null, or a session of the same
     * client id now connected here). See wills.ts.
     */
    authorizePublish(client, packet, callback) {
      if (client && packet.topic.includes('\u0000') && !wills.isWill(client, packet)) {
        closeForNul(client, 'topic name', packet.topic, callback);
        return;
      }
      if (wills.isWill(client, packet)) {
        wills.judge(client, packet, callback);
        return;
      }
      const from = client!;
      const delay = deps.publishDelay(from);
      if (delay > MAX_PUBLISH_DELAY_MS) {
        const error = new Error(`publishing faster than ${limits.maxPublishRate} messages a second for too long`);
        // 5.0: DISCONNECT 0x96 (Message rate too high) first.
        if (isMqtt5(from)) disconnectClient(from, ReasonCode.MESSAGE_RATE_TOO_HIGH, () => callback(error));
        else callback(error);
        return;
      }
      if (delay > 0) {
        setTimeout(() => authorizeNow(from, packet, callback), delay);
        return;
      }
      authorizeNow(from, packet, callback);
    },

    authorizeSubscribe(client, subscription, callback) {
      const filter = subscription.topic;
      if (filter.includes('\u0000')) {
        closeForNul(client, 'topic filter', filter, callback);
        return;
      }
      // Checked first, and in O(1) per filter: one SUBSCRIBE may carry
      // ~90,000 filters, and long ones cost every check after them.
      const state = registry.get(client);
      const granted = state ? (state.granted ??= new Set<string>()) : new Set<string>();
      const known = granted.has(filter);
      const bytes = Buffer.byteLength(filter);
      const over =
        bytes > limits.maxFilterBytes
          ? `longer than ${limits.maxFilterBytes} bytes`
          : !known && granted.size >= limits.maxSubscriptions
            ? `over ${limits.maxSubscriptions} subscriptions`
            : !known && (state?.grantedBytes ?? 0) + bytes > limits.maxSessionFilterBytes
              ? `over ${limits.maxSessionFilterBytes} bytes of filters`
              : null;
      if (over) {
        metrics.refused('subscribe');
        // A refused filter may be huge: the log and the audit keep its start.
        noteRefusal(client, 'subscribe', `${filter.length > 256 ? `${filter.slice(0, 256)}…` : filter} (${over})`, isMqtt5(client) ? ReasonCode.NOT_AUTHORIZED : undefined);
        callback(null, null);
        return;
      }
      if (!decideSubscribe(registry.decisionsOf(client).access, subscription.topic).allowed) {
        metrics.refused('subscribe');
        noteRefusal(client, 'subscribe', subscription.topic, isMqtt5(client) ? ReasonCode.NOT_AUTHORIZED : undefined);
        callback(null, null); // 0x80 for this filter only (5.0: 0x87)
        return;
      }
      if (!known) {
        granted.add(filter);
        if (state) state.grantedBytes = (state.grantedBytes ?? 0) + bytes;
      }
      callback(null, subscription);
    },
  };

  return {
    hooks,
    /** UNSUBSCRIBE gives room back under the subscription cap. */
    unsubscribed(filters: string[], client: AedesClient) {
      const state = registry.get(client);
      const granted = state?.granted;
      if (!state || !granted) return;
      for (const filter of filters) {
        if (granted.delete(filter)) state.grantedBytes = (state.grantedBytes ?? 0) - Buffer.byteLength(filter);
      }
    },
  };
}

/** The client certificate a TLS socket's peer presented, or undefined. */
export function peerCertificateOf(socket: tls.TLSSocket): ClientCertificate | undefined {
  const peer = socket.getPeerCertificate();
  if (!peer || !peer.fingerprint256) return undefined;
  return { fingerprint256: peer.fingerprint256, validFrom: new Date(peer.valid_from), validTo: new Date(peer.valid_to) };
}

/** A refused CONNECT: `returnCode` for 3.1/3.1.1, `reasonCode` for 5.0 (src/broker/mqtt5.ts, patch 009). */
function authError(returnCode: 2 | 3 | 4 | 5, reason: AuthFailure) {
  return Object.assign(new Error(reason), { returnCode, reasonCode: connackReasonCodes[reason] });
}
