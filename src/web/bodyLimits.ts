import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';

/** A limit for the request bodies of the paths under `prefix` (`/login` covers `/login` and `/login/…`). */
export interface BodyLimitRule {
  prefix: string;
  maxBytes: number;
}

/** The largest file an import reads. */
export const IMPORT_MAX_BYTES = 64 * 1024 * 1024;

/**
 * The console's request-body limits. The pages open to anyone (sign-in, the
 * setup link) take a few KB: a username, a password and a token. The
 * certificate upload takes three PEM files of up to 64 KB each. Every other
 * form (the largest is a long Group rules page) fits in the default.
 */
export const CONSOLE_BODY_LIMITS: readonly BodyLimitRule[] = [
  { prefix: '/login', maxBytes: 8 * 1024 },
  { prefix: '/setup', maxBytes: 8 * 1024 },
  { prefix: '/logout', maxBytes: 8 * 1024 },
  { prefix: '/certificates', maxBytes: 256 * 1024 },
  // A fleet's export: 100,000 clients with Argon2id hashes are about 15 MB.
  { prefix: '/api/v1/import', maxBytes: IMPORT_MAX_BYTES },
  { prefix: '/transfer/import', maxBytes: IMPORT_MAX_BYTES },
];

/** Every other route's limit. */
export const DEFAULT_BODY_LIMIT_BYTES = 1024 * 1024;

function covers(prefix: string, path: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`);
}

/**
 * Refuses a body larger than its path's limit with 413 before any of it is
 * parsed: a declared Content-Length is judged before a byte is read, a chunked
 * body is counted as it arrives and cut off at the limit. The connection is
 * closed after the answer, so the rest of a large body is not read either.
 * The most specific rule wins.
 */
export function bodyLimits(options: {
  rules?: readonly BodyLimitRule[];
  defaultMaxBytes?: number;
  refuse: (c: Context, maxBytes: number) => Response | Promise<Response>;
}): MiddlewareHandler {
  const rules = [...(options.rules ?? CONSOLE_BODY_LIMITS)].sort((a, b) => b.prefix.length - a.prefix.length);
  const defaultMaxBytes = options.defaultMaxBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const limiters = new Map<number, MiddlewareHandler>();
  const limiterFor = (maxBytes: number): MiddlewareHandler => {
    let limiter = limiters.get(maxBytes);
    if (!limiter) {
      limiter = bodyLimit({
        maxSize: maxBytes,
        onError: async (c) => {
          c.header('Connection', 'close');
          return options.refuse(c, maxBytes);
        },
      });
      limiters.set(maxBytes, limiter);
    }
    return limiter;
  };
  return async (c, next) => {
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    const path = c.req.path;
    const rule = rules.find((candidate) => covers(candidate.prefix, path));
    return limiterFor(rule?.maxBytes ?? defaultMaxBytes)(c, next);
  };
}

/** "8 KB", "1 MB": a limit as an error page says it. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MB`;
  return `${Math.round(bytes / 1024)} KB`;
}
