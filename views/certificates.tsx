import { certificateInUseWarning, type CertificateSummary } from '../src/domain/certificates';
import type { FieldErrors } from '../src/domain/errors';
import type { TlsSettings } from '../src/domain/tlsSettings';
import type { TlsStatus } from '../src/tls';
import { ConfirmFooter, FormAlert, formatTime, Layout, Notice, PageTitle } from './layout';

/** What the upload form shows again after an error: the certificates as pasted, never the key. */
export interface CertificateFormValues {
  ca: string;
  cert: string;
}

/** The certificates page's actions, each confirmed first. */
export type CertificateAction = 'enable' | 'disable' | 'require-client-cert' | 'allow-without-client-cert';

export interface CertificatesView {
  settings: TlsSettings;
  status: TlsStatus;
  /** Summaries and warnings of what is stored. */
  stored: { ca?: CertificateSummary; cert?: CertificateSummary; warnings: string[] };
  filesInUse: boolean;
  secretKeySet: boolean;
  /** The ports the TLS listeners use once on (from MQTTS_PORT, HTTPS_PORT). */
  ports: { mqtts: number; https: number };
}

const ACTIONS: Record<CertificateAction, { label: string; title: string; explain: (view: CertificatesView) => string; danger: boolean }> = {
  enable: {
    label: 'Enable certificates',
    title: 'Enable certificates?',
    explain: (view) =>
      `Gatehouse starts MQTT over TLS (port ${view.ports.mqtts}) and HTTPS for the console and wss://…/mqtt (port ${view.ports.https}) with the certificate shown, now, without a restart. ` +
      'Devices connected now are not affected, and the plain listeners stay as configured (MQTT_PORT, PORT).',
    danger: false,
  },
  disable: {
    label: 'Disable',
    title: 'Disable certificates?',
    explain: () =>
      'The MQTT over TLS and HTTPS listeners stop accepting connections. Devices connected over TLS stay connected until they disconnect; ' +
      'then they can reconnect only over the plain listeners, if those are on. If you opened this console over HTTPS, open it over HTTP afterwards.',
    danger: true,
  },
  'require-client-cert': {
    label: 'Require client certificates (mTLS)',
    title: 'Require client certificates (mTLS)?',
    explain: () =>
      'New connections over TLS must present a client certificate signed by the CA certificate, or the handshake fails; a signed certificate that belongs to no certificate client is refused at CONNECT (CONNACK 5), ' +
      'so password-only clients can no longer connect over TLS. Devices connected now stay connected. The console over HTTPS stays open to browsers without a certificate.',
    danger: true,
  },
  'allow-without-client-cert': {
    label: 'Stop requiring client certificates',
    title: 'Stop requiring client certificates?',
    explain: () =>
      'New connections over TLS may come without a client certificate again, and password clients can connect over TLS. Certificate clients still need their certificate. Devices connected now are not affected.',
    danger: false,
  },
};

