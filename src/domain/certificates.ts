import { createCipheriv, createDecipheriv, createPrivateKey, hkdfSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';

/**
 * Certificates as the console and the TLS listeners see them: parsing and
 * checking PEM with node:crypto, and sealing a private key for the database.
 * Nothing here knows of a listener or a page.
 */

/** What the console shows of a certificate. */
export interface CertificateSummary {
  subject: string;
  issuer: string;
  /** Subject alternative names as OpenSSL prints them (`DNS:example.com, IP Address:127.0.0.1`); empty if none. */
  subjectAltNames: string;
  /** SHA-256 of the DER, `AB:CD:…` (as `openssl x509 -fingerprint -sha256` prints it). */
  fingerprint256: string;
  validFrom: Date;
  validTo: Date;
  isCa: boolean;
}

/** Days before expiry from which the console warns. */
export const EXPIRY_WARNING_DAYS = 30;

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate of a PEM text, in order; throws when there is none or one does not parse. */
export function parseCertificates(pem: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new Error('no PEM certificate (-----BEGIN CERTIFICATE-----) found');
  return blocks.map((block) => new X509Certificate(block));
}

export function summarizeCertificate(cert: X509Certificate): CertificateSummary {
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    issuer: cert.issuer.replace(/\n/g, ', '),
    subjectAltNames: cert.subjectAltName ?? '',
    fingerprint256: cert.fingerprint256,
    validFrom: new Date(cert.validFrom),
    validTo: new Date(cert.validTo),
    isCa: cert.ca,
  };
}

/** True when `summary` expires within EXPIRY_WARNING_DAYS of `now` (and has not yet). */
export function expiresSoon(summary: Pick<CertificateSummary, 'validTo'>, now = new Date()): boolean {
  const left = summary.validTo.getTime() - now.getTime();
  return left > 0 && left < EXPIRY_WARNING_DAYS * 24 * 3600 * 1000;
}

/**
 * A warning about the server certificate in use, wherever it comes from
 * (files or an upload): expired, or expiring within EXPIRY_WARNING_DAYS.
 * Null when it is fine (or there is none).
 */
export function certificateInUseWarning(
  certificate: Pick<CertificateSummary, 'validTo'> | null,
  source: 'files' | 'console' | null,
  now = new Date(),
): string | null {
  if (!certificate || source === null) return null;
  const from = source === 'files' ? 'loaded from TLS_CERT_FILE' : 'uploaded here';
  const day = certificate.validTo.toISOString().slice(0, 10);
  const left = certificate.validTo.getTime() - now.getTime();
  if (left <= 0) return `The server certificate in use (${from}) expired on ${day}: devices that check it refuse to connect. Replace it${source === 'files' ? ' and send SIGHUP' : ''}.`;
  if (!expiresSoon(certificate, now)) return null;
  const days = Math.ceil(left / (24 * 3600 * 1000));
  return `The server certificate in use (${from}) expires on ${day}, in ${days} ${days === 1 ? 'day' : 'days'}. Replace it${source === 'files' ? ' and send SIGHUP' : ''} before then.`;
}

/** A certificate fingerprint as stored and shown: 32 upper-case hex bytes joined by colons; null if `text` is not one. */
export function normalizeFingerprint(text: string): string | null {
  const hex = text.trim().replace(/^sha256\s*fingerprint\s*=\s*/i, '').replace(/[\s:]/g, '');
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return null;
  return hex.toUpperCase().match(/../g)!.join(':');
}

/** The server's TLS material, as PEM. */
export interface TlsMaterial {
  certPem: string;
  keyPem: string;
  /** Signs the client certificates the listeners accept (and, usually, the server's). */
  caPem?: string;
}

export type MaterialField = 'ca' | 'cert' | 'key';

/** What checking TLS material found: errors keyed by field, warnings to show, summaries of what parsed. */
export interface MaterialCheck {
  errors: Partial<Record<MaterialField, string>>;
  warnings: string[];
  cert?: CertificateSummary;
  ca?: CertificateSummary;
}

/**
 * Checks server material before it is saved or used: each part parses, the
 * key belongs to the certificate, the dates hold, and (with a CA) whether the
 * CA signed the certificate — a warning only, since a server certificate from
 * a public CA beside a private CA for devices is a sound setup.
 */
