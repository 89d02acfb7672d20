import { and, eq, inArray, isNotNull, isNull, lt, sql } from 'drizzle-orm';
import { type Database, schema } from '../db';

const { sessionExpiries } = schema;

/**
 * When each MQTT 5 session kept after its connection ended expires
 * (`session_expiries`), read by a node as it starts
 * (src/broker/sessionExpiry.ts). A row belongs to one connection of the
 * client id, named by when it opened (`connected_at`): its end writes the
 * expiry; a connection that opens later writes "in use since" (no expiry)
 * over it. A write about a connection older than the row's is ignored, so
 * events of two nodes that reach the database out of order (an old
 * connection's end on one after the reconnect on another) never leave a
 * live session's row saying it expires.
 */
export interface SessionExpiryStore {
  /** The session of the connection of `mqttClientId` opened at `connectedAt` expires at `expiresAt` (unless a later connection's row is there). */
  record(mqttClientId: string, expiresAt: Date, connectedAt: Date): Promise<void>;
  /** Connections of these client ids opened at these times: their sessions are in use (unless a later connection's row is there). */
  opened(connections: Array<{ mqttClientId: string; connectedAt: Date }>): Promise<void>;
  /** The engine removed these sessions after their connection ended: their expiry rows go (an open one since stays). */
  expired(mqttClientIds: string[]): Promise<void>;
  /** Every session kept, with its expiry. */
  all(): Promise<Array<{ mqttClientId: string; expiresAt: Date }>>;
  /**
   * Removes the row of `mqttClientId` if it still says `expiresAt`; true if
   * it did. Of several nodes acting on one expiry, one gets true.
   */
  claim(mqttClientId: string, expiresAt: Date): Promise<boolean>;
  /** Removes the "in use" rows of connections opened before `before`: an end that late is not waited for. */
  prune(before: Date): Promise<void>;
}

export function createSessionExpiryStore(db: Database): SessionExpiryStore {
  return {
    async record(mqttClientId, expiresAt, connectedAt) {
      await db
        .insert(sessionExpiries)
        .values({ mqttClientId, expiresAt, connectedAt })
        .onConflictDoUpdate({
          target: sessionExpiries.mqttClientId,
          set: { expiresAt, connectedAt },
          // Its own connection's "in use" row, or an older one's: replaced.
          setWhere: sql`${sessionExpiries.connectedAt} <= excluded.connected_at`,
        });
    },
    async opened(connections) {
      if (connections.length === 0) return;
      // One parameter, the rows as JSON, whatever their number.
      const rows = JSON.stringify(connections.map((c) => ({ id: c.mqttClientId, at: c.connectedAt.toISOString() })));
      await db.execute(sql`insert into ${sessionExpiries} (mqtt_client_id, expires_at, connected_at)
        select id, null, at from jsonb_to_recordset(${rows}::jsonb) as r(id text, at timestamptz)
        on conflict (mqtt_client_id) do update set expires_at = null, connected_at = excluded.connected_at
        where ${sessionExpiries.connectedAt} < excluded.connected_at`);
    },
    async expired(mqttClientIds) {
      if (mqttClientIds.length > 0) await db.delete(sessionExpiries).where(and(inArray(sessionExpiries.mqttClientId, mqttClientIds), isNotNull(sessionExpiries.expiresAt)));
    },
    async all() {
      const rows = await db
        .select({ mqttClientId: sessionExpiries.mqttClientId, expiresAt: sessionExpiries.expiresAt })
        .from(sessionExpiries)
        .where(isNotNull(sessionExpiries.expiresAt));
      return rows.map((row) => ({ mqttClientId: row.mqttClientId, expiresAt: row.expiresAt! }));
    },
    async claim(mqttClientId, expiresAt) {
      const removed = await db
        .delete(sessionExpiries)
        .where(and(eq(sessionExpiries.mqttClientId, mqttClientId), eq(sessionExpiries.expiresAt, expiresAt)))
        .returning({ mqttClientId: sessionExpiries.mqttClientId });
      return removed.length > 0;
    },
    async prune(before) {
      await db.delete(sessionExpiries).where(and(isNull(sessionExpiries.expiresAt), lt(sessionExpiries.connectedAt, before)));
    },
  };
}
