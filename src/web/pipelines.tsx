import { type Context, Hono } from 'hono';
import { ConflictError, ValidationError } from '../domain/errors';
import { deadLetterCount, deadLetterCounts, listDeadLetters, purgeDeadLetters, replayDeadLetters } from '../domain/pipelines/outbox';
import {
  createPipeline,
  deletePipeline,
  finishSigningSecretRotation,
  getPipeline,
  listPipelines,
  MAX_MAPPINGS_PER_PIPELINE,
  rotateSigningSecret,
  setPipelineEnabled,
  updatePipeline,
  type Pipeline,
} from '../domain/pipelines/pipelines';
import type { PipelineService } from '../pipelines/service';
import { NotFoundPage } from '../../views/layout';
import {
  BLANK_MAPPING,
  DeadLettersPage,
  DeletePipelinePage,
  PipelineCreatedPage,
  PipelineForm,
  PipelineFormPage,
  PipelinePage,
  PipelinesPage,
  TestResult,
  type PipelineFormValues,
} from '../../views/pipelines';
import type { AppEnv } from './env';
import { isHtmx, parseId, readFormAll, redirectAfterPost, type FormValues } from './http';

export interface PipelineControl {
  service: PipelineService;
  secretKey: string | undefined;
}

const NOTICES: Record<string, string> = {
  saved: 'Saved. Every node applies the change now.',
  paused: 'Paused: messages keep arriving in the outbox; none is sent until you resume.',
  resumed: 'Resumed.',
  deleted: 'Pipeline deleted.',
  rotated: 'Rotation finished: requests carry one signature again.',
  purged: 'Dead letters purged.',
};

