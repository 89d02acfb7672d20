import { type Context, Hono } from 'hono';
import {
  createClient,
  deleteClient,
  getClient,
  listClients,
  parseClientCursor,
  updateClient,
  type ClientInput,
  type ClientPage,
} from '../domain/clients';
import { CONNECTIONS_PAGE_SIZE, disconnectClientSessions, listConnections } from '../domain/connections';
import { ConflictError, ValidationError } from '../domain/errors';
import { generatedPasswordToken, generatePassword, isServerGenerated } from '../domain/password';
import { getRuleChange, groupsNaming, loadRulesNaming, parseGroupChoice } from '../domain/groupRules';
import { listGroupChoices } from '../domain/groups';
import type { SeenClient } from '../domain/access/lastSeen';
import { RuleChangeNotice } from '../../views/groups';
import {
  accessCellFor,
  ClientEditRow,
  ClientForm,
  ClientFormPage,
  ClientRow,
  ClientsPage,
  DeleteClientPage,
  type ClientFormValues,
} from '../../views/clients';
import { ClientSessionsSection, DisconnectClientPage } from '../../views/connections';
import { NoticePartial, NotFoundPage, Notice } from '../../views/layout';
import { actorOf, directoryOf, disconnectDeps } from './connections';
import type { AppEnv } from './env';
import { createPageCache } from './pageCache';
import { flash, isHtmx, parseId, readForm, readFormAll, readFormFile, redirectAfterPost } from './http';

