import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGroup } from '../src/domain/groups';
import type { Gatehouse } from '../src/server';
import { signInBrowser } from './support/admin';
import { appendRules } from './support/acl';
import { accessibilityViolations, browserAvailable, launchBrowser, openPage as openAnonymousPage } from './support/browser';
import { startTestGatehouse } from './support/gatehouse';

/** The group rules page with many rules: search, Save in view, and no change lost by leaving. */
describe.runIf(browserAvailable)('group rules page in Chromium', { timeout: 180_000 }, () => {
  let gatehouse: Gatehouse;
  let browser: Browser;
  let base: string;

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    base = `http://127.0.0.1:${gatehouse.httpPort}`;
    const db = gatehouse.database.db;
    const plant = await createGroup(db, { name: 'Plant', permissions: [] });
    const office = await createGroup(db, { name: 'Office', permissions: [] });
    await appendRules(
      db,
      Array.from({ length: 30 }, (_, i) => ({ matchBy: 'client_id', value: `line-${i}-*`, groups: [String(i % 3 === 0 ? office.id : plant.id)] })),
    );
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await gatehouse?.close();
  });

  async function openPage(javaScriptEnabled = true) {
    const opened = await openAnonymousPage(browser, { viewport: { width: 1280, height: 700 }, javaScriptEnabled });
    await signInBrowser(opened.context, base, gatehouse.database.db);
    return opened;
  }

  const visibleValues = (page: import('playwright-core').Page) =>
    page.locator('#rules-form tbody tr:visible input[type=text]').evaluateAll((inputs) => inputs.map((input) => (input as HTMLInputElement).value));

  it('narrows the rows as the operator types, keeps Save in view, and counts the rules per group', async () => {
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/group-rules`);
      expect(await page.locator('.rule-counts').innerText()).toBe('Rules per group: Office 10 · Plant 20');
      // Thirty rows are taller than the window: Save rules is still on screen.
      const save = page.getByRole('button', { name: 'Save rules' });
      const box = (await save.boundingBox())!;
      expect(box.y + box.height).toBeLessThanOrEqual(700);
      await page.getByRole('searchbox', { name: 'Search the group rules' }).fill('line-2');
      await expect.poll(() => visibleValues(page)).toEqual(['line-2-*', ...Array.from({ length: 10 }, (_, i) => `line-2${i}-*`)]);
      // The other rows are still in the form.
      expect(await page.locator('#rules-form tbody tr').count()).toBe(30);
      await page.getByRole('searchbox', { name: 'Search the group rules' }).fill('office');
      await expect.poll(async () => (await visibleValues(page)).length).toBe(10);
      expect(await accessibilityViolations(page)).toEqual([]);
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('asks before leaving with changes not saved, and not after Save', async () => {
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/group-rules`);
      await page.locator('#rule-4-value').fill('renamed-*');
      await page.locator('#rule-4-value').blur();
      const dialogs: string[] = [];
      page.on('dialog', (dialog) => {
        dialogs.push(dialog.type());
        void dialog.dismiss();
      });
      await page.getByRole('link', { name: 'Groups', exact: true }).click();
      await expect.poll(() => dialogs).toEqual(['beforeunload']);
      expect(page.url()).toBe(`${base}/group-rules`);
      expect(await page.locator('#rule-4-value').inputValue()).toBe('renamed-*');
      await page.getByRole('button', { name: 'Save rules' }).click();
      await page.waitForURL(`${base}/group-rules?saved=1`);
      expect(dialogs).toEqual(['beforeunload']);
      expect(await page.locator('#rule-4-value').inputValue()).toBe('renamed-*');
      // Nothing changed since: leaving asks nothing.
      await page.getByRole('link', { name: 'Groups', exact: true }).click();
      await page.waitForURL(`${base}/groups`);
      expect(dialogs).toEqual(['beforeunload']);
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('narrows the rows without JavaScript too, and saves the hidden ones as they are', async () => {
    const { context, page } = await openPage(false);
    try {
      await page.goto(`${base}/group-rules`);
      await page.getByRole('searchbox', { name: 'Search the group rules' }).fill('line-1');
      await page.getByRole('button', { name: 'Search', exact: true }).click();
      await page.waitForURL(`${base}/group-rules?q=line-1`);
      expect(await visibleValues(page)).toEqual(['line-1-*', ...Array.from({ length: 10 }, (_, i) => `line-1${i}-*`)]);
      await page.locator('#rule-1-value').fill('line-1-new-*');
      await page.getByRole('button', { name: 'Save rules' }).click();
      await page.waitForURL(`${base}/group-rules?saved=1`);
      expect(await page.locator('#rules-form tbody tr').count()).toBe(30);
      expect(await page.locator('#rule-1-value').inputValue()).toBe('line-1-new-*');
      expect(await page.locator('#rule-29-value').inputValue()).toBe('line-29-*');
    } finally {
      await context.close();
    }
  });
});
