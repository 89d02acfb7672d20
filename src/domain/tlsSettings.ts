import { eq } from 'drizzle-orm';
import { schema, type Database } from '../db';
import { checkTlsMaterial, openSecret, sealSecret, type MaterialCheck, type TlsMaterial } from './certificates';
import { ValidationError } from './errors';

const { tlsSettings } = schema;

/** What the console shows of the stored TLS settings: never the private key. */
export interface TlsSettings {
  caPem: string | null;
  certPem: string | null;
  hasKey: boolean;
  enabled: boolean;
  requireClientCert: boolean;
  updatedAt: Date | null;
}

const NO_SETTINGS: TlsSettings = { caPem: null, certPem: null, hasKey: false, enabled: false, requireClientCert: false, updatedAt: null };

export async function getTlsSettings(db: Database): Promise<TlsSettings> {
  const [row] = await db.select().from(tlsSettings).where(eq(tlsSettings.id, 1));
  if (!row) return NO_SETTINGS;
  return {
    caPem: row.caPem,
    certPem: row.certPem,
    hasKey: row.keySealed !== null,
    enabled: row.enabled,
    requireClientCert: row.requireClientCert,
    updatedAt: row.updatedAt,
  };
}

/** True when a private key is stored (then SECRET_KEY is needed to use it). */
export async function hasStoredPrivateKey(db: Database): Promise<boolean> {
  return (await getTlsSettings(db)).hasKey;
}

/**
 * The material the console's uploads give, when certificates are enabled
 * there; null otherwise. Throws SecretKeyError when `secretKey` cannot open
 * the stored key.
 */
export async function loadEnabledTlsMaterial(
  db: Database,
  secretKey: string | undefined,
): Promise<{ material: TlsMaterial | null; requireClientCert: boolean }> {
  const [row] = await db.select().from(tlsSettings).where(eq(tlsSettings.id, 1));
  if (!row) return { material: null, requireClientCert: false };
  // A stored key needs SECRET_KEY, enabled or not: a wrong or missing one is
  // said at start, not on the day certificates are enabled.
  if (row.keySealed && !secretKey) throw new MissingSecretKeyError();
  const keyPem = row.keySealed ? openSecret(secretKey!, row.keySealed) : undefined;
  if (!row.enabled || !row.certPem || !keyPem) return { material: null, requireClientCert: row.requireClientCert };
  return { material: { certPem: row.certPem, keyPem, caPem: row.caPem ?? undefined }, requireClientCert: row.requireClientCert };
}

export class MissingSecretKeyError extends Error {
  constructor() {
    super('a private key is stored in the database (uploaded on the Certificates page): set SECRET_KEY to the value it was saved with');
  }
}

/** What an upload of the certificates form carries; an empty field keeps what is stored. */
export interface TlsUpload {
  ca?: string;
  cert?: string;
  key?: string;
}

/**
 * Checks and stores uploaded material. Empty fields keep what is stored, so a
 * renewed certificate can be uploaded alone while its key stays. Throws
 * ValidationError (keys `ca`, `cert`, `key`, `form`); returns the check
 * (summaries and warnings) of what is now stored.
 */
export async function saveTlsUpload(db: Database, upload: TlsUpload, secretKey: string | undefined): Promise<MaterialCheck> {
  const given = {
    ca: upload.ca?.trim() || undefined,
    cert: upload.cert?.trim() || undefined,
    key: upload.key?.trim() || undefined,
  };
  if (!given.ca && !given.cert && !given.key) throw new ValidationError({ form: 'Paste or upload at least one certificate or key.' });
  if (!secretKey && (given.key || (await hasStoredPrivateKey(db)))) {
    throw new ValidationError({ key: 'Set SECRET_KEY in the environment and restart Gatehouse before uploading a private key: it is stored encrypted with a key derived from it.' });
  }
  const [row] = await db.select().from(tlsSettings).where(eq(tlsSettings.id, 1));
  const storedKey = row?.keySealed && secretKey ? openSecret(secretKey, row.keySealed) : undefined;
  const material: Partial<TlsMaterial> = {
    caPem: given.ca ?? row?.caPem ?? undefined,
    certPem: given.cert ?? row?.certPem ?? undefined,
    keyPem: given.key ?? storedKey,
  };
  // A CA alone may be stored before the server certificate arrives.
  const onlyCa = !material.certPem && !material.keyPem;
  const check = checkTlsMaterial(material);
  const errors = { ...check.errors };
  if (onlyCa) {
    delete errors.cert;
    delete errors.key;
  }
  if (Object.keys(errors).length > 0) throw new ValidationError(errors);
  const values = {
    caPem: material.caPem ?? null,
    certPem: material.certPem ?? null,
    keySealed: material.keyPem ? sealSecret(secretKey!, material.keyPem) : null,
    updatedAt: new Date(),
  };
  await db.insert(tlsSettings).values({ id: 1, ...values }).onConflictDoUpdate({ target: tlsSettings.id, set: values });
  return check;
}

/** Turns the console's certificates on or off; on needs a certificate and its key. */
export async function setTlsEnabled(db: Database, enabled: boolean): Promise<void> {
  const settings = await getTlsSettings(db);
  if (enabled && (!settings.certPem || !settings.hasKey)) {
    throw new ValidationError({ form: 'Upload the server certificate and its private key before enabling certificates.' });
  }
  await upsert(db, { enabled });
}

/** Requires client certificates (mTLS) or not; on needs a CA (`caAvailable`: stored, or from TLS_CA_FILE). */
export async function setRequireClientCert(db: Database, on: boolean, caAvailable: boolean): Promise<void> {
  if (on && !caAvailable) {
    throw new ValidationError({ form: 'Upload the CA certificate that signs your devices’ certificates before requiring client certificates.' });
  }
  await upsert(db, { requireClientCert: on });
}

async function upsert(db: Database, values: { enabled?: boolean; requireClientCert?: boolean }) {
  const set = { ...values, updatedAt: new Date() };
  await db.insert(tlsSettings).values({ id: 1, ...set }).onConflictDoUpdate({ target: tlsSettings.id, set });
}
