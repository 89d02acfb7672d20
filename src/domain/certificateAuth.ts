import type { Database } from '../db';
import { resolveAccess } from './acl';
import type { AuthenticateInput, AuthResult, Principal } from './authenticate';
import { findCertificateConnectRow } from './groupRules';

/** The client certificate a TLS connection presented (and proved it holds the key of). */
export interface ClientCertificate {
  /** `AB:CD:…`, as stored for certificate clients. */
  fingerprint256: string;
  validFrom: Date;
  validTo: Date;
}

/** Checks a password against a client row's hash, through the authenticator's throttled gate. */
export type PasswordCheck = (username: string, passwordHash: string, password: string) => Promise<{ ok: true } | { ok: false; reason: 'bad_credentials' | 'throttled' }>;

/**
 * A CONNECT that carries a client certificate, or that came over a listener
 * requiring one (mTLS). Certificate clients are found by the certificate's
 * SHA-256 fingerprint, in one database read (no Argon2id for Certificate
 * clients, so nothing is cached):
 *
 * - Certificate: the certificate is enough; CONNECT's username and password
 *   are ignored, and `%u` is the client's username in the console.
 * - Certificate + Password: CONNECT must also carry the client's username
 *   and password (CONNACK 4 otherwise, as for a password client).
 * - A certificate out of its dates is refused (CONNACK 5), even when the
 *   handshake let it through (client certificates are optional without mTLS).
 * - A certificate no client has: with mTLS, refused (CONNACK 5); without,
 *   null — the password path decides, as if no certificate had been sent.
 */
export async function authenticateByCertificate(
  db: Database,
  input: AuthenticateInput,
  checkPassword: PasswordCheck,
  now = new Date(),
): Promise<AuthResult | null> {
  const certificate = input.clientCertificate;
  if (!certificate) return input.certificateRequired ? { ok: false, reason: 'certificate_refused' } : null;
  // [MQTT-1.5.3-2] No MQTT string holds U+0000.
  if (input.clientId.includes('\u0000')) return { ok: false, reason: 'bad_client_id' };
  let found;
  try {
    found = await findCertificateConnectRow(db, certificate.fingerprint256, input.clientId);
  } catch {
    return { ok: false, reason: 'unavailable' };
  }
  if (!found) return input.certificateRequired ? { ok: false, reason: 'certificate_refused' } : null;
  if (certificate.validTo < now || certificate.validFrom > now) return { ok: false, reason: 'certificate_refused' };
  const row = found.credentials;
  if (row.authType === 'certificate_password') {
    const password = input.password === undefined ? '' : Buffer.from(input.password).toString('utf8');
    if (!input.username || !password) return { ok: false, reason: 'missing_credentials' };
    if (input.username !== row.username) return { ok: false, reason: 'bad_credentials' };
    const checked = await checkPassword(row.username, row.passwordHash, password);
    if (!checked.ok) return { ok: false, reason: checked.reason };
  }
  const principal: Principal = {
    clientRowId: row.id,
    username: row.username,
    authType: row.authType,
    mqttClientId: input.clientId,
    transport: input.transport,
    remoteAddress: input.remoteAddress,
    certFingerprint: certificate.fingerprint256,
  };
  return { ok: true, principal, access: resolveAccess(found.grants, principal) };
}