export function checkTlsMaterial(material: Partial<TlsMaterial>, now = new Date()): MaterialCheck {
  const check: MaterialCheck = { errors: {}, warnings: [] };
  let ca: X509Certificate | undefined;
  if (material.caPem) {
    try {
      ca = parseCertificates(material.caPem)[0]!;
      check.ca = summarizeCertificate(ca);
      if (!ca.ca) check.errors.ca = 'This certificate is not a CA certificate (its basic constraints do not say CA:TRUE).';
      else if (check.ca.validTo < now) check.errors.ca = `This CA certificate expired on ${isoDay(check.ca.validTo)}.`;
      else if (expiresSoon(check.ca, now)) check.warnings.push(`The CA certificate expires on ${isoDay(check.ca.validTo)}, in less than ${EXPIRY_WARNING_DAYS} days.`);
    } catch (error) {
      check.errors.ca = `This is not a PEM certificate: ${(error as Error).message}.`;
    }
  }
  let chain: X509Certificate[] | undefined;
  if (!material.certPem) check.errors.cert = 'Paste or upload the server certificate.';
  else {
    try {
      chain = parseCertificates(material.certPem);
      const cert = chain[0]!;
      check.cert = summarizeCertificate(cert);
      if (check.cert.validTo < now) check.errors.cert = `This certificate expired on ${isoDay(check.cert.validTo)}.`;
      else if (check.cert.validFrom > now) check.errors.cert = `This certificate is not valid before ${isoDay(check.cert.validFrom)}.`;
      else if (expiresSoon(check.cert, now)) check.warnings.push(`The server certificate expires on ${isoDay(check.cert.validTo)}, in less than ${EXPIRY_WARNING_DAYS} days.`);
    } catch (error) {
      check.errors.cert = `This is not a PEM certificate: ${(error as Error).message}.`;
    }
  }
  let key: KeyObject | undefined;
  if (!material.keyPem) check.errors.key = 'Paste or upload the private key of the server certificate.';
  else {
    try {
      key = createPrivateKey(material.keyPem);
    } catch {
      check.errors.key = 'This is not a PEM private key (an encrypted key is not accepted: decrypt it first, e.g. with openssl pkey).';
    }
  }
  if (chain && key && !check.errors.cert && !chain[0]!.checkPrivateKey(key)) {
    check.errors.key = 'This private key does not belong to the server certificate.';
  }
  if (chain && ca && !check.errors.cert && !check.errors.ca && !signedBy(chain, ca)) {
    check.warnings.push('The CA did not sign the server certificate: devices must trust its issuer in another way (the CA here still decides which client certificates are accepted).');
  }
  return check;
}

/** True when `chain` (leaf first, intermediates after) leads to a certificate `ca` signed. */
function signedBy(chain: X509Certificate[], ca: X509Certificate): boolean {
  for (let i = 0; i < chain.length - 1; i++) if (!chain[i]!.verify(chain[i + 1]!.publicKey)) return false;
  const top = chain[chain.length - 1]!;
  return top.fingerprint256 === ca.fingerprint256 || top.verify(ca.publicKey);
}

function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

/* A private key in the database is sealed with AES-256-GCM under a key derived
 * from SECRET_KEY (HKDF-SHA256): a copy of the database or a backup alone
 * does not give the key away. */

const SEAL_VERSION = 'v1';
const SEAL_INFO = 'gatehouse tls private key';

function sealingKey(secretKey: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secretKey, 'gatehouse', SEAL_INFO, 32));
}

/** `plaintext` sealed under `secretKey`: `v1:` and base64 of IV, tag and ciphertext. */
export function sealSecret(secretKey: string, plaintext: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', sealingKey(secretKey), iv);
  cipher.setAAD(Buffer.from(SEAL_INFO));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return `${SEAL_VERSION}:${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64')}`;
}

export class SecretKeyError extends Error {}

/** The plaintext `sealSecret` sealed; throws SecretKeyError when `secretKey` is not the one it was sealed with. */
export function openSecret(secretKey: string, sealed: string): string {
  const [version, encoded] = sealed.split(':', 2);
  if (version !== SEAL_VERSION || !encoded) throw new SecretKeyError('the stored secret is not in a known format');
  const raw = Buffer.from(encoded, 'base64');
  try {
    const decipher = createDecipheriv('aes-256-gcm', sealingKey(secretKey), raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(SEAL_INFO));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
  } catch {
    throw new SecretKeyError('SECRET_KEY is not the key the stored private key was encrypted with');
  }
}
