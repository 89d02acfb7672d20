/**
 * Gatehouse as `node dist/bin/main.js` runs it (configuration from the
 * environment), except that every write of a message into the broker's store
 * (a retained copy, a copy queued for a persistent session) waits
 * HOLD_STORE_WRITES_MS before it starts. A test kills this process right
 * after a PUBACK: whatever was acknowledged before its write landed is lost,
 * every time, instead of only when the kill wins a race.
 */
import type { BrokerState } from '../../src/broker/state';
import { loadConfig } from '../../src/config';
import { startGatehouse } from '../../src/server';

const holdMs = Number(process.env.HOLD_STORE_WRITES_MS ?? 1500);
const held = new Set(['storeRetained', 'outgoingEnqueueCombi']);

function holdWrites(state: BrokerState): BrokerState {
  const persistence = new Proxy(state.persistence, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver) as unknown;
      if (typeof value !== 'function') return value;
      const bound = value.bind(target) as (...args: unknown[]) => unknown;
      if (typeof key !== 'string' || !held.has(key)) return bound;
      return async (...args: unknown[]) => {
        await new Promise((resolve) => setTimeout(resolve, holdMs));
        return bound(...args);
      };
    },
  });
  return { ...state, persistence, close: () => state.close() };
}

const gatehouse = await startGatehouse({ config: loadConfig(), wrapBrokerState: holdWrites });
console.log(`  console         http://127.0.0.1:${gatehouse.httpPort}/`);
console.log(`  MQTT over TCP   mqtt://127.0.0.1:${gatehouse.mqttPort}`);
