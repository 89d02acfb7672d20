import type { Database } from '../db';
import { ValidationError } from '../domain/errors';
import { getTlsSettings, saveTlsUpload, setRequireClientCert, setTlsEnabled, type TlsUpload } from '../domain/tlsSettings';
import type { MaterialCheck } from '../domain/certificates';
import type { TlsControl } from './env';

/** What the Certificates page (and the API) can do besides uploading. */
export type CertificateAction = 'enable' | 'disable' | 'require-client-cert' | 'allow-without-client-cert';

export const CERTIFICATE_ACTIONS: ReadonlySet<CertificateAction> = new Set(['enable', 'disable', 'require-client-cert', 'allow-without-client-cert']);

/**
 * Stores an action and applies it to this node's listeners (the others hear
 * it through tls_settings' change notification). Throws ValidationError
 * (key `action`) when it may not be done, or could not be applied: then what
 * was stored before is put back, and nothing changed.
 */
export async function applyCertificateAction(db: Database, tls: TlsControl | undefined, action: CertificateAction): Promise<void> {
  const before = await getTlsSettings(db);
  if (action === 'enable' || action === 'disable') {
    if (tls?.filesInUse) throw new ValidationError({ action: 'TLS_CERT_FILE and TLS_KEY_FILE are set: the files decide, so this page cannot turn TLS on or off.' });
    await setTlsEnabled(db, action === 'enable');
  } else {
    const caAvailable = Boolean(before.caPem) || Boolean(tls?.status().hasCa && tls.filesInUse);
    await setRequireClientCert(db, action === 'require-client-cert', caAvailable);
  }
  if (!tls) return;
  try {
    await tls.apply();
  } catch (error) {
    // Not applied (a port taken, say): keep what was stored before, and say why.
    await setTlsEnabled(db, before.enabled).catch(() => {});
    await setRequireClientCert(db, before.requireClientCert, true).catch(() => {});
    await tls.apply().catch(() => {});
    throw new ValidationError({ action: `This could not be applied, so nothing changed: ${(error as Error).message}` });
  }
}

/** Stores uploaded material and, when the console's certificates are in use, gives it to new connections. */
export async function uploadCertificates(db: Database, tls: TlsControl | undefined, upload: TlsUpload): Promise<MaterialCheck> {
  const check = await saveTlsUpload(db, upload, tls?.secretKey);
  if (tls?.status().source === 'console') await tls.apply();
  return check;
}
