import type { Database } from '../db';

/** Live broker state the console shows; absent when no broker runs (some tests). */
export interface LiveState {
  sessionsByClient(): ReadonlyMap<number, number>;
}

/** What every route can read from `c.var`. */
export interface AppEnv {
  Variables: {
    db: Database;
    live: LiveState;
  };
}
