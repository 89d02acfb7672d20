import type { Client as AedesClient } from 'aedes';
import { describe, expect, it } from 'vitest';
import { createSessionExpiry } from '../src/broker/sessionExpiry';
import type { SessionExpiryStore } from '../src/domain/sessionExpiries';

/**
 * The session-expiry bookkeeping against a store in memory that keeps the
 * rows as `src/domain/sessionExpiries.ts` does (the newest connection's row
 * wins), with the engine's answers given by the test: orderings a broker on
 * real sockets cannot be made to produce on demand.
 */
type Row = { expiresAt: Date | null; connectedAt: Date };

function memoryStore(rows: Map<string, Row>, hooks: { claim?: () => Promise<void>; record?: (id: string) => Promise<void> } = {}): SessionExpiryStore {
  return {
    async record(id, expiresAt, connectedAt) {
      await hooks.record?.(id);
      const row = rows.get(id);
      if (!row || row.connectedAt.getTime() <= connectedAt.getTime()) rows.set(id, { expiresAt, connectedAt });
    },
    async opened(connections) {
      for (const { mqttClientId: id, connectedAt } of connections) {
        const row = rows.get(id);
        if (!row || row.connectedAt.getTime() < connectedAt.getTime()) rows.set(id, { expiresAt: null, connectedAt });
      }
    },
    async expired(ids) {
      for (const id of ids) if (rows.get(id)?.expiresAt) rows.delete(id);
    },
    async all() {
      return [...rows].filter(([, row]) => row.expiresAt).map(([mqttClientId, row]) => ({ mqttClientId, expiresAt: row.expiresAt! }));
    },
    async claim(id, expiresAt) {
      const hit = rows.get(id)?.expiresAt?.getTime() === expiresAt.getTime();
      if (hit) rows.delete(id);
      await hooks.claim?.();
      return hit;
    },
    async prune() {},
  };
}

/** What the bookkeeping reads of a connection: its client id, protocol version and granted session expiry. */
const connection = (id: string, version: number, sessionExpiryInterval?: number) => ({ id, version, sessionExpiryInterval }) as unknown as AedesClient;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each([true, false])('session expiry (only node: %s)', (onlyNode) => {
  it('leaves alone a session a connection opened while its expired row was being claimed, and marks the next one in use', async () => {
    // A row timed at start, whose expiry comes 300 ms later.
    const rows = new Map<string, Row>([['x', { expiresAt: new Date(Date.now() + 300), connectedAt: new Date(Date.now() - 60_000) }]]);
    const connected = new Set<string>();
    const wiped: string[] = [];
    let release!: () => void;
    let claiming!: () => void;
    const claimStarted = new Promise<void>((resolve) => (claiming = resolve));
    const store = memoryStore(rows, { claim: () => (claiming(), new Promise<void>((resolve) => (release = resolve))) });
    const engine = { wipeStoredSession: async (id: string) => void wiped.push(id), isBeingTakenOver: () => false, isConnectedHere: (id: string) => connected.has(id) };
    const expiry = createSessionExpiry({ store, engine, log: () => {}, onlyNode });
    await expiry.start();
    await claimStarted;

    // While the claim waits: a 5.0 connection opens and ends, keeping its session for 1 s.
    // (Rows are ordered by when their connection opened, to the millisecond: each event gets its own.)
    const b = connection('x', 5, 1);
    connected.add('x');
    expiry.opened(b);
    await sleep(5);
    connected.delete('x');
    expiry.ended(b);
    release();
    await expiry.written();
    expect(wiped, 'the session the 5.0 connection left is its own, not the expired one').toEqual([]);

    // A 3.1.1 connection that keeps its session takes it over: it must not expire.
    await sleep(5);
    const c = connection('x', 4);
    connected.add('x');
    expiry.opened(c);
    await expiry.written();
    expect(rows.get('x')?.expiresAt, "the live 3.1.1 session's row says it is in use").toBeNull();
    connected.delete('x');
    expiry.ended(c);
    await expiry.close();

    // Past the 5.0 connection's expiry, a start removes nothing.
    await sleep(1100);
    const restarted = createSessionExpiry({ store: memoryStore(rows), engine, log: () => {}, onlyNode });
    await restarted.start();
    expect(wiped, 'a 3.1.1 session that is kept never expires').toEqual([]);
    await restarted.close();
  });

  it('leaves alone a session a connection opened and left after the expiry came due, while the claim waited its turn', async () => {
    const rows = new Map<string, Row>([['x', { expiresAt: new Date(Date.now() + 50), connectedAt: new Date(Date.now() - 60_000) }]]);
    const connected = new Set<string>();
    const wiped: string[] = [];
    // Another client id's write holds the queue while the expiry of 'x' comes due behind it.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const store = memoryStore(rows, { record: (id) => (id === 'y' ? held : Promise.resolve()) });
    const engine = { wipeStoredSession: async (id: string) => void wiped.push(id), isBeingTakenOver: () => false, isConnectedHere: (id: string) => connected.has(id) };
    const expiry = createSessionExpiry({ store, engine, log: () => {}, onlyNode });
    const y = connection('y', 5, 60);
    expiry.opened(y);
    await sleep(5);
    expiry.ended(y);
    await expiry.start();
    await sleep(300);

    // Due and queued: a 5.0 connection of 'x' opens and ends, keeping its session for 60 s.
    const b = connection('x', 5, 60);
    connected.add('x');
    expiry.opened(b);
    await sleep(150);
    connected.delete('x');
    expiry.ended(b);
    release();
    await expiry.written();
    expect(wiped, 'the session the 5.0 connection left is its own').toEqual([]);
    expect(rows.get('x')?.expiresAt?.getTime(), "its row says when it expires").toBeGreaterThan(Date.now() + 50_000);
    await expiry.close();
  });
});