/** `/clients`: the clients console. */
export function clientRoutes(options: { log: (message: string) => void }) {
  const clients = new Hono<AppEnv>();

  // Pages as read, while nothing they show changed (see pageCache.ts): an
  // operator paging back and forth, or many looking at once, reads each once.
  const pages = createPageCache<ClientPage>();

  clients.get('/', async (c) => {
    // The version first: a page is then never kept under a version newer than what it read
    // (the rules' count goes up when a change is heard, before the rules are read again).
    const version = c.var.access.listVersion?.() ?? null;
    const rules = await c.var.access.rules();
    const options = {
      query: c.req.query('q') ?? '',
      noAccess: c.req.query('access') === 'none',
      after: parseClientCursor(c.req.query('after')) ?? undefined,
      before: parseClientCursor(c.req.query('before')) ?? undefined,
      page: parsePage(c.req.query('page')),
      at: parsePositive(c.req.query('at')),
    };
    const result = await pages.get(
      JSON.stringify(options),
      version,
      () => listClients(c.var.db, { ...options, noAccess: options.noAccess ? rules : undefined }),
      c.var.access.listVersionComplete ? { maxAgeMs: Infinity } : undefined,
    );
    const changeId = parseId(c.req.query('change'));
    const ruleChange = changeId === null ? null : await getRuleChange(c.var.db, changeId);
    const notice = disconnectedNotice(c.req.query('disconnected'));
    const sessions = await c.var.live.sessionsByClient();
    const liveClientIds = await liveClientIdsOf(c, result.clients, sessions);
    return c.html(<ClientsPage result={result} rules={rules} ruleChange={ruleChange} notice={notice} sessions={sessions} liveClientIds={liveClientIds} />);
  });

  // "Generate strong password": made here, so that saving can tell the
  // generator's output (stored with a fast hash) from a typed password.
  clients.get('/generated-password', (c) => {
    const password = generatePassword();
    c.header('Cache-Control', 'no-store');
    return c.json({ password, token: generatedPasswordToken(password) });
  });

  clients.get('/new', async (c) => c.html(<ClientFormPage values={{ name: '', username: '', groups: [] }} groups={await listGroupChoices(c.var.db)} />));

  clients.post('/', async (c) => {
    const form = await readForm(c);
    const chosen = await chosenGroups(c);
    try {
      if (typeof chosen === 'string') throw new ValidationError({ groups: chosen });
      const created = await createClient(c.var.db, { ...form, certificate: await readFormFile(c, 'certificateFile') }, c.var.actor, { groups: chosen });
      await c.var.access.settled();
      flash(c, `Client “${created.name}” created.`);
      // Its page: what it may do, and Try it.
      return redirectAfterPost(c, `/clients/${created.id}`);
    } catch (error) {
      const errors = formErrors(error);
      const values = { ...formValues(form), groups: typeof chosen === 'string' ? [] : chosen };
      const status = error instanceof ConflictError ? 409 : 422;
      const groups = await listGroupChoices(c.var.db);
      if (isHtmx(c)) return c.html(<ClientForm action="/clients" values={values} errors={errors} groups={groups} />, status);
      return c.html(<ClientFormPage values={values} errors={errors} groups={groups} />, status);
    }
  });

  clients.get('/:id/edit', async (c) => {
    const client = await findClient(c);
    if (!client) return notFound(c);
    const values = { name: client.name, username: client.username, version: client.version, authType: client.authType, fingerprint: client.certFingerprint ?? '' };
    if (isHtmx(c)) return c.html(<ClientEditRow client={client} values={values} />);
    const given = (await groupsNaming(c.var.db, client.id)).map((g) => g.id);
    return c.html(<ClientFormPage client={client} values={{ ...values, groups: given }} groups={await listGroupChoices(c.var.db)} />);
  });

  clients.get('/:id/row', async (c) => {
    const client = await findClient(c);
    if (!client) return notFound(c);
    return c.html(<ClientRow client={client} {...await rowState(c, client)} focus />);
  });

  const update = async (c: Context<AppEnv>) => {
    const client = await findClient(c);
    if (!client) return notFound(c);
    const form = await readForm(c);
    const inRow = isHtmx(c) && form._view === 'row';
    const chosen = await chosenGroups(c);
    try {
      if (typeof chosen === 'string') throw new ValidationError({ groups: chosen });
      const updated = await updateClient(c.var.db, client.id, { ...form, certificate: await readFormFile(c, 'certificateFile') }, c.var.actor, { groups: chosen });
      if (!updated) return notFound(c);
      if (chosen) await c.var.access.settled();
      let saved = `Client “${updated.name}” saved.`;
      if (form.apply === 'now') {
        // "Apply now": its sessions end and reconnect under what was saved.
        const ended = await disconnectClientSessions(disconnectDeps(c, options.log), actorOf(c), updated.id);
        saved += ` ${disconnectedNotice(String(ended.length))}`;
      }
      if (inRow) {
        return c.html(
          <>
            <ClientRow client={updated} {...await rowState(c, updated)} focus />
            <NoticePartial message={saved} />
          </>,
        );
      }
      flash(c, saved);
      return redirectAfterPost(c, '/clients');
    } catch (error) {
      const errors = formErrors(error);
      // After a lost-update conflict the form carries the version read just
      // now, so saving again is a deliberate overwrite; otherwise it keeps its own.
      const stale = error instanceof ConflictError && error.field === 'form';
      const formVersion = /^[0-9]{1,9}$/.test(form.version ?? '') ? Number(form.version) : undefined;
      const values = { ...formValues(form), version: stale ? client.version : formVersion, groups: Array.isArray(chosen) ? chosen : (await groupsNaming(c.var.db, client.id)).map((g) => g.id) };
      const status = error instanceof ConflictError ? 409 : 422;
      if (inRow) return c.html(<ClientEditRow client={client} values={values} errors={errors} />, status);
      const groups = await listGroupChoices(c.var.db);
      if (isHtmx(c)) return c.html(<ClientForm action={`/clients/${client.id}`} values={values} errors={errors} editing groups={groups} />, status);
      return c.html(<ClientFormPage client={client} values={values} errors={errors} groups={groups} />, status);
    }
  };
  clients.post('/:id', update);
  clients.put('/:id', update);
  clients.patch('/:id', update);

  clients.get('/:id/disconnect', async (c) => {
    const client = await findClient(c);
    if (!client) return notFound(c);
    const page = await sessionsOf(c, client.id);
    return c.html(<DisconnectClientPage client={client} page={page} fromList={c.req.query('from') === 'list'} />);
  });

  clients.post('/:id/disconnect', async (c) => {
    const client = await findClient(c);
    if (!client) return notFound(c);
    const form = await readForm(c);
    const ended = await disconnectClientSessions(disconnectDeps(c, options.log), actorOf(c), client.id);
    return redirectAfterPost(c, `${form.from === 'list' ? '/clients' : `/clients/${client.id}`}?disconnected=${ended.length}`);
  });

  // "Disconnect all sessions" with htmx: the client's row (clients table) or
  // its live sessions (client page) come back up to date.
  clients.delete('/:id/sessions', async (c) => {
    const client = await findClient(c);
    if (!client) return notFound(c);
    const ended = await disconnectClientSessions(disconnectDeps(c, options.log), actorOf(c), client.id);
    const notice = disconnectedNotice(String(ended.length), client.name);
    if (c.req.query('view') === 'page') {
      return c.html(<ClientSessionsSection client={client} page={await sessionsOf(c, client.id)} notice={notice} />);
    }
    return c.html(
      <>
        <ClientRow client={client} {...await rowState(c, client)} />
        <hx-partial hx-target="#clients-notice" hx-swap="innerHTML">
          <Notice message={notice} />
        </hx-partial>
      </>,
    );
  });

  clients.get('/:id/delete', async (c) => {
    const client = await findClient(c);
    if (!client) return notFound(c);
    const sessions = (await c.var.live.sessionsByClient()).get(client.id) ?? 0;
    return c.html(<DeleteClientPage client={client} rules={await loadRulesNaming(c.var.db, client.id)} sessions={sessions} />);
  });

  /**
   * Deletes the client; with `disconnect`, then ends its live sessions on
   * every node (deleted first, so they cannot come back in). The notice says both.
   */
  const remove = async (c: Context<AppEnv>, disconnect: boolean) => {
    const id = parseId(c.req.param('id'));
    const deleted = id === null ? null : await deleteClient(c.var.db, id, c.var.actor);
    if (!deleted) return null;
    let message = `Client “${deleted.name}” deleted.`;
    if (disconnect) {
      const ended = await disconnectClientSessions(disconnectDeps(c, options.log), actorOf(c), deleted.id);
      message += ` ${disconnectedNotice(String(ended.length))}`;
    } else {
      const live = (await c.var.live.sessionsByClient()).get(deleted.id) ?? 0;
      if (live > 0) message += ` Its ${live === 1 ? 'live session stays' : `${live} live sessions stay`} connected until ${live === 1 ? 'it ends' : 'they end'}.`;
    }
    return { deleted, message };
  };

  clients.post('/:id/delete', async (c) => {
    const form = await readForm(c);
    const done = await remove(c, form.disconnect === '1');
    if (!done) return notFound(c);
    flash(c, done.message);
    return redirectAfterPost(c, done.deleted.ruleChange ? `/clients?change=${done.deleted.ruleChange.id}` : '/clients');
  });

  clients.delete('/:id', async (c) => {
    const done = await remove(c, c.req.query('disconnect') === '1');
    if (!done) return notFound(c);
    // The row that asked is swapped for nothing: it disappears. The notice
    // says what happened, and rules removed with the client are reported below it.
    return c.html(
      <>
        <NoticePartial message={done.message} />
        {done.deleted.ruleChange ? (
          <hx-partial hx-target="#clients-notice" hx-swap="innerHTML">
            <RuleChangeNotice change={done.deleted.ruleChange} />
          </hx-partial>
        ) : null}
      </>,
    );
  });

  return clients;
}