/** `/pipelines`: the pipelines console. */
export function pipelineRoutes(control: PipelineControl | undefined) {
  const routes = new Hono<AppEnv>();
  const notice = (c: Context<AppEnv>) => {
    const key = c.req.query('done') ?? '';
    const count = /^(replayed):(\d{1,9})$/.exec(key);
    if (count) return `${count[2]} messages put back in the queue.`;
    return NOTICES[key];
  };

  routes.get('/', async (c) => {
    const pipelines = await listPipelines(c.var.db, control?.secretKey);
    const figures = new Map((control?.service.figures() ?? []).map((f) => [f.id, f]));
    const deadLetters = await deadLetterCounts(c.var.db, pipelines.map((p) => p.id));
    return c.html(<PipelinesPage pipelines={pipelines} figures={figures} deadLetters={deadLetters} message={notice(c)} />);
  });

  routes.get('/new', (c) => c.html(<PipelineFormPage values={blankValues()} secretKeySet={Boolean(control?.secretKey)} />));
  routes.post('/', (c) => submit(c, null, control));

  routes.get('/:id', async (c) => {
    const pipeline = await find(c, control);
    if (!pipeline) return notFound(c);
    return c.html(
      <PipelinePage pipeline={pipeline} figures={control?.service.figuresOf(pipeline.id) ?? null} deadLetters={await deadLetterCount(c.var.db, pipeline.id)} message={notice(c)} />,
    );
  });

  routes.get('/:id/edit', async (c) => {
    const pipeline = await find(c, control);
    if (!pipeline) return notFound(c);
    return c.html(<PipelineFormPage pipeline={pipeline} values={valuesOf(pipeline)} secretKeySet={Boolean(control?.secretKey)} />);
  });

  routes.post('/:id', async (c) => {
    const pipeline = await find(c, control);
    if (!pipeline) return notFound(c);
    return submit(c, pipeline, control);
  });

  for (const [path, enabled] of [['pause', false], ['resume', true]] as const) {
    routes.post(`/:id/${path}`, async (c) => {
      const id = parseId(c.req.param('id'));
      const done = id === null ? null : await setPipelineEnabled(c.var.db, id, enabled, c.var.actor);
      if (!done) return notFound(c);
      await control?.service.reload();
      return redirectAfterPost(c, `/pipelines/${id}?done=${enabled ? 'resumed' : 'paused'}`);
    });
  }

  routes.post('/:id/test', async (c) => {
    const pipeline = await find(c, control);
    if (!pipeline) return notFound(c);
    const test = control ? await control.service.test(pipeline.id) : { error: 'Pipelines do not run in this process.' };
    if (isHtmx(c)) return c.html(<TestResult test={test} />);
    return c.html(<PipelinePage pipeline={pipeline} figures={control?.service.figuresOf(pipeline.id) ?? null} deadLetters={await deadLetterCount(c.var.db, pipeline.id)} test={test} />);
  });

  routes.post('/:id/rotate-secret', async (c) => {
    const id = parseId(c.req.param('id'));
    try {
      const secret = id === null ? null : await rotateSigningSecret(c.var.db, id, control?.secretKey, c.var.actor);
      const pipeline = id === null ? null : await getPipeline(c.var.db, id, control?.secretKey);
      if (!secret || !pipeline) return notFound(c);
      await control?.service.reload();
      // Shown in this answer only: never put in a URL or stored in the clear.
      c.header('Cache-Control', 'no-store');
      return c.html(<PipelinePage pipeline={pipeline} figures={control?.service.figuresOf(pipeline.id) ?? null} deadLetters={await deadLetterCount(c.var.db, pipeline.id)} secretShown={secret} />);
    } catch (error) {
      if (error instanceof ValidationError) {
        const pipeline = id === null ? null : await getPipeline(c.var.db, id, control?.secretKey);
        if (!pipeline) return notFound(c);
        return c.html(<PipelinePage pipeline={pipeline} figures={null} deadLetters={0} message={error.fieldErrors.form} />, 422);
      }
      throw error;
    }
  });

  routes.post('/:id/finish-rotation', async (c) => {
    const id = parseId(c.req.param('id'));
    if (id === null || !(await finishSigningSecretRotation(c.var.db, id, control?.secretKey, c.var.actor))) return notFound(c);
    await control?.service.reload();
    return redirectAfterPost(c, `/pipelines/${id}?done=rotated`);
  });

  routes.get('/:id/delete', async (c) => {
    const pipeline = await find(c, control);
    if (!pipeline) return notFound(c);
    return c.html(<DeletePipelinePage pipeline={pipeline} waiting={control?.service.figuresOf(pipeline.id)?.queueRows ?? 0} />);
  });

  routes.post('/:id/delete', async (c) => {
    const id = parseId(c.req.param('id'));
    const deleted = id === null ? null : await deletePipeline(c.var.db, id, c.var.actor);
    if (!deleted) return notFound(c);
    await control?.service.reload();
    return redirectAfterPost(c, '/pipelines?done=deleted');
  });

  routes.get('/:id/dead-letters', async (c) => {
    const pipeline = await find(c, control);
    if (!pipeline) return notFound(c);
    const page = await listDeadLetters(c.var.db, pipeline.id, Number.parseInt(c.req.query('page') ?? '1', 10));
    return c.html(<DeadLettersPage pipeline={pipeline} {...page} message={notice(c)} />);
  });

  routes.post('/:id/dead-letters/replay', async (c) => {
    const id = parseId(c.req.param('id'));
    if (id === null || !(await getPipeline(c.var.db, id, control?.secretKey))) return notFound(c);
    const count = await replayDeadLetters(c.var.db, id, 'all', c.var.actor);
    return redirectAfterPost(c, `/pipelines/${id}/dead-letters?done=replayed:${count}`);
  });

  routes.post('/:id/dead-letters/purge', async (c) => {
    const id = parseId(c.req.param('id'));
    if (id === null || !(await getPipeline(c.var.db, id, control?.secretKey))) return notFound(c);
    await purgeDeadLetters(c.var.db, id, c.var.actor);
    return redirectAfterPost(c, `/pipelines/${id}/dead-letters?done=purged`);
  });

  routes.post('/:id/dead-letters/:letter/replay', async (c) => {
    const id = parseId(c.req.param('id'));
    const letter = parseId(c.req.param('letter'));
    if (id === null || letter === null) return notFound(c);
    const count = await replayDeadLetters(c.var.db, id, letter, c.var.actor);
    if (count === 0) return notFound(c);
    return redirectAfterPost(c, `/pipelines/${id}/dead-letters?done=replayed:${count}`);
  });

  return routes;
}

