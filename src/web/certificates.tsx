import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { checkTlsMaterial } from '../domain/certificates';
import { ValidationError, type FieldErrors } from '../domain/errors';
import { getTlsSettings, type TlsUpload } from '../domain/tlsSettings';
import { CertificatesPage, ConfirmCertificateActionPage, UploadForm, type CertificateAction, type CertificatesView } from '../../views/certificates';
import { NotFoundPage } from '../../views/layout';
import type { AppEnv, TlsControl } from './env';
import { applyCertificateAction, uploadCertificates } from './certificateActions';
import { isHtmx, redirectAfterPost } from './http';

/** Largest PEM text accepted per field: a certificate chain fits many times over. */
const MAX_PEM_BYTES = 64 * 1024;

const pemText = z.string().max(MAX_PEM_BYTES, `Use at most ${MAX_PEM_BYTES / 1024} KB.`).optional();
const uploadSchema = z.object({ ca: pemText, cert: pemText, key: pemText });

const ACTIONS = new Set<CertificateAction>(['enable', 'disable', 'require-client-cert', 'allow-without-client-cert']);

const NOTICES: Record<string, string> = {
  saved: 'Certificates saved. New connections use them; established ones keep theirs.',
  enable: 'Certificates enabled: the TLS listeners are on.',
  disable: 'Certificates disabled: the TLS listeners no longer accept connections.',
  'require-client-cert': 'Client certificates are now required for new TLS connections.',
  'allow-without-client-cert': 'Client certificates are optional again for new TLS connections.',
};

/** `/certificates`: TLS material, turning TLS on and off, and mTLS. */
export function certificateRoutes(options: { tls?: TlsControl }) {
  const routes = new Hono<AppEnv>();
  const tls = options.tls;
  const noTls = { source: null, requireClientCert: false, mqttsPort: null, httpsPort: null, hasCa: false, certificate: null } as const;

  async function view(c: Context<AppEnv>): Promise<CertificatesView> {
    const settings = await getTlsSettings(c.var.db);
    const check = settings.caPem || settings.certPem ? checkTlsMaterial({ caPem: settings.caPem ?? undefined, certPem: settings.certPem ?? undefined }) : undefined;
    return {
      settings,
      status: tls?.status() ?? noTls,
      stored: { ca: check?.ca, cert: check?.cert, warnings: check?.warnings ?? [] },
      filesInUse: tls?.filesInUse ?? false,
      secretKeySet: tls?.secretKeySet ?? false,
      ports: tls?.ports ?? { mqtts: 8883, https: 3443 },
    };
  }

  routes.get('/', async (c) => {
    const notice = NOTICES[c.req.query('done') ?? ''];
    return c.html(<CertificatesPage view={await view(c)} notice={notice} />);
  });

  routes.post('/', async (c) => {
    const { upload, tooLarge } = await readUpload(c);
    const values = { ca: upload.ca ?? '', cert: upload.cert ?? '' };
    const keyDropped = Boolean(upload.key?.trim());
    try {
      const parsed = uploadSchema.safeParse(upload);
      const errors: FieldErrors = {};
      for (const field of tooLarge) errors[field] = `Use at most ${MAX_PEM_BYTES / 1024} KB.`;
      if (!parsed.success) for (const issue of parsed.error.issues) errors[String(issue.path[0])] ??= issue.message;
      if (Object.keys(errors).length > 0 || !parsed.success) throw new ValidationError(errors);
      await uploadCertificates(c.var.db, tls, parsed.data);
      // What was uploaded is named by the page (subject, fingerprint); never the key.
      c.var.audit.record({
        kind: 'certificates.changed',
        actor: c.var.actor?.username,
        subject: 'certificates',
        address: c.var.actor?.address,
        details: { change: 'uploaded', ...(keyDropped ? { note: 'private key replaced' } : {}) },
      });
      return redirectAfterPost(c, '/certificates?done=saved');
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      const errors = error.fieldErrors;
      const current = await view(c);
      if (isHtmx(c)) return c.html(<UploadForm view={current} values={values} errors={errors} keyDropped={keyDropped && !errors.key} />, 422);
      return c.html(<CertificatesPage view={current} values={values} errors={errors} keyDropped={keyDropped && !errors.key} />, 422);
    }
  });

  routes.get('/:action', async (c) => {
    const action = c.req.param('action') as CertificateAction;
    if (!ACTIONS.has(action)) return c.html(<NotFoundPage section="certificates" />, 404);
    return c.html(<ConfirmCertificateActionPage view={await view(c)} action={action} />);
  });

  routes.post('/:action', async (c) => {
    const action = c.req.param('action') as CertificateAction;
    if (!ACTIONS.has(action)) return c.html(<NotFoundPage section="certificates" />, 404);
    try {
      await applyCertificateAction(c.var.db, tls, action);
      c.var.audit.record({ kind: 'certificates.changed', actor: c.var.actor?.username, subject: 'certificates', address: c.var.actor?.address, details: { change: action } });
      return redirectAfterPost(c, `/certificates?done=${action}`);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      const errors = { action: Object.values(error.fieldErrors)[0]! };
      if (isHtmx(c)) {
        // The link that asked is not where the answer goes: the whole page's <main> is.
        c.header('HX-Retarget', 'main');
        c.header('HX-Reswap', 'outerHTML');
        c.header('HX-Reselect', 'main');
      }
      return c.html(<CertificatesPage view={await view(c)} errors={errors} />, 422);
    }
  });

  return routes;
}

/**
 * The form's fields; a file chosen for a field wins over text pasted in it.
 * A field over MAX_PEM_BYTES is left out of `upload` and named in `tooLarge`:
 * it is refused without being read further, and never shown back.
 */
async function readUpload(c: Context): Promise<{ upload: TlsUpload; tooLarge: Array<keyof TlsUpload> }> {
  const upload: TlsUpload = {};
  const tooLarge: Array<keyof TlsUpload> = [];
  const type = c.req.header('content-type') ?? '';
  if (!type.includes('multipart/form-data') && !type.includes('application/x-www-form-urlencoded')) return { upload, tooLarge };
  const form = await c.req.formData().catch(() => null);
  if (!form) return { upload, tooLarge };
  for (const field of ['ca', 'cert', 'key'] as const) {
    const file = form.get(`${field}File`);
    const text = form.get(field);
    const chosen = file && typeof file !== 'string' && file.size > 0 ? file : undefined;
    const size = chosen ? chosen.size : typeof text === 'string' ? Buffer.byteLength(text) : 0;
    if (size > MAX_PEM_BYTES) tooLarge.push(field);
    else if (chosen) upload[field] = await chosen.text();
    else if (typeof text === 'string') upload[field] = text;
  }
  return { upload, tooLarge };
}
