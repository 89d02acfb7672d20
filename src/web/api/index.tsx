import { OpenAPIHono } from '@hono/zod-openapi';
import { HTTPException } from 'hono/http-exception';
import type { FailureTracker } from '../../domain/passwordGate';
import { ApiReferencePage } from '../../../views/apiReference';
import type { TlsControl } from '../env';
import type { PipelineControl } from '../pipelines';
import { bearerToken, jsonBodiesOnly, type ApiEnv } from './auth';
import { registerClientRoutes } from './clients';
import { registerGroupRoutes } from './groups';
import { registerLiveRoutes } from './live';
import { registerPipelineRoutes } from './pipelines';
import { registerRecordRoutes } from './records';
import { IMPORT_BODY_TYPES, registerTransferRoutes } from './transfer';
import { problemFromError, problemResponse, zodFieldErrors } from './problems';

export interface ApiDeps {
  /** Failed token attempts per address (shared through Redis with several nodes). */
  failures: FailureTracker;
  trustProxy: boolean;
  log: (message: string) => void;
  tls?: TlsControl;
  /** Pipelines at run time and SECRET_KEY for their secrets, as the console has them. */
  pipelines?: PipelineControl;
}

/** Where the API lives: fixed, operators' scripts use it. */
export const API_BASE = '/api/v1';

/**
 * `/api/v1`: the console's domain functions behind bearer tokens, as JSON.
 * Request schemas are the zod schemas that validate them, and the OpenAPI
 * 3.1 document (`/api/v1/openapi.json`) is generated from the very same
 * routes. Errors are RFC 9457 problem details.
 */
export function apiRoutes(deps: ApiDeps) {
  const api = new OpenAPIHono<ApiEnv>({
    defaultHook: (result, c) => {
      if (!result.success) return problemResponse(c, 422, 'The request is not valid: see errors.', zodFieldErrors(result.error));
    },
  });
  api.onError((error, c) => {
    if (error instanceof HTTPException) return problemResponse(c, error.status as 400, error.message || 'The request could not be read.');
    return problemFromError(error, c, deps.log);
  });

  // The document and its reference page are public: they describe, never show data.
  api.get('/reference', (c) => c.html(<ApiReferencePage document={document()} />));
  api.use('*', async (c, next) => {
    if (c.req.path === `${API_BASE}/openapi.json` || c.req.path === `${API_BASE}/reference`) return next();
    return bearerToken({ failures: deps.failures, trustProxy: deps.trustProxy })(c, next);
  });
  const importBodies = jsonBodiesOnly(IMPORT_BODY_TYPES);
  const otherBodies = jsonBodiesOnly();
  api.use('*', (c, next) => (c.req.path === `${API_BASE}/import` ? importBodies(c, next) : otherBodies(c, next)));

  api.openAPIRegistry.registerComponent('securitySchemes', 'bearerToken', {
    type: 'http',
    scheme: 'bearer',
    description: 'An API token from the console’s API tokens page (`gat_…`). Each operation names the scope it needs (`clients:read`, `groups:write`, `pipelines:read`…); write includes read.',
  });
  registerClientRoutes(api, deps);
  registerGroupRoutes(api, deps);
  registerLiveRoutes(api, deps);
  registerRecordRoutes(api, deps);
  registerPipelineRoutes(api, deps);
  registerTransferRoutes(api);

  const config = {
    openapi: '3.1.0',
    info: {
      title: 'Gatehouse API',
      version: '1',
      description:
        'Everything the console manages, as JSON. Authenticate with `Authorization: Bearer <token>`. Errors are RFC 9457 problem details (`application/problem+json`) naming the field that failed. Lists page by key (`next`/`previous` cursors). Updates honour `If-Match` (ETag); creates honour `Idempotency-Key`.',
    },
    servers: [{ url: API_BASE }],
  };
  let cached: ReturnType<typeof api.getOpenAPI31Document> | undefined;
  const document = () => (cached ??= api.getOpenAPI31Document(config));
  api.get('/openapi.json', (c) => c.json(document()));
  api.all('*', (c) => problemResponse(c, 404, 'There is no such API route: see /api/v1/openapi.json.'));
  return api;
}
