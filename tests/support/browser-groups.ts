import { existsSync } from 'node:fs';
import AxeBuilder from '@axe-core/playwright';
import { chromium, type Browser, type Page } from 'playwright-core';
import { requireOrSkip } from './env';

/**
 * A small Chromium launcher for the groups and group-rules browser tests
 * (the shared tests/support/browser.ts lands separately on main).
 */
export const CHROMIUM_PATH = '/usr/bin/chromium';

export const chromiumAvailable = requireOrSkip(
  `Chromium (${CHROMIUM_PATH})`,
  existsSync(CHROMIUM_PATH),
  'apt-get install chromium to run the browser tests of groups and group rules',
);

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-gpu'],
  });
}

/** Accessibility violations axe finds on the page as it is now (empty is good). */
export async function axeViolations(page: Page): Promise<Array<{ id: string; help: string; targets: string[] }>> {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations.map((v) => ({ id: v.id, help: v.help, targets: v.nodes.map((n) => n.target.join(' ')) }));
}