export function CertificatesPage(props: { view: CertificatesView; values?: CertificateFormValues; errors?: FieldErrors; notice?: string; keyDropped?: boolean }) {
  const { view } = props;
  return (
    <Layout title="Certificates" section="certificates">
      <PageTitle title="Certificates">TLS for MQTT (mqtts://, wss://) and the console, and client certificates for devices.</PageTitle>
      <Notice message={props.notice} />
      <TlsState view={view} errors={props.errors} />
      <StoredCertificates view={view} />
      <UploadForm view={view} values={props.values} errors={props.errors} keyDropped={props.keyDropped} />
    </Layout>
  );
}

function TlsState(props: { view: CertificatesView; errors?: FieldErrors }) {
  const { view } = props;
  const { status, settings } = view;
  // Only what can succeed is offered; what cannot yet says what it needs.
  const actions: CertificateAction[] = [];
  const needs: string[] = [];
  const canEnable = Boolean(settings.certPem) && settings.hasKey;
  const caAvailable = Boolean(settings.caPem) || (view.filesInUse && status.hasCa);
  if (!view.filesInUse) {
    if (settings.enabled) actions.push('disable');
    else if (canEnable) actions.push('enable');
    else needs.push('Upload a server certificate and its private key below to enable TLS.');
  }
  if (settings.requireClientCert) actions.push('allow-without-client-cert');
  else if (caAvailable) actions.push('require-client-cert');
  else needs.push('Requiring client certificates (mTLS) needs a CA certificate: upload one below.');
  const warning = certificateInUseWarning(status.certificate, status.source);
  return (
    <section id="tls-state" aria-labelledby="tls-state-heading">
      <h2 id="tls-state-heading">State</h2>
      <FormAlert message={props.errors?.action} />
      {warning ? (
        <p class="warning" id="certificate-in-use-warning">
          {warning}
        </p>
      ) : null}
      {view.filesInUse ? (
        <p class="notice">
          TLS_CERT_FILE and TLS_KEY_FILE are set: the certificate files are in use and win over anything uploaded here. Send SIGHUP to Gatehouse to read them
          again.
        </p>
      ) : null}
      <dl class="details">
        <dt>TLS</dt>
        <dd>
          {status.source === null
            ? 'Off'
            : `On (certificate from ${status.source === 'files' ? 'files' : 'this page'}): MQTT over TLS on port ${status.mqttsPort}, HTTPS and wss://…/mqtt on port ${status.httpsPort}`}
        </dd>
        <dt>Client certificates</dt>
        <dd>
          {settings.requireClientCert
            ? status.hasCa || status.source === null
              ? 'Required (mTLS): only certificates signed by the CA are accepted'
              : 'Required, but no CA is in use: not enforced until one is'
            : 'Optional: used only by certificate clients'}
        </dd>
        {status.certificate ? (
          <>
            <dt>Certificate in use</dt>
            <dd>
              <code class="fingerprint">{status.certificate.fingerprint256}</code>, expires {formatTime(status.certificate.validTo)}
            </dd>
          </>
        ) : null}
      </dl>
      <div class="form-actions">
        {actions.map((action) => (
          <a
            href={`/certificates/${action}`}
            role="button"
            class={ACTIONS[action].danger ? 'outline danger-outline' : undefined}
            hx-post={`/certificates/${action}`}
            hx-confirm={ACTIONS[action].explain(view)}
            data-confirm-label={ACTIONS[action].label}
            data-confirm-safe={ACTIONS[action].danger ? undefined : true}
          >
            {ACTIONS[action].label}
          </a>
        ))}
      </div>
      {needs.map((text) => (
        <p class="help">{text}</p>
      ))}
    </section>
  );
}

function Summary(props: { title: string; summary: CertificateSummary }) {
  const { summary } = props;
  return (
    <article class="certificate">
      <h3>{props.title}</h3>
      <dl class="details">
        <dt>Subject</dt>
        <dd>{summary.subject}</dd>
        <dt>Issuer</dt>
        <dd>{summary.issuer}</dd>
        <dt>Names (SAN)</dt>
        <dd>{summary.subjectAltNames || 'none'}</dd>
        <dt>SHA-256 fingerprint</dt>
        <dd>
          <code class="fingerprint">{summary.fingerprint256}</code>
        </dd>
        <dt>Valid</dt>
        <dd>
          from {formatTime(summary.validFrom)} until {formatTime(summary.validTo)}
        </dd>
      </dl>
    </article>
  );
}

function StoredCertificates(props: { view: CertificatesView }) {
  const { stored, settings } = props.view;
  return (
    <section aria-labelledby="stored-heading">
      <h2 id="stored-heading">Uploaded</h2>
      {stored.warnings.length ? (
        <ul class="warnings" role="status">
          {stored.warnings.map((warning) => (
            <li>{warning}</li>
          ))}
        </ul>
      ) : null}
      {!stored.ca && !stored.cert ? <p>Nothing uploaded yet.</p> : null}
      {stored.ca ? <Summary title="CA Certificate" summary={stored.ca} /> : null}
      {stored.cert ? <Summary title="Server Certificate" summary={stored.cert} /> : null}
      {stored.cert ? (
        <p>
          Server Private Key: {settings.hasKey ? 'stored, encrypted; it is never shown or exported.' : 'not uploaded.'}
          {settings.updatedAt ? <> Last changed {formatTime(settings.updatedAt)}.</> : null}
        </p>
      ) : null}
    </section>
  );
}

function PemField(props: { name: 'ca' | 'cert' | 'key'; label: string; value?: string; error?: string; hint: string }) {
  const id = `pem-${props.name}`;
  const describedBy = [props.error ? `${id}-error` : '', `${id}-hint`].filter(Boolean).join(' ');
  return (
    <fieldset>
      <legend>{props.label}</legend>
      <label for={id}>
        Paste PEM
        <textarea
          id={id}
          name={props.name}
          rows={4}
          spellcheck={false}
          autocomplete="off"
          aria-invalid={props.error ? 'true' : undefined}
          aria-describedby={describedBy}
        >
          {props.value ?? ''}
        </textarea>
      </label>
      <label for={`${id}-file`}>
        or upload a file
        <input id={`${id}-file`} name={`${props.name}File`} type="file" accept=".pem,.crt,.cer,.key,.txt" aria-describedby={`${id}-hint`} />
      </label>
      {props.error ? (
        <small id={`${id}-error`} class="field-error">
          {props.error}
        </small>
      ) : null}
      <small id={`${id}-hint`}>{props.hint}</small>
    </fieldset>
  );
}

/** The upload form; htmx posts it and swaps it back with messages on a 4xx. */
export function UploadForm(props: { view: CertificatesView; values?: CertificateFormValues; errors?: FieldErrors; keyDropped?: boolean }) {
  const { errors = {}, values } = props;
  const keyError = errors.key ?? (props.keyDropped ? 'Paste or upload the private key again: it is never sent back to the browser.' : undefined);
  return (
    <form
      id="certificates-form"
      method="post"
      action="/certificates"
      enctype="multipart/form-data"
      hx-post="/certificates"
      hx-target="this"
      hx-swap="outerHTML"
      novalidate
    >
      <h2>Upload</h2>
      <p>Empty fields keep what is stored: a renewed certificate can be uploaded alone if its key did not change.</p>
      <FormAlert message={errors.form} />
      <PemField name="ca" label="CA Certificate" value={values?.ca} error={errors.ca} hint="The CA that signs your devices’ client certificates (and usually the server certificate): devices use it as their --cafile." />
      <PemField name="cert" label="Server Certificate" value={values?.cert} error={errors.cert} hint="The certificate Gatehouse shows (with its intermediates after it, if any)." />
      <PemField
        name="key"
        label="Server Private Key"
        error={keyError}
        hint={
          props.view.secretKeySet
            ? 'Stored encrypted with a key derived from SECRET_KEY; never shown or exported again.'
            : 'Set SECRET_KEY in the environment (and restart) before uploading a key: it is stored encrypted with it.'
        }
      />
      <div class="form-actions">
        <button type="submit">Save certificates</button>
      </div>
    </form>
  );
}

/** The no-JavaScript confirmation of an action. */
export function ConfirmCertificateActionPage(props: { view: CertificatesView; action: CertificateAction }) {
  const action = ACTIONS[props.action];
  return (
    <Layout title={action.title} section="certificates">
      <article>
        <header>
          <h1>{action.title}</h1>
        </header>
        <p>{action.explain(props.view)}</p>
        <ConfirmFooter action={`/certificates/${props.action}`} confirmLabel={action.label} cancelHref="/certificates" cancelLabel="Cancel" danger={action.danger} />
      </article>
    </Layout>
  );
}
