import type { Client as AedesClient } from 'aedes';
import type { SessionExpiryStore } from '../domain/sessionExpiries';
import { sessionExpiryOf } from './mqtt5';

/** Session Expiry Interval meaning "never" ([MQTT-3.1.2-11]): no row, kept until taken over. */
const NEVER_EXPIRES_S = 0xffffffff;

/** How long a row saying "in use" is kept: an old connection's end written later than that is not guarded against. */
const IN_USE_KEPT_MS = 60 * 60 * 1000;

/**
 * MQTT 5 session expiry across restarts. The engine times a session's expiry
 * in memory, so a node that stops forgets it: the session stayed stored until
 * its device came back. Each MQTT 5 connection that ends with a session kept
 * writes when that session expires (`session_expiries`); a connection of the
 * client id opening writes that the session is in use. Each write names when
 * its connection opened, and the database keeps the newest connection's
 * (src/domain/sessionExpiries.ts): an old connection's end on one node that
 * reaches it after the reconnect on another changes nothing. A node that
 * starts, before its listeners open, removes the stored sessions whose expiry
 * passed and times the others; of several nodes, the one that claims the row
 * removes the session. While a node runs, the engine's own timer is the one
 * that acts.
 *
 * The only node (no bus: `onlyNode`) knows every row there is: those it read
 * at start and those it wrote since. It writes an "in use" row only for a
 * client id that has one of them, so a device with no expiring session (every
 * 3.1.1 device, most 5.0 ones) costs no write when it connects; and an older
 * connection's end that comes after a newer connection of its client id
 * opened here is not written (with several nodes the rows' `connected_at`
 * order keeps it from counting).
 */
