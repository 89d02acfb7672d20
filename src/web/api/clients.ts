import { createRoute, z } from '@hono/zod-openapi';
import { decide, type Decision } from '../../domain/access/acl';
import type { AccessSnapshot } from '../../domain/access/types';
import { normalizeFingerprint } from '../../domain/certificates';
import {
  clientNameSchema,
  createClient,
  deleteClient,
  formatClientCursor,
  getClient,
  listClients,
  parseClientCursor,
  updateClient,
  usernameSchema,
  type Client,
} from '../../domain/clients';
import { disconnectClientSessions, listConnections, CONNECTIONS_PAGE_SIZE } from '../../domain/connections';
import { MAX_CLIENT_ID_PATTERN_LENGTH } from '../../domain/groupRules';
import { generatedPasswordToken, generatePassword, isImportedPasswordFormat, PASSWORD_FORMATS, type PasswordFormat } from '../../domain/password';
import { clientPasswordFormat } from '../../domain/rehash';
import { topicFilterProblem, topicNameProblem } from '../../domain/topics';
import { requireScope } from './auth';
import { dateTime, expectedVersion, idempotencyHeader, idempotent, idParam, ifMatchHeader, scope, versionTag, type Api } from './common';
import { disconnectDepsOf, sessionSchema, directoryOfApi } from './live';
import { ApiProblem, problems } from './problems';

const authType = z.enum(['password', 'certificate', 'certificate_password']);

const clientFields = z.object({
  id: z.number().int(),
  name: z.string(),
  authType,
  username: z.string(),
  certFingerprint: z.string().nullable(),
  version: z.number().int().openapi({ description: 'Changes on every edit; the ETag is "v<version>".' }),
  createdAt: dateTime,
  updatedAt: dateTime,
  lastSeenAt: dateTime.nullable(),
});

export const clientSchema = clientFields
  .extend({
    passwordFormat: z.enum(Object.keys(PASSWORD_FORMATS) as [PasswordFormat, ...PasswordFormat[]]).openapi({
      description:
        'How the password is stored: argon2id (typed), generated (HMAC-SHA256 of a generated password), none (a certificate client), or a format an import brought (bcrypt, mosquitto-pbkdf2, emqx-sha256…) until the device’s first successful CONNECT replaces it with Argon2id. That replacement changes neither the version nor the ETag: nothing an operator set changed.',
    }),
    passwordImported: z.boolean().openapi({ description: 'True while the password is still an imported hash (see passwordFormat).' }),
  })
  .openapi('Client');

const createdClientSchema = clientSchema
  .extend({ password: z.string().optional().openapi({ description: 'Only when generatePassword was asked: shown this once, never again.' }) })
  .openapi('CreatedClient');

const credentialFields = {
  authType: authType.optional().openapi({ description: 'Default: password.' }),
  password: z.string().max(256).optional().openapi({ description: 'A password typed by a person: stored as an Argon2id hash.' }),
  generatePassword: z
    .boolean()
    .optional()
    .openapi({ description: 'Generate a strong password (24 characters, about 145 bits), stored in the fast format and returned once in the answer.' }),
  fingerprint: z.string().max(200).optional().openapi({ description: 'Certificate clients: the SHA-256 fingerprint of their certificate.' }),
  certificate: z.string().max(64 * 1024).optional().openapi({ description: 'Certificate clients: their certificate as PEM (wins over fingerprint).' }),
};

const createClientBody = z.object({ name: clientNameSchema, username: usernameSchema, ...credentialFields }).openapi('NewClient');
const updateClientBody = z
  .object({ name: clientNameSchema.optional(), username: usernameSchema.optional(), ...credentialFields })
  .openapi('ClientChanges', { description: 'Fields left out keep their value; an empty or absent password keeps the current one.' });

const listedClientSchema = z
  .object({
    id: z.number().int(),
    name: z.string(),
    authType,
    username: z.string(),
    updatedAt: dateTime,
    lastSeenAt: dateTime.nullable(),
    groups: z.array(z.string()).openapi({ description: 'Groups given by rules that name this client (rules by client id apply at CONNECT).' }),
  })
  .openapi('ListedClient');

const clientPageSchema = z
  .object({
    items: z.array(listedClientSchema),
    total: z.number().int(),
    totalIsLowerBound: z.boolean().openapi({ description: 'A search counts its matches up to 1,000.' }),
    next: z.string().nullable().openapi({ description: 'Pass as `after` for the next page; null at the end.' }),
    previous: z.string().nullable().openapi({ description: 'Pass as `before` for the previous page; null at the start.' }),
  })
  .openapi('ClientPage');

const cursorText = z.string().max(420).optional();

