import type { TestProject } from 'vitest/node';
import { BUNDLE_ENV, buildBundle } from './process';

/**
 * The process project's global setup: `npm run build`'s bundle, built once
 * for the run (and again before each rerun in watch mode) instead of once
 * per test file; its workers read where from the environment they inherit.
 */
export function setup(project: TestProject): () => void {
  const bundle = buildBundle();
  process.env[BUNDLE_ENV] = bundle.main;
  project.onTestsRerun(() => {
    buildBundle();
  });
  return () => {
    delete process.env[BUNDLE_ENV];
    bundle.remove();
  };
}
