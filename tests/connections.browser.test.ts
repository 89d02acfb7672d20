import type { Browser } from 'playwright-core';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../src/domain/clients';
import type { Gatehouse } from '../src/server';
import { signInBrowser } from './support/admin';
import { accessibilityViolations, browserAvailable, launchBrowser, openPage as openAnonymousPage } from './support/browser';
import { grantGroup } from './support/acl';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient } from './support/mqtt';

describe.runIf(browserAvailable)('Connections page in Chromium', { timeout: 120_000 }, () => {
  let gatehouse: Gatehouse;
  let browser: Browser;
  let base: string;
  const open: MqttClient[] = [];

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    base = `http://127.0.0.1:${gatehouse.httpPort}`;
    browser = await launchBrowser();
    await createClient(gatehouse.database.db, { name: 'Garden pump', username: 'pump', password: 'pump-password' });
    await grantGroup(gatehouse.database.db, { name: 'Garden', permissions: [['allow', 'subscribe', 'garden/#']], usernames: ['pump'] });
  });
  afterAll(async () => {
    await Promise.all(open.map((client) => endClient(client)));
    await browser?.close();
    await gatehouse?.close();
  });

  async function openPage(options: Parameters<typeof openAnonymousPage>[1] = {}) {
    const opened = await openAnonymousPage(browser, options);
    await signInBrowser(opened.context, base, gatehouse.database.db);
    return opened;
  }
  const device = async (clientId: string) => {
    const client = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'pump', password: 'pump-password', clientId, keepalive: 20 });
    open.push(client);
    return client;
  };
  const closedByBroker = (client: MqttClient) => new Promise<void>((resolve) => (client.connected ? client.once('close', () => resolve()) : resolve()));

  it('shows a session that connects after the page opened, by itself, keeping the search', async () => {
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/connections`);
      await page.getByText('Nobody is connected right now.').waitFor();
      expect(await accessibilityViolations(page)).toEqual([]);
      await page.getByRole('searchbox', { name: 'Search connections' }).fill('pump-live');
      await page.waitForURL(`${base}/connections?q=pump-live&group=any`);
      await page.evaluate(() => ((window as unknown as { marker: boolean }).marker = true));

      await device('pump-live-1');
      await device('other-pump');
      // The refresh (every 5 s) brings it in without a page load, still filtered.
      await page.getByRole('rowheader', { name: 'pump-live-1' }).waitFor({ timeout: 20_000 });
      expect(await page.getByRole('rowheader', { name: 'other-pump' }).count()).toBe(0);
      expect(await page.evaluate(() => (window as unknown as { marker?: boolean }).marker)).toBe(true);
      const row = page.getByRole('row', { name: /pump-live-1/ });
      expect(await row.getByRole('cell', { name: 'Garden', exact: true }).count()).toBe(1);
      expect(await row.getByRole('cell', { name: '20 s' }).count()).toBe(1);
      expect(await accessibilityViolations(page)).toEqual([]);
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('disconnects a session through the row menu and its dialog, with JavaScript', async () => {
    const target = await device('pump-kick');
    const stays = await device('pump-stay');
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/connections?q=pump-`);
      await page.getByRole('button', { name: 'Actions for pump-kick' }).click();
      await page.getByRole('row', { name: /pump-kick/ }).getByRole('link', { name: 'Disconnect' }).click();
      const dialog = page.getByRole('dialog', { name: /Disconnect the session “pump-kick”/ });
      expect(await accessibilityViolations(page)).toEqual([]);
      // One confirmation style: the dialog's buttons as a confirmation page's footer, the way back first, the action last and marked.
      expect(await dialog.getByRole('button').allTextContents()).toEqual(['Cancel', 'Disconnect']);
      expect(await dialog.getByRole('button', { name: 'Disconnect' }).getAttribute('class')).toBe('danger');
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      await dialog.waitFor({ state: 'hidden' });
      expect(target.connected).toBe(true);

      // Cancelled, the menu stays open with its item focused.
      await page.getByRole('row', { name: /pump-kick/ }).getByRole('link', { name: 'Disconnect' }).click();
      const closed = closedByBroker(target);
      await dialog.getByRole('button', { name: 'Disconnect' }).click();
      await closed;
      await page.getByRole('rowheader', { name: 'pump-kick' }).waitFor({ state: 'detached' });
      await page.getByText('Disconnected “pump-kick” (username pump).').waitFor();
      expect(stays.connected).toBe(true);
      expect(await page.getByRole('rowheader', { name: 'pump-stay' }).count()).toBe(1);
      expect(page.url()).toBe(`${base}/connections?q=pump-`);
      // The confirmation page (the no-JavaScript path) passes axe too.
      const href = await page.getByRole('row', { name: /pump-stay/ }).getByRole('link', { name: 'Disconnect', includeHidden: true }).getAttribute('href');
      await page.goto(`${base}${href}`);
      await page.getByRole('heading', { name: 'Disconnect pump-stay?' }).waitFor();
      expect(await accessibilityViolations(page)).toEqual([]);
      expect(stays.connected).toBe(true);
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('deletes a connected client from its row menu, marked dangerous, and disconnects it when asked in the dialog', async () => {
    await createClient(gatehouse.database.db, { name: 'Old pump', username: 'old-pump', password: 'old-pump-password' });
    const old = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'old-pump', password: 'old-pump-password', clientId: 'old-pump-1' });
    open.push(old);
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/clients?q=pump`);
      await page.getByRole('button', { name: 'Actions for Old pump' }).click();
      const row = page.getByRole('row', { name: /Old pump/ });
      // Dangerous items stand apart, in the colour of deletions; Edit does not.
      const colour = (name: string) => row.getByRole('link', { name, exact: true }).evaluate((el) => getComputedStyle(el).color);
      const danger = await page.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue('--pico-del-color').trim());
      expect(await colour('Delete')).not.toBe(await colour('Edit'));
      expect(await row.getByRole('link', { name: 'Delete', exact: true }).evaluate((el) => el.closest('li')!.className)).toBe('danger-item');
      expect(danger).not.toBe('');
      await row.getByRole('link', { name: 'Delete', exact: true }).click();
      const dialog = page.getByRole('dialog', { name: /Delete the client “Old pump”/ });
      // The way back first, the action last; the option unticked.
      expect(await dialog.getByRole('button').allInnerTexts()).toEqual(['Cancel', 'Delete client']);
      const option = dialog.getByRole('checkbox', { name: 'Also disconnect its live session now' });
      expect(await option.isChecked()).toBe(false);
      expect(await accessibilityViolations(page)).toEqual([]);
      await option.check();
      const closed = closedByBroker(old);
      await dialog.getByRole('button', { name: 'Delete client' }).click();
      await closed;
      await page.getByText('Client “Old pump” deleted. Disconnected 1 session.').waitFor();
      await page.getByRole('rowheader', { name: 'Old pump' }).waitFor({ state: 'detached' });
      // Focus went to the table's region, not to the top of the page.
      await expect.poll(() => page.evaluate(() => document.activeElement?.getAttribute('aria-label'))).toBe('Clients table');
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('disconnects a session without JavaScript, through the confirmation page', async () => {
    const target = await device('pump-nojs');
    const { context, page } = await openPage({ javaScriptEnabled: false });
    try {
      await page.goto(`${base}/connections?q=pump-nojs`);
      await page.getByRole('button', { name: 'Actions for pump-nojs' }).click();
      await page.getByRole('row', { name: /pump-nojs/ }).getByRole('link', { name: 'Disconnect' }).click();
      await page.waitForURL(/\/connections\/[^/]+\/disconnect$/);
      const closed = closedByBroker(target);
      await page.getByRole('button', { name: 'Disconnect' }).click();
      await page.waitForURL(`${base}/connections?disconnected=1`);
      await closed;
      await page.getByText('The session was disconnected.').waitFor();
      // Without JavaScript, Refresh is a plain link that shows the table as it is now.
      await page.getByRole('link', { name: 'Refresh' }).click();
      expect(await page.getByRole('rowheader', { name: 'pump-nojs' }).count()).toBe(0);
    } finally {
      await context.close();
    }
  });

  it("disconnects all of a client's sessions from the clients table, and shows Last seen", async () => {
    const a = await device('pump-all-1');
    const b = await device('pump-all-2');
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/clients`);
      const row = page.getByRole('row', { name: /Garden pump/ });
      expect(await row.getByRole('cell', { name: 'connected' }).count()).toBe(1);
      expect(await accessibilityViolations(page)).toEqual([]);
      await page.getByRole('button', { name: 'Actions for Garden pump' }).click();
      await row.getByRole('link', { name: 'Disconnect all sessions' }).click();
      const closed = Promise.all([closedByBroker(a), closedByBroker(b)]);
      await page.getByRole('dialog', { name: /Disconnect every live session of the client “Garden pump”/ }).getByRole('button', { name: 'Disconnect all' }).click();
      await closed;
      await page.getByText(/Disconnected \d+ sessions of “Garden pump”\./).waitFor();
      expect(await row.getByRole('cell', { name: 'connected' }).count()).toBe(0);
      await gatehouse.lastSeen.flush();
      await page.reload();
      expect(await page.getByRole('row', { name: /Garden pump/ }).locator('time').first().textContent()).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d UTC$/);
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
