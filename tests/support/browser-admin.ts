import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';
import { requireOrSkip } from './env';

/**
 * Debian's Chromium, driven by playwright-core (Playwright cannot download a
 * browser here). A small launcher of the administrators suite; the shared one
 * is tests/support/browser.ts once it lands.
 */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const chromiumAvailable = requireOrSkip(
  `Chromium (${CHROMIUM_PATH})`,
  existsSync(CHROMIUM_PATH),
  'apt-get install chromium (or set CHROMIUM_PATH) to run the browser tests',
);

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-gpu'],
  });
}
