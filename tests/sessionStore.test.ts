import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AedesOptions, Client as AedesClient, PublishPacket } from 'aedes';
import aedesPersistenceLevel from 'aedes-persistence-level';
import { ClassicLevel } from 'classic-level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { coalesceWrites } from '../src/broker/coalescingLevel';
import { fixSessionStore } from '../src/broker/engine/sessionStore';

type Store = {
  cleanIncoming(client: AedesClient): Promise<unknown>;
  incomingStorePacket(client: AedesClient, packet: PublishPacket): Promise<unknown>;
  incomingGetPacket(client: AedesClient, packet: PublishPacket): Promise<unknown>;
};

describe('the session store: clearing incoming QoS 2 messages', () => {
  let dir: string;
  let db: ClassicLevel<string, Uint8Array>;
  let level: Store;
  let clears: string[];
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-incoming-'));
    db = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    await db.open();
    level = aedesPersistenceLevel(coalesceWrites(db)) as unknown as Store;
    clears = [];
    const clean = level.cleanIncoming.bind(level);
    level.cleanIncoming = (client) => {
      clears.push(client.id);
      return clean(client);
    };
  });
  afterEach(async () => {
    if (db.status === 'open') await db.close();
    await rm(dir, { recursive: true, force: true });
  });

  // What the store needs of a client (incoming.ts keys its memory by the broker).
  const broker = {};
  const client = (id: string) => ({ id, broker }) as unknown as AedesClient;
  const packet = (messageId: number) => ({ cmd: 'publish', topic: 'q2', payload: Buffer.from('x'), qos: 2, retain: false, dup: false, messageId }) as unknown as PublishPacket;
  const fixed = (onlyNode: boolean) => fixSessionStore(level as unknown as NonNullable<AedesOptions['persistence']>, { onlyNode }) as unknown as Store;
  const stored = (store: Store, id: string, messageId: number) =>
    store.incomingGetPacket(client(id), packet(messageId)).then(
      () => true,
      () => false,
    );

  it('on the only node, clears a client id once and then only after something was stored for it', async () => {
    const store = fixed(true);
    await store.cleanIncoming(client('device'));
    await store.cleanIncoming(client('device'));
    await store.cleanIncoming(client('device'));
    expect(clears).toEqual(['device']);

    await store.incomingStorePacket(client('device'), packet(7));
    expect(await stored(store, 'device', 7)).toBe(true);
    await store.cleanIncoming(client('device'));
    expect(clears).toEqual(['device', 'device']);
    expect(await stored(store, 'device', 7)).toBe(false);
    await store.cleanIncoming(client('other'));
    await store.cleanIncoming(client('device'));
    expect(clears).toEqual(['device', 'device', 'other']);
  });

  it('does not take a client id for empty when a message was stored while its clear ran', async () => {
    const store = fixed(true);
    const clearing = store.cleanIncoming(client('device'));
    const storing = store.incomingStorePacket(client('device'), packet(3));
    await Promise.all([clearing, storing]);
    expect(await stored(store, 'device', 3)).toBe(true);
    await store.cleanIncoming(client('device'));
    expect(await stored(store, 'device', 3)).toBe(false);
    expect(clears).toEqual(['device', 'device']);
  });

  it('clears every time when the store is shared with other nodes', async () => {
    const store = fixed(false);
    await store.cleanIncoming(client('device'));
    await store.cleanIncoming(client('device'));
    expect(clears).toEqual(['device', 'device']);
  });
});
