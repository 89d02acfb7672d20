import { createHash } from 'node:crypto';
import { z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { TokenAccess, TokenResource } from '../../domain/apiTokens';
import { claimIdempotencyKey, completeIdempotencyKey } from '../../domain/apiTokens';
import type { ApiEnv } from './auth';
import { ApiProblem, problemFromError } from './problems';

export type Api = OpenAPIHono<ApiEnv>;

/** The security requirement of a route: the bearer token, with the scopes it needs named (all of them). */
export function scope(resource: TokenResource, access: TokenAccess, ...more: Array<`${TokenResource}:${TokenAccess}`>) {
  return [{ bearerToken: [`${resource}:${access}`, ...more] }];
}

export const idParam = z.object({
  id: z
    .string()
    .regex(/^[1-9][0-9]{0,9}$/, 'A positive integer.')
    .transform(Number)
    .refine((n) => n <= 2_147_483_647, 'Too large.')
    .openapi({ param: { name: 'id', in: 'path' }, example: '12' }),
});

export const dateTime = z.string().openapi({ format: 'date-time', example: '2026-01-31T12:00:00.000Z' });

/** `ETag` of a versioned record (a client, a group): `"v<version>"`. */
export function versionTag(version: number): string {
  return `"v${version}"`;
}

export const ifMatchHeader = z.object({
  'if-match': z
    .string()
    .optional()
    .openapi({ description: 'The ETag the change was based on: a change made meanwhile by someone else answers 412 and changes nothing.' }),
});

/**
 * The version an `If-Match` header names (`"v3"`, `W/"v3"`), undefined when
 * absent or `*`; a header naming no version of ours fails the precondition.
 */
export function expectedVersion(header: string | undefined): string | undefined {
  if (header === undefined || header.trim() === '*') return undefined;
  const match = /^\s*(?:W\/)?"v([0-9]{1,9})"\s*$/.exec(header);
  if (!match) throw new ApiProblem(412, 'If-Match names no version of this record: read it again (its ETag) and retry.');
  return match[1];
}

export const idempotencyHeader = z.object({
  'idempotency-key': z
    .string()
    .optional()
    .openapi({
      description:
        'Any unique text (at most 255 characters): a retry with the same key and body gets the first answer again instead of creating twice (kept 24 hours, per token), marked `Idempotent-Replayed: true`. A generated password is never kept: a replay answers without it (set a new one with `generatePassword`).',
    }),
});

/**
 * Runs a create once per `Idempotency-Key` (when the request has one): the
 * first request's answer, success or refusal, is kept and given again to a
 * retry with the same key and body; the same key with another body is
 * refused (422), and while the first is still running a retry gets 409.
 */
export async function idempotent<T>(
  c: Context<ApiEnv>,
  body: unknown,
  log: (message: string) => void,
  run: () => Promise<{ body: T; location: string }>,
): Promise<Response> {
  const key = c.req.header('idempotency-key');
  if (key === undefined) {
    const result = await run();
    c.header('Location', result.location);
    return c.json(result.body as object, 201);
  }
  if (!/^[\x21-\x7e]{1,255}$/.test(key)) throw new ApiProblem(400, 'Idempotency-Key must be 1 to 255 printable ASCII characters.');
  const tokenId = c.var.token.id;
  const { password, ...rest } = body as { password?: unknown };
  const digest = createHash('sha256').update(`${c.req.method} ${c.req.path}\n${JSON.stringify(rest)}`).digest('hex');
  const claim = await claimIdempotencyKey(c.var.db, tokenId, key, { digest, ...(typeof password === 'string' && password !== '' ? { password } : {}) });
  if (claim.kind === 'mismatch') throw new ApiProblem(422, 'This Idempotency-Key was already used with another request.');
  if (claim.kind === 'in-progress') throw new ApiProblem(409, 'A request with this Idempotency-Key is still being processed: retry in a moment.');
  if (claim.kind === 'replay') {
    c.header('Idempotent-Replayed', 'true');
    if (claim.location) c.header('Location', claim.location);
    if (claim.status >= 400) c.header('Content-Type', 'application/problem+json');
    return c.body(JSON.stringify(claim.response), claim.status as 201);
  }
  let response: Response;
  let location: string | null = null;
  try {
    const result = await run();
    location = result.location;
    c.header('Location', result.location);
    response = c.json(result.body as object, 201);
  } catch (error) {
    response = problemFromError(error as Error, c, log);
  }
  // A generated password is shown once: the kept answer (a database row for
  // 24 hours) never holds it, so a replay answers without it.
  const { password: _shownOnce, ...stored } = (await response.clone().json()) as Record<string, unknown>;
  await completeIdempotencyKey(c.var.db, tokenId, key, { status: response.status, response: stored, location });
  return response;
}

export type { ApiEnv };
