import { and, eq } from 'drizzle-orm';
import { type Database, schema } from '../db';
import { hashPassword, isForeignPasswordHash, isImportedPasswordFormat, PASSWORD_FORMATS, passwordFormatOf, type PasswordFormat } from './password';

const { clients } = schema;

/**
 * After a password verified against a hash brought from elsewhere (an
 * import from Mosquitto, EMQX…), stores it again as Argon2id: a foreign row
 * lives only until its device first connects. Only while the row still holds
 * that very hash (an operator's change meanwhile wins). The version is left
 * alone (nothing an operator typed changed), but the hash column is among
 * those whose change every node hears (migration 0003), so what nodes keep
 * in memory for CONNECT is read again. Never throws: a device that proved
 * its password connects whether or not the new hash could be written.
 */
export async function replaceForeignPasswordHash(db: Database, clientRowId: number, storedHash: string, password: string): Promise<boolean> {
  if (!isForeignPasswordHash(storedHash)) return false;
  try {
    const passwordHash = await hashPassword(password);
    const rows = await db
      .update(clients)
      .set({ passwordHash })
      .where(and(eq(clients.id, clientRowId), eq(clients.passwordHash, storedHash)))
      .returning({ id: clients.id });
    return rows.length > 0;
  } catch {
    return false;
  }
}

/** How a client's password is stored now (see PASSWORD_FORMATS); null when there is no such client. */
export async function clientPasswordFormat(db: Database, clientRowId: number): Promise<PasswordFormat | null> {
  const [row] = await db.select({ passwordHash: clients.passwordHash }).from(clients).where(eq(clients.id, clientRowId));
  return row ? passwordFormatOf(row.passwordHash) : null;
}

/**
 * A client's password format when it is a foreign one (imported, not yet
 * replaced), as its page names it; null for our own formats or no client.
 */
export async function importedPasswordFormat(db: Database, clientRowId: number): Promise<string | null> {
  const format = await clientPasswordFormat(db, clientRowId);
  return format && isImportedPasswordFormat(format) ? PASSWORD_FORMATS[format] : null;
}
