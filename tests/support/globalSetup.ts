import type { TestProject } from 'vitest/node';
import { pgliteTemplate } from './pgliteTemplate';
import { postgresTemplate } from './postgresTemplate';

/**
 * Once per `vitest` run, before any test file: the migrated databases the
 * tests copy (embedded, and on TEST_DATABASE_URL's server when set).
 */
export async function setup(project: TestProject): Promise<void> {
  const makeTemplates = async () => {
    await pgliteTemplate();
    if (process.env.TEST_DATABASE_URL) await postgresTemplate(process.env.TEST_DATABASE_URL);
  };
  await makeTemplates();
  // Watch mode: a changed migration gets its templates before the files run again.
  project.onTestsRerun(makeTemplates);
}
