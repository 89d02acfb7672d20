import { and, eq, inArray } from 'drizzle-orm';
import { type Database, schema } from '../db';

const { sessionExpiries } = schema;

/**
 * When each MQTT 5 session kept after its connection ended expires
 * (`session_expiries`): written as the connection ends, removed when the
 * client id connects again or the session is removed. Read by a node as it
 * starts (src/broker/sessionExpiry.ts).
 */
export interface SessionExpiryStore {
  /** The session of `mqttClientId` expires at `expiresAt` unless a connection of it opens before. */
  record(mqttClientId: string, expiresAt: Date): Promise<void>;
  /** Connections of these client ids opened, or their sessions are gone. */
  forget(mqttClientIds: string[]): Promise<void>;
  /** Every session kept, with its expiry. */
  all(): Promise<Array<{ mqttClientId: string; expiresAt: Date }>>;
  /**
   * Removes the row of `mqttClientId` if it still says `expiresAt`; true if
   * it did. Of several nodes acting on one expiry, one gets true.
   */
  claim(mqttClientId: string, expiresAt: Date): Promise<boolean>;
}

export function createSessionExpiryStore(db: Database): SessionExpiryStore {
  return {
    async record(mqttClientId, expiresAt) {
      await db.insert(sessionExpiries).values({ mqttClientId, expiresAt }).onConflictDoUpdate({ target: sessionExpiries.mqttClientId, set: { expiresAt } });
    },
    async forget(mqttClientIds) {
      if (mqttClientIds.length > 0) await db.delete(sessionExpiries).where(inArray(sessionExpiries.mqttClientId, mqttClientIds));
    },
    async all() {
      return db.select().from(sessionExpiries);
    },
    async claim(mqttClientId, expiresAt) {
      const removed = await db
        .delete(sessionExpiries)
        .where(and(eq(sessionExpiries.mqttClientId, mqttClientId), eq(sessionExpiries.expiresAt, expiresAt)))
        .returning({ mqttClientId: sessionExpiries.mqttClientId });
      return removed.length > 0;
    },
  };
}
