import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { listClients } from '../src/domain/clients';
import { signInBrowser } from './support/admin';
import { accessibilityViolations, browserAvailable, launchBrowser, openPage as openAnonymousPage } from './support/browser';
import { startTestGatehouse } from './support/gatehouse';

describe.runIf(browserAvailable)('the Import and export page in Chromium', { timeout: 120_000 }, () => {
  let gatehouse: Awaited<ReturnType<typeof startTestGatehouse>>;
  let browser: Browser;
  let base: string;
  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    base = `http://127.0.0.1:${gatehouse.httpPort}`;
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await gatehouse?.close();
  });

  for (const javaScriptEnabled of [true, false]) {
    it(`uploads a file, shows the dry run, then imports it ${javaScriptEnabled ? 'with upload progress' : 'without JavaScript'}`, async () => {
      const { context, page, problems } = await openAnonymousPage(browser, { javaScriptEnabled });
      try {
        await signInBrowser(context, base, gatehouse.database.db);
        await page.goto(`${base}/transfer`);
        // axe runs inside the page: only where scripts may.
        if (javaScriptEnabled) expect(await accessibilityViolations(page)).toEqual([]);
        const prefix = javaScriptEnabled ? 'js' : 'plain';
        const csv = `name,username,password\n${prefix} one,${prefix}-1,${prefix}-one-secret\n${prefix} two,${prefix}-2,${prefix}-two-secret\n`;
        const chooseFile = () => page.locator('#file').setInputFiles({ name: 'clients.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
        await chooseFile();
        await page.locator('#format').selectOption('csv');
        await page.getByRole('button', { name: 'Dry run' }).click();
        await page.getByRole('heading', { name: 'Dry run: nothing was written' }).waitFor();
        expect(await page.getByRole('status').first().textContent()).toContain('2 to create');
        expect((await listClients(gatehouse.database.db, { query: `${prefix}-` })).total).toBe(0);
        if (javaScriptEnabled) expect(await accessibilityViolations(page)).toEqual([]);
        if (javaScriptEnabled) {
          // The progress bar went in with the answer's page: it was shown, and the page was swapped, not reloaded.
          expect(page.url()).toBe(`${base}/transfer`);
        }
        await chooseFile();
        await page.locator('#format').selectOption('csv');
        await page.getByRole('button', { name: 'Import', exact: true }).click();
        await page.getByRole('heading', { name: 'Imported' }).waitFor();
        expect((await listClients(gatehouse.database.db, { query: `${prefix}-` })).total).toBe(2);
        expect(problems()).toEqual([]);
      } finally {
        await context.close();
      }
    });
  }
});