const grantedPermissionSchema = z
  .object({
    group: z.string(),
    position: z.number().int(),
    effect: z.enum(['allow', 'deny']),
    action: z.enum(['publish', 'subscribe']),
    topic: z.string().openapi({ description: 'As written, %u and %c included.' }),
    filter: z.string().nullable().openapi({ description: 'After %u/%c substitution; null: the row matches nothing.' }),
  })
  .openapi('GrantedPermission');

const accessSchema = z
  .object({
    clientId: z.string().nullable(),
    groups: z.array(z.object({ id: z.number().int(), name: z.string(), via: z.array(z.object({ id: z.number().int(), matchBy: z.string(), value: z.string() })) })),
    permissions: z.array(grantedPermissionSchema),
    unresolvedRules: z.array(z.object({ id: z.number().int(), matchBy: z.string(), value: z.string() })),
    decision: z
      .object({
        allowed: z.boolean(),
        reason: z.string().openapi({ description: 'allowed, denied, no_match or reserved.' }),
        decidedBy: grantedPermissionSchema.nullable().openapi({ description: 'The permission row that decided; null when none matched.' }),
      })
      .nullable()
      .openapi({ description: 'Present when a topic was asked.' }),
  })
  .openapi('Access');

/** A client as the API answers it; `format` is how its password is stored now (clientPasswordFormat). */
export function toApiClient(client: Client, format: PasswordFormat) {
  return {
    ...toApiClientFields(client),
    passwordFormat: format,
    passwordImported: isImportedPasswordFormat(format),
  };
}

/** A client without its password format (one just deleted has none). */
function toApiClientFields(client: Client) {
  return {
    id: client.id,
    name: client.name,
    authType: client.authType,
    username: client.username,
    certFingerprint: client.certFingerprint,
    version: client.version,
    createdAt: client.createdAt.toISOString(),
    updatedAt: client.updatedAt.toISOString(),
    lastSeenAt: client.lastSeenAt?.toISOString() ?? null,
  };
}

function permissionOf(p: AccessSnapshot['permissions'][number]) {
  return { group: p.groupName, position: p.position, effect: p.effect, action: p.action, topic: p.topic, filter: p.filter };
}

function accessOf(access: AccessSnapshot, decision: Decision | undefined) {
  const rule = (r: { id: number; matchBy: string; value: string }) => ({ id: r.id, matchBy: r.matchBy, value: r.value });
  return {
    clientId: access.mqttClientId ?? null,
    groups: access.groups.map((g) => ({ id: g.id, name: g.name, via: g.via.map(rule) })),
    permissions: access.permissions.map(permissionOf),
    unresolvedRules: access.unresolvedRules.map(rule),
    decision: decision
      ? { allowed: decision.allowed, reason: decision.reason, decidedBy: 'permission' in decision && decision.permission ? permissionOf(decision.permission) : null }
      : null,
  };
}

/** How a client's password is stored now; a client deleted meanwhile is a 404. */
async function formatOf(c: { var: { db: import('../../db').Database } }, id: number): Promise<PasswordFormat> {
  const format = await clientPasswordFormat(c.var.db, id);
  if (!format) throw new ApiProblem(404, 'There is no client with this id (it may have been deleted).');
  return format;
}

async function findClient(c: { var: { db: import('../../db').Database } }, id: number): Promise<Client> {
  const client = await getClient(c.var.db, id);
  if (!client) throw new ApiProblem(404, 'There is no client with this id (it may have been deleted).');
  return client;
}

/** The password fields of a body as the domain's client form takes them: a generated one comes with its token. */
function passwordFields(body: { password?: string; generatePassword?: boolean }): { password?: string; password_generated?: string; generated?: string } {
  if (body.generatePassword) {
    if (body.password) throw new ApiProblem(422, 'Give a password or ask for a generated one, not both.', { password: 'Leave it out when generatePassword is true.' });
    const password = generatePassword();
    return { password, password_generated: generatedPasswordToken(password), generated: password };
  }
  return { password: body.password ?? '' };
}

