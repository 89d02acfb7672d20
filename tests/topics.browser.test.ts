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

describe.runIf(browserAvailable)('Topics page in Chromium', { timeout: 120_000 }, () => {
  let gatehouse: Gatehouse;
  let browser: Browser;
  let base: string;
  let device: MqttClient;

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    base = `http://127.0.0.1:${gatehouse.httpPort}`;
    browser = await launchBrowser();
    await createClient(gatehouse.database.db, { name: 'Plant', username: 'plant', password: 'plant-password' });
    await grantGroup(gatehouse.database.db, { name: 'Plant', permissions: [['allow', 'publish', 'plant/#']], usernames: ['plant'] });
    await gatehouse.accessModel.settled();
    device = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'plant', password: 'plant-password', clientId: 'plant-browser' });
    await device.publishAsync('plant/state', 'on', { qos: 1, retain: true });
  });
  afterAll(async () => {
    await endClient(device);
    await browser?.close();
    await gatehouse?.close();
  });

  it('tails a filter live: payloads as text, never markup; Pause stops the rows, Clear empties them', async () => {
    const { context, page, problems } = await openAnonymousPage(browser);
    try {
      await signInBrowser(context, base, gatehouse.database.db);
      await page.goto(`${base}/topics`);
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Topics' }).waitFor();
      await page.getByLabel('Topic filter').fill('plant/#');
      // With JavaScript the form's button watches live (without, it collects for 5 seconds).
      await page.getByRole('button', { name: 'Watch live' }).click();
      await page.waitForURL(`${base}/topics?filter=plant%2F%23`);
      await expect.poll(() => page.locator('.live-status').textContent(), { timeout: 20_000 }).toContain('Watching');
      await device.publishAsync('plant/live', '<img src=x onerror=alert(1)>', { qos: 1 });
      const rows = page.locator('[data-live-rows] tr');
      await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(1);
      expect(await rows.first().locator('td').nth(2).textContent()).toBe('<img src=x onerror=alert(1)>');
      expect(await page.locator('[data-live-rows] img').count()).toBe(0);
      expect(await accessibilityViolations(page)).toEqual([]);

      await page.getByRole('button', { name: 'Pause' }).click();
      await page.getByRole('button', { name: 'Resume' }).waitFor();
      await device.publishAsync('plant/while-paused', 'x', { qos: 1 });
      await device.publishAsync('plant/live', 'after', { qos: 1 });
      // Nothing arrives while paused (the stream is closed): still the one row.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(await rows.count()).toBe(1);
      await page.getByRole('button', { name: 'Resume' }).click();
      await expect.poll(() => page.locator('.live-status').textContent(), { timeout: 10_000 }).toContain('Watching');
      await device.publishAsync('plant/resumed', 'back', { qos: 1 });
      await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(2);
      expect(await rows.first().locator('td').nth(1).textContent()).toBe('plant/resumed');

      await page.getByRole('button', { name: 'Clear' }).click();
      expect(await rows.count()).toBe(0);
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('clears a retained message from the tree through its confirmation, without JavaScript', async () => {
    const { context, page } = await openAnonymousPage(browser, { javaScriptEnabled: false });
    try {
      await signInBrowser(context, base, gatehouse.database.db);
      await page.goto(`${base}/topics`);
      expect(await page.locator('[data-live-stream]').count()).toBe(0);
      await page.getByRole('link', { name: 'Clear the retained message of plant/state' }).click();
      await page.getByRole('heading', { name: 'Clear this retained message?' }).waitFor();
      await page.getByRole('button', { name: 'Clear retained message' }).click();
      await page.waitForURL(`${base}/topics`);
      expect(await page.getByRole('status').first().textContent()).toContain('The retained message of “plant/state” was cleared.');
      expect(await page.getByText('No retained messages.').count()).toBe(1);
    } finally {
      await context.close();
    }
  });
});
