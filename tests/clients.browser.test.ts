import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { createClient, deleteClient, getClient, listClients } from '../src/domain/clients';
import { eq } from 'drizzle-orm';
import { schema } from '../src/db';
import type { Gatehouse } from '../src/server';
import { signInBrowser } from './support/admin';
import { accessibilityViolations, browserAvailable, launchBrowser, openPage as openAnonymousPage } from './support/browser';
import { grantGroup } from './support/acl';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient } from './support/mqtt';

describe.runIf(browserAvailable)('clients console in Chromium', () => {
  let gatehouse: Gatehouse;
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

  /** A page in a context signed in as an administrator (sign-in itself: tests/admin.browser.test.ts). */
  async function openPage(browser: Browser, options: Parameters<typeof openAnonymousPage>[1] = {}) {
    const opened = await openAnonymousPage(browser, options);
    await signInBrowser(opened.context, base, gatehouse.database.db);
    return opened;
  }

  it('creates a client on the New client page, with a generated password', async () => {
    const { context, page, problems } = await openPage(browser, { permissions: ['clipboard-read', 'clipboard-write'] });
    try {
      await page.goto(`${base}/clients`);
      expect(await accessibilityViolations(page)).toEqual([]);
      await page.getByRole('button', { name: 'New client' }).click();
      await page.waitForURL(`${base}/clients/new`);
      expect(await accessibilityViolations(page)).toEqual([]);

      await page.getByLabel('Client Name').fill('Browser made');
      await page.getByLabel('Username').fill('browser-made');
      await page.getByRole('button', { name: 'Generate strong password' }).click();
      // The server makes it (the button asks for it): wait for it to arrive.
      await expect.poll(() => page.getByLabel('Password').inputValue()).toMatch(/^.{24}$/);
      const generated = await page.getByLabel('Password').inputValue();
      await page.getByRole('button', { name: 'Copy' }).click();
      await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe(generated);

      await page.getByRole('button', { name: 'Create client' }).click();
      await page.waitForURL(/\/clients\/\d+$/);
      await page.getByText('Client “Browser made” created.').waitFor();

      // The generated password is the one saved, in the fast format (the
      // server made it), and a device can use it.
      const [row] = await gatehouse.database.db.select({ hash: schema.clients.passwordHash }).from(schema.clients).where(eq(schema.clients.username, 'browser-made'));
      expect(row!.hash).toMatch(/^\$gh-hmac-sha256\$/);
      const device = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'browser-made', password: generated });
      await endClient(device);
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('shows the errors on the form and keeps what was typed', async () => {
    const { context, page, problems } = await openPage(browser);
    try {
      await page.goto(`${base}/clients/new`);
      await page.getByLabel('Client Name').fill('Kept name');
      await page.getByLabel('Username').fill('bad username');
      await page.getByLabel('Password').fill('short');
      await page.getByRole('button', { name: 'Create client' }).click();
      await page.getByText('Spaces and control characters are not allowed.').waitFor();
      expect(await page.getByLabel('Client Name').inputValue()).toBe('Kept name');
      expect(await page.getByLabel('Username').inputValue()).toBe('bad username');
      await expect.poll(() => page.getByText('Use at least 8 characters.').count()).toBe(1);
      expect(page.url()).toBe(`${base}/clients/new`);
      expect(await accessibilityViolations(page)).toEqual([]);
      // htmx swaps the 422 form in: no page load, no console error besides the 422 itself.
      expect(problems().filter((p) => !p.includes('422'))).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('edits a client in place and deletes another through the three-dot menu', async () => {
    const target = await createClient(gatehouse.database.db, { name: 'Menu target', username: 'menu-target', password: 'menu-password' });
    await createClient(gatehouse.database.db, { name: 'Menu victim', username: 'menu-victim', password: 'menu-password' });
    const { context, page, problems } = await openPage(browser);
    try {
      await page.goto(`${base}/clients`);
      await page.getByRole('button', { name: 'Actions for Menu target' }).click();
      await page.getByRole('link', { name: 'Edit' }).click();
      const form = page.getByRole('form', { name: 'Edit Menu target' });
      await form.waitFor();
      expect(page.url()).toBe(`${base}/clients`); // swapped in, no page load
      expect(await accessibilityViolations(page)).toEqual([]);
      await form.getByLabel('Client Name').fill('Menu target renamed');
      await form.getByRole('button', { name: 'Save' }).click();
      await page.getByRole('rowheader', { name: 'Menu target renamed' }).waitFor();
      expect((await getClient(gatehouse.database.db, target.id))?.name).toBe('Menu target renamed');

      await page.getByRole('button', { name: 'Actions for Menu victim' }).click();
      await page.getByRole('row', { name: /Menu victim/ }).getByRole('link', { name: 'Delete' }).click();
      // The confirmation is a <dialog>: Cancel keeps the row, Delete client removes it.
      const dialog = page.getByRole('dialog', { name: /Delete the client “Menu victim”/ });
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      await dialog.waitFor({ state: 'hidden' });
      expect((await listClients(gatehouse.database.db, { query: 'Menu victim' })).total).toBe(1);
      // Cancelled, the menu stays open with focus back on its item.
      const deleteItem = page.getByRole('row', { name: /Menu victim/ }).getByRole('link', { name: 'Delete' });
      await expect.poll(() => deleteItem.evaluate((el) => el === document.activeElement)).toBe(true);
      await deleteItem.click();
      expect(await accessibilityViolations(page)).toEqual([]);
      await dialog.getByRole('button', { name: 'Delete client' }).click();
      await page.getByRole('rowheader', { name: 'Menu victim' }).waitFor({ state: 'detached' });
      expect((await listClients(gatehouse.database.db, { query: 'Menu victim' })).total).toBe(0);
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('filters the table as the operator types, without a page load', async () => {
    await createClient(gatehouse.database.db, { name: 'Searchable alpha', username: 'search-alpha', password: 'search-password' });
    await createClient(gatehouse.database.db, { name: 'Searchable beta', username: 'search-beta', password: 'search-password' });
    const { context, page, problems } = await openPage(browser);
    try {
      await page.goto(`${base}/clients`);
      await page.evaluate(() => ((window as unknown as { marker: boolean }).marker = true));
      await page.getByRole('searchbox', { name: 'Search clients' }).fill('alpha');
      await page.getByRole('rowheader', { name: 'Searchable beta' }).waitFor({ state: 'detached' });
      expect(await page.getByRole('rowheader', { name: 'Searchable alpha' }).count()).toBe(1);
      expect(await page.getByText('1 client matches “alpha”.').count()).toBe(1);
      expect(page.url()).toBe(`${base}/clients?q=alpha`);
      expect(await page.evaluate(() => (window as unknown as { marker?: boolean }).marker)).toBe(true); // same page
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('pages through a long search with Next, Previous, Last and First, with and without JavaScript', async () => {
    await gatehouse.database.db.insert(schema.clients).values(
      Array.from({ length: 60 }, (_, i) => ({ name: `Zz paged ${String(i).padStart(2, '0')}`, username: `zz-paged-${i}`, passwordHash: 'not-a-real-hash' })),
    );
    const paged = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `Zz paged ${String(from + i).padStart(2, '0')}`);
    for (const javaScriptEnabled of [true, false]) {
      const { context, page, problems } = await openPage(browser, { javaScriptEnabled });
      try {
        await page.goto(`${base}/clients?q=zz+paged`);
        const names = () => page.getByRole('rowheader').allTextContents();
        const pages = page.getByRole('navigation', { name: 'Pages' });
        expect(await names()).toEqual(paged(0, 50));
        expect(await pages.getByText('1–50 of 60').count()).toBe(1);
        if (javaScriptEnabled) expect(await accessibilityViolations(page)).toEqual([]);

        await pages.getByRole('link', { name: 'Next' }).click();
        await page.waitForURL(/after=/);
        expect(await names()).toEqual(paged(50, 60));
        expect(await pages.getByText('51–60 of 60').count()).toBe(1);
        expect(await pages.getByRole('link', { name: 'Next' }).count()).toBe(0);

        await pages.getByRole('link', { name: 'Previous' }).click();
        await page.waitForURL(/before=/);
        expect(await names()).toEqual(paged(0, 50));

        await pages.getByRole('link', { name: 'Last' }).click();
        await page.waitForURL(/page=last/);
        expect(await names()).toEqual(paged(50, 60));
        await pages.getByRole('link', { name: 'First' }).click();
        await page.waitForURL(`${base}/clients?q=zz+paged`);
        expect(await names()).toEqual(paged(0, 50));
        expect(problems()).toEqual([]);
      } finally {
        await context.close();
      }
    }
  });

  it('shows a client deleted meanwhile as a not-found page, not inside the table row', async () => {
    const gone = await createClient(gatehouse.database.db, { name: 'Deleted meanwhile', username: 'deleted-meanwhile', password: 'meanwhile-password' });
    const { context, page } = await openPage(browser);
    try {
      await page.goto(`${base}/clients?q=meanwhile`);
      await deleteClient(gatehouse.database.db, gone.id); // another operator, in another tab
      await page.getByRole('button', { name: 'Actions for Deleted meanwhile' }).click();
      await page.getByRole('link', { name: 'Edit' }).click();
      await page.getByText('This client does not exist (it may have been deleted).').waitFor();
      expect(await page.locator('main').count()).toBe(1);
      expect(await page.locator('table').count()).toBe(0);
      expect(await page.locator('header nav').count()).toBe(1);
    } finally {
      await context.close();
    }
  });

  it('opens the row menu and edits by keyboard alone', async () => {
    await createClient(gatehouse.database.db, { name: 'Keyboard only', username: 'keyboard-only', password: 'keyboard-password' });
    const { context, page } = await openPage(browser);
    try {
      await page.goto(`${base}/clients?q=keyboard`);
      const menu = page.getByRole('button', { name: 'Actions for Keyboard only' });
      await menu.focus();
      await page.keyboard.press('Enter');
      await page.keyboard.press('Tab');
      expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Edit');
      await page.keyboard.press('Enter');
      await page.getByRole('form', { name: 'Edit Keyboard only' }).waitFor();
    } finally {
      await context.close();
    }
  });

  it('works with JavaScript turned off: create, edit page, delete confirmation', async () => {
    const { context, page } = await openPage(browser, { javaScriptEnabled: false });
    try {
      await page.goto(`${base}/clients/new`);
      // Without JavaScript the generator stays hidden; the form still works.
      expect(await page.getByRole('button', { name: 'Generate strong password' }).isVisible()).toBe(false);
      await page.getByLabel('Client Name').fill('No script');
      await page.getByLabel('Username').fill('no script');
      await page.getByLabel('Password').fill('noscript-password');
      await page.getByRole('button', { name: 'Create client' }).click();
      await page.getByText('Spaces and control characters are not allowed.').waitFor();
      expect(await page.getByLabel('Client Name').inputValue()).toBe('No script');
      await page.getByLabel('Username').fill('no-script');
      await page.getByLabel('Password').fill('noscript-password');
      await page.getByRole('button', { name: 'Create client' }).click();
      await page.waitForURL(/\/clients\/\d+$/);
      await page.getByText('Client “No script” created.').waitFor();
      await page.goto(`${base}/clients`);

      await page.getByRole('button', { name: 'Actions for No script' }).click();
      await page.getByRole('row', { name: /No script/ }).getByRole('link', { name: 'Edit' }).click();
      await page.waitForURL(/\/clients\/\d+\/edit$/);
      await page.getByLabel('Client Name').fill('No script edited');
      await page.getByRole('button', { name: 'Save changes' }).click();
      await page.waitForURL(`${base}/clients`);

      await page.getByRole('button', { name: 'Actions for No script edited' }).click();
      await page.getByRole('row', { name: /No script edited/ }).getByRole('link', { name: 'Delete' }).click();
      await page.waitForURL(/\/clients\/\d+\/delete$/);
      await page.getByRole('button', { name: 'Delete client' }).click();
      await page.waitForURL(`${base}/clients`);
      expect(await page.getByRole('rowheader', { name: 'No script edited' }).count()).toBe(0);
      expect((await listClients(gatehouse.database.db, { query: 'no-script' })).total).toBe(0);
    } finally {
      await context.close();
    }
  });

  it('connects from a page with the mqtt browser bundle over ws://…/mqtt and receives a message', async () => {
    await createClient(gatehouse.database.db, { name: 'Dashboard', username: 'dashboard', password: 'dashboard-password' });
    await grantGroup(gatehouse.database.db, { name: 'Dashboard feed', permissions: [['allow', 'publish', 'dashboard/#'], ['allow', 'subscribe', 'dashboard/#']], usernames: ['dashboard'] });
    const { context, page, problems } = await openPage(browser);
    const publisher = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'dashboard', password: 'dashboard-password' });
    try {
      await page.goto(`${base}/clients`);
      await page.addScriptTag({ url: '/static/mqtt.min.js' });
      const url = `ws://127.0.0.1:${gatehouse.httpPort}/mqtt`;
      await page.evaluate(
        (url) =>
          new Promise<void>((resolve, reject) => {
            const mqtt = (window as unknown as { mqtt: { connect: (url: string, options: object) => any } }).mqtt;
            const client = mqtt.connect(url, { username: 'dashboard', password: 'dashboard-password', reconnectPeriod: 0, timerVariant: 'native' });
            (window as unknown as { received: string[] }).received = [];
            client.on('message', (topic: string, payload: Uint8Array) => {
              (window as unknown as { received: string[] }).received.push(`${topic}=${new TextDecoder().decode(payload)}`);
            });
            client.on('connect', () => client.subscribe('dashboard/feed', { qos: 1 }, (err: Error | null) => (err ? reject(err) : resolve())));
            client.on('error', reject);
          }),
        url,
      );
      await publisher.publishAsync('dashboard/feed', 'hello browser', { qos: 1 });
      await expect.poll(() => page.evaluate(() => (window as unknown as { received: string[] }).received)).toEqual(['dashboard/feed=hello browser']);

      // A wrong password is refused in the browser too.
      const refused = await page.evaluate(
        (url) =>
          new Promise<string>((resolve) => {
            const mqtt = (window as unknown as { mqtt: { connect: (url: string, options: object) => any } }).mqtt;
            const client = mqtt.connect(url, { username: 'dashboard', password: 'wrong-password', reconnectPeriod: 0, timerVariant: 'native' });
            client.on('connect', () => resolve('connected'));
            client.on('error', (error: Error & { code?: number }) => resolve(`refused ${error.code}`));
          }),
        url,
      );
      expect(refused).toBe('refused 4');
      expect(problems()).toEqual([]);
    } finally {
      await endClient(publisher);
      await context.close();
    }
  });
});
