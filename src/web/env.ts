import type { Database } from '../db';

/** What every route can read from `c.var`. */
export interface AppEnv {
  Variables: {
    db: Database;
  };
}
