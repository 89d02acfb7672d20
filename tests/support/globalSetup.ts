import { pgliteTemplate } from './pgliteTemplate';

/** Once per `vitest` run, before any test file: the migrated embedded database the tests copy. */
export async function setup(): Promise<void> {
  await pgliteTemplate();
}