/** The form's one endpoint: `_action` is `add` or `remove:<row>` (echo the form with a mapping more or less) or `save`. */
async function submit(c: Context<AppEnv>, pipeline: Pipeline | null, control: PipelineControl | undefined) {
  const form = await readFormAll(c);
  const values = formValues(form);
  const action = form.first('_action') ?? 'save';
  const secretKeySet = Boolean(control?.secretKey);
  const render = (errors: Record<string, string> | undefined, status: 200 | 409 | 422) => {
    const formAction = pipeline ? `/pipelines/${pipeline.id}` : '/pipelines';
    if (isHtmx(c)) return c.html(<PipelineForm action={formAction} pipeline={pipeline ?? undefined} values={values} errors={errors} secretKeySet={secretKeySet} />, status);
    return c.html(<PipelineFormPage pipeline={pipeline ?? undefined} values={values} errors={errors} secretKeySet={secretKeySet} />, status);
  };
  if (action === 'add') {
    if (values.mappings.length >= MAX_MAPPINGS_PER_PIPELINE) return render({ mappings: `A pipeline has at most ${MAX_MAPPINGS_PER_PIPELINE} mappings.` }, 422);
    values.mappings.push({ ...BLANK_MAPPING });
    return render(undefined, 200);
  }
  const removing = /^remove:(\d{1,4})$/.exec(action);
  if (removing) {
    values.mappings.splice(Number(removing[1]), 1);
    return render(undefined, 200);
  }
  const input = {
    ...Object.fromEntries(
      [
        'version', 'name', 'description', 'enabled', 'kind', 'method', 'url', 'headers', 'auth', 'bearerToken', 'basicUsername', 'basicPassword', 'certSource',
        'clientCert', 'clientKey', 'webhookCa', 'bodyTemplate', 'batchMode', 'batchMaxMessages', 'batchMaxWaitMs', 'batchMaxBytes', 'timeoutMs', 'tagoApiUrl', 'networkToken',
        'authorizationToken', 'mqttUrl', 'mqttFailover', 'mqttUsername', 'mqttPassword', 'mqttClientId', 'mqttCa', 'mqttClientCert', 'mqttClientKey',
        'remoteTopic', 'mqttQos', 'mqttRetain', 'mqttProtocolVersion', 'maxOutboxMb', 'maxAgeHours', 'overflow',
      ].map((name) => [name, form.first(name) ?? '']),
    ),
    mappings: values.mappings.filter((m) => m.topicFilter !== '' || m.narrowValue !== ''),
  };
  try {
    if (pipeline) {
      const saved = await updatePipeline(c.var.db, pipeline.id, input, control?.secretKey, c.var.actor);
      if (!saved) return notFound(c);
      await control?.service.reload();
      return redirectAfterPost(c, `/pipelines/${pipeline.id}?done=saved`);
    }
    const created = await createPipeline(c.var.db, input, control?.secretKey, c.var.actor);
    await control?.service.reload();
    if (created.signingSecret) {
      // The signing secret, this once: a page of its own rather than a redirect (never in a URL).
      c.header('Cache-Control', 'no-store');
      if (isHtmx(c)) {
        c.header('HX-Retarget', 'main');
        c.header('HX-Reswap', 'outerHTML');
        c.header('HX-Reselect', 'main');
      }
      return c.html(<PipelineCreatedPage pipeline={created.pipeline} secret={created.signingSecret} />, 201);
    }
    return redirectAfterPost(c, `/pipelines/${created.pipeline.id}?done=saved`);
  } catch (error) {
    if (error instanceof ValidationError || error instanceof ConflictError) {
      if (error instanceof ConflictError && error.field === 'form' && pipeline) values.version = pipeline.version;
      return render(error.fieldErrors, error instanceof ConflictError ? 409 : 422);
    }
    throw error;
  }
}

function formValues(form: FormValues): PipelineFormValues {
  const filters = form.all('mapping-filter');
  const narrowBy = form.all('mapping-narrow-by');
  const narrowValues = form.all('mapping-narrow-value');
  const count = Math.min(Math.max(filters.length, narrowBy.length, narrowValues.length), MAX_MAPPINGS_PER_PIPELINE + 1);
  const version = form.first('version') ?? '';
  const text = (name: string) => form.first(name) ?? '';
  return {
    version: /^[0-9]{1,9}$/.test(version) ? Number(version) : undefined,
    name: text('name'),
    description: text('description'),
    enabled: form.first('enabled') === 'on',
    kind: text('kind'),
    method: text('method'),
    url: text('url'),
    headers: text('headers'),
    auth: text('auth'),
    basicUsername: text('basicUsername'),
    certSource: text('certSource'),
    clientCert: text('clientCert'),
    webhookCa: text('webhookCa'),
    bodyTemplate: text('bodyTemplate'),
    batchMode: text('batchMode'),
    batchMaxMessages: text('batchMaxMessages'),
    batchMaxWaitMs: text('batchMaxWaitMs'),
    batchMaxBytes: text('batchMaxBytes'),
    timeoutMs: text('timeoutMs'),
    tagoApiUrl: text('tagoApiUrl'),
    mqttUrl: text('mqttUrl'),
    mqttFailover: text('mqttFailover'),
    mqttUsername: text('mqttUsername'),
    mqttClientId: text('mqttClientId'),
    mqttCa: text('mqttCa'),
    mqttClientCert: text('mqttClientCert'),
    remoteTopic: text('remoteTopic'),
    mqttQos: text('mqttQos'),
    mqttRetain: text('mqttRetain'),
    mqttProtocolVersion: text('mqttProtocolVersion'),
    maxOutboxMb: text('maxOutboxMb'),
    maxAgeHours: text('maxAgeHours'),
    overflow: text('overflow'),
    mappings: Array.from({ length: count }, (_, i) => ({ topicFilter: filters[i] ?? '', narrowBy: narrowBy[i] ?? 'any', narrowValue: narrowValues[i] ?? '' })),
  };
}

