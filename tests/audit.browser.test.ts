import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { Gatehouse } from '../src/server';
import { signInBrowser } from './support/admin';
import { accessibilityViolations, browserAvailable, launchBrowser, openPage as openAnonymousPage } from './support/browser';
import { startTestGatehouse } from './support/gatehouse';

describe.runIf(browserAvailable)('audit trail page in Chromium', () => {
  let gatehouse: Gatehouse;
  let browser: Browser;
  let base: string;

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    base = `http://127.0.0.1:${gatehouse.httpPort}`;
    browser = await launchBrowser();
    const at = Date.parse('2025-04-02T09:00:00.000Z');
    gatehouse.audit.record({ kind: 'mqtt.publish_refused', actor: 'pump-1', subject: 'plant/valve', details: { clientId: 'pump-1' }, address: '192.0.2.10', at: new Date(at) });
    gatehouse.audit.record({ kind: 'mqtt.subscribe_refused', actor: 'pump-2', subject: 'plant/#', details: { clientId: 'pump-2' }, address: '192.0.2.11', at: new Date(at + 60_000) });
    gatehouse.audit.record({ kind: 'console.sign_in_failed', actor: 'mallory', subject: 'mallory', details: { reason: 'bad_credentials' }, address: '203.0.113.5', at: new Date(at + 120_000) });
    await gatehouse.audit.flush();
  });
  afterAll(async () => {
    await browser?.close();
    await gatehouse?.close();
  });

  async function openPage(javaScriptEnabled: boolean) {
    const opened = await openAnonymousPage(browser, { javaScriptEnabled });
    await signInBrowser(opened.context, base, gatehouse.database.db);
    return opened;
  }

  const subjects = (page: Page) => page.locator('#audit-results tbody tr td:nth-child(4)').allTextContents();

  for (const javaScriptEnabled of [true, false]) {
    it(`filters by kind and by text ${javaScriptEnabled ? 'with htmx' : 'without JavaScript'}, by keyboard`, async () => {
      const { context, page, problems } = await openPage(javaScriptEnabled);
      try {
        await page.goto(`${base}/audit`);
        if (javaScriptEnabled) expect(await accessibilityViolations(page)).toEqual([]); // axe needs JavaScript
        expect(await page.getByRole('link', { name: 'Audit trail' }).getAttribute('aria-current')).toBe('page');
        // It opens on the console's changes; the broker's refusals and everything are views of their own.
        const changes = await subjects(page);
        expect(changes).toContain('mallory');
        expect(changes).not.toContain('plant/valve');
        await page.getByRole('navigation', { name: 'Audit views' }).getByRole('link', { name: 'Everything' }).click();
        await page.waitForURL(`${base}/audit?view=all`);
        expect(await subjects(page)).toEqual(expect.arrayContaining(['plant/valve', 'plant/#', 'mallory']));

        // With htmx the results are swapped in place: the page (and this mark) stays.
        if (javaScriptEnabled) await page.evaluate(() => Object.assign(window, { auditMark: true }));
        await page.getByLabel('Kind').selectOption({ label: 'MQTT publish refused' });
        await page.getByRole('button', { name: 'Filter', exact: true }).click();
        await page.waitForURL(/view=all&kind=mqtt\.publish_refused/);
        await expect.poll(() => subjects(page)).toEqual(['plant/valve']);
        expect(await page.getByRole('link', { name: 'Download CSV' }).getAttribute('href')).toBe('/audit.csv?view=all&kind=mqtt.publish_refused');

        // Back to all kinds, then a text search submitted with Enter.
        await page.getByLabel('Kind').selectOption({ label: 'All kinds' });
        await page.getByLabel('Text').fill('203.0.113');
        await page.getByLabel('Text').press('Enter');
        await page.waitForURL(/q=203\.0\.113/);
        await expect.poll(() => subjects(page)).toEqual(['mallory']);
        expect(await page.getByRole('cell', { name: 'reason: bad_credentials' }).count()).toBe(1);
        expect(await page.getByLabel('Text').inputValue()).toBe('203.0.113');
        if (javaScriptEnabled) expect(await accessibilityViolations(page)).toEqual([]); // axe needs JavaScript

        await page.getByLabel('Text').fill('nothing-like-this');
        await page.getByRole('button', { name: 'Filter', exact: true }).click();
        await page.getByText('No event matches these filters.').waitFor();
        if (javaScriptEnabled) expect(await page.evaluate(() => (window as unknown as { auditMark?: boolean }).auditMark)).toBe(true);
        expect(problems()).toEqual([]);
      } finally {
        await context.close();
      }
    });
  }

  it('downloads the filtered CSV', async () => {
    const { context, page } = await openPage(true);
    try {
      await page.goto(`${base}/audit?view=refusals&actor=pump-2`);
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download CSV' }).click()]);
      const path = await download.path();
      const { readFile } = await import('node:fs/promises');
      const text = await readFile(path, 'utf8');
      expect(text.split('\r\n').filter(Boolean)).toEqual([
        'time,kind,actor,subject,address,count,details',
        '2025-04-02T09:01:00.000Z,mqtt.subscribe_refused,pump-2,plant/#,192.0.2.11,1,"{""clientId"":""pump-2""}"',
      ]);
    } finally {
      await context.close();
    }
  });
});
