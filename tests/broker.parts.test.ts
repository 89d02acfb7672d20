import { PassThrough } from 'node:stream';
import type { Client as AedesClient, PublishPacket } from 'aedes';
import { describe, expect, it } from 'vitest';
import { SessionDecisions } from '../src/domain/access/acl';
import { ConnectionRegistry } from '../src/broker/connections';
import { createForwarding } from '../src/broker/flow';
import { createPublishPacer } from '../src/broker/limits';
import { REFUSED_PUBLISH_TOPIC, noMetrics } from '../src/broker/types';
import { createWills, WILL_OWNER } from '../src/broker/wills';
import { allowEverything } from './support/broker';

/** A client as the parts see it: an id and a stream whose buffer the test sets. */
function fakeClient(id: string) {
  const conn = { writableLength: 0, destroyed: false, destroyedWith: undefined as Error | undefined, destroy(error?: Error) {
    this.destroyed = true;
    this.destroyedWith = error;
  } };
  return { client: { id, conn, clean: true } as unknown as AedesClient, conn };
}

function packet(topic: string, qos: 0 | 1 | 2): PublishPacket {
  return { cmd: 'publish', topic, payload: Buffer.from('x'), qos, retain: false, dup: false } as PublishPacket;
}

describe('the broker parts, against a fake client', () => {
  it('flow: drops QoS 0 to a full subscriber, keeps QoS 1, and cuts it off after the drain timeout', () => {
    const registry = new ConnectionRegistry(10);
    const { client, conn } = fakeClient('slow');
    registry.track(client, { transport: 'tcp' }).decisions = new SessionDecisions(allowEverything(1, 'slow', 'slow'));
    const logs: string[] = [];
    const forward = createForwarding({ registry, limits: { maxBufferedBytes: 100, drainTimeoutMs: 1000 }, metrics: noMetrics, log: (line) => logs.push(line) });

    expect(forward(client, packet('a/b', 0), 0)).not.toBeNull();
    conn.writableLength = 101;
    expect(forward(client, packet('a/b', 0), 10)).toBeNull();
    expect(forward(client, packet('a/b', 1), 20)).not.toBeNull();
    expect(conn.destroyed).toBe(false);
    expect(forward(client, packet('a/b', 1), 1011)).toBeNull();
    expect(conn.destroyedWith?.message).toBe('subscriber stalled');
    expect(logs).toEqual(['disconnecting client id "slow": not reading for 1001 ms']);
  });

  it('flow: never forwards what the session may not receive', () => {
    const registry = new ConnectionRegistry(10);
    const { client } = fakeClient('nobody');
    registry.track(client, { transport: 'tcp' });
    const forward = createForwarding({ registry, limits: { maxBufferedBytes: 100, drainTimeoutMs: 1000 }, metrics: noMetrics, log: () => {} });
    expect(forward(client, packet('a/b', 1), 0)).toBeNull();
  });

  it('limits: paces a publisher to its rate and says so once', () => {
    const registry = new ConnectionRegistry(10);
    const { client } = fakeClient('fast');
    registry.track(client, { transport: 'tcp' });
    const logs: string[] = [];
    const delay = createPublishPacer({ maxPublishRate: 10 }, registry, (line) => logs.push(line));
    expect([delay(client, 0), delay(client, 0), delay(client, 0), delay(client, 250)]).toEqual([0, 100, 200, 50]);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain('client id "fast"');
  });

  it('wills: a will whose client no longer exists is dropped, one it may still publish goes on', async () => {
    const registry = new ConnectionRegistry(10);
    const logs: string[] = [];
    let exists = false;
    const wills = createWills({
      registry,
      currentAccess: async (owner) => (exists ? allowEverything(owner.clientRowId, owner.username, owner.mqttClientId) : null),
      metrics: noMetrics,
      log: (line) => logs.push(line),
      noteRefusal: () => {},
    });
    const will = () => Object.assign(packet('wills/a', 1), { [WILL_OWNER]: { clientRowId: 3, username: 'device', mqttClientId: 'a' } });
    const judged = (p: PublishPacket) => new Promise<PublishPacket>((resolve) => wills.judge(null, p, () => resolve(p)));

    expect(wills.isWill(null, will())).toBe(true);
    expect((await judged(will())).topic).toBe(REFUSED_PUBLISH_TOPIC);
    expect(logs[0]).toContain('the client no longer exists');
    exists = true;
    expect((await judged(will())).topic).toBe('wills/a');
  });

  it('registry: counts connections not past CONNECT per address, and frees a place once one completes CONNECT or closes', async () => {
    const registry = new ConnectionRegistry(3, 2);
    const streams = [new PassThrough(), new PassThrough(), new PassThrough()];
    registry.admit(streams[0]!, 'tcp', '10.0.0.1');
    registry.admit(streams[1]!, 'tcp', '10.0.0.1');
    expect(registry.hasRoomFor('10.0.0.1')).toBe(false);
    // Another address is not held back by the first one's.
    expect(registry.hasRoomFor('10.0.0.2')).toBe(true);
    registry.admit(streams[2]!, 'ws', '10.0.0.2');
    expect(registry.hasRoom()).toBe(false);

    // Past CONNECT: still open, no longer pending; settled twice counts once.
    registry.settle(streams[0]!);
    registry.settle(streams[0]!);
    expect(registry.pendingFrom('10.0.0.1')).toBe(1);
    expect(registry.hasRoomFor('10.0.0.1')).toBe(true);
    expect(registry.count()).toBe(3);

    // Closed before CONNECT: neither pending nor open.
    streams[1]!.destroy();
    await new Promise((resolve) => streams[1]!.once('close', resolve));
    expect(registry.pendingFrom('10.0.0.1')).toBe(0);
    expect(registry.count()).toBe(2);
    expect(registry.hasRoom()).toBe(true);
    expect(registry.openByTransport).toMatchObject({ tcp: 1, ws: 1 });
  });
});