function blankValues(): PipelineFormValues {
  return {
    name: '',
    description: '',
    enabled: true,
    kind: 'webhook',
    method: 'POST',
    url: '',
    headers: '',
    auth: 'none',
    basicUsername: '',
    certSource: 'upload',
    clientCert: '',
    webhookCa: '',
    bodyTemplate: '',
    batchMode: 'off',
    batchMaxMessages: '100',
    batchMaxWaitMs: '1000',
    batchMaxBytes: String(1024 * 1024),
    timeoutMs: '10000',
    tagoApiUrl: '',
    mqttUrl: '',
    mqttFailover: '',
    mqttUsername: '',
    mqttClientId: '',
    mqttCa: '',
    mqttClientCert: '',
    remoteTopic: '{{topic}}',
    mqttQos: '1',
    mqttRetain: 'keep',
    mqttProtocolVersion: '4',
    maxOutboxMb: '256',
    maxAgeHours: '24',
    overflow: 'drop_oldest',
    mappings: [{ ...BLANK_MAPPING }],
  };
}

/** The form filled from what is stored (secrets never). */
function valuesOf(pipeline: Pipeline): PipelineFormValues {
  const values = blankValues();
  values.version = pipeline.version;
  values.name = pipeline.name;
  values.description = pipeline.description;
  values.enabled = pipeline.enabled;
  values.kind = pipeline.kind;
  values.maxOutboxMb = String(Math.round(pipeline.maxOutboxBytes / 1024 / 1024));
  values.maxAgeHours = String(Math.round(pipeline.maxAgeSeconds / 3600));
  values.overflow = pipeline.overflow;
  values.mappings = pipeline.mappings.map((m) => ({ ...m }));
  const settings = pipeline.settings;
  if (settings.kind === 'webhook') {
    const w = settings.webhook;
    Object.assign(values, {
      method: w.method,
      url: w.url,
      headers: w.headers.map(([name, value]) => `${name}: ${value}`).join('\n'),
      auth: w.auth,
      basicUsername: w.basicUsername,
      certSource: w.certSource,
      clientCert: w.clientCertPem,
      webhookCa: w.caPem ?? '',
      bodyTemplate: w.bodyTemplate,
      batchMode: w.batch.mode,
      batchMaxMessages: String(w.batch.maxMessages),
      batchMaxWaitMs: String(w.batch.maxWaitMs),
      batchMaxBytes: String(w.batch.maxBytes),
      timeoutMs: String(w.timeoutMs),
    });
  } else if (settings.kind === 'tagoio') {
    values.tagoApiUrl = settings.tagoio.apiUrl;
  } else {
    const m = settings.mqtt;
    Object.assign(values, {
      mqttUrl: m.url,
      mqttFailover: m.failover.join('\n'),
      mqttUsername: m.username,
      mqttClientId: m.clientId,
      mqttCa: m.caPem,
      mqttClientCert: m.clientCertPem,
      remoteTopic: m.remoteTopic,
      mqttQos: String(m.qos),
      mqttRetain: m.retain,
      mqttProtocolVersion: String(m.protocolVersion),
    });
  }
  return values;
}

async function find(c: Context<AppEnv>, control: PipelineControl | undefined) {
  const id = parseId(c.req.param('id'));
  return id === null ? null : getPipeline(c.var.db, id, control?.secretKey);
}

function notFound(c: Context<AppEnv>) {
  return c.html(<NotFoundPage message="This pipeline does not exist (it may have been deleted)." section="pipelines" />, 404);
}
