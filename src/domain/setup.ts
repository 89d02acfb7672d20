import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ConfigError } from '../config';
import type { Database } from '../db';
import { type Administrator, countAdministrators, createFirstAdministrator } from './administrators';
import { ValidationError } from './errors';

/**
 * The one-time token of the setup link. Only its SHA-256 is kept, in memory:
 * a restart without an administrator prints a new link and the old one dies.
 */
export interface SetupToken {
  /** True while the token has not been used and `candidate` is it. */
  matches(candidate: unknown): boolean;
  /** Makes the token useless from now on. */
  consume(): void;
}

export function createSetupToken(token: string): SetupToken {
  let hash: Buffer | null = createHash('sha256').update(token).digest();
  return {
    matches(candidate) {
      if (!hash || typeof candidate !== 'string' || candidate.length === 0 || candidate.length > 200) return false;
      return timingSafeEqual(hash, createHash('sha256').update(candidate).digest());
    },
    consume() {
      hash = null;
    },
  };
}

export type FirstRun =
  | { kind: 'ready' }
  | { kind: 'created-from-environment'; administrator: Administrator }
  | { kind: 'setup-link'; token: string; setup: SetupToken };

/**
 * At start: with no administrator, ADMIN_USERNAME + ADMIN_PASSWORD create
 * one (a bad value stops start with a ConfigError naming it); without them a
 * one-time setup token is made for the link the process prints.
 */
export async function prepareFirstAdministrator(
  db: Database,
  env: { ADMIN_USERNAME?: string; ADMIN_PASSWORD?: string },
): Promise<FirstRun> {
  if (Boolean(env.ADMIN_USERNAME) !== Boolean(env.ADMIN_PASSWORD)) {
    throw new ConfigError(
      `Invalid configuration:\n  ${env.ADMIN_USERNAME ? 'ADMIN_PASSWORD' : 'ADMIN_USERNAME'}: set ADMIN_USERNAME and ADMIN_PASSWORD together (or neither)`,
    );
  }
  if ((await countAdministrators(db)) > 0) return { kind: 'ready' };
  if (env.ADMIN_USERNAME && env.ADMIN_PASSWORD) {
    try {
      const administrator = await createFirstAdministrator(
        db,
        { username: env.ADMIN_USERNAME, password: env.ADMIN_PASSWORD },
        { username: null, via: 'ADMIN_USERNAME and ADMIN_PASSWORD' },
      );
      return administrator ? { kind: 'created-from-environment', administrator } : { kind: 'ready' };
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      const names: Record<string, string> = { username: 'ADMIN_USERNAME', password: 'ADMIN_PASSWORD' };
      const lines = Object.entries(error.fieldErrors).map(([field, message]) => `  ${names[field] ?? field}: ${message}`);
      throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
    }
  }
  const token = randomBytes(32).toString('base64url');
  return { kind: 'setup-link', token, setup: createSetupToken(token) };
}
