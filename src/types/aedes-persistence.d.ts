// The Aedes persistences ship no types; Aedes' own `persistence` option types what they return.
declare module 'aedes-persistence-level' {
  /** A LevelDB handle, or anything with its get/put/del/batch/clear/values/close. */
  const create: (db: unknown) => unknown;
  export default create;
}

declare module 'aedes-persistence-redis' {
  import type { Redis } from 'ioredis';
  const create: (options: { conn?: Redis; maxSessionDelivery?: number }) => unknown;
  export default create;
}

declare module 'aedes-persistence-level/asyncPersistence.js' {
  export default class AsyncLevelPersistence {
    constructor(db: unknown);
  }
}

declare module 'aedes-persistence/abstract.js' {
  const abstractPersistence: (options: { test: unknown; testAsync?: boolean; persistence(): unknown }) => void;
  export default abstractPersistence;
}