export function createSessionExpiry(deps: {
  store: SessionExpiryStore | undefined;
  engine: { wipeStoredSession(clientId: string): Promise<void>; isBeingTakenOver(clientId: string): boolean; isConnectedHere(clientId: string): boolean };
  log: (message: string) => void;
  /** No other node shares the store and the database rows. */
  onlyNode?: boolean;
}) {
  const { store, engine, log } = deps;
  const onlyNode = deps.onlyNode === true;
  /** With `onlyNode`: the client ids that have (or may have) a row. */
  const withRow = new Set<string>();
  /** With `onlyNode`: the newest connection of each client id open here, by when it opened. */
  const newest = new Map<string, Date>();
  /** Client ids whose expired row is due to be claimed (from when its timer fired until the claim is done), and those of them a connection opened for meanwhile. */
  const claiming = new Set<string>();
  const openedWhileClaiming = new Set<string>();
  const timers = new Map<string, NodeJS.Timeout>();
  /** When each connection opened: what its writes are ordered by. */
  const openedAt = new WeakMap<AedesClient, Date>();
  /**
   * Every write of this node, one after the other in the order of the
   * events. The "in use" rows of connections that open are gathered for
   * 100 ms into one statement: a connect storm is not a write per CONNECT.
   */
  let writes: Promise<void> = Promise.resolve();
  const opening = new Map<string, Date>();
  let openTimer: NodeJS.Timeout | undefined;
  let pruneTimer: NodeJS.Timeout | undefined;

  function enqueue(what: string, write: () => Promise<void>): void {
    writes = writes.then(write).catch((error: Error) => log(`session expiry ${what} not written: ${JSON.stringify(error.message)}`));
  }

  function flushOpened(): void {
    if (openTimer) clearTimeout(openTimer);
    openTimer = undefined;
    const connections = [...opening].map(([mqttClientId, connectedAt]) => ({ mqttClientId, connectedAt }));
    opening.clear();
    if (connections.length > 0) enqueue(`of ${connections.length} client ids`, () => store!.opened(connections));
  }

  /** Writes what is gathered now; resolves once every write asked for until now is done. */
  async function written(): Promise<void> {
    flushOpened();
    await writes;
  }

  function prune(): void {
    enqueue('clean-up', () => store!.prune(new Date(Date.now() - IN_USE_KEPT_MS)));
  }

  function cancel(clientId: string): void {
    const timer = timers.get(clientId);
    if (timer) clearTimeout(timer);
    timers.delete(clientId);
  }

  async function expire(clientId: string, expiresAt: Date): Promise<void> {
    claiming.add(clientId);
    try {
      // A device connected here since: its connection removed the row, or will.
      if (engine.isConnectedHere(clientId) || opening.has(clientId)) return;
      const claimed = await store!.claim(clientId, expiresAt);
      // A connection of the client id that opened since the expiry came due
      // (even one that ended since) owns the session now: its own end writes
      // when it expires. It stays among `withRow`: that end's row may be queued.
      if (!claimed || openedWhileClaiming.has(clientId) || engine.isConnectedHere(clientId)) return;
      await engine.wipeStoredSession(clientId);
      log(`session of client id ${JSON.stringify(clientId)} removed: its MQTT 5 session expiry passed while it was away (${expiresAt.toISOString()})`);
    } finally {
      claiming.delete(clientId);
      openedWhileClaiming.delete(clientId);
    }
  }

  function arm(clientId: string, expiresAt: Date): void {
    cancel(clientId);
    // setTimeout holds at most 2^31-1 ms (24.8 days); MQTT_MAX_SESSION_EXPIRY_S may be longer.
    const wait = Math.min(expiresAt.getTime() - Date.now(), 2 ** 31 - 1);
    const timer = setTimeout(() => {
      timers.delete(clientId);
      if (Date.now() < expiresAt.getTime()) arm(clientId, expiresAt);
      else {
        // Due: an open of the client id from now until the claim is done keeps the session.
        claiming.add(clientId);
        enqueue(`of client id ${JSON.stringify(clientId)}`, () => expire(clientId, expiresAt));
      }
    }, Math.max(wait, 0));
    timer.unref();
    timers.set(clientId, timer);
  }

  return {
    /** Before the listeners open: removes the sessions whose expiry passed, times the others. */
    async start(): Promise<void> {
      if (!store) return;
      await store.prune(new Date(Date.now() - IN_USE_KEPT_MS));
      pruneTimer = setInterval(prune, IN_USE_KEPT_MS / 6);
      pruneTimer.unref();
      for (const { mqttClientId, expiresAt } of await store.all()) {
        if (onlyNode) withRow.add(mqttClientId);
        if (expiresAt.getTime() <= Date.now()) await expire(mqttClientId, expiresAt);
        else arm(mqttClientId, expiresAt);
      }
    },
    /** A connection of the client id opened (any protocol version): its session is in use again. */
    opened(client: AedesClient): void {
      if (!store) return;
      const at = new Date();
      openedAt.set(client, at);
      cancel(client.id);
      if (claiming.has(client.id)) openedWhileClaiming.add(client.id);
      if (onlyNode) {
        newest.set(client.id, at);
        // No row to mark: nothing can expire this session while it is in use.
        if (!withRow.has(client.id)) return;
      }
      opening.set(client.id, at);
      openTimer ??= setTimeout(flushOpened, 100);
    },
    /** A connection ended: a 5.0 session kept after it gets its expiry written. */
    ended(client: AedesClient): void {
      if (!store) return;
      const connectedAt = openedAt.get(client) ?? new Date();
      if (onlyNode) {
        const latest = newest.get(client.id);
        // A newer connection of its client id opened here since (the same Date only for its own).
        if (latest !== undefined && latest !== connectedAt) return;
        newest.delete(client.id);
      }
      const expiryS = sessionExpiryOf(client);
      if (!expiryS || expiryS >= NEVER_EXPIRES_S || engine.isBeingTakenOver(client.id)) return;
      const expiresAt = new Date(Date.now() + expiryS * 1000);
      if (onlyNode) withRow.add(client.id);
      // Its own "in use" row, still gathered, need not be written first.
      if (opening.get(client.id)?.getTime() === connectedAt.getTime()) opening.delete(client.id);
      enqueue(`of client id ${JSON.stringify(client.id)}`, () => store.record(client.id, expiresAt, connectedAt));
    },
    /** The engine's own timer removed the session. */
    expired(clientId: string): void {
      if (!store) return;
      cancel(clientId);
      withRow.delete(clientId);
      enqueue(`of client id ${JSON.stringify(clientId)}`, () => store.expired([clientId]));
    },
    written,
    /** After the engine closed (its last connections' ends written): stops the timers, waits for the writes. */
    async close(): Promise<void> {
      for (const clientId of [...timers.keys()]) cancel(clientId);
      if (pruneTimer) clearInterval(pruneTimer);
      await written();
    },
  };
}
