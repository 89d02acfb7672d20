import type { Client as AedesClient, PublishPacket } from 'aedes';
import { decidePublish } from '../domain/access/acl';
import type { AccessSnapshot, Principal } from '../domain/access/types';
import type { ConnectionRegistry } from './connections';
import { dropPendingWill, isOwnWill, pendingWill } from './engine';
import { REFUSED_PUBLISH_TOPIC, type BrokerMetrics, type WillOwner } from './types';

/** The field of a will packet naming its owner (msgpack keeps it in either persistence). */
export const WILL_OWNER = 'gatehouseOwner';

export interface WillsDeps {
  registry: ConnectionRegistry;
  /** What a client may do now (null: it no longer exists); without it, a will is judged by its session's permissions. */
  currentAccess?(who: WillOwner): Promise<AccessSnapshot | null>;
  metrics: BrokerMetrics;
  log: (message: string) => void;
  noteRefusal(client: AedesClient, action: 'publish', topic: string): void;
}

/** Wills: judged at CONNECT, stored naming their owner, judged again when they fire. */
export function createWills(deps: WillsDeps) {
  const { registry, metrics, log } = deps;
  return {
    /** True when this publish is a will firing (`client` null: a session whose node died). */
    isWill(client: AedesClient | null, packet: PublishPacket): boolean {
      return client === null || isOwnWill(client, packet) || WILL_OWNER in packet;
    },

    /**
     * A will is judged at CONNECT, by the permissions the session will keep: one
     * it may not publish is never stored. One it may is stored naming its owner,
     * so that when it fires, on this node or another, it can be judged again.
     */
    vet(client: AedesClient, access: AccessSnapshot, principal: Principal): void {
      const will = pendingWill(client);
      if (!will) return;
      if (decidePublish(access, will.topic).allowed) {
        const owner: WillOwner = { clientRowId: principal.clientRowId, username: principal.username, mqttClientId: principal.mqttClientId };
        if (principal.certFingerprint) owner.certFingerprint = principal.certFingerprint;
        will[WILL_OWNER] = owner;
        return;
      }
      deps.noteRefusal(client, 'publish', `${will.topic} (will)`);
      dropPendingWill(client);
    },

    /**
     * A will fires after its session ended, maybe long after (its node died):
     * it is published only if its client still exists and may publish the
     * will's topic now (a client deleted, or whose group was taken away, in
     * the meantime leaves no will). A will naming no owner (stored by an older
     * version) has no permissions to judge it, and is dropped too. A dropped
     * will is acknowledged to the engine and sent where nothing is delivered
     * (see REFUSED_PUBLISH_TOPIC): an error would leave it stored, to be tried again.
     */
    judge(client: AedesClient | null, packet: PublishPacket, callback: (error: Error | null) => void): void {
      const owner = (packet as unknown as Record<string, unknown>)[WILL_OWNER] as WillOwner | undefined;
      const drop = (why: string) => {
        log(`dropped the will of ${owner ? JSON.stringify(owner.username) : 'a client'} (client id ${JSON.stringify(owner?.mqttClientId ?? '?')}) to ${JSON.stringify(packet.topic)}: ${why}`);
        packet.topic = REFUSED_PUBLISH_TOPIC;
        packet.retain = false;
        packet.payload = Buffer.alloc(0);
        callback(null);
      };
      if (!owner || typeof owner.username !== 'string' || typeof owner.clientRowId !== 'number') {
        drop('it names no client to judge it by');
        return;
      }
      if (!deps.currentAccess) {
        if (client && !registry.decisionsOf(client).mayPublish(packet.topic)) drop('its session may not publish it');
        else callback(null);
        return;
      }
      deps.currentAccess(owner).then(
        (access) => {
          if (!access) drop('the client no longer exists');
          else if (!decidePublish(access, packet.topic).allowed) drop('the client may no longer publish it');
          else {
            metrics.received(packet.qos, packet.payload.length);
            callback(null);
          }
        },
        () => drop('its permissions could not be read'),
      );
    },
  };
}

export type Wills = ReturnType<typeof createWills>;
