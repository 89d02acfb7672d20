import type { TestProject } from 'vitest/node';
import { pgliteTemplate } from './pgliteTemplate';

/** Once per `vitest` run, before any test file: the migrated embedded database the tests copy. */
export async function setup(project: TestProject): Promise<void> {
  await pgliteTemplate();
  // Watch mode: a changed migration gets its template before the files run again.
  project.onTestsRerun(async () => {
    await pgliteTemplate();
  });
}
