import { AxeBuilder } from '@axe-core/playwright';
import type { Browser, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../src/db';
import { createClient } from '../src/domain/clients';
import { forgetKnownSessions } from '../src/domain/sessions';
import type { Gatehouse } from '../src/server';
import { browserAvailable as chromiumAvailable, launchBrowser as launchChromium } from './support/browser';
import { startTestGatehouse } from './support/gatehouse';

async function expectNoAxeViolations(page: Page) {
  const { violations } = await new AxeBuilder({ page }).analyze();
  expect(
    violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`),
    `axe on ${page.url()}`,
  ).toEqual([]);
}

/** Clicks something with an hx-confirm, says yes in the console's <dialog>, and waits for `gone` to leave the page. */
async function confirmAndWaitGone(page: Page, click: () => Promise<void>, gone: Locator) {
  await click();
  await page.locator('dialog[open] button[value="confirm"]').click();
  await gone.waitFor({ state: 'detached' });
}

describe.runIf(chromiumAvailable)('the console in Chromium, signed in', () => {
  let gatehouse: Gatehouse;
  let browser: Browser;
  let base: string;

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite', { ADMIN_USERNAME: 'operator', ADMIN_PASSWORD: 'operator-password' });
    base = `http://127.0.0.1:${gatehouse.httpPort}`;
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await gatehouse?.close();
  });

  async function signInAs(page: Page, path: string) {
    await page.goto(base + path);
    expect(new URL(page.url()).pathname).toBe('/login');
    await page.getByLabel('Username').fill('operator');
    await page.getByLabel('Password').fill('operator-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  it('signs in, uses the clients console, signs out, and Back shows no usable console', { timeout: 90_000 }, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });
    try {
      await page.goto(`${base}/clients`);
      expect(page.url()).toBe(`${base}/login?next=%2Fclients`);
      await expectNoAxeViolations(page);

      // A wrong password first: the form says so and keeps the username.
      await page.getByLabel('Username').fill('operator');
      await page.getByLabel('Password').fill('not-the-password');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await expect.poll(() => page.getByRole('alert').textContent()).toBe('Wrong username or password.');
      expect(await page.getByLabel('Username').inputValue()).toBe('operator');

      await page.getByLabel('Password').fill('operator-password');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL(`${base}/clients`);
      expect(await page.getByText('Signed in as operator').count()).toBe(1);
      await expectNoAxeViolations(page);

      // Create a client through the htmx form (a POST the Origin check must accept).
      await page.getByRole('button', { name: 'New client' }).click();
      await page.waitForURL(`${base}/clients/new`);
      await page.getByLabel('Client Name').fill('Boiler room');
      await page.getByLabel('Username').fill('boiler-room');
      await page.locator('#password').fill('boiler-room-password');
      await page.getByRole('button', { name: 'Create client' }).click();
      // The new client's page, saying it was created.
      await page.waitForURL(/\/clients\/\d+$/);
      await page.getByText('Client “Boiler room” created.').waitFor();

      // Delete another through the row menu (htmx DELETE after a confirm()).
      await page.goto(`${base}/clients/new`);
      await page.getByLabel('Client Name').fill('Old pump');
      await page.getByLabel('Username').fill('old-pump');
      await page.locator('#password').fill('old-pump-password');
      await page.getByRole('button', { name: 'Create client' }).click();
      await page.waitForURL(/\/clients\/\d+$/);
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Clients' }).click();
      await page.waitForURL(`${base}/clients`);
      await page.getByRole('button', { name: 'Actions for Old pump' }).click();
      await confirmAndWaitGone(
        page,
        () => page.getByRole('link', { name: 'Delete' }).filter({ visible: true }).click(),
        page.getByRole('rowheader', { name: 'Old pump' }),
      );

      await page.getByRole('link', { name: 'Administrators' }).click();
      await page.waitForURL(`${base}/administrators`);
      await page.getByRole('rowheader', { name: /operator/ }).waitFor();
      await expectNoAxeViolations(page);
      await page.getByRole('link', { name: 'Clients' }).click();
      await page.waitForURL(`${base}/clients`);

      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.waitForURL(`${base}/login?signed-out=1`);
      expect(await page.getByText('You are signed out.').count()).toBe(1);

      await page.goBack();
      await page.waitForLoadState('load');
      // Back to /clients: the browser asks again (no-store) and is sent to sign in.
      expect(page.url()).toBe(`${base}/login?next=%2Fclients`);
      expect(await page.getByRole('button', { name: 'Sign out' }).count()).toBe(0);
      expect(await page.locator('table').count()).toBe(0);
      expect(await page.getByText('Boiler room').count()).toBe(0);
      expect(errors.filter((e) => !/401|Failed to load resource/.test(e))).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('takes an htmx request whose session has ended to the sign-in page, and back after signing in', { timeout: 60_000 }, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      const client = await createClient(gatehouse.database.db, { name: 'Session probe', username: 'session-probe', password: 'probe-password' });
      await signInAs(page, '/clients');
      await page.waitForURL(`${base}/clients`);
      // The session ends elsewhere (another tab signed out, or it expired),
      // more than a second ago: a node trusts a session it checked for that long.
      await gatehouse.database.db.delete(schema.adminSessions);
      forgetKnownSessions();
      // The row menu's Edit is an htmx GET of a table-row fragment.
      await page.getByRole('button', { name: 'Actions for Session probe' }).click();
      const [response] = await Promise.all([
        page.waitForResponse(`${base}/clients/${client.id}/edit`),
        page.getByRole('link', { name: 'Edit' }).filter({ visible: true }).click(),
      ]);
      expect(response.status()).toBe(401);
      await page.waitForURL(/\/login\?next=/);
      // Back to the page the operator was on, not to the fragment's URL.
      expect(page.url()).toBe(`${base}/login?next=%2Fclients`);
      expect(await page.locator('tr.editing').count()).toBe(0);
      await page.getByLabel('Username').fill('operator');
      await page.getByLabel('Password').fill('operator-password');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL(`${base}/clients`);
    } finally {
      await context.close();
    }
  });

  it('does nothing for a form posted from another site', { timeout: 60_000 }, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await signInAs(page, '/clients');
      await page.waitForURL(`${base}/clients`);
      // "Another site": the same server under another name, so the browser sends another Origin.
      const evil = `http://localhost:${gatehouse.httpPort}`;
      await page.route(`${evil}/evil`, (route) =>
        route.fulfill({
          contentType: 'text/html',
          body: `<form method="post" action="${base}/clients"><input name="name" value="Forged"><input name="username" value="forged"><input name="password" value="forged-password"><button>Go</button></form>`,
        }),
      );
      await page.goto(`${evil}/evil`);
      const [response] = await Promise.all([page.waitForResponse(`${base}/clients`), page.getByRole('button', { name: 'Go' }).click()]);
      // SameSite=Lax keeps the cookie off a cross-site POST; the Origin check refuses it regardless.
      expect([302, 303, 403]).toContain(response.status());
      const rows = await gatehouse.database.db.select().from(schema.clients);
      expect(rows.map((r) => r.name)).not.toContain('Forged');
    } finally {
      await context.close();
    }
  });
});
