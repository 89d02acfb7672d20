import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { createClient, type Client } from '../src/domain/clients';
import type { Gatehouse } from '../src/server';
import { signInBrowser } from './support/admin';
import { grantGroup } from './support/acl';
import { accessibilityViolations, browserAvailable, launchBrowser, openPage as openAnonymousPage } from './support/browser';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient, nextMessage, tryConnect } from './support/mqtt';

describe.runIf(browserAvailable)('overview and Try it in Chromium', () => {
  let gatehouse: Gatehouse;
  let browser: Browser;
  let base: string;
  let boiler: Client;

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    base = `http://127.0.0.1:${gatehouse.httpPort}`;
    const db = gatehouse.database.db;
    boiler = await createClient(db, { name: 'Boiler', username: 'boiler', password: 'boiler-password' });
    await grantGroup(db, {
      name: 'Boilers',
      permissions: [
        ['allow', 'publish', 'boiler/#'],
        ['allow', 'subscribe', 'boiler/#'],
      ],
      usernames: ['boiler'],
    });
    // Some traffic and one sample, so the overview has a history to draw.
    const device = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'boiler', password: 'boiler-password', clientId: 'boiler-device' });
    await device.subscribeAsync('boiler/#', { qos: 1 });
    const received = nextMessage(device, 'boiler/temperature');
    await device.publishAsync('boiler/temperature', '21', { qos: 1 });
    await received;
    // Refused: a topic outside its group (counted in the audit trail's refusals).
    await device.publishAsync('elsewhere/x', 'no', { qos: 1 });
    await endClient(device);
    // A client whose device is refused at CONNECT (a wrong password).
    await createClient(db, { name: 'Stray sensor', username: 'stray', password: 'stray-password' });
    expect(await tryConnect(brokerUrl(gatehouse, 'tcp'), { username: 'stray', password: 'an-old-password', clientId: 'stray-1' })).toMatchObject({ ok: false, code: 4 });
    await gatehouse.audit.flush();
    await gatehouse.sampler.tick();
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await gatehouse?.close();
  });

  async function openPage(options: Parameters<typeof openAnonymousPage>[1] = {}) {
    const opened = await openAnonymousPage(browser, options);
    opened.context.setDefaultTimeout(15_000);
    await signInBrowser(opened.context, base, gatehouse.database.db);
    return opened;
  }

  it('draws the history with uPlot from the table, and switches the range in place', async () => {
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/`);
      expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Overview');
      expect(await page.getByRole('link', { name: 'Overview' }).getAttribute('aria-current')).toBe('page');
      await page.locator('[data-chart="connections"] canvas').waitFor();
      expect(await page.locator('.chart canvas').count()).toBe(3);
      expect(await page.locator('[data-charts]').isVisible()).toBe(true);
      // The series are named in the legend, and told apart by their dash pattern, not only by colour.
      expect(await page.locator('[data-chart="messages"] .u-legend').textContent()).toContain('Messages out per second (dashed line)');
      // With the pointer away from the chart the legend shows the latest values, not uPlot's "--".
      for (const chart of ['connections', 'messages', 'failures']) {
        const legend = (await page.locator(`[data-chart="${chart}"] .u-legend`).textContent()) ?? '';
        expect(legend, chart).not.toContain('--');
        expect(legend, chart).toContain('latest');
      }
      expect(await page.locator('[data-chart="connections"] .u-legend').textContent()).toMatch(/Connections \(most at once\)\s*\d/);
      // Each chart takes the page's width (they sat three to a row, a third each).
      const mainWidth = (await page.locator('#overview-history').boundingBox())!.width;
      for (const chart of ['connections', 'messages', 'failures']) {
        expect((await page.locator(`[data-chart="${chart}"] canvas`).boundingBox())!.width).toBeGreaterThan(mainWidth * 0.9);
      }
      // What to look at: the client refused at CONNECT, and who was refused most.
      expect(await page.locator('#refused-connects li').allTextContents()).toEqual([expect.stringContaining('Stray sensor')]);
      await page.locator('#refused-connects').getByRole('link', { name: 'Stray sensor', exact: true }).waitFor();
      const refused = await page.locator('#top-refused li').allTextContents();
      expect(refused).toHaveLength(2);
      expect(refused).toEqual(expect.arrayContaining([expect.stringMatching(/^Boiler 1 last/), expect.stringMatching(/^Stray sensor 1 last/)]));
      // The table is still there, behind its summary.
      await page.getByText('The numbers, one row per minute').click();
      expect(await page.locator('#history-table tbody tr').count()).toBe(1);
      expect(await accessibilityViolations(page)).toEqual([]);

      await page.getByRole('link', { name: 'Last 7 days' }).click();
      await page.waitForURL(`${base}/?range=7d`);
      await expect.poll(() => page.getByText('The numbers, one row per hour').count()).toBe(1);
      await page.locator('[data-chart="connections"] canvas').waitFor();
      expect(await page.locator('.chart canvas').count()).toBe(3);
      expect(await page.getByRole('link', { name: 'Last 7 days' }).getAttribute('aria-current')).toBe('page');
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('shows the numbers as a table without JavaScript', async () => {
    const { context, page } = await openPage({ javaScriptEnabled: false });
    try {
      await page.goto(`${base}/`);
      expect(await page.locator('canvas').count()).toBe(0);
      expect(await page.locator('[data-charts]').isVisible()).toBe(false);
      const table = page.locator('#history-table');
      expect(await table.isVisible()).toBe(true);
      expect(await table.locator('tbody tr').count()).toBe(1);
      expect(await page.locator('#stat-clients .stat-value').textContent()).toBe('2');
      await page.getByRole('link', { name: 'Last 24 hours' }).click();
      await page.waitForURL(`${base}/?range=24h`);
      expect(await page.getByText('The numbers, one row per 15 minutes').isVisible()).toBe(true);
    } finally {
      await context.close();
    }
  });

  it('connects as the client from its page, subscribes, publishes, receives, and shows what was refused', { timeout: 90_000 }, async () => {
    const { context, page, problems } = await openPage();
    const sentToConsole: string[] = [];
    page.on('request', (request) => sentToConsole.push(`${request.url()} ${request.postData() ?? ''}`));
    try {
      await page.goto(`${base}/clients/${boiler.id}`);
      const tryIt = page.locator('#try-it');
      expect(await tryIt.getByText('Try it needs JavaScript').count()).toBe(0);
      expect(await accessibilityViolations(page)).toEqual([]);

      // A wrong password is refused and said so.
      await tryIt.getByLabel('MQTT client ID').fill('try-it-browser');
      await page.getByLabel('Password', { exact: true }).fill('not-the-password');
      await page.getByRole('button', { name: 'Connect', exact: true }).click();
      await expect.poll(() => page.locator('#try-status').textContent()).toContain('bad username or password (CONNACK 4)');

      await page.getByLabel('Password', { exact: true }).fill('boiler-password');
      await page.getByRole('button', { name: 'Connect', exact: true }).click();
      await expect.poll(() => page.locator('#try-status').textContent()).toBe('Connected as boiler with client ID try-it-browser.');
      expect(await page.getByLabel('Password', { exact: true }).inputValue()).toBe('');
      // The checker beside shows the permissions of the client ID connected with.
      await expect.poll(() => page.locator('#check-clientId').inputValue()).toBe('try-it-browser');
      expect(gatehouse.broker.sessionsByClient().get(boiler.id)).toBe(1);

      await page.getByLabel('Topic filter').fill('boiler/#');
      await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
      await tryIt.getByText('boiler/# (SUBACK granted QoS 1).').waitFor();

      await page.getByLabel('Topic', { exact: true }).fill('boiler/setpoint');
      await page.getByLabel('Message').fill('hello from the console');
      await page.getByRole('button', { name: 'Publish', exact: true }).click();
      const received = tryIt.locator('#try-log li[data-kind="received"]');
      await received.waitFor();
      expect(await received.textContent()).toContain('on boiler/setpoint (QoS 1)');
      expect(await received.locator('pre').textContent()).toBe('hello from the console');
      await tryIt.locator('#try-log li[data-kind="sent"]', { hasText: 'Permissions: Allowed' }).waitFor();

      // A subscription the permissions refuse: SUBACK 0x80, shown as refused.
      await page.getByLabel('Topic filter').fill('pump/#');
      await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
      const refusedSubscription = tryIt.locator('#try-log li[data-kind="refused"]', { hasText: 'SUBACK 0x80 for pump/#' });
      await refusedSubscription.waitFor();
      await expect.poll(() => refusedSubscription.textContent()).toContain('Permissions: Denied');

      // A refused publish at QoS 1 is acknowledged by the broker; the page says what the permissions decided.
      await page.getByLabel('Topic', { exact: true }).fill('pump/speed');
      await page.getByRole('button', { name: 'Publish', exact: true }).click();
      const refusedPublish = tryIt.locator('#try-log li[data-kind="refused"]', { hasText: 'Publish refused' });
      await refusedPublish.waitFor();
      expect(await refusedPublish.textContent()).toContain('PUBACK received');
      expect(await refusedPublish.textContent()).toContain('delivers it to no one');
      expect(await accessibilityViolations(page)).toEqual([]);

      await page.getByRole('button', { name: 'Disconnect' }).click();
      await expect.poll(() => page.locator('#try-status').textContent()).toBe('Disconnected.');
      await expect.poll(() => gatehouse.broker.sessionsByClient().get(boiler.id) ?? 0).toBe(0);

      // The password went to the broker in the MQTT CONNECT only: no HTTP request carried it.
      expect(sentToConsole.length).toBeGreaterThan(0);
      expect(sentToConsole.filter((line) => line.includes('boiler-password') || line.includes('not-the-password'))).toEqual([]);
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('says Try it needs JavaScript when it is off, and hides its controls', async () => {
    const { context, page } = await openPage({ javaScriptEnabled: false });
    try {
      await page.goto(`${base}/clients/${boiler.id}`);
      expect(await page.getByText('Try it needs JavaScript').isVisible()).toBe(true);
      expect(await page.locator('#try-password').isVisible()).toBe(false);
      expect(await page.getByRole('button', { name: 'Connect', exact: true }).count()).toBe(0);
      // The checker beside still works.
      expect(await page.getByRole('button', { name: 'Check access' }).isVisible()).toBe(true);
    } finally {
      await context.close();
    }
  });
});
