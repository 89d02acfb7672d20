import { signInBrowser } from './support/admin';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getClient, listClients } from '../src/domain/clients';
import { listGroupRules } from '../src/domain/groupRules';
import { getGroup, listGroups } from '../src/domain/groups';
import type { Gatehouse } from '../src/server';
import { axeViolations, browserAvailable as chromiumAvailable, launchBrowser as launchChromium } from './support/browser';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient, nextMessage, subscribeCodes, type Transport } from './support/mqtt';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!chromiumAvailable)('groups and group rules in Chromium', { timeout: 120_000 }, () => {
  let gatehouse: Gatehouse;
  let browser: Browser;
  let base: string;
  const withoutScript = new WeakSet<Page>();
  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    base = `http://127.0.0.1:${gatehouse.httpPort}`;
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await gatehouse?.close();
  });

  async function withPage<T>(options: { javaScript: boolean }, run: (page: Page, context: BrowserContext) => Promise<T>): Promise<T> {
    const context = await browser.newContext({ javaScriptEnabled: options.javaScript });
    await signInBrowser(context, base, gatehouse.database.db);
    // Fail an action well inside the test's own timeout, with Playwright's message.
    context.setDefaultTimeout(10_000);
    const page = await context.newPage();
    if (!options.javaScript) withoutScript.add(page);
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('console', (message) => {
      // Chromium logs every 4xx answer (422 on a bad form is by design; /favicon.ico is 404).
      if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) errors.push(message.text());
    });
    try {
      const result = await run(page, context);
      expect(errors, 'errors in the page').toEqual([]);
      return result;
    } finally {
      await context.close();
    }
  }

  /**
   * axe needs script in the page. For a page shown without JavaScript, the
   * same HTML is served again to a scripting context with our scripts blocked,
   * so axe sees the no-JavaScript DOM with the real stylesheets.
   */
  async function expectAccessible(page: Page) {
    // (axe.run never settles in a page where JavaScript is off.)
    if (!withoutScript.has(page)) {
      expect(await axeViolations(page), `axe on ${page.url()}`).toEqual([]);
      return;
    }
    const html = await page.content();
    const url = page.url();
    const context = await browser.newContext();
    try {
      const copy = await context.newPage();
      await copy.route('**/*.js', (route) => route.abort());
      await copy.route((u) => u.href === url, (route) => route.fulfill({ contentType: 'text/html; charset=utf-8', body: html }));
      await copy.goto(url);
      expect(await axeViolations(copy), `axe on ${url} (as shown without JavaScript)`).toEqual([]);
    } finally {
      await context.close();
    }
  }

  async function createClientInConsole(page: Page, name: string, username: string, password: string) {
    await page.goto(`${base}/clients/new`);
    await page.locator('#name').fill(name);
    await page.locator('#username').fill(username);
    await page.locator('#password').fill(password);
    await page.getByRole('button', { name: 'Create client' }).click();
    await page.waitForURL(/\/clients\/\d+$/);
    await page.goto(`${base}/clients`);
  }

  it('lets an operator set up sensors and dashboards through the console alone, enforced on TCP and WebSocket', async () => {
    await withPage({ javaScript: true }, async (page) => {
      await createClientInConsole(page, 'Boiler sensor', 'sensor-user', 'sensor-password');
      await createClientInConsole(page, 'Control room', 'dash-user', 'dash-password');
      // No rule yet: the table says these clients can do nothing.
      await expect(page.locator('a.no-access').count()).resolves.toBe(2);
      await expectAccessible(page);

      // "Each sensor may publish only under sensors/<its client id>/#"
      await page.goto(`${base}/groups`);
      await expectAccessible(page);
      await page.getByRole('button', { name: 'New group' }).click();
      await page.locator('#name').fill('Sensors');
      await page.locator('#description').fill('Field devices');
      await page.locator('#permission-0-topic').fill('sensors/%c/#');
      await expectAccessible(page);
      await page.getByRole('button', { name: 'Create group' }).click();
      await page.waitForURL(`${base}/groups`);

      // "dashboards may read everything except sensors/+/secret"
      await page.goto(`${base}/groups/new`);
      await page.locator('#name').fill('Dashboards');
      await page.locator('#permission-0-action').selectOption('subscribe');
      await page.locator('#permission-0-topic').fill('#');
      await page.getByRole('button', { name: 'Add permission' }).click();
      await page.locator('#permission-1-topic').waitFor();
      // htmx swapped the form and focused the new row; what was typed is still there.
      await expect(page.evaluate(() => document.activeElement?.id)).resolves.toBe('permission-1-topic');
      expect(await page.locator('#permission-0-topic').inputValue()).toBe('#');
      await page.locator('#permission-1-effect').selectOption('deny');
      await page.locator('#permission-1-action').selectOption('subscribe');
      await page.locator('#permission-1-topic').fill('sensors/+/secret');
      await page.getByRole('button', { name: 'Create group' }).click();
      await page.waitForURL(`${base}/groups`);
      expect(await page.locator('#groups-results tbody tr').allInnerTexts()).toEqual([
        expect.stringMatching(/^Dashboards\t\s*sub #\s+deny sub sensors\/\+\/secret\s+nobody: no group rule gives it/),
        expect.stringMatching(/^Sensors\tField devices\t\s*pub sensors\/%c\/#\s+nobody: no group rule gives it/),
      ]);

      // The rules: sensors by client-id pattern, the control room by client.
      await page.getByRole('link', { name: 'Group rules' }).click();
      const addForm = page.locator('#add-rule-form');
      await page.locator('#new-rule-matchBy').selectOption('client_id');
      await page.locator('#new-rule-value').fill('sensor-*');
      await addForm.locator('summary').click();
      await addForm.getByLabel('Sensors').check();
      // Pico closes an open dropdown on the next click anywhere: close it first, as a user would.
      await addForm.locator('summary').click();
      await expect(addForm.locator('summary').innerText()).resolves.toBe('Sensors');
      await addForm.getByRole('button', { name: 'Add rule' }).click();
      await page.getByRole('button', { name: 'Actions for rule sensor-*' }).waitFor();
      // The form comes back blank for the next rule.
      expect(await page.locator('#new-rule-value').inputValue()).toBe('');
      await page.locator('#new-rule-value').fill('dash-user');
      await addForm.locator('summary').click();
      await addForm.getByLabel('Dashboards').check();
      await addForm.locator('summary').click();
      await expectAccessible(page);
      await addForm.getByRole('button', { name: 'Add rule' }).click();
      await page.getByRole('button', { name: 'Actions for rule dash-user' }).waitFor();
      await expect(page.getByRole('status').first().innerText()).resolves.toContain('Rule for “dash-user” added.');
      await expectAccessible(page);

      // The checker on the sensor's page answers as the broker will.
      const sensor = (await listClients(gatehouse.database.db, { query: 'Boiler' })).clients[0]!;
      await page.goto(`${base}/clients`);
      // Never seen: rules by client id are not judged yet, and it is not said to have access through them.
      await page.getByText('never seen: rules by client ID match once it connects').first().waitFor();
      await page.goto(`${base}/clients/${sensor.id}`);
      await page.locator('#check-clientId').fill('sensor-1');
      await page.locator('#check-topic').fill('sensors/sensor-2/temp');
      await page.getByRole('button', { name: 'Check access' }).click();
      await page.locator('#check-result').waitFor();
      expect(await page.locator('#check-result').innerText()).toContain('Denied');
      await page.locator('#check-topic').fill('sensors/sensor-1/temp');
      await page.getByRole('button', { name: 'Check access' }).click();
      await page.locator('#check-result.allowed').waitFor();
      expect(page.url()).toContain('clientId=sensor-1');
      await expectAccessible(page);
    });

    for (const [sensorOver, dashboardOver] of [
      ['tcp', 'ws'],
      ['ws', 'tcp'],
    ] as Array<[Transport, Transport]>) {
      const dashboard = await connect(brokerUrl(gatehouse, dashboardOver), { username: 'dash-user', password: 'dash-password', clientId: `dash-${dashboardOver}` });
      const sensor = await connect(brokerUrl(gatehouse, sensorOver), { username: 'sensor-user', password: 'sensor-password', clientId: `sensor-${sensorOver}` });
      try {
        expect(await subscribeCodes(dashboard, { '#': { qos: 1 } })).toEqual({ '#': 1 });
        expect(await subscribeCodes(sensor, { '#': { qos: 1 } })).toEqual({ '#': 128 });
        const seen: string[] = [];
        dashboard.on('message', (topic) => seen.push(topic));
        await sensor.publishAsync(`sensors/sensor-${sensorOver}/secret`, 'hidden', { qos: 1 });
        await sensor.publishAsync('sensors/someone-else/temp', 'forged', { qos: 1 });
        const reading = nextMessage(dashboard, `sensors/sensor-${sensorOver}/temp`);
        await sensor.publishAsync(`sensors/sensor-${sensorOver}/temp`, '71.5', { qos: 1 });
        expect((await reading).payload).toBe('71.5');
        await pause(200);
        expect(seen).toEqual([`sensors/sensor-${sensorOver}/temp`]);
      } finally {
        await endClient(sensor);
        await endClient(dashboard);
      }
    }
  });

  it('flags a bad filter on its row and keeps the form as typed (JavaScript on)', async () => {
    await withPage({ javaScript: true }, async (page) => {
      await page.goto(`${base}/groups/new`);
      await page.locator('#name').fill('Broken');
      await page.locator('#permission-0-topic').fill('a/#/b');
      await page.getByRole('button', { name: 'Add permission' }).click();
      await page.locator('#permission-1-topic').fill('a+');
      await page.getByRole('button', { name: 'Create group' }).click();
      await page.locator('#permission-0-topic-error').waitFor();
      expect(await page.locator('#permission-0-topic-error').innerText()).toBe('# must be the last level and stand alone, as in a/#.');
      expect(await page.locator('#permission-1-topic-error').innerText()).toBe('+ must fill a whole level, as in a/+/b.');
      expect(await page.locator('#permission-1-topic').getAttribute('aria-invalid')).toBe('true');
      expect(await page.locator('#name').inputValue()).toBe('Broken');
      expect(page.url()).toBe(`${base}/groups/new`);
      await expectAccessible(page);

      // Removing the bad rows leaves nothing to flag; Enter in a field saves (it does not press a Remove button).
      await page.getByRole('button', { name: 'Remove row 2' }).click();
      await page.locator('#permission-1-topic').waitFor({ state: 'detached' });
      await page.locator('#permission-0-topic').fill('fixed/#');
      await page.locator('#permission-0-topic').press('Enter');
      await page.waitForURL(`${base}/groups`);
    });
    const [group] = (await listGroups(gatehouse.database.db, { query: 'Broken' })).groups;
    expect((await getGroup(gatehouse.database.db, group!.id))?.permissions).toEqual([{ effect: 'allow', action: 'publish', topic: 'fixed/#' }]);
  });

  it('flags a bad rule in the add form and saves nothing (JavaScript on)', async () => {
    const before = await listGroupRules(gatehouse.database.db);
    await withPage({ javaScript: true }, async (page) => {
      await page.goto(`${base}/group-rules`);
      await page.locator('#new-rule-value').fill('no-such-user');
      await page.locator('#add-rule-form').getByRole('button', { name: 'Add rule' }).click();
      await page.locator('#new-rule-value-error').waitFor();
      expect(await page.locator('#new-rule-value-error').innerText()).toBe('No client has this username.');
      expect(await page.locator('#new-rule-groups-error').innerText()).toBe('Choose at least one group.');
      expect(await page.locator('#new-rule-value').inputValue()).toBe('no-such-user');
      await expectAccessible(page);
    });
    expect(await listGroupRules(gatehouse.database.db)).toEqual(before);
  });

  it('deletes a group from its row menu with htmx, and the notice says what happened to the rules', async () => {
    await withPage({ javaScript: true }, async (page) => {
      await page.goto(`${base}/groups/new`);
      await page.locator('#name').fill('Short-lived');
      await page.locator('#permission-0-topic').fill('tmp/#');
      await page.getByRole('button', { name: 'Create group' }).click();
      await page.waitForURL(`${base}/groups`);
      await page.getByRole('button', { name: 'Actions for Short-lived' }).click();
      await page.getByRole('link', { name: 'Delete' }).click();
      await page.getByRole('dialog', { name: /Delete the group “Short-lived”/ }).getByRole('button', { name: 'Delete group' }).click();
      await page.getByText('Group “Short-lived” deleted.').waitFor();
      expect(await page.getByRole('button', { name: 'Actions for Short-lived' }).count()).toBe(0);
      await expectAccessible(page);
    });
  });

  describe('without JavaScript', () => {
    it('creates a group, adding and removing rows by reloading the form, and shows errors on a bad row', async () => {
      await withPage({ javaScript: false }, async (page) => {
        await page.goto(`${base}/groups/new`);
        await page.locator('#name').fill('No script');
        await page.locator('#permission-0-topic').fill('first/#');
        await page.getByRole('button', { name: 'Add permission' }).click();
        await page.waitForLoadState();
        await page.locator('#permission-1-topic').fill('second/#');
        await page.getByRole('button', { name: 'Add permission' }).click();
        await page.locator('#permission-2-topic').fill('bad+');
        await page.getByRole('button', { name: 'Remove row 1' }).click();
        expect(await page.locator('#permission-0-topic').inputValue()).toBe('second/#');
        expect(await page.locator('#permission-1-topic').inputValue()).toBe('bad+');
        await page.getByRole('button', { name: 'Create group' }).click();
        expect(await page.locator('#permission-1-topic-error').innerText()).toBe('+ must fill a whole level, as in a/+/b.');
        await expectAccessible(page);
        await page.locator('#permission-1-topic').fill('third');
        await page.getByRole('button', { name: 'Create group' }).click();
        await page.waitForURL(`${base}/groups`);
      });
      const [group] = (await listGroups(gatehouse.database.db, { query: 'No script' })).groups;
      expect((await getGroup(gatehouse.database.db, group!.id))?.permissions.map((p) => p.topic)).toEqual(['second/#', 'third']);
    });

    it('adds a rule, picking its groups from the menu', async () => {
      await withPage({ javaScript: false }, async (page) => {
        await page.goto(`${base}/group-rules`);
        const addForm = page.locator('#add-rule-form');
        await page.locator('#new-rule-matchBy').selectOption('client_id');
        await page.locator('#new-rule-value').fill('no-js-*');
        await addForm.locator('summary').click();
        await addForm.getByLabel('No script').check();
        await addForm.locator('summary').click();
        await addForm.getByRole('button', { name: 'Add rule' }).click();
        await page.waitForURL(/\/group-rules#rule-\d+$/);
        expect(await page.locator('#notices').innerText()).toContain('Rule for “no-js-*” added.');
        await expectAccessible(page);
      });
      const rules = await listGroupRules(gatehouse.database.db);
      expect(rules.at(-1)).toMatchObject({ matchBy: 'client_id', value: 'no-js-*', groups: [expect.objectContaining({ name: 'No script' })] });
    });

    it('deletes a group through the confirmation page and shows what changed in the rules', async () => {
      await withPage({ javaScript: false }, async (page) => {
        await page.goto(`${base}/groups?q=No%20script`);
        await page.getByRole('button', { name: 'Actions for No script' }).click();
        await page.getByRole('link', { name: 'Delete' }).click();
        await page.waitForURL(/\/groups\/\d+\/delete$/);
        expect(await page.locator('main').innerText()).toContain('The rule for MQTT client ID pattern “no-js-*” is removed: this is its only group.');
        await expectAccessible(page);
        await page.getByRole('button', { name: 'Delete group' }).click();
        await page.waitForURL(/\/groups\?change=\d+$/);
        expect(await page.locator('#groups-notice').innerText()).toContain('Group “No script” was deleted.');
        await expectAccessible(page);
        await page.getByRole('link', { name: 'Review the group rules' }).click();
        expect(await page.locator('.rule-changes').innerText()).toContain('Group “No script” was deleted.');
        await page.getByRole('button', { name: 'Dismiss: Group “No script” was deleted.' }).click();
        await page.waitForURL(`${base}/group-rules`);
        expect(await page.locator('.rule-changes').count()).toBe(0);
      });
    });

    it('answers the checker on the client page', async () => {
      const sensor = (await listClients(gatehouse.database.db, { query: 'Boiler' })).clients[0]!;
      expect(await getClient(gatehouse.database.db, sensor.id)).not.toBeNull();
      await withPage({ javaScript: false }, async (page) => {
        await page.goto(`${base}/clients/${sensor.id}`);
        await page.locator('#check-clientId').fill('sensor-9');
        await page.locator('#check-action').selectOption('publish');
        await page.locator('#check-topic').fill('sensors/sensor-9/secret');
        await page.getByRole('button', { name: 'Check access' }).click();
        expect(await page.locator('#check-result').innerText()).toMatch(/^Allowed/);
        expect(await page.locator('#check-result').innerText()).toContain('row 1 of group “Sensors”');
        await expectAccessible(page);
      });
    });
  });
});
