import type { Database } from '../db';

/** What every route can read from `c.var`. */
export interface AppEnv {
  Variables: {
    db: Database;
    /** The signed-in administrator (set on every route but the public ones). */
    administrator?: { id: number; username: string };
    /** SHA-256 of the current session token, to end or replace this session. */
    sessionTokenHash?: string;
  };
}
