/**
 * Optional parts of the suite (PostgreSQL, Chromium) skip with a loud notice
 * on a machine that lacks them, except under CI=true, where their absence
 * fails the run.
 */
export const inCI = process.env.CI === 'true' || process.env.CI === '1';

export function requireOrSkip(what: string, available: boolean, howToEnable: string): boolean {
  if (available) return true;
  const message = `${what} is not available: ${howToEnable}`;
  if (inCI) throw new Error(`${message} (required under CI=true)`);
  console.warn(`\n${'!'.repeat(78)}\n!! SKIPPING ${message}\n${'!'.repeat(78)}\n`);
  return false;
}
