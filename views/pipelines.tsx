import type { FieldErrors } from '../src/domain/errors';
import type { DeadLetter } from '../src/domain/pipelines/outbox';
import { describeMapping, TAGOIO_DEFAULT_API_URL, type Pipeline } from '../src/domain/pipelines/pipelines';
import { TEMPLATE_VARIABLES } from '../src/domain/pipelines/templates';
import type { TestOutcome } from '../src/pipelines/destinations';
import type { PipelineFigures } from '../src/pipelines/service';
import { ConfirmFooter, Field, FormAlert, formatTime, Layout, Notice, PageTitle, Pagination, RowMenu, TableRegion } from './layout';
import { ErrorText } from './groups';

/** The pipeline form as typed: strings, so bad input is shown again. */
export interface PipelineFormValues {
  version?: number;
  name: string;
  description: string;
  enabled: boolean;
  kind: string;
  method: string;
  url: string;
  headers: string;
  auth: string;
  basicUsername: string;
  certSource: string;
  clientCert: string;
  webhookCa: string;
  bodyTemplate: string;
  batchMode: string;
  batchMaxMessages: string;
  batchMaxWaitMs: string;
  batchMaxBytes: string;
  timeoutMs: string;
  tagoApiUrl: string;
  mqttUrl: string;
  mqttFailover: string;
  mqttUsername: string;
  mqttClientId: string;
  mqttCa: string;
  mqttClientCert: string;
  remoteTopic: string;
  mqttQos: string;
  mqttRetain: string;
  mqttProtocolVersion: string;
  maxOutboxMb: string;
  maxAgeHours: string;
  overflow: string;
  mappings: Array<{ topicFilter: string; narrowBy: string; narrowValue: string }>;
}

export const BLANK_MAPPING = { topicFilter: '', narrowBy: 'any', narrowValue: '' };

const WEBHOOK_CA_HINT = 'For an https:// endpoint whose certificate a private CA signed (or its own self-signed certificate): trusted instead of the system’s CAs. Empty: the system’s.';

const KIND_LABELS: Record<string, string> = { webhook: 'Webhook', tagoio: 'TagoIO', mqtt: 'MQTT bridge' };
const STATE_LABELS: Record<string, string> = { healthy: 'Healthy', degraded: 'Degraded', failing: 'Failing', paused: 'Paused' };
const DROP_LABELS: Record<string, string> = {
  overflow_oldest: 'oldest dropped (outbox full)',
  overflow_newest: 'newest dropped (outbox full)',
  refused: 'publishes refused (outbox full)',
  expired: 'expired (older than the age limit)',
  write_failed: 'QoS 0 not written',
};
const integer = new Intl.NumberFormat('en-US');

/** Where a pipeline sends, in a few words. */
export function destinationOf(pipeline: Pipeline): string {
  const settings = pipeline.settings;
  if (settings.kind === 'webhook') return `${settings.webhook.method} ${settings.webhook.url}`;
  if (settings.kind === 'tagoio') return settings.tagoio.apiUrl;
  return settings.mqtt.url;
}