// `?page=last`, or a page number as older links carry it (still served).
function parsePage(value: string | undefined): number | 'last' | undefined {
  if (value === 'last') return 'last';
  return parsePositive(value);
}

/** "Disconnected 2 sessions" after a disconnect-all (the count from the redirect's query). */
export function disconnectedNotice(value: string | undefined, name?: string): string | undefined {
  if (!value || !/^[0-9]{1,6}$/.test(value)) return undefined;
  const n = Number(value);
  const of = name ? ` of “${name}”` : '';
  return n === 0 ? `No session${of} was connected: nothing to disconnect.` : `Disconnected ${n} ${n === 1 ? 'session' : 'sessions'}${of}.`;
}

/** A client's live sessions on every node (the first page). */
export function sessionsOf(c: Context<AppEnv>, clientRowId: number) {
  return listConnections(directoryOf(c), { query: '', clientRowId, order: 'newest', limit: CONNECTIONS_PAGE_SIZE });
}

function parsePositive(value: string | undefined): number | undefined {
  return value && /^[1-9][0-9]{0,8}$/.test(value) ? Number(value) : undefined;
}

/** A table row's live session count and Access cell, from one read of the session counts. */
async function rowState(c: Context<AppEnv>, client: SeenClient) {
  await c.var.access.settled();
  const counts = await c.var.live.sessionsByClient();
  const live = await liveClientIdsOf(c, [client], counts);
  return { access: accessCellFor(await c.var.access.rules(), client, live.get(client.id)), sessions: counts.get(client.id) ?? 0 };
}

