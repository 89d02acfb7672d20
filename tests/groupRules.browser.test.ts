import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listGroupRules } from '../src/domain/groupRules';
import { createGroup } from '../src/domain/groups';
import type { Gatehouse } from '../src/server';
import { signInBrowser } from './support/admin';
import { appendRules } from './support/acl';
import { accessibilityViolations, browserAvailable, launchBrowser, openPage as openAnonymousPage } from './support/browser';
import { startTestGatehouse } from './support/gatehouse';

/** The group rules table with many rules: search, edit in the row, delete after a confirmation, and no change lost by leaving. */
describe.runIf(browserAvailable)('group rules table in Chromium', { timeout: 180_000 }, () => {
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

  async function openPage(options: { javaScriptEnabled?: boolean; width?: number } = {}) {
    const opened = await openAnonymousPage(browser, { viewport: { width: options.width ?? 1280, height: 700 }, javaScriptEnabled: options.javaScriptEnabled ?? true });
    await signInBrowser(opened.context, base, gatehouse.database.db);
    // A step that cannot happen fails here, naming itself, rather than at the test's timeout.
    opened.page.setDefaultTimeout(30_000);
    return opened;
  }

  const ruleId = async (value: string) => (await listGroupRules(gatehouse.database.db)).find((rule) => rule.value === value)!.id;
  const shownValues = (page: Page) => page.locator('#rule-rows tr:not(.empty-row):visible th code').allInnerTexts();
  const openMenu = (page: Page, value: string) => page.getByRole('button', { name: `Actions for rule ${value}` }).click();
  const sideways = (page: Page) => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);

  it('narrows the table as the operator types, counts the rules per group, and fits 1280 and 390 px', async () => {
    for (const width of [1280, 390]) {
      const { context, page, problems } = await openPage({ width });
      try {
        await page.goto(`${base}/group-rules`);
        expect(await page.locator('.rule-counts').innerText()).toBe('Rules per group: Office 10 · Plant 20');
        expect(await shownValues(page)).toHaveLength(30);
        await page.getByRole('searchbox', { name: 'Search the group rules' }).fill('line-2');
        await expect.poll(() => shownValues(page)).toEqual(['line-2-*', ...Array.from({ length: 10 }, (_, i) => `line-2${i}-*`)]);
        expect(await page.locator('#rule-summary').innerText()).toBe('11 of 30 rules match “line-2”. Show all');
        await page.waitForURL(`${base}/group-rules?q=line-2`);
        // The counts are over every rule, whatever the search.
        expect(await page.locator('.rule-counts').innerText()).toBe('Rules per group: Office 10 · Plant 20');
        await page.getByRole('searchbox', { name: 'Search the group rules' }).fill('office');
        await expect.poll(async () => (await shownValues(page)).length).toBe(10);
        expect(await sideways(page)).toBe(0);
        expect(await accessibilityViolations(page)).toEqual([]);
        expect(problems()).toEqual([]);
      } finally {
        await context.close();
      }
    }
  });

  it('edits a rule in its row: Cancel gives it back unchanged, Save keeps the change, and focus stays on the row', async () => {
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/group-rules`);
      const id = await ruleId('line-4-*');
      await openMenu(page, 'line-4-*');
      await page.locator(`#rule-${id}`).getByRole('link', { name: 'Edit' }).click();
      const value = page.locator(`#rule-${id}-value`);
      await value.waitFor();
      // Focus moves into the row's form, not to <body>.
      await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe(`rule-${id}-matchBy`);
      expect(await value.inputValue()).toBe('line-4-*');
      await value.fill('cancelled-*');
      await page.locator(`#rule-${id}`).getByRole('button', { name: 'Cancel' }).click();
      await page.locator(`#rule-${id} th code`).waitFor();
      expect(await page.locator(`#rule-${id} th`).innerText()).toBe('line-4-*');
      await expect.poll(() => page.evaluate(() => document.activeElement?.closest('tr')?.id)).toBe(`rule-${id}`);

      await openMenu(page, 'line-4-*');
      await page.locator(`#rule-${id}`).getByRole('link', { name: 'Edit' }).click();
      await value.waitFor();
      await value.fill('renamed-*');
      await page.locator(`#rule-${id} summary`).click();
      await page.locator(`#rule-${id}`).getByLabel('Office').check();
      await page.locator(`#rule-${id} summary`).click();
      expect(await page.locator(`#rule-${id} summary`).innerText()).toBe('Office, Plant');
      await expect(accessibilityViolations(page)).resolves.toEqual([]);
      await page.locator(`#rule-${id}`).getByRole('button', { name: 'Save' }).click();
      await page.locator(`#rule-${id} th code`).waitFor();
      expect(await page.locator(`#rule-${id} th`).innerText()).toBe('renamed-*');
      expect(await page.locator('#notices').innerText()).toContain('Rule for “renamed-*” saved.');
      expect(await page.locator('.rule-counts').innerText()).toBe('Rules per group: Office 11 · Plant 20');
      await expect.poll(() => page.evaluate(() => document.activeElement?.closest('tr')?.id)).toBe(`rule-${id}`);
      expect((await listGroupRules(gatehouse.database.db)).find((rule) => rule.id === id)).toMatchObject({ value: 'renamed-*', groups: [{ name: 'Office' }, { name: 'Plant' }] });
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('shows a bad edit in place, keeping what was typed', async () => {
    const { context, page } = await openPage();
    try {
      await page.goto(`${base}/group-rules`);
      const id = await ruleId('line-5-*');
      await openMenu(page, 'line-5-*');
      await page.locator(`#rule-${id}`).getByRole('link', { name: 'Edit' }).click();
      await page.locator(`#rule-${id}-matchBy`).selectOption('client');
      await page.locator(`#rule-${id}-value`).fill('no-such-user');
      await page.locator(`#rule-${id}`).getByRole('button', { name: 'Save' }).click();
      await page.locator(`#rule-${id}-value-error`).waitFor();
      expect(await page.locator(`#rule-${id}-value-error`).innerText()).toBe('No client has this username.');
      expect(await page.locator(`#rule-${id}-value`).inputValue()).toBe('no-such-user');
      expect(await page.locator(`#rule-${id}-matchBy`).inputValue()).toBe('client');
      await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe(`rule-${id}-value`);
      expect(await accessibilityViolations(page)).toEqual([]);
    } finally {
      await context.close();
    }
    expect((await listGroupRules(gatehouse.database.db)).some((rule) => rule.value === 'line-5-*')).toBe(true);
  });

  it('asks before leaving with a row edited and not saved, keeps the open row through a search, and not after Save', async () => {
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/group-rules`);
      const id = await ruleId('line-7-*');
      await openMenu(page, 'line-7-*');
      await page.locator(`#rule-${id}`).getByRole('link', { name: 'Edit' }).click();
      await page.locator(`#rule-${id}-value`).fill('line-7-edited-*');
      const dialogs: string[] = [];
      page.on('dialog', (dialog) => {
        dialogs.push(dialog.type());
        void dialog.dismiss();
      });
      await page.getByRole('link', { name: 'Groups', exact: true }).click();
      await expect.poll(() => dialogs).toEqual(['beforeunload']);
      expect(page.url()).toBe(`${base}/group-rules`);

      // A search that leaves the row out keeps it open, as typed.
      await page.getByRole('searchbox', { name: 'Search the group rules' }).fill('line-1');
      await page.waitForURL(`${base}/group-rules?q=line-1`);
      await expect.poll(async () => (await shownValues(page)).length).toBe(11);
      expect(await page.locator(`#rule-${id}-value`).inputValue()).toBe('line-7-edited-*');

      await page.locator(`#rule-${id}`).getByRole('button', { name: 'Save' }).click();
      await page.locator(`#rule-${id} th code`).waitFor();
      // Nothing left unsaved: leaving asks nothing.
      await page.getByRole('link', { name: 'Groups', exact: true }).click();
      await page.waitForURL(`${base}/groups`);
      expect(dialogs).toEqual(['beforeunload']);
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('deletes a rule after the confirmation dialog, and keeps it when the dialog is cancelled', async () => {
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/group-rules`);
      const id = await ruleId('line-8-*');
      await openMenu(page, 'line-8-*');
      const item = page.locator(`#rule-${id}`).getByRole('link', { name: 'Delete' });
      expect(await item.getAttribute('class')).toBe('danger');
      await item.click();
      const dialog = page.getByRole('dialog', { name: /Delete the rule for MQTT Client ID “line-8-\*”\?/ });
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      await dialog.waitFor({ state: 'hidden' });
      expect(await page.locator(`#rule-${id}`).count()).toBe(1);

      await item.click();
      await expect(accessibilityViolations(page)).resolves.toEqual([]);
      await dialog.getByRole('button', { name: 'Delete rule' }).click();
      await page.locator(`#rule-${id}`).waitFor({ state: 'detached' });
      expect(await page.locator('#notices').innerText()).toContain('Rule for “line-8-*” deleted.');
      expect(await page.locator('.rule-counts').innerText()).toMatch(/Plant 19$/);
      expect(await page.locator('#rule-summary').innerText()).toBe('29 rules.');
      expect((await listGroupRules(gatehouse.database.db)).some((rule) => rule.id === id)).toBe(false);
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('adds a rule, showing what is wrong in place first', async () => {
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/group-rules`);
      await page.locator('#new-rule-matchBy').selectOption('client_id');
      await page.locator('#new-rule-value').fill('added-*');
      await page.getByRole('button', { name: 'Add rule' }).click();
      await page.locator('#new-rule-groups-error').waitFor();
      expect(await page.locator('#new-rule-groups-error').innerText()).toBe('Choose at least one group.');
      expect(await page.locator('#new-rule-value').inputValue()).toBe('added-*');
      await page.locator('#add-rule-form summary').click();
      await page.locator('#add-rule-form').getByLabel('Plant').check();
      await page.locator('#add-rule-form summary').click();
      await page.getByRole('button', { name: 'Add rule' }).click();
      await page.getByRole('button', { name: 'Actions for rule added-*' }).waitFor();
      expect(await page.locator('#new-rule-value').inputValue()).toBe('');
      expect(await page.locator('#notices').innerText()).toContain('Rule for “added-*” added.');
      expect(await accessibilityViolations(page)).toEqual([]);
      // The refused first try is the only failed request.
      expect(problems()).toEqual(['console: Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)']);
    } finally {
      await context.close();
    }
  });

  it('searches, edits and deletes without JavaScript', async () => {
    const { context, page } = await openPage({ javaScriptEnabled: false });
    try {
      await page.goto(`${base}/group-rules`);
      await page.getByRole('searchbox', { name: 'Search the group rules' }).fill('line-1');
      await page.getByRole('button', { name: 'Search', exact: true }).click();
      await page.waitForURL(`${base}/group-rules?q=line-1`);
      expect(await shownValues(page)).toEqual(['line-1-*', ...Array.from({ length: 10 }, (_, i) => `line-1${i}-*`)]);

      const id = await ruleId('line-12-*');
      await openMenu(page, 'line-12-*');
      await page.locator(`#rule-${id}`).getByRole('link', { name: 'Edit' }).click();
      await page.waitForURL(`${base}/group-rules?q=line-1&edit=${id}#rule-${id}`);
      await page.locator(`#rule-${id}-value`).fill('line-12-new-*');
      await page.locator(`#rule-${id}`).getByRole('button', { name: 'Save' }).click();
      await page.waitForURL(`${base}/group-rules?q=line-1#rule-${id}`);
      expect(await page.locator('#notices').innerText()).toContain('Rule for “line-12-new-*” saved.');
      expect(await page.locator(`#rule-${id} th`).innerText()).toBe('line-12-new-*');

      await openMenu(page, 'line-12-new-*');
      await page.locator(`#rule-${id}`).getByRole('link', { name: 'Delete' }).click();
      await page.waitForURL(`${base}/group-rules/${id}/delete`);
      expect(await page.locator('h1').innerText()).toBe('Delete the rule for MQTT Client ID “line-12-new-*”?');
      await page.getByRole('button', { name: 'Delete rule' }).click();
      await page.waitForURL(`${base}/group-rules`);
      expect(await page.locator('#notices').innerText()).toContain('Rule for “line-12-new-*” deleted.');
      expect(await page.locator(`#rule-${id}`).count()).toBe(0);
    } finally {
      await context.close();
    }
  });
});
