import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import {
  disconnectSession,
  formatSessionCursor,
  listConnections,
  noSessions,
  parseSessionId,
  sessionRequestFrom,
  type DisconnectDeps,
  type SessionDirectory,
} from '../../domain/connections';
import { loadOverview } from '../../domain/overview';
import { requireScope, type ApiEnv } from './auth';
import { dateTime, scope, type Api } from './common';
import { ApiProblem, problems } from './problems';

export const sessionSchema = z
  .object({
    id: z.string().openapi({ description: '`<node>.<sequence>`: names the node that holds it.' }),
    node: z.string(),
    mqttClientId: z.string(),
    clientRowId: z.number().int(),
    username: z.string(),
    remoteAddress: z.string().nullable(),
    transport: z.enum(['tcp', 'ws', 'tls', 'wss']),
    keepaliveS: z.number().int(),
    connectedAt: z.number().int().openapi({ description: 'Milliseconds since the epoch.' }),
    subscriptions: z.number().int(),
    subscriptionFilters: z.array(z.string()).optional().openapi({ description: 'Its first 5 subscription filters.' }),
    messagesIn: z.number().int().optional().openapi({ description: 'PUBLISH packets it sent (allowed or refused).' }),
    bytesIn: z.number().int().optional().openapi({ description: 'Their payload bytes.' }),
    messagesOut: z.number().int().optional().openapi({ description: 'Messages sent to it.' }),
    bytesOut: z.number().int().optional().openapi({ description: 'Their payload bytes.' }),
    groups: z.array(z.string()),
    tlsVersion: z.string().nullable().optional(),
    certFingerprint: z.string().nullable().optional(),
  })
  .openapi('Session');

export function directoryOfApi(c: Context<ApiEnv>): SessionDirectory {
  return c.var.live.sessions ?? noSessions;
}

/** A disconnect through the API: every node's sessions, logged and audited with the token's name. */
export function disconnectDepsOf(c: Context<ApiEnv>, log: (message: string) => void): DisconnectDeps {
  return {
    directory: directoryOfApi(c),
    log,
    ended: (session) =>
      c.var.audit.record({
        kind: 'mqtt.disconnected',
        actor: c.var.token.name,
        address: c.var.actor?.address ?? null,
        subject: session.mqttClientId,
        details: { username: session.username, remoteAddress: session.remoteAddress, transport: session.transport, node: session.node, via: 'API token' },
      }),
  };
}

const countsSchema = z
  .object({
    clients: z.number().int(),
    groups: z.number().int(),
    nodes: z.number().int(),
    connections: z.number().int().nullable().openapi({ description: 'Open MQTT connections on every node; null before anything is known.' }),
    messagesInPerSecond: z.number().nullable(),
    messagesOutPerSecond: z.number().nullable(),
    refusedConnects: z.number().int().openapi({ description: 'Refused CONNECTs in the last hour.' }),
    refusals: z.number().int().openapi({ description: 'Publishes and subscriptions refused by the permissions in the last hour.' }),
    at: dateTime,
  })
  .openapi('Overview');

export function registerLiveRoutes(api: Api, deps: { log: (message: string) => void }) {
  api.openapi(
    createRoute({
      method: 'get',
      path: '/connections',
      tags: ['Connections'],
      summary: 'Live MQTT sessions of every node, 50 a page, by key',
      security: scope('connections', 'read'),
      request: {
        query: z.object({
          q: z.string().max(200).optional().openapi({ description: 'Text found in the MQTT client id or the username.' }),
          order: z.enum(['newest', 'oldest']).optional(),
          after: z.string().max(120).optional().openapi({ description: 'The `next` of the page before.' }),
          before: z.string().max(120).optional().openapi({ description: 'The `previous` of the page after.' }),
          last: z.enum(['true']).optional(),
        }),
      },
      responses: {
        200: {
          description: 'A page of sessions.',
          content: {
            'application/json': {
              schema: z
                .object({
                  items: z.array(sessionSchema),
                  total: z.number().int(),
                  next: z.string().nullable(),
                  previous: z.string().nullable(),
                  missing: z.string().nullable().openapi({ description: 'Set when some node could not be asked.' }),
                })
                .openapi('SessionPage'),
            },
          },
        },
        ...problems(401, 403, 422, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'connections', 'read');
      const query = c.req.valid('query');
      const request = sessionRequestFrom({ q: query.q, order: query.order, after: query.after, before: query.before, page: query.last ? 'last' : undefined });
      if ((query.after && !request.after) || (query.before && !request.before)) throw new ApiProblem(422, 'This cursor is not one the API gave.', { [query.after ? 'after' : 'before']: 'Pass a page’s cursor as it came.' });
      const page = await listConnections(directoryOfApi(c), request);
      return c.json(
        {
          items: page.sessions,
          total: page.total,
          next: page.next ? formatSessionCursor(page.next) : null,
          previous: page.previous ? formatSessionCursor(page.previous) : null,
          missing: page.missing,
        },
        200,
      );
    },
  );

  api.openapi(
    createRoute({
      method: 'delete',
      path: '/connections/{session}',
      tags: ['Connections'],
      summary: 'Disconnect one session, on whichever node holds it',
      security: scope('connections', 'write'),
      request: { params: z.object({ session: z.string().max(90).openapi({ param: { name: 'session', in: 'path' }, example: 'node-a.12' }) }) },
      responses: { 200: { description: 'The session ended.', content: { 'application/json': { schema: z.object({ disconnected: sessionSchema }) } } }, ...problems(401, 403, 404, 429) },
    }),
    async (c) => {
      requireScope(c, 'connections', 'write');
      const id = parseSessionId(c.req.valid('param').session);
      const ended = id === null ? null : await disconnectSession(disconnectDepsOf(c, deps.log), { username: c.var.token.name }, id);
      if (!ended) throw new ApiProblem(404, 'No node holds this session (it has ended).');
      return c.json({ disconnected: ended }, 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'get',
      path: '/overview',
      tags: ['Overview'],
      summary: 'The overview’s figures now',
      description: 'Any valid token may read them: counts only.',
      security: [{ bearerToken: [] }],
      responses: { 200: { description: 'Figures.', content: { 'application/json': { schema: countsSchema } } }, ...problems(401, 429) },
    }),
    async (c) => {
      const now = new Date();
      const counts = await loadOverview(c.var.db, { now, local: await c.var.live.thisNode?.() });
      return c.json(
        {
          clients: counts.clients,
          groups: counts.groups,
          nodes: counts.nodes,
          connections: counts.connections,
          messagesInPerSecond: counts.messagesInPerSecond,
          messagesOutPerSecond: counts.messagesOutPerSecond,
          refusedConnects: counts.authFailuresLastHour,
          refusals: counts.refusalsLastHour,
          at: now.toISOString(),
        },
        200,
      );
    },
  );
}