/**
 * The client id each connected client of a page uses now (its newest live
 * session's), so that its Access is judged by it rather than by the id it
 * was last seen with (written when a session ends). Asked only for the
 * clients the session counts show connected: nothing when none is. What a
 * page of 50 clients costs: on one node, one pass over this node's sessions
 * in memory; on several, besides, one question to every node over Redis
 * pub/sub (each scans its own sessions once and answers with at most 50
 * ids), the round trip the Connections page makes for a page. A node that
 * does not answer within the directory's time limit (2 s) holds the page
 * that long, and its clients are judged by their last-seen id.
 */
async function liveClientIdsOf(c: Context<AppEnv>, clients: ReadonlyArray<{ id: number }>, sessions: ReadonlyMap<number, number>): Promise<Map<number, string>> {
  const connected = clients.filter((client) => (sessions.get(client.id) ?? 0) > 0).map((client) => client.id);
  const ids = new Map<number, string>();
  if (connected.length === 0) return ids;
  for (const [id, session] of await directoryOf(c).newestClientIds(connected)) ids.set(id, session.mqttClientId);
  return ids;
}

async function findClient(c: Context<AppEnv>) {
  const id = parseId(c.req.param('id'));
  return id === null ? null : getClient(c.var.db, id);
}

function notFound(c: Context<AppEnv>) {
  return c.html(<NotFoundPage message="This client does not exist (it may have been deleted)." section="clients" />, 404);
}

/**
 * The groups chosen on a page form (it says it showed them); undefined for
 * the in-row form, which leaves groups alone; a message when they cannot be read.
 */
async function chosenGroups(c: Context<AppEnv>): Promise<number[] | string | undefined> {
  const form = await readFormAll(c);
  if (form.first('groups_shown') !== '1') return undefined;
  return parseGroupChoice(form.all('groups'));
}

function formErrors(error: unknown) {
  if (error instanceof ValidationError || error instanceof ConflictError) return error.fieldErrors;
  throw error;
}

/**
 * What the user typed, to show again. A typed password is never echoed; one
 * the server generated (its token proves it) is kept with its token, so a
 * username taken does not lose the password the operator may have copied.
 */
function formValues(form: ClientInput): ClientFormValues {
  const password = typeof form.password === 'string' ? form.password : '';
  const generated = password !== '' && isServerGenerated(password, form.password_generated);
  return {
    generatedPassword: generated ? { password, token: String(form.password_generated) } : undefined,
    name: typeof form.name === 'string' ? form.name : '',
    username: typeof form.username === 'string' ? form.username : '',
    authType: typeof form.authType === 'string' ? form.authType : undefined,
    fingerprint: typeof form.fingerprint === 'string' ? form.fingerprint : '',
    apply: (form as { apply?: unknown }).apply === 'now' ? 'now' : undefined,
  };
}