export function registerClientRoutes(api: Api, deps: { log: (message: string) => void }) {
  api.openapi(
    createRoute({
      method: 'get',
      path: '/clients',
      tags: ['Clients'],
      summary: 'List clients by name, with search and paging by key',
      security: scope('clients', 'read'),
      request: {
        query: z.object({
          q: z.string().max(200).optional().openapi({ description: 'Text found, in any case, in the name or the username.' }),
          after: cursorText.openapi({ description: 'The `next` of the page before.' }),
          before: cursorText.openapi({ description: 'The `previous` of the page after.' }),
          last: z.enum(['true']).optional().openapi({ description: 'The last page.' }),
        }),
      },
      responses: { 200: { description: 'A page of 50 clients.', content: { 'application/json': { schema: clientPageSchema } } }, ...problems(401, 403, 422, 429) },
    }),
    async (c) => {
      requireScope(c, 'clients', 'read');
      const query = c.req.valid('query');
      const after = query.after === undefined ? undefined : parseClientCursor(query.after);
      const before = query.before === undefined ? undefined : parseClientCursor(query.before);
      if (after === null) throw new ApiProblem(422, 'This cursor is not one the API gave.', { after: 'Pass the `next` of a page as it came.' });
      if (before === null) throw new ApiProblem(422, 'This cursor is not one the API gave.', { before: 'Pass the `previous` of a page as it came.' });
      const page = await listClients(c.var.db, { query: query.q ?? '', after, before, page: query.last ? 'last' : undefined });
      return c.json(
        {
          items: page.clients.map((client) => ({
            id: client.id,
            name: client.name,
            authType: client.authType,
            username: client.username,
            updatedAt: client.updatedAt.toISOString(),
            lastSeenAt: client.lastSeenAt?.toISOString() ?? null,
            groups: page.access.groupsByClient.get(client.id) ?? [],
          })),
          total: page.total,
          totalIsLowerBound: page.totalIsLowerBound,
          next: page.next ? formatClientCursor(page.next) : null,
          previous: page.previous ? formatClientCursor(page.previous) : null,
        },
        200,
      );
    },
  );

  api.openapi(
    createRoute({
      method: 'post',
      path: '/clients',
      tags: ['Clients'],
      summary: 'Create a client',
      security: scope('clients', 'write'),
      request: { headers: idempotencyHeader, body: { required: true, content: { 'application/json': { schema: createClientBody } } } },
      responses: {
        201: { description: 'Created; `Location` names it.', content: { 'application/json': { schema: createdClientSchema } } },
        ...problems(401, 403, 409, 415, 422, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'clients', 'write');
      const body = c.req.valid('json');
      return idempotent(c, body, deps.log, async () => {
        const password = passwordFields(body);
        const client = await createClient(
          c.var.db,
          { name: body.name, username: body.username, authType: body.authType, password: password.password, password_generated: password.password_generated, fingerprint: body.fingerprint, certificate: body.certificate },
          c.var.actor,
        );
        c.header('ETag', versionTag(client.version));
        return { body: { ...toApiClient(client, await formatOf(c, client.id)), ...(password.generated ? { password: password.generated } : {}) }, location: `/api/v1/clients/${client.id}` };
      }) as never;
    },
  );

  api.openapi(
    createRoute({
      method: 'get',
      path: '/clients/{id}',
      tags: ['Clients'],
      summary: 'Read a client (never its password or hash)',
      security: scope('clients', 'read'),
      request: { params: idParam },
      responses: { 200: { description: 'The client; `ETag` is its version.', content: { 'application/json': { schema: clientSchema } } }, ...problems(401, 403, 404, 429) },
    }),
    async (c) => {
      requireScope(c, 'clients', 'read');
      const client = await findClient(c, c.req.valid('param').id);
      c.header('ETag', versionTag(client.version));
      return c.json(toApiClient(client, await formatOf(c, client.id)), 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'patch',
      path: '/clients/{id}',
      tags: ['Clients'],
      summary: 'Change a client',
      description: 'Devices already connected keep their session; the change applies at their next CONNECT (or disconnect them: POST /clients/{id}/disconnect).',
      security: scope('clients', 'write'),
      request: { params: idParam, headers: ifMatchHeader, body: { required: true, content: { 'application/json': { schema: updateClientBody } } } },
      responses: {
        200: { description: 'The client as saved.', content: { 'application/json': { schema: createdClientSchema } } },
        ...problems(401, 403, 404, 409, 412, 415, 422, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'clients', 'write');
      const { id } = c.req.valid('param');
      const version = expectedVersion(c.req.header('if-match'));
      const body = c.req.valid('json');
      const current = await findClient(c, id);
      const password = passwordFields(body);
      const updated = await updateClient(
        c.var.db,
        id,
        {
          name: body.name ?? current.name,
          username: body.username ?? current.username,
          authType: body.authType ?? current.authType,
          password: password.password,
          password_generated: password.password_generated,
          fingerprint: body.fingerprint,
          certificate: body.certificate,
          version,
        },
        c.var.actor,
      );
      if (!updated) throw new ApiProblem(404, 'There is no client with this id (it may have been deleted).');
      c.header('ETag', versionTag(updated.version));
      return c.json({ ...toApiClient(updated, await formatOf(c, updated.id)), ...(password.generated ? { password: password.generated } : {}) }, 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'delete',
      path: '/clients/{id}',
      tags: ['Clients'],
      summary: 'Delete a client (rules that name it go with it)',
      security: scope('clients', 'write'),
      request: { params: idParam, headers: ifMatchHeader },
      responses: {
        200: {
          description: 'Deleted.',
          content: { 'application/json': { schema: z.object({ deleted: clientFields, rulesRemoved: z.array(z.string()) }).openapi('DeletedClient') } },
        },
        ...problems(401, 403, 404, 412, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'clients', 'write');
      const { id } = c.req.valid('param');
      const version = expectedVersion(c.req.header('if-match'));
      const deleted = await deleteClient(c.var.db, id, c.var.actor, version === undefined ? undefined : Number(version));
      if (!deleted) throw new ApiProblem(404, 'There is no client with this id (it may have been deleted).');
      return c.json({ deleted: toApiClientFields(deleted), rulesRemoved: deleted.ruleChange?.details ?? [] }, 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'get',
      path: '/clients/{id}/access',
      tags: ['Clients'],
      summary: 'What a client may do: its groups, permissions, and the decision for a topic with the row that decided',
      description: 'The same functions the broker runs at CONNECT, PUBLISH and SUBSCRIBE.',
      security: scope('clients', 'read'),
      request: {
        params: idParam,
        query: z.object({
          clientId: z.string().max(MAX_CLIENT_ID_PATTERN_LENGTH).optional().openapi({ description: 'The MQTT client id the device connects with (rules by client id need it).' }),
          action: z.enum(['publish', 'subscribe']).optional(),
          topic: z.string().max(65535).optional().openapi({ description: 'A topic to publish to, or a filter to subscribe to.' }),
          fingerprint: z.string().max(200).optional().openapi({ description: 'Certificate clients: the certificate fingerprint (default: the client’s own).' }),
        }),
      },
      responses: { 200: { description: 'Access and decision.', content: { 'application/json': { schema: accessSchema } } }, ...problems(401, 403, 404, 422, 429) },
    }),
    async (c) => {
      requireScope(c, 'clients', 'read');
      const client = await findClient(c, c.req.valid('param').id);
      const query = c.req.valid('query');
      const errors: Record<string, string> = {};
      if (query.clientId?.includes('\u0000')) errors.clientId = 'A client ID cannot contain a NUL character.';
      if (query.topic !== undefined) {
        if (!query.clientId) errors.clientId ??= 'Give the MQTT client ID the device connects with.';
        if (!query.action) errors.action = 'Choose publish or subscribe.';
        const problem = (query.action ?? 'publish') === 'publish' ? topicNameProblem(query.topic) : topicFilterProblem(query.topic);
        if (problem) errors.topic = problem;
      }
      const fingerprintText = client.authType === 'password' ? undefined : (query.fingerprint ?? client.certFingerprint ?? undefined);
      const certFingerprint = fingerprintText ? (normalizeFingerprint(fingerprintText) ?? undefined) : undefined;
      if (fingerprintText && !certFingerprint) errors.fingerprint = 'Enter a SHA-256 fingerprint: 64 hexadecimal digits, colons allowed.';
      if (Object.keys(errors).length > 0) throw new ApiProblem(422, 'The check is not valid: see errors.', errors);
      const access = await c.var.access.accessOf({ clientRowId: client.id, username: client.username, mqttClientId: query.clientId || undefined, certFingerprint });
      const decision = query.topic !== undefined ? decide(access, query.action!, query.topic) : undefined;
      return c.json(accessOf(access, decision), 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'get',
      path: '/clients/{id}/sessions',
      tags: ['Clients', 'Connections'],
      summary: 'A client’s live sessions, on every node',
      security: scope('connections', 'read'),
      request: { params: idParam },
      responses: {
        200: { description: 'Up to 50 sessions, newest first.', content: { 'application/json': { schema: z.object({ items: z.array(sessionSchema), total: z.number().int() }) } } },
        ...problems(401, 403, 404, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'connections', 'read');
      const client = await findClient(c, c.req.valid('param').id);
      const page = await listConnections(directoryOfApi(c), { query: '', clientRowId: client.id, order: 'newest', limit: CONNECTIONS_PAGE_SIZE });
      return c.json({ items: page.sessions, total: page.total }, 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'post',
      path: '/clients/{id}/disconnect',
      tags: ['Clients', 'Connections'],
      summary: 'Disconnect every session of a client, on every node',
      security: scope('connections', 'write'),
      request: { params: idParam },
      responses: {
        200: { description: 'The sessions ended.', content: { 'application/json': { schema: z.object({ disconnected: z.array(sessionSchema) }) } } },
        ...problems(401, 403, 404, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'connections', 'write');
      const client = await findClient(c, c.req.valid('param').id);
      const ended = await disconnectClientSessions(disconnectDepsOf(c, deps.log), { username: c.var.token.name }, client.id);
      return c.json({ disconnected: ended }, 200);
    },
  );
}
