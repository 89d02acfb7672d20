import type { Browser } from 'playwright-core';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from '../src/domain/clients';
import type { Gatehouse } from '../src/server';
import { signInBrowser } from './support/admin';
import { grantGroup } from './support/acl';
import { accessibilityViolations, browserAvailable, launchBrowser, openPage as openAnonymousPage } from './support/browser';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient } from './support/mqtt';

/** Try it on a client's page: the client id it starts from, certificate clients, and its log. */
describe.runIf(browserAvailable)('Try it in Chromium', { timeout: 180_000 }, () => {
  let gatehouse: Gatehouse;
  let browser: Browser;
  let base: string;
  let meter: Client;
  const open: MqttClient[] = [];

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    base = `http://127.0.0.1:${gatehouse.httpPort}`;
    const db = gatehouse.database.db;
    meter = await createClient(db, { name: 'Meter', username: 'meter-user', password: 'meter-password' });
    // Only rows with %c: a random client id would be refused everything.
    await grantGroup(db, {
      name: 'Own topics',
      permissions: [
        ['allow', 'publish', 'meters/%c/#'],
        ['allow', 'subscribe', 'meters/%c/#'],
      ],
      usernames: ['meter-user'],
    });
    // Another client that may publish anywhere under meters/, to feed Try it's log.
    await createClient(db, { name: 'Feeder', username: 'feeder', password: 'feeder-password' });
    await grantGroup(db, { name: 'Feeders', permissions: [['allow', 'publish', 'meters/#']], usernames: ['feeder'] });
    browser = await launchBrowser();
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

  it('starts from the username, then the id the device used last, then its live id (with a warning), and %c rows match it', async () => {
    const { context, page, problems } = await openPage();
    try {
      // Never seen: its username.
      await page.goto(`${base}/clients/${meter.id}`);
      expect(await page.locator('#try-client-id').inputValue()).toBe('meter-user');
      expect(await page.locator('#check-clientId').inputValue()).toBe('meter-user');

      // Seen: the id of its last session.
      const device = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'meter-user', password: 'meter-password', clientId: 'meter-7' });
      await endClient(device);
      await expect.poll(() => gatehouse.lastSeen.pending()).toBeGreaterThan(0);
      await gatehouse.lastSeen.flush();
      await page.goto(`${base}/clients/${meter.id}`);
      expect(await page.locator('#try-client-id').inputValue()).toBe('meter-7');
      expect(await page.locator('#try-client-id-hint').innerText()).toContain('The ID its device used last');

      // Connected: its live id, and the hint says connecting takes the session over.
      const live = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'meter-user', password: 'meter-password', clientId: 'meter-8' });
      open.push(live);
      await page.goto(`${base}/clients/${meter.id}`);
      expect(await page.locator('#try-client-id').inputValue()).toBe('meter-8');
      expect(await page.locator('#try-client-id-hint').innerText()).toContain('takes that session over');
      await page.locator('#try-client-id').fill('meter-9');
      expect(await page.locator('#try-client-id-hint').innerText()).not.toContain('takes');
      await page.locator('#try-client-id').fill('meter-8');
      expect(await page.locator('#try-client-id-hint').innerText()).toContain('A device is connected with this ID now');
      await page.locator('#try-client-id').fill('meter-9');

      // With the id filled in, the %c rows allow it.
      await page.getByLabel('Password', { exact: true }).fill('meter-password');
      await page.getByRole('button', { name: 'Connect', exact: true }).click();
      await expect.poll(() => page.locator('#try-status').textContent()).toBe('Connected as meter-user with client ID meter-9.');
      await page.getByLabel('Topic filter').fill('meters/meter-9/#');
      await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
      await page.locator('#try-it').getByText('meters/meter-9/# (SUBACK granted QoS 1).').waitFor();
      expect(live.connected).toBe(true);
      expect(await accessibilityViolations(page)).toEqual([]);
      await page.getByRole('button', { name: 'Disconnect', exact: true }).click();
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('keeps the last 200 entries of its log, pauses and clears it', async () => {
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/clients/${meter.id}`);
      await page.locator('#try-client-id').fill('meter-log');
      await page.getByLabel('Password', { exact: true }).fill('meter-password');
      await page.getByRole('button', { name: 'Connect', exact: true }).click();
      await expect.poll(() => page.locator('#try-status').textContent()).toBe('Connected as meter-user with client ID meter-log.');
      await page.getByLabel('Topic filter').fill('meters/meter-log/#');
      await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
      await page.locator('#try-it').getByText('(SUBACK granted QoS 1)').waitFor();

      const sender = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'feeder', password: 'feeder-password', clientId: 'feeder-1' });
      open.push(sender);
      const entries = page.locator('#try-log li');
      for (let i = 0; i < 230; i++) sender.publish('meters/meter-log/reading', `m${i}`);
      await expect.poll(() => page.locator('#try-log li[data-kind="received"] pre').last().textContent(), { timeout: 20_000 }).toBe('m229');
      expect(await entries.count()).toBe(200);
      expect(await page.locator('#try-log-note').innerText()).toMatch(/^\d+ older entries removed \(the last 200 are kept\)\.$/);

      // Paused: counted, not shown.
      await page.getByRole('button', { name: 'Pause' }).click();
      expect(await page.getByRole('button', { name: 'Resume' }).getAttribute('aria-pressed')).toBe('true');
      for (let i = 0; i < 3; i++) sender.publish('meters/meter-log/reading', `paused-${i}`);
      await expect.poll(() => page.locator('#try-log-note').innerText(), { timeout: 10_000 }).toContain('Paused: 3 messages received and not shown.');
      expect(await page.locator('#try-log pre', { hasText: 'paused-' }).count()).toBe(0);
      await page.getByRole('button', { name: 'Resume' }).click();
      await page.locator('#try-log li', { hasText: '3 messages were received while paused and not shown.' }).waitFor();

      await page.getByRole('button', { name: 'Clear' }).click();
      expect(await entries.count()).toBe(0);
      expect(await page.locator('#try-log-note').innerText()).toBe('');
      sender.publish('meters/meter-log/reading', 'after');
      await page.locator('#try-log pre', { hasText: 'after' }).waitFor();
      expect(await entries.count()).toBe(1);
      await page.getByRole('button', { name: 'Disconnect', exact: true }).click();
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('connects as MQTT 5.0 and shows the reason codes of a refused subscription and publish, and the user properties of what it receives', async () => {
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/clients/${meter.id}`);
      await page.locator('#try-client-id').fill('meter-five');
      await page.getByLabel('Password', { exact: true }).fill('meter-password');
      await page.getByLabel('Protocol').selectOption('5');
      await page.getByRole('button', { name: 'Connect', exact: true }).click();
      await expect.poll(() => page.locator('#try-status').textContent()).toBe('Connected as meter-user with client ID meter-five.');
      await page.locator('#try-log li', { hasText: 'client ID meter-five, MQTT 5.0.' }).waitFor();

      await page.getByLabel('Topic filter').fill('meters/other/#');
      await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
      await page.locator('#try-log li[data-kind="refused"]', { hasText: 'SUBACK 0x87 for meters/other/#' }).waitFor();

      await page.locator('#try-publish-topic').fill('meters/other/reading');
      await page.locator('#try-publish-qos').selectOption('1');
      await page.getByRole('button', { name: 'Publish', exact: true }).click();
      await page.locator('#try-log li[data-kind="refused"]', { hasText: 'meters/other/reading: PUBACK 0x87, delivered to no one.' }).waitFor();

      await page.getByLabel('Topic filter').fill('meters/meter-five/#');
      await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
      await page.locator('#try-it').getByText('meters/meter-five/# (SUBACK granted QoS 1).').waitFor();
      const sender = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'feeder', password: 'feeder-password', clientId: 'feeder-five', protocolVersion: 5 });
      open.push(sender);
      await sender.publishAsync('meters/meter-five/reading', '21.5', { qos: 1, properties: { userProperties: { unit: 'celsius' } } });
      await page.locator('#try-log li[data-kind="received"]', { hasText: 'on meters/meter-five/reading (QoS 1, user properties unit=celsius)' }).waitFor();
      expect(await accessibilityViolations(page)).toEqual([]);
      await page.getByRole('button', { name: 'Disconnect', exact: true }).click();
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('explains a certificate client instead of asking for a password it cannot use', async () => {
    const door = await createClient(gatehouse.database.db, { name: 'Door', username: 'door', authType: 'certificate', fingerprint: 'CD'.repeat(32) });
    const { context, page } = await openPage();
    try {
      await page.goto(`${base}/clients/${door.id}`);
      const tryIt = page.locator('#try-it');
      expect(await tryIt.innerText()).toContain('A page in a browser cannot present a client certificate');
      // TLS is off in this Gatehouse: it says so, and where to turn it on.
      expect(await tryIt.innerText()).toContain('TLS is off: certificate clients cannot connect at all');
      expect(await tryIt.locator('#try-password').count()).toBe(0);
      expect(await tryIt.getByRole('button', { name: 'Connect' }).count()).toBe(0);
      // The checker beside still works for it.
      expect(await page.getByRole('button', { name: 'Check access' }).isVisible()).toBe(true);
      expect(await accessibilityViolations(page)).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
