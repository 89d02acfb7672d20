import { type Context, Hono } from 'hono';
import { getClientNames } from '../domain/clients';
import { listGroupChoices } from '../domain/groups';
import {
  disconnectSession,
  listConnections,
  noSessions,
  parseSessionId,
  sessionRequestFrom,
  type DisconnectDeps,
  type LiveSession,
  type SessionDirectory,
} from '../domain/connections';
import { ConnectionsPage, DisconnectSessionPage, SessionEndedPage } from '../../views/connections';
import { Notice } from '../../views/layout';
import type { AppEnv } from './env';
import { isHtmx, redirectAfterPost } from './http';

export function directoryOf(c: Context<AppEnv>): SessionDirectory {
  return c.var.live.sessions ?? noSessions;
}

/** What a disconnect needs: every node's sessions, the log and the audit trail. */
export function disconnectDeps(c: Context<AppEnv>, log: (message: string) => void): DisconnectDeps {
  return {
    directory: directoryOf(c),
    log,
    ended: (session, actor) =>
      c.var.audit.record({
        kind: 'mqtt.disconnected',
        actor: actor.username,
        address: c.var.actor?.address ?? null,
        subject: session.mqttClientId,
        details: { username: session.username, remoteAddress: session.remoteAddress, transport: session.transport, node: session.node },
      }),
  };
}

/** The administrator making the request (every route here needs one). */
export function actorOf(c: Context<AppEnv>) {
  return { username: c.var.administrator?.username ?? 'unknown' };
}

/** `/connections`: the live sessions of every node, and Disconnect. */
export function connectionRoutes(options: { log: (message: string) => void }) {
  const routes = new Hono<AppEnv>();

  routes.get('/', async (c) => {
    const request = sessionRequestFrom({
      q: c.req.query('q'),
      order: c.req.query('order'),
      after: c.req.query('after'),
      before: c.req.query('before'),
      page: c.req.query('page'),
      group: c.req.query('group'),
    });
    const page = await listConnections(directoryOf(c), request);
    const names = await getClientNames(c.var.db, page.sessions.map((s) => s.clientRowId));
    const notice = c.req.query('disconnected') === '1' ? 'The session was disconnected.' : undefined;
    const groups = (await listGroupChoices(c.var.db)).map((g) => g.name);
    return c.html(<ConnectionsPage page={page} names={names} notice={notice} groups={groups} />);
  });

  routes.get('/:session/disconnect', async (c) => {
    const session = await findSession(c);
    if (!session) return c.html(<SessionEndedPage />, 404);
    const names = await getClientNames(c.var.db, [session.clientRowId]);
    return c.html(<DisconnectSessionPage session={session} name={names.get(session.clientRowId)} />);
  });

  routes.post('/:session/disconnect', async (c) => {
    const id = parseSessionId(c.req.param('session'));
    const ended = id === null ? null : await disconnectSession(disconnectDeps(c, options.log), actorOf(c), id);
    if (!ended) return c.html(<SessionEndedPage />, 404);
    return redirectAfterPost(c, '/connections?disconnected=1');
  });

  // From the row menu (htmx): the row goes, the notice says what happened.
  routes.delete('/:session', async (c) => {
    const id = parseSessionId(c.req.param('session'));
    const ended = id === null ? null : await disconnectSession(disconnectDeps(c, options.log), actorOf(c), id);
    const message = ended ? `Disconnected “${ended.mqttClientId}” (username ${ended.username}).` : 'That session had already ended.';
    if (!isHtmx(c)) return ended ? redirectAfterPost(c, '/connections?disconnected=1') : c.html(<SessionEndedPage />, 404);
    return c.html(
      <hx-partial hx-target="#connections-notice" hx-swap="innerHTML">
        <Notice message={message} />
      </hx-partial>,
    );
  });

  return routes;
}

/** The session a path names, wherever it is (looked up through a one-row window of every node). */
async function findSession(c: Context<AppEnv>): Promise<LiveSession | null> {
  const id = parseSessionId(c.req.param('session'));
  if (id === null) return null;
  return findSessionById(directoryOf(c), id);
}

async function findSessionById(directory: SessionDirectory, id: string): Promise<LiveSession | null> {
  // Sessions are ordered by (connectedAt, id); scanning every node for one id
  // is a search over a window of the whole list, so ask for it by id.
  const window = await directory.window({ query: '', order: 'oldest', limit: 1, sessionId: id });
  return window.sessions.find((s) => s.id === id) ?? null;
}