function age(seconds: number): string {
  if (seconds < 1) return '—';
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function StateBadge(props: { figures?: PipelineFigures | null; pipeline: Pipeline }) {
  const state = props.figures?.state ?? (props.pipeline.enabled ? 'healthy' : 'paused');
  return (
    <span class={`state state-${state}`} title={props.figures?.reason ?? undefined}>
      {STATE_LABELS[state]}
    </span>
  );
}

/** `/pipelines`: every pipeline with its state and queue. */
export function PipelinesPage(props: { pipelines: Pipeline[]; figures: Map<number, PipelineFigures>; deadLetters: Map<number, number>; message?: string }) {
  return (
    <Layout title="Pipelines" section="pipelines">
      <PageTitle title="Pipelines">
        Forward device messages to a webhook, TagoIO or another MQTT broker. A message a mapping matches is stored before the device is acknowledged and kept
        until its destination takes it.
      </PageTitle>
      <div id="pipelines-notice">
        <Notice message={props.message} />
      </div>
      <div class="toolbar">
        <span />
        <a href="/pipelines/new" role="button">
          New pipeline
        </a>
      </div>
      {props.pipelines.length === 0 ? (
        <div class="empty-state">
          <p>
            No pipelines yet. <a href="/pipelines/new">Create the first pipeline</a> and map topics such as <code>sensors/#</code> to it.
          </p>
        </div>
      ) : (
        <TableRegion label="Pipelines table">
          <table class="striped">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Destination</th>
                <th scope="col">Status</th>
                <th scope="col">State</th>
                <th scope="col">Mappings</th>
                <th scope="col">Delivered</th>
                <th scope="col">Waiting</th>
                <th scope="col">Dead letters</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {props.pipelines.map((pipeline) => {
                const figures = props.figures.get(pipeline.id);
                return (
                  <tr id={`pipeline-${pipeline.id}`}>
                    <th scope="row">
                      <a href={`/pipelines/${pipeline.id}`}>{pipeline.name}</a>
                    </th>
                    <td>
                      {KIND_LABELS[pipeline.kind]} <small class="nowrap">{destinationOf(pipeline)}</small>
                    </td>
                    <td>{pipeline.enabled ? 'Enabled' : 'Paused'}</td>
                    <td>
                      <StateBadge figures={figures} pipeline={pipeline} />
                    </td>
                    <td>{pipeline.mappings.map(describeMapping).join(', ') || '—'}</td>
                    <td>{integer.format(figures?.delivered ?? 0)}</td>
                    <td>
                      {integer.format(figures?.queueRows ?? 0)} {figures && figures.queueRows > 0 ? <small>(oldest {age(figures.queueAgeS)})</small> : null}
                    </td>
                    <td>{(props.deadLetters.get(pipeline.id) ?? 0) > 0 ? <a href={`/pipelines/${pipeline.id}/dead-letters`}>{integer.format(props.deadLetters.get(pipeline.id)!)}</a> : '0'}</td>
                    <td class="row-actions">
                      <RowMenu name={pipeline.name}>
                        <li>
                          <a href={`/pipelines/${pipeline.id}`}>Details and test</a>
                        </li>
                        <li>
                          <a href={`/pipelines/${pipeline.id}/edit`}>Edit</a>
                        </li>
                        <li>
                          <a href={`/pipelines/${pipeline.id}/dead-letters`}>Dead letters</a>
                        </li>
                        <li>
                          <a href={`/pipelines/${pipeline.id}/delete`} class="danger">
                            Delete
                          </a>
                        </li>
                      </RowMenu>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </TableRegion>
      )}
    </Layout>
  );
}

/** `/pipelines/:id`: state, figures, the last hour, Test, pause/resume, the signing secrets. */
export function PipelinePage(props: { pipeline: Pipeline; figures: PipelineFigures | null; deadLetters: number; message?: string; secretShown?: string | null; test?: TestOutcome | { error: string } }) {
  const { pipeline, figures } = props;
  const dropped = figures ? Object.entries(figures.dropped).filter(([, n]) => n > 0) : [];
  const latency = figures?.latency;
  const percentile = (p: number) => {
    if (!latency || latency.count === 0) return '—';
    const target = latency.count * p;
    const i = latency.counts.findIndex((c) => c >= target);
    return i < 0 ? `> ${latency.buckets.at(-1)} s` : `≤ ${latency.buckets[i]} s`;
  };
  return (
    <Layout title={pipeline.name} section="pipelines" styles={['/static/uPlot.min.css']} scripts={['/static/uPlot.iife.min.js', '/static/overview.js']}>
      <nav aria-label="breadcrumb">
        <ul>
          <li>
            <a href="/pipelines">Pipelines</a>
          </li>
          <li>{pipeline.name}</li>
        </ul>
      </nav>
      <h1>{pipeline.name}</h1>
      <Notice message={props.message} />
      {props.secretShown ? <SecretOnce secret={props.secretShown} /> : null}
      <p>
        {KIND_LABELS[pipeline.kind]} → <code>{destinationOf(pipeline)}</code>. {pipeline.description}
      </p>
      <section aria-labelledby="state-title">
        <h2 id="state-title">
          State: <StateBadge figures={figures} pipeline={pipeline} />
        </h2>
        {figures?.reason ? <p class="form-alert">{figures.reason}</p> : null}
        <div class="form-actions">
          <form method="post" action={`/pipelines/${pipeline.id}/${pipeline.enabled ? 'pause' : 'resume'}`}>
            <button type="submit" class="secondary">
              {pipeline.enabled ? 'Pause delivery' : 'Resume delivery'}
            </button>
          </form>
          <a href={`/pipelines/${pipeline.id}/edit`} role="button" class="secondary outline">
            Edit
          </a>
          <a href={`/pipelines/${pipeline.id}/dead-letters`} role="button" class="secondary outline">
            Dead letters ({integer.format(props.deadLetters)})
          </a>
        </div>
        <table class="figures">
          <caption>On this node since it started; what waits is counted across every node.</caption>
          <tbody>
            <tr>
              <th scope="row">Matched</th>
              <td>{integer.format(figures?.matched ?? 0)}</td>
              <th scope="row">Delivered</th>
              <td>{integer.format(figures?.delivered ?? 0)}</td>
            </tr>
            <tr>
              <th scope="row">Retried</th>
              <td>{integer.format(figures?.retried ?? 0)}</td>
              <th scope="row">Failed (dead letters)</th>
              <td>{integer.format(figures?.failed ?? 0)}</td>
            </tr>
            <tr>
              <th scope="row">Waiting</th>
              <td>
                {integer.format(figures?.queueRows ?? 0)} messages, {integer.format(Math.round((figures?.queueBytes ?? 0) / 1024))} KB
              </td>
              <th scope="row">Oldest waiting</th>
              <td>{age(figures?.queueAgeS ?? 0)}</td>
            </tr>
            <tr>
              <th scope="row">Latency, accepted → delivered</th>
              <td>
                median {percentile(0.5)}, 99th percentile {percentile(0.99)}
              </td>
              <th scope="row">Dropped</th>
              <td>{dropped.length === 0 ? 'none' : dropped.map(([reason, n]) => `${integer.format(n)} ${DROP_LABELS[reason]}`).join('; ')}</td>
            </tr>
            <tr>
              <th scope="row">Limits</th>
              <td colspan={3}>
                {integer.format(pipeline.maxOutboxBytes / 1024 / 1024)} MB and {pipeline.maxAgeSeconds / 3600} hours; when full:{' '}
                {{ drop_oldest: 'drop the oldest', drop_newest: 'drop the newest', refuse: 'refuse new publishes of mapped topics' }[pipeline.overflow]}
              </td>
            </tr>
          </tbody>
        </table>
        {figures?.lastError ? (
          <p>
            Last error: <code>{figures.lastError}</code>
          </p>
        ) : null}
      </section>
      <HistorySection figures={figures} />
      <section aria-labelledby="test-title">
        <h2 id="test-title">Test</h2>
        <p>Renders the most recent message this pipeline matched through its settings and sends it once (not through the outbox), then shows the answer.</p>
        <form method="post" action={`/pipelines/${pipeline.id}/test`} hx-post={`/pipelines/${pipeline.id}/test`} hx-target="#test-result" hx-swap="outerHTML">
          <button type="submit">Send a test</button>
        </form>
        <TestResult test={props.test} />
      </section>
      {pipeline.kind === 'webhook' ? (
        <section aria-labelledby="signing-title">
          <h2 id="signing-title">Signing secrets</h2>
          <p>
            Requests carry <code>webhook-id</code>, <code>webhook-timestamp</code> and <code>webhook-signature</code> (Standard Webhooks, HMAC-SHA256).{' '}
            {pipeline.signingSecretCount > 1
              ? 'Two secrets are in use (a rotation): each request is signed with both. Finish the rotation once the receiver has the new one.'
              : 'Rotating makes a new secret, shown once; requests are signed with the new and the old one until you finish the rotation.'}
          </p>
          <div class="form-actions">
            <form method="post" action={`/pipelines/${pipeline.id}/rotate-secret`}>
              <button type="submit" class="secondary">
                Rotate the signing secret
              </button>
            </form>
            {pipeline.signingSecretCount > 1 ? (
              <form method="post" action={`/pipelines/${pipeline.id}/finish-rotation`}>
                <button type="submit" class="secondary outline">
                  Finish the rotation (drop the old secret)
                </button>
              </form>
            ) : null}
          </div>
        </section>
      ) : null}
    </Layout>
  );
}

function SecretOnce(props: { secret: string }) {
  return (
    <div role="status" class="notice">
      <p>
        <strong>The signing secret, shown this once:</strong> give it to the receiving side to verify requests. It is stored encrypted and cannot be shown again.
      </p>
      <p>
        <code class="secret">{props.secret}</code>
      </p>
    </div>
  );
}

export function TestResult(props: { test?: TestOutcome | { error: string } }) {
  const test = props.test;
  if (!test) return <div id="test-result"></div>;
  if ('error' in test) {
    return (
      <div id="test-result" role="alert" class="form-alert">
        {test.error}
      </div>
    );
  }
  return (
    <div id="test-result" role="status">
      <p>
        <strong>{test.ok ? 'Accepted' : test.retry ? 'Failed (would be retried)' : 'Refused (would be a dead letter)'}</strong>
        {test.status !== null ? ` — status ${test.status}` : ''}
      </p>
      <details open>
        <summary>Sent</summary>
        <pre>{test.request}</pre>
      </details>
      <details open>
        <summary>Answer</summary>
        <pre>{test.answer || '(empty)'}</pre>
      </details>
    </div>
  );
}

function HistorySection(props: { figures: PipelineFigures | null }) {
  const history = props.figures?.history ?? [];
  return (
    <section aria-labelledby="history-title">
      <h2 id="history-title">The last hour</h2>
      {history.length === 0 ? (
        <p>Nothing forwarded or failed in the last hour on this node.</p>
      ) : (
        <>
          <div class="charts" data-charts hidden>
            <figure>
              <figcaption id="chart-delivery-title">Messages per minute</figcaption>
              <div class="chart" data-chart="delivery" data-columns="delivered failed" role="img" aria-label="Messages delivered and failed per minute: a chart of the table below."></div>
            </figure>
          </div>
          <details>
            <summary>The numbers, one row per minute</summary>
            <table class="striped" id="history-table" data-step="60">
              <caption>Per minute on this node (times in UTC). Failed: attempts that will be retried and messages moved to the dead letters.</caption>
              <thead>
                <tr>
                  <th scope="col">Time (UTC)</th>
                  <th scope="col" data-column="delivered" data-unit="">
                    Delivered
                  </th>
                  <th scope="col" data-column="failed" data-unit="">
                    Failed
                  </th>
                </tr>
              </thead>
              <tbody>
                {history.map((point) => (
                  <tr data-t={String(point.at / 1000)}>
                    <th scope="row">{new Date(point.at).toISOString().slice(11, 16)}</th>
                    <td data-value={String(point.delivered)}>{integer.format(point.delivered)}</td>
                    <td data-value={String(point.failed)}>{integer.format(point.failed)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        </>
      )}
    </section>
  );
}

/** The "created" answer for a webhook: its signing secret, the one time it is shown. */
export function PipelineCreatedPage(props: { pipeline: Pipeline; secret: string }) {
  return (
    <Layout title="Pipeline created" section="pipelines">
      <h1>Pipeline “{props.pipeline.name}” created</h1>
      <SecretOnce secret={props.secret} />
      <p>
        <a href={`/pipelines/${props.pipeline.id}`} role="button">
          Go to the pipeline
        </a>
      </p>
    </Layout>
  );
}

export function PipelineFormPage(props: { pipeline?: Pipeline; values: PipelineFormValues; errors?: FieldErrors; secretKeySet: boolean }) {
  const editing = props.pipeline !== undefined;
  const title = editing ? `Edit ${props.pipeline!.name}` : 'New pipeline';
  return (
    <Layout title={title} section="pipelines" scripts={['/static/pipelines.js']}>
      <nav aria-label="breadcrumb">
        <ul>
          <li>
            <a href="/pipelines">Pipelines</a>
          </li>
          <li>{title}</li>
        </ul>
      </nav>
      <h1>{title}</h1>
      <PipelineForm action={editing ? `/pipelines/${props.pipeline!.id}` : '/pipelines'} pipeline={props.pipeline} values={props.values} errors={props.errors} secretKeySet={props.secretKeySet} />
    </Layout>
  );
}

function Select(props: { label: string; name: string; value: string; options: Array<[string, string]>; error?: string; hint?: string }) {
  const describedBy = [props.error ? `${props.name}-error` : '', props.hint ? `${props.name}-hint` : ''].filter(Boolean).join(' ') || undefined;
  return (
    <label for={props.name}>
      {props.label}
      <select id={props.name} name={props.name} aria-invalid={props.error ? 'true' : undefined} aria-describedby={describedBy}>
        {props.options.map(([value, label]) => (
          <option value={value} selected={props.value === value}>
            {label}
          </option>
        ))}
      </select>
      <ErrorText id={`${props.name}-error`} message={props.error} />
      {props.hint ? <small id={`${props.name}-hint`}>{props.hint}</small> : null}
    </label>
  );
}

function TextArea(props: { label: string; name: string; value: string; error?: string; hint?: string; rows?: number; placeholder?: string }) {
  const describedBy = [props.error ? `${props.name}-error` : '', props.hint ? `${props.name}-hint` : ''].filter(Boolean).join(' ') || undefined;
  return (
    <label for={props.name}>
      {props.label}
      <textarea id={props.name} name={props.name} rows={props.rows ?? 3} placeholder={props.placeholder} spellcheck={false} aria-invalid={props.error ? 'true' : undefined} aria-describedby={describedBy}>
        {props.value}
      </textarea>
      <ErrorText id={`${props.name}-error`} message={props.error} />
      {props.hint ? <small id={`${props.name}-hint`}>{props.hint}</small> : null}
    </label>
  );
}

/** A secret field: never filled in; on an edit, empty keeps what is stored. */
function SecretField(props: { label: string; name: string; stored: boolean; error?: string }) {
  return (
    <Field
      label={props.label}
      name={props.name}
      type="password"
      autocomplete="new-password"
      error={props.error}
      hint={props.stored ? 'Stored (encrypted). Leave empty to keep it.' : 'Stored encrypted; never shown again.'}
    />
  );
}

/**
 * The pipeline form: the destination kind chooses which fieldset applies
 * (all are shown without JavaScript). Adding and removing mappings posts the
 * form back without saving, as the group form does with its rows.
 */
export function PipelineForm(props: { action: string; pipeline?: Pipeline; values: PipelineFormValues; errors?: FieldErrors; secretKeySet: boolean }) {
  const v = props.values;
  const errors = props.errors ?? {};
  const stored = (name: string) => Boolean(props.pipeline?.storedSecrets.includes(name as never));
  return (
    <form id="pipeline-form" method="post" action={props.action} hx-post={props.action} hx-target="this" hx-swap="outerHTML" novalidate>
      <button type="submit" name="_action" value="save" hidden tabindex={-1}>
        Save
      </button>
      {v.version !== undefined ? <input type="hidden" name="version" value={String(v.version)} /> : null}
      <FormAlert message={errors.form ?? (Object.keys(errors).length > 0 ? 'Some fields need attention: see the messages below.' : undefined)} />
      {!props.secretKeySet ? <p class="form-alert">SECRET_KEY is not set: a pipeline that needs a token, a password or a signing secret cannot be saved until it is.</p> : null}
      <Field label="Name" name="name" value={v.name} error={errors.name} required maxlength={100} autocomplete="off" />
      <Field label="Description" name="description" value={v.description} error={errors.description} maxlength={500} autocomplete="off" hint="Optional." />
      <label>
        <input type="checkbox" name="enabled" value="on" checked={v.enabled} role="switch" />
        Enabled (a paused pipeline keeps its messages and sends none)
      </label>
      <fieldset>
        <legend>Destination</legend>
        {(['webhook', 'tagoio', 'mqtt'] as const).map((kind) => (
          <label>
            <input type="radio" name="kind" value={kind} checked={v.kind === kind} />
            {KIND_LABELS[kind]}
          </label>
        ))}
        <ErrorText id="kind-error" message={errors.kind} />
      </fieldset>

      <fieldset data-kind="webhook">
        <legend>Webhook (when the destination is Webhook)</legend>
        <div class="grid">
          <Select label="Method" name="method" value={v.method} options={[['POST', 'POST'], ['PUT', 'PUT'], ['PATCH', 'PATCH']]} error={errors.method} />
          <Field label="URL" name="url" value={v.url} error={errors.url} autocomplete="off" hint="https://… (http:// too)." />
        </div>
        <TextArea label="Headers" name="headers" value={v.headers} error={errors.headers} placeholder="X-Api-Key: …" hint="One “Name: value” a line. Shown again: put secrets in Authentication." />
        <Select
          label="Authentication"
          name="auth"
          value={v.auth}
          error={errors.auth}
          options={[
            ['none', 'None'],
            ['bearer', 'Bearer token'],
            ['basic', 'Basic (username and password)'],
            ['certificate', 'Client certificate (mTLS)'],
          ]}
        />
        <div class="grid">
          <SecretField label="Bearer token" name="bearerToken" stored={stored('bearerToken')} error={errors.bearerToken} />
          <Field label="Basic username" name="basicUsername" value={v.basicUsername} error={errors.basicUsername} autocomplete="off" />
          <SecretField label="Basic password" name="basicPassword" stored={stored('basicPassword')} error={errors.basicPassword} />
        </div>
        <Select
          label="Client certificate"
          name="certSource"
          value={v.certSource}
          options={[
            ['upload', 'Pasted here'],
            ['store', 'The server certificate of the Certificates page'],
          ]}
        />
        <TextArea label="Client certificate (PEM)" name="clientCert" value={v.clientCert} error={errors.clientCert} rows={2} />
        <SecretField label="Its private key (PEM)" name="clientKey" stored={stored('clientKeyPem')} error={errors.clientKey} />
        <TextArea label="CA certificate to trust (PEM)" name="webhookCa" value={v.webhookCa} error={errors.webhookCa} rows={2} hint={WEBHOOK_CA_HINT} />
        <TextArea
          label="Body template"
          name="bodyTemplate"
          value={v.bodyTemplate}
          error={errors.bodyTemplate}
          rows={4}
          placeholder={'{"device": {{client.id | json}}, "temp": {{payload.json.temp}}}'}
          hint={`Empty: a JSON object with id, topic, payload, qos, clientId, username, timestamp. Variables: ${TEMPLATE_VARIABLES.map((name) => `{{${name}}}`).join(' ')}; add “| json” to write a value as a JSON literal.`}
        />
        <div class="grid">
          <Select
            label="Batching"
            name="batchMode"
            value={v.batchMode}
            error={errors.batchMode}
            options={[
              ['off', 'Off: one request per message'],
              ['json', 'JSON array'],
              ['ndjson', 'NDJSON (a line per message)'],
            ]}
          />
          <Field label="Up to N messages" name="batchMaxMessages" value={v.batchMaxMessages} error={errors.batchMaxMessages} type="number" />
          <Field label="Or T ms" name="batchMaxWaitMs" value={v.batchMaxWaitMs} error={errors.batchMaxWaitMs} type="number" />
          <Field label="Or B bytes" name="batchMaxBytes" value={v.batchMaxBytes} error={errors.batchMaxBytes} type="number" />
        </div>
        <Field label="Timeout (ms)" name="timeoutMs" value={v.timeoutMs} error={errors.timeoutMs} type="number" />
      </fieldset>

      <fieldset data-kind="tagoio">
        <legend>TagoIO (when the destination is TagoIO)</legend>
        <Field label="API URL" name="tagoApiUrl" value={v.tagoApiUrl} error={errors.tagoApiUrl} autocomplete="off" hint={`Default ${TAGOIO_DEFAULT_API_URL}; your region’s or your TagoIO Deploy’s API.`} />
        <div class="grid">
          <SecretField label="Network token" name="networkToken" stored={stored('networkToken')} error={errors.networkToken} />
          <SecretField label="Authorization token" name="authorizationToken" stored={stored('authorizationToken')} error={errors.authorizationToken} />
        </div>
      </fieldset>

      <fieldset data-kind="mqtt">
        <legend>MQTT bridge (when the destination is MQTT bridge)</legend>
        <Field label="Broker URL" name="mqttUrl" value={v.mqttUrl} error={errors.mqttUrl} autocomplete="off" hint="mqtt://, mqtts://, ws:// or wss://" />
        <TextArea label="Failover addresses" name="mqttFailover" value={v.mqttFailover} error={errors.mqttFailover} rows={2} hint="One URL a line, tried in turn when the first is down." />
        <div class="grid">
          <Field label="Username" name="mqttUsername" value={v.mqttUsername} error={errors.mqttUsername} autocomplete="off" />
          <SecretField label="Password" name="mqttPassword" stored={stored('mqttPassword')} error={errors.mqttPassword} />
          <Field label="Client id" name="mqttClientId" value={v.mqttClientId} error={errors.mqttClientId} autocomplete="off" hint="Empty: gatehouse-bridge-…" />
        </div>
        <TextArea label="CA certificate (PEM)" name="mqttCa" value={v.mqttCa} error={errors.mqttCa} rows={2} hint="For mqtts:// or wss:// with a private CA." />
        <TextArea label="Client certificate (PEM)" name="mqttClientCert" value={v.mqttClientCert} error={errors.mqttClientCert} rows={2} />
        <SecretField label="Its private key (PEM)" name="mqttClientKey" stored={stored('clientKeyPem')} error={errors.mqttClientKey} />
        <div class="grid">
          <Field label="Remote topic" name="remoteTopic" value={v.remoteTopic} error={errors.remoteTopic} autocomplete="off" hint="A template: {{topic}}, or e.g. site-a/{{topic}}." />
          <Select label="QoS" name="mqttQos" value={v.mqttQos} error={errors.mqttQos} options={[['0', '0'], ['1', '1'], ['2', '2']]} />
          <Select label="Retain" name="mqttRetain" value={v.mqttRetain} error={errors.mqttRetain} options={[['keep', 'As published'], ['always', 'Always'], ['never', 'Never']]} />
          <Select label="Protocol" name="mqttProtocolVersion" value={v.mqttProtocolVersion} error={errors.mqttProtocolVersion} options={[['4', 'MQTT 3.1.1'], ['5', 'MQTT 5 (marks what it forwards)']]} />
        </div>
      </fieldset>

      <fieldset>
        <legend>Outbox limits</legend>
        <div class="grid">
          <Field label="Size (MB)" name="maxOutboxMb" value={v.maxOutboxMb} error={errors.maxOutboxMb} type="number" />
          <Field label="Age (hours)" name="maxAgeHours" value={v.maxAgeHours} error={errors.maxAgeHours} type="number" hint="Older messages are dropped and counted." />
          <Select
            label="When full"
            name="overflow"
            value={v.overflow}
            error={errors.overflow}
            options={[
              ['drop_oldest', 'Drop the oldest'],
              ['drop_newest', 'Drop the newest'],
              ['refuse', 'Refuse new publishes of mapped topics'],
            ]}
          />
        </div>
      </fieldset>

      <fieldset>
        <legend>Topic mappings</legend>
        <p id="mapping-help" class="help">
          Messages whose topic matches a filter are forwarded (<code>+</code> one level, <code>#</code> any below). Narrow a mapping to an MQTT client id
          (<code>*</code> allowed), a username or a group.
        </p>
        <ErrorText id="mappings-error" message={errors.mappings} />
        {v.mappings.length === 0 ? (
          <p class="empty-state">No mappings: nothing is forwarded.</p>
        ) : (
          <TableRegion label="Topic mappings">
            <table>
              <thead>
                <tr>
                  <th scope="col">Topic filter</th>
                  <th scope="col">Only for</th>
                  <th scope="col">Value</th>
                  <th scope="col">
                    <span class="visually-hidden">Remove</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {v.mappings.map((m, i) => (
                  <tr>
                    <td>
                      <input
                        type="text"
                        name="mapping-filter"
                        value={m.topicFilter}
                        aria-label={`Topic filter, mapping ${i + 1}`}
                        aria-invalid={errors[`mappings.${i}.topicFilter`] ? 'true' : undefined}
                        aria-describedby={errors[`mappings.${i}.topicFilter`] ? `mapping-${i}-filter-error` : 'mapping-help'}
                        placeholder="sensors/#"
                        autocomplete="off"
                        spellcheck={false}
                      />
                      <ErrorText id={`mapping-${i}-filter-error`} message={errors[`mappings.${i}.topicFilter`]} />
                    </td>
                    <td>
                      <select name="mapping-narrow-by" aria-label={`Only for, mapping ${i + 1}`}>
                        {[
                          ['any', 'Everyone'],
                          ['client', 'MQTT client id'],
                          ['username', 'Username'],
                          ['group', 'Group'],
                        ].map(([value, label]) => (
                          <option value={value} selected={m.narrowBy === value}>
                            {label}
                          </option>
                        ))}
                      </select>
                    </td>
                    <td>
                      <input
                        type="text"
                        name="mapping-narrow-value"
                        value={m.narrowValue}
                        aria-label={`Value, mapping ${i + 1}`}
                        aria-invalid={errors[`mappings.${i}.narrowValue`] ? 'true' : undefined}
                        aria-describedby={errors[`mappings.${i}.narrowValue`] ? `mapping-${i}-value-error` : undefined}
                        autocomplete="off"
                      />
                      <ErrorText id={`mapping-${i}-value-error`} message={errors[`mappings.${i}.narrowValue`]} />
                    </td>
                    <td>
                      <button type="submit" name="_action" value={`remove:${i}`} class="secondary outline" aria-label={`Remove mapping ${i + 1}`}>
                        Remove
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableRegion>
        )}
        <button type="submit" name="_action" value="add" class="secondary outline">
          Add mapping
        </button>
      </fieldset>
      <div class="form-actions">
        <button type="submit" name="_action" value="save">
          {props.pipeline ? 'Save changes' : 'Create pipeline'}
        </button>
        <a href={props.pipeline ? `/pipelines/${props.pipeline.id}` : '/pipelines'} role="button" class="secondary outline">
          Cancel
        </a>
      </div>
    </form>
  );
}

/** `/pipelines/:id/dead-letters`: what failed for good, to replay or purge. */
export function DeadLettersPage(props: { pipeline: Pipeline; letters: DeadLetter[]; total: number; page: number; pageCount: number; message?: string }) {
  const { pipeline } = props;
  const base = `/pipelines/${pipeline.id}/dead-letters`;
  return (
    <Layout title={`Dead letters of ${pipeline.name}`} section="pipelines">
      <nav aria-label="breadcrumb">
        <ul>
          <li>
            <a href="/pipelines">Pipelines</a>
          </li>
          <li>
            <a href={`/pipelines/${pipeline.id}`}>{pipeline.name}</a>
          </li>
          <li>Dead letters</li>
        </ul>
      </nav>
      <h1>Dead letters of {pipeline.name}</h1>
      <Notice message={props.message} />
      <p>
        Messages the destination refused for good (a 4xx answer other than 408 and 429), with its last answer. Replaying puts them back at the end of the
        queue with their message ids. {integer.format(props.total)} in all.
      </p>
      {props.total > 0 ? (
        <div class="form-actions">
          <form method="post" action={`${base}/replay`}>
            <button type="submit">Replay all</button>
          </form>
          <form method="post" action={`${base}/purge`}>
            <button type="submit" class="danger">
              Purge all
            </button>
          </form>
        </div>
      ) : null}
      {props.letters.length === 0 ? (
        <p class="empty-state">No dead letters.</p>
      ) : (
        <TableRegion label="Dead letters table">
          <table class="striped">
            <thead>
              <tr>
                <th scope="col">Failed</th>
                <th scope="col">Topic</th>
                <th scope="col">From</th>
                <th scope="col">Payload</th>
                <th scope="col">Attempts</th>
                <th scope="col">Last answer</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {props.letters.map((letter) => (
                <tr>
                  <td>{formatTime(letter.failedAt)}</td>
                  <td>
                    <code>{letter.topic}</code>
                  </td>
                  <td>
                    {letter.username ?? '—'} <small>{letter.mqttClientId ?? ''}</small>
                  </td>
                  <td>
                    <code>{letter.payloadPreview}</code> <small>({integer.format(letter.payloadBytes)} bytes)</small>
                  </td>
                  <td>{letter.attempts}</td>
                  <td>
                    {letter.lastStatus ?? '—'} <small>{letter.lastError ?? ''}</small>
                  </td>
                  <td>
                    <form method="post" action={`${base}/${letter.id}/replay`}>
                      <button type="submit" class="secondary outline">
                        Replay
                      </button>
                    </form>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableRegion>
      )}
      <Pagination path={base} page={props.page} pageCount={props.pageCount} query="" />
    </Layout>
  );
}

export function DeletePipelinePage(props: { pipeline: Pipeline; waiting: number }) {
  const { pipeline } = props;
  return (
    <Layout title={`Delete ${pipeline.name}`} section="pipelines">
      <article>
        <header>
          <h1>Delete pipeline “{pipeline.name}”?</h1>
        </header>
        <p>
          Its mappings, the {integer.format(props.waiting)} messages waiting in its outbox and its dead letters are deleted with it. To stop forwarding for a
          while and keep them, pause it instead.
        </p>
        <ConfirmFooter action={`/pipelines/${pipeline.id}/delete`} confirmLabel="Delete pipeline" cancelHref={`/pipelines/${pipeline.id}`} cancelLabel="Keep it" />
      </article>
    </Layout>
  );
}
