import { createRoute, z } from '@hono/zod-openapi';
import { disconnectGroupSessions } from '../../domain/connections';
import { createGroup, deleteGroup, getGroup, listGroups, MAX_PERMISSIONS_PER_GROUP, permissionSchema, updateGroup, type GroupWithPermissions } from '../../domain/groups';
import { listGroupRules, MAX_GROUP_RULES, replaceGroupRules, rulesRevision, ruleValueText, type GroupRule } from '../../domain/groupRules';
import { requireScope } from './auth';
import { dateTime, expectedVersion, idempotencyHeader, idempotent, idParam, ifMatchHeader, scope, versionTag, type Api } from './common';
import { disconnectDepsOf, sessionSchema } from './live';
import { ApiProblem, problems } from './problems';

// The domain's own schema (made before @hono/zod-openapi extends zod, so
// without `.openapi()`): documented inline where it is used.
const permission = permissionSchema;

const groupSchema = z
  .object({
    id: z.number().int(),
    name: z.string(),
    description: z.string(),
    version: z.number().int().openapi({ description: 'Changes on every edit; the ETag is "v<version>".' }),
    createdAt: dateTime,
    updatedAt: dateTime,
    permissions: z.array(permission),
  })
  .openapi('Group');

const groupBody = z
  .object({
    name: z.string().max(100),
    description: z.string().max(500).optional(),
    permissions: z.array(permission).max(MAX_PERMISSIONS_PER_GROUP).optional(),
  })
  .openapi('GroupInput', { description: 'The whole group: its permission rows replace the old ones, in this order.' });

const ruleSchema = z
  .object({
    matchBy: z.enum(['client', 'client_id', 'certificate']),
    value: z.string().openapi({ description: 'By client: its username. By client id: the id, or a pattern with `*`. By certificate: the SHA-256 fingerprint.' }),
    groups: z.array(z.object({ id: z.number().int(), name: z.string() })),
  })
  .openapi('GroupRule');

const rulesBody = z
  .object({
    rules: z
      .array(
        z.object({
          matchBy: z.enum(['client', 'client_id', 'certificate']),
          value: z.string().max(300),
          groups: z.array(z.number().int().positive()).min(1).max(1000).openapi({ description: 'Group ids.' }),
        }),
      )
      .max(MAX_GROUP_RULES),
  })
  .openapi('GroupRulesInput', { description: 'Every rule, in order: they replace the saved ones, all or none.' });

export function toApiGroup(group: GroupWithPermissions) {
  return {
    id: group.id,
    name: group.name,
    description: group.description,
    version: group.version,
    createdAt: group.createdAt.toISOString(),
    updatedAt: group.updatedAt.toISOString(),
    permissions: group.permissions,
  };
}

function toApiRule(rule: GroupRule) {
  return { matchBy: rule.matchBy, value: ruleValueText(rule), groups: rule.groups };
}

const NO_GROUP = 'There is no group with this id (it may have been deleted).';

