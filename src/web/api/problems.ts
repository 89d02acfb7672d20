import { z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ZodError } from 'zod';
import { isDatabaseUnavailable } from '../../db/errors';
import { ConflictError, ValidationError, type FieldErrors } from '../../domain/errors';

/**
 * Errors of the API as RFC 9457 problem details (`application/problem+json`):
 * `type`, `title`, `status`, `detail`, and for bad input `errors`, one per
 * field that failed (its name, a JSON pointer into the request, and why).
 */

export const problemSchema = z
  .object({
    type: z.string().openapi({ example: 'about:blank' }),
    title: z.string().openapi({ example: 'Unprocessable Content' }),
    status: z.number().int().openapi({ example: 422 }),
    detail: z.string().optional(),
    errors: z
      .array(z.object({ field: z.string(), pointer: z.string(), detail: z.string() }))
      .optional()
      .openapi({ description: 'One entry per field that failed.' }),
  })
  .openapi('Problem');

export type Problem = z.infer<typeof problemSchema>;

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  428: 'Precondition Required',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** A problem to answer with: thrown by handlers, turned into the response by `problemResponse`. */
export class ApiProblem extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly detail: string,
    readonly fieldErrors?: FieldErrors,
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

function toPointer(field: string): string {
  return field === 'form' ? '' : `#/${field.split('.').map((part) => part.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;
}

export function problemBody(status: number, detail: string, fieldErrors?: FieldErrors): Problem {
  const errors = fieldErrors ? Object.entries(fieldErrors).map(([field, message]) => ({ field, pointer: toPointer(field), detail: message })) : undefined;
  return { type: 'about:blank', title: TITLES[status] ?? 'Error', status, detail, ...(errors?.length ? { errors } : {}) };
}

export function problemResponse(c: Context, status: ContentfulStatusCode, detail: string, fieldErrors?: FieldErrors, headers: Record<string, string> = {}): Response {
  for (const [name, value] of Object.entries(headers)) c.header(name, value);
  c.header('Content-Type', 'application/problem+json');
  return c.body(JSON.stringify(problemBody(status, detail, fieldErrors)), status);
}

/** The field errors of a zod failure, keyed as the domain keys them (`rules.0.value`). */
export function zodFieldErrors(error: ZodError, prefix?: string): FieldErrors {
  const errors: FieldErrors = {};
  for (const issue of error.issues) {
    const path = issue.path.map(String).join('.');
    const field = [prefix, path].filter(Boolean).join('.') || 'body';
    errors[field] ??= issue.message;
  }
  return errors;
}

/** Any error a handler threw, as a problem (the database down is 503; anything unknown 500, logged). */
export function problemFromError(error: Error, c: Context, log: (message: string) => void): Response {
  if (error instanceof ApiProblem) return problemResponse(c, error.status, error.detail, error.fieldErrors, error.headers);
  if (error instanceof ValidationError) return problemResponse(c, 422, 'The request is not valid: see errors.', error.fieldErrors);
  if (error instanceof ConflictError) {
    const stale = error.field === 'form';
    return problemResponse(c, stale ? 412 : 409, error.message, stale ? undefined : error.fieldErrors);
  }
  if (isDatabaseUnavailable(error)) return problemResponse(c, 503, 'The database is unavailable; nothing was changed. Try again in a few seconds.', undefined, { 'Retry-After': '5' });
  log(`${c.req.method} ${new URL(c.req.url).pathname} failed: ${error.stack ?? error.message}`);
  return problemResponse(c, 500, 'The request could not be completed.');
}

/** The problem responses a route documents, by status. */
export function problems(...statuses: number[]) {
  return Object.fromEntries(
    statuses.map((status) => [status, { description: TITLES[status] ?? 'Error', content: { 'application/problem+json': { schema: problemSchema } } }]),
  ) as Record<number, { description: string; content: { 'application/problem+json': { schema: typeof problemSchema } } }>;
}
