import type { Client as AedesClient } from 'aedes';
import type { SessionExpiryStore } from '../domain/sessionExpiries';
import { sessionExpiryOf } from './mqtt5';

/** Session Expiry Interval meaning "never" ([MQTT-3.1.2-11]): no row, kept until taken over. */
const NEVER_EXPIRES_S = 0xffffffff;

/**
 * MQTT 5 session expiry across restarts. The engine times a session's expiry
 * in memory, so a node that stops forgets it: the session stayed stored until
 * its device came back. Each MQTT 5 connection that ends with a session kept
 * writes when that session expires (`session_expiries`); a connection of the
 * client id opening removes the row. A node that starts, before its
 * listeners open, removes the stored sessions whose expiry passed and times
 * the others; of several nodes, the one that claims the row removes the
 * session. While a node runs, the engine's own timer is the one that acts.
 */
export function createSessionExpiry(deps: {
  store: SessionExpiryStore | undefined;
  engine: { wipeStoredSession(clientId: string): Promise<void>; isBeingTakenOver(clientId: string): boolean; isConnectedHere(clientId: string): boolean };
  log: (message: string) => void;
}) {
  const { store, engine, log } = deps;
  const timers = new Map<string, NodeJS.Timeout>();
  /**
   * Every write, one after the other in the order of the events: an end's
   * row, then the removal a new connection asks for. Removals are gathered
   * for 100 ms into one statement: a connect storm is not a write per CONNECT.
   */
  let writes: Promise<void> = Promise.resolve();
  const toForget = new Set<string>();
  let forgetTimer: NodeJS.Timeout | undefined;

  function enqueue(what: string, write: () => Promise<void>): void {
    writes = writes.then(write).catch((error: Error) => log(`session expiry ${what} not written: ${JSON.stringify(error.message)}`));
  }

  function flushForgets(): void {
    if (forgetTimer) clearTimeout(forgetTimer);
    forgetTimer = undefined;
    const ids = [...toForget];
    toForget.clear();
    if (ids.length > 0) enqueue(`of ${ids.length} client ids`, () => store!.forget(ids));
  }

  function forget(clientId: string): void {
    toForget.add(clientId);
    forgetTimer ??= setTimeout(flushForgets, 100);
  }

  function cancel(clientId: string): void {
    const timer = timers.get(clientId);
    if (timer) clearTimeout(timer);
    timers.delete(clientId);
  }

  async function expire(clientId: string, expiresAt: Date): Promise<void> {
    // A device connected here since: its connection removed the row, or will.
    if (engine.isConnectedHere(clientId)) return;
    if (toForget.has(clientId) || !(await store!.claim(clientId, expiresAt))) return;
    await engine.wipeStoredSession(clientId);
    log(`session of client id ${JSON.stringify(clientId)} removed: its MQTT 5 session expiry passed while it was away (${expiresAt.toISOString()})`);
  }

  function arm(clientId: string, expiresAt: Date): void {
    cancel(clientId);
    // setTimeout holds at most 2^31-1 ms (24.8 days); MQTT_MAX_SESSION_EXPIRY_S may be longer.
    const wait = Math.min(expiresAt.getTime() - Date.now(), 2 ** 31 - 1);
    const timer = setTimeout(() => {
      timers.delete(clientId);
      if (Date.now() < expiresAt.getTime()) arm(clientId, expiresAt);
      else enqueue(`of client id ${JSON.stringify(clientId)}`, () => expire(clientId, expiresAt));
    }, Math.max(wait, 0));
    timer.unref();
    timers.set(clientId, timer);
  }

  return {
    /** Before the listeners open: removes the sessions whose expiry passed, times the others. */
    async start(): Promise<void> {
      if (!store) return;
      for (const { mqttClientId, expiresAt } of await store.all()) {
        if (expiresAt.getTime() <= Date.now()) await expire(mqttClientId, expiresAt);
        else arm(mqttClientId, expiresAt);
      }
    },
    /** A connection of the client id opened (any protocol version): its session is in use again. */
    opened(client: AedesClient): void {
      if (!store) return;
      cancel(client.id);
      forget(client.id);
    },
    /** A connection ended: a 5.0 session kept after it gets its expiry written. */
    ended(client: AedesClient): void {
      if (!store) return;
      const expiryS = sessionExpiryOf(client);
      if (!expiryS || expiryS >= NEVER_EXPIRES_S || engine.isBeingTakenOver(client.id)) return;
      const expiresAt = new Date(Date.now() + expiryS * 1000);
      // The upsert replaces the row a removal still gathered would have removed.
      toForget.delete(client.id);
      enqueue(`of client id ${JSON.stringify(client.id)}`, () => store.record(client.id, expiresAt));
    },
    /** The engine's own timer removed the session. */
    expired(clientId: string): void {
      if (!store) return;
      cancel(clientId);
      forget(clientId);
    },
    /** After the engine closed (its last connections' ends written): stops the timers, waits for the writes. */
    async close(): Promise<void> {
      for (const clientId of [...timers.keys()]) cancel(clientId);
      flushForgets();
      await writes;
    },
  };
}
