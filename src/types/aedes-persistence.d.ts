// The Aedes persistences ship no types; Aedes' own `persistence` option types what they return.
declare module 'aedes-persistence-level' {
  import type { AbstractLevel } from 'abstract-level';
  const create: (db: AbstractLevel<string | Uint8Array, string, Uint8Array>) => unknown;
  export default create;
}

declare module 'aedes-persistence-redis' {
  import type { Redis } from 'ioredis';
  const create: (options: { conn?: Redis; maxSessionDelivery?: number }) => unknown;
  export default create;
}