export function registerGroupRoutes(api: Api, deps: { log: (message: string) => void }) {
  api.openapi(
    createRoute({
      method: 'get',
      path: '/groups',
      tags: ['Groups'],
      summary: 'List groups by name (50 a page), with row and rule counts',
      security: scope('groups', 'read'),
      request: {
        query: z.object({
          q: z.string().max(200).optional().openapi({ description: 'Text found, in any case, in the name.' }),
          page: z.string().regex(/^[1-9][0-9]{0,5}$/).optional().openapi({ description: 'The page number, from 1 (as the console’s Groups pages).' }),
        }),
      },
      responses: {
        200: {
          description: 'A page of groups.',
          content: {
            'application/json': {
              schema: z
                .object({
                  items: z.array(groupSchema.omit({ permissions: true }).extend({ permissionCount: z.number().int(), ruleCount: z.number().int() })),
                  total: z.number().int(),
                  page: z.number().int(),
                  pageCount: z.number().int(),
                })
                .openapi('GroupPage'),
            },
          },
        },
        ...problems(401, 403, 422, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'groups', 'read');
      const query = c.req.valid('query');
      const result = await listGroups(c.var.db, { query: query.q ?? '', page: query.page ? Number(query.page) : 1 });
      return c.json(
        {
          items: result.groups.map((g) => ({ ...g, createdAt: g.createdAt.toISOString(), updatedAt: g.updatedAt.toISOString() })),
          total: result.total,
          page: result.page,
          pageCount: result.pageCount,
        },
        200,
      );
    },
  );

  api.openapi(
    createRoute({
      method: 'post',
      path: '/groups',
      tags: ['Groups'],
      summary: 'Create a group with its permission rows',
      security: scope('groups', 'write'),
      request: { headers: idempotencyHeader, body: { required: true, content: { 'application/json': { schema: groupBody } } } },
      responses: { 201: { description: 'Created.', content: { 'application/json': { schema: groupSchema } } }, ...problems(401, 403, 409, 415, 422, 429) },
    }),
    async (c) => {
      requireScope(c, 'groups', 'write');
      const body = c.req.valid('json');
      return idempotent(c, body, deps.log, async () => {
        const group = await createGroup(c.var.db, body, c.var.actor);
        c.header('ETag', versionTag(group.version));
        return { body: toApiGroup(group), location: `/api/v1/groups/${group.id}` };
      }) as never;
    },
  );

  api.openapi(
    createRoute({
      method: 'get',
      path: '/groups/{id}',
      tags: ['Groups'],
      summary: 'Read a group and its permission rows',
      security: scope('groups', 'read'),
      request: { params: idParam },
      responses: { 200: { description: 'The group; `ETag` is its version.', content: { 'application/json': { schema: groupSchema } } }, ...problems(401, 403, 404, 429) },
    }),
    async (c) => {
      requireScope(c, 'groups', 'read');
      const group = await getGroup(c.var.db, c.req.valid('param').id);
      if (!group) throw new ApiProblem(404, NO_GROUP);
      c.header('ETag', versionTag(group.version));
      return c.json(toApiGroup(group), 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'put',
      path: '/groups/{id}',
      tags: ['Groups'],
      summary: 'Replace a group’s name, description and permission rows',
      description: 'Sessions keep the permissions they connected with until they reconnect (or POST /groups/{id}/disconnect).',
      security: scope('groups', 'write'),
      request: { params: idParam, headers: ifMatchHeader, body: { required: true, content: { 'application/json': { schema: groupBody } } } },
      responses: { 200: { description: 'As saved.', content: { 'application/json': { schema: groupSchema } } }, ...problems(401, 403, 404, 409, 412, 415, 422, 429) },
    }),
    async (c) => {
      requireScope(c, 'groups', 'write');
      const version = expectedVersion(c.req.header('if-match'));
      const updated = await updateGroup(c.var.db, c.req.valid('param').id, { ...c.req.valid('json'), version }, c.var.actor);
      if (!updated) throw new ApiProblem(404, NO_GROUP);
      c.header('ETag', versionTag(updated.version));
      return c.json(toApiGroup(updated), 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'delete',
      path: '/groups/{id}',
      tags: ['Groups'],
      summary: 'Delete a group (rules lose it; a rule left with no group goes)',
      security: scope('groups', 'write'),
      request: { params: idParam, headers: ifMatchHeader },
      responses: {
        200: {
          description: 'Deleted.',
          content: { 'application/json': { schema: z.object({ deleted: groupSchema.omit({ permissions: true }), rulesChanged: z.array(z.string()) }).openapi('DeletedGroup') } },
        },
        ...problems(401, 403, 404, 412, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'groups', 'write');
      const { id } = c.req.valid('param');
      const version = expectedVersion(c.req.header('if-match'));
      const deleted = await deleteGroup(c.var.db, id, c.var.actor, version === undefined ? undefined : Number(version));
      if (!deleted) throw new ApiProblem(404, NO_GROUP);
      const { group } = deleted;
      return c.json(
        { deleted: { ...group, createdAt: group.createdAt.toISOString(), updatedAt: group.updatedAt.toISOString() }, rulesChanged: deleted.change?.details ?? [] },
        200,
      );
    },
  );

  api.openapi(
    createRoute({
      method: 'post',
      path: '/groups/{id}/disconnect',
      tags: ['Groups', 'Connections'],
      summary: 'Disconnect every session holding this group’s permissions, on every node (apply a change now)',
      security: scope('connections', 'write'),
      request: { params: idParam },
      responses: { 200: { description: 'The sessions ended.', content: { 'application/json': { schema: z.object({ disconnected: z.array(sessionSchema) }) } } }, ...problems(401, 403, 404, 429) },
    }),
    async (c) => {
      requireScope(c, 'connections', 'write');
      const group = await getGroup(c.var.db, c.req.valid('param').id);
      if (!group) throw new ApiProblem(404, NO_GROUP);
      const ended = await disconnectGroupSessions(disconnectDepsOf(c, deps.log), { username: c.var.token.name }, group.name);
      return c.json({ disconnected: ended }, 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'get',
      path: '/group-rules',
      tags: ['Group rules'],
      summary: 'Every group rule, in order',
      security: scope('groups', 'read'),
      responses: {
        200: {
          description: 'The rules; `ETag` is their revision.',
          content: { 'application/json': { schema: z.object({ revision: z.string(), rules: z.array(ruleSchema) }).openapi('GroupRules') } },
        },
        ...problems(401, 403, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'groups', 'read');
      const rules = await listGroupRules(c.var.db);
      const revision = rulesRevision(rules);
      c.header('ETag', `"${revision}"`);
      return c.json({ revision, rules: rules.map(toApiRule) }, 200);
    },
  );

  api.openapi(
    createRoute({
      method: 'put',
      path: '/group-rules',
      tags: ['Group rules'],
      summary: 'Replace every group rule, all or none',
      description: 'Send `If-Match` with the revision read: rules changed meanwhile answer 412 and nothing is saved.',
      security: scope('groups', 'write'),
      request: { headers: ifMatchHeader, body: { required: true, content: { 'application/json': { schema: rulesBody } } } },
      responses: {
        200: { description: 'As saved.', content: { 'application/json': { schema: z.object({ revision: z.string(), rules: z.array(ruleSchema) }) } } },
        ...problems(401, 403, 409, 412, 415, 422, 429),
      },
    }),
    async (c) => {
      requireScope(c, 'groups', 'write');
      const header = c.req.header('if-match');
      const expected = header === undefined || header.trim() === '*' ? undefined : /^\s*(?:W\/)?"([A-Za-z0-9_-]{1,64})"\s*$/.exec(header)?.[1];
      if (header !== undefined && header.trim() !== '*' && expected === undefined) throw new ApiProblem(412, 'If-Match names no revision of the rules: read them again and retry.');
      const { rules } = c.req.valid('json');
      if (expected !== undefined && rulesRevision(await listGroupRules(c.var.db)) !== expected) {
        throw new ApiProblem(412, 'Someone else changed the group rules since that revision was read: nothing was saved.');
      }
      const saved = await replaceGroupRules(
        c.var.db,
        rules.map((r) => ({ matchBy: r.matchBy, value: r.value, groups: r.groups.map(String) })),
        expected,
        c.var.actor,
      );
      const revision = rulesRevision(saved);
      c.header('ETag', `"${revision}"`);
      return c.json({ revision, rules: saved.map(toApiRule) }, 200);
    },
  );
}
