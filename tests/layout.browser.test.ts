import type { Browser, Page } from 'playwright-core';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from '../src/domain/clients';
import { createPipeline } from '../src/domain/pipelines/pipelines';
import type { GroupWithPermissions } from '../src/domain/groups';
import type { Gatehouse } from '../src/server';
import { signInBrowser } from './support/admin';
import { accessibilityViolations, browserAvailable, launchBrowser, openPage } from './support/browser';
import { appendRules, grantGroup } from './support/acl';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient } from './support/mqtt';

/**
 * The console as an operator sees it on a 1280 px laptop and a 390 px phone:
 * no page scrolls sideways (WCAG 1.4.10 reflow), and axe finds nothing at
 * WCAG 2.2 AA on any page, with names long enough to break a careless layout.
 */
describe.runIf(browserAvailable)('the console at 1280 and 390 px', { timeout: 240_000 }, () => {
  let gatehouse: Gatehouse;
  let browser: Browser;
  let base: string;
  let long: Client;
  let group: GroupWithPermissions;
  let pipelineId: number;
  let certificateRuleId: number;
  const devices: MqttClient[] = [];
  const fingerprint = 'AB'.repeat(32);

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    base = `http://127.0.0.1:${gatehouse.httpPort}`;
    browser = await launchBrowser();
    const db = gatehouse.database.db;
    long = await createClient(db, {
      name: 'Boiler room temperature sensor on the third floor of the east wing, beside the north stairs',
      username: 'sensor-06-building-a-floor-3-east-wing-north-stairs-boiler-room',
      password: 'long-password',
    });
    await createClient(db, { name: 'Door', username: 'door-1', password: 'door-password' });
    await createClient(db, { name: 'Certificate device with a long name', username: 'cert-device', authType: 'certificate', fingerprint });
    group = await grantGroup(db, {
      name: 'Gateways of the plant with a rather long group name that goes on',
      permissions: [
        ['allow', 'publish', 'plant/%c/telemetry/with/a/long/topic/#'],
        ['allow', 'subscribe', 'plant/#'],
      ],
      usernames: [long.username],
      clientIds: ['gw-*'],
    });
    const rules = await appendRules(db, [{ matchBy: 'certificate', value: fingerprint, groups: [String(group.id)] }]);
    certificateRuleId = rules.find((rule) => rule.matchBy === 'certificate')!.id;
    const { pipeline } = await createPipeline(
      db,
      {
        name: 'Forward the plant telemetry to the analytics endpoint of the data team',
        kind: 'mqtt',
        enabled: 'on',
        mqttUrl: 'mqtts://analytics-broker-of-the-data-team.example.com:8883',
        remoteTopic: `site-a/${'segment/'.repeat(8)}{{topic}}`,
        mappings: [{ topicFilter: 'plant/+/telemetry/with/a/long/topic/#' }],
      },
      undefined,
    );
    pipelineId = pipeline.id;
    const device = await connect(brokerUrl(gatehouse, 'tcp'), {
      username: long.username,
      password: 'long-password',
      clientId: 'sensor-06-building-a-floor-3-east-wing-north-stairs-boiler-room-client-id',
    });
    devices.push(device);
    await new Promise<void>((resolve, reject) => device.subscribe('plant/#', (error) => (error ? reject(error) : resolve())));
    // The audit trail: a refusal with a long topic, a failed CONNECT, and the console's own changes above.
    device.publish(`not/allowed/${'very-long-topic-level/'.repeat(8)}end`, 'x');
    const refused = await connect(brokerUrl(gatehouse, 'tcp'), { username: long.username, password: 'long-password', clientId: 'other' }).catch(() => null);
    if (refused) devices.push(refused);
    // The Topics page: a retained message with a long topic and a long payload.
    await new Promise<void>((resolve, reject) =>
      gatehouse.broker.aedes.publish(
        { cmd: 'publish', topic: 'plant/retained/with/a/very/long/topic', payload: Buffer.from(`{"reading":"${'0123456789'.repeat(40)}"}`), qos: 0, retain: true, dup: false },
        (error) => (error ? reject(error) : resolve()),
      ),
    );
    await gatehouse.audit.flush();
  });
  afterAll(async () => {
    await Promise.all(devices.map((device) => endClient(device)));
    await browser?.close();
    await gatehouse?.close();
  });

  /** Every page, `:client`, `:group`, `:pipeline` and `:rule` standing for the ids made above. */
  const pages = [
    '/',
    '/clients',
    '/clients/new',
    '/clients/:client',
    '/clients/:client/edit',
    '/clients/:client/delete',
    '/clients/:client/disconnect',
    '/connections',
    '/topics',
    '/topics?filter=plant%2F%23',
    '/topics/clear?topic=plant%2Fretained%2Fwith%2Fa%2Fvery%2Flong%2Ftopic',
    '/groups',
    '/groups/new',
    '/groups/:group/edit',
    '/groups/:group/delete',
    '/group-rules',
    '/group-rules?edit=:rule',
    '/group-rules/:rule/delete',
    '/administrators',
    '/administrators/new',
    '/administrators/password',
    '/certificates',
    '/certificates/enable',
    '/audit',
    '/audit?view=refusals',
    '/pipelines',
    '/pipelines/new',
    '/pipelines/:pipeline',
    '/pipelines/:pipeline/edit',
    '/pipelines/:pipeline/dead-letters',
    '/tokens',
    '/tokens/new',
    '/transfer',
    '/api/v1/reference',
  ];
  const resolve = (path: string) =>
    path.replace(':client', String(long.id)).replace(':group', String(group.id)).replace(':pipeline', String(pipelineId)).replace(':rule', String(certificateRuleId));

  async function sidewaysScroll(page: Page): Promise<number> {
    return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  }

  // A test per page and width: each page has its own time, and a failure names it.
  for (const width of [1280, 390]) {
    describe(`at ${width} px`, () => {
      let opened: Awaited<ReturnType<typeof openPage>>;
      beforeAll(async () => {
        opened = await openPage(browser, { viewport: { width, height: 800 } });
        await signInBrowser(opened.context, base, gatehouse.database.db, `operator-with-a-long-name-${width}-for-the-menu`);
      });
      afterAll(async () => {
        expect(opened?.problems()).toEqual([]);
        await opened?.context.close();
      });

      it.each(pages)(`fits %s in ${width} px without scrolling sideways, and axe finds nothing`, async (path) => {
        const { page } = opened;
        const response = await page.goto(`${base}${resolve(path)}`);
        expect(response?.status(), path).toBe(200);
        expect(await sidewaysScroll(page), `${path}: px wider than the window`).toBe(0);
        expect(await accessibilityViolations(page)).toEqual([]);
      });
    });
  }

  it('signs out and shows the sign-in page at 390 px without scrolling sideways', async () => {
    const { context, page } = await openPage(browser, { viewport: { width: 390, height: 800 } });
    try {
      await page.goto(`${base}/login`);
      expect(await sidewaysScroll(page)).toBe(0);
      expect(await accessibilityViolations(page)).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('opens the menu on a phone without JavaScript, with the signed-in user and Sign out in it', async () => {
    const { context, page } = await openPage(browser, { viewport: { width: 390, height: 800 }, javaScriptEnabled: false });
    try {
      await signInBrowser(context, base, gatehouse.database.db, 'phone-operator');
      await page.goto(`${base}/clients`);
      const nav = page.getByRole('navigation', { name: 'Main' });
      expect(await nav.isVisible()).toBe(false);
      expect(await page.getByRole('button', { name: 'Sign out' }).isVisible()).toBe(false);
      await page.getByText('Menu', { exact: true }).click();
      await nav.getByRole('link', { name: 'Groups' }).waitFor();
      expect(await page.getByText('Signed in as phone-operator').isVisible()).toBe(true);
      expect(await page.getByRole('button', { name: 'Sign out' }).isVisible()).toBe(true);
      expect(await sidewaysScroll(page)).toBe(0);
      await nav.getByRole('link', { name: 'Groups' }).click();
      await page.waitForURL(`${base}/groups`);
      expect(await page.getByRole('heading', { level: 1 }).innerText()).toBe('Groups');
    } finally {
      await context.close();
    }
  });

  it('passes axe with the menu open on a phone', async () => {
    const { context, page } = await openPage(browser, { viewport: { width: 390, height: 800 } });
    try {
      await signInBrowser(context, base, gatehouse.database.db);
      await page.goto(`${base}/groups`);
      await page.getByText('Menu', { exact: true }).click();
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Clients' }).waitFor();
      expect(await accessibilityViolations(page)).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('shows the navigation beside the page at 1280 px with no Menu button', async () => {
    const { context, page } = await openPage(browser, { viewport: { width: 1280, height: 800 } });
    try {
      await signInBrowser(context, base, gatehouse.database.db, 'laptop-operator');
      await page.goto(`${base}/clients`);
      expect(await page.getByText('Menu', { exact: true }).isVisible()).toBe(false);
      const nav = page.getByRole('navigation', { name: 'Main' });
      expect(await nav.getByRole('link', { name: 'Clients' }).getAttribute('aria-current')).toBe('page');
      const navBox = await nav.boundingBox();
      const mainBox = await page.getByRole('main').boundingBox();
      expect(navBox!.x + navBox!.width).toBeLessThanOrEqual(mainBox!.x);
      expect(await page.getByRole('button', { name: 'Sign out' }).isVisible()).toBe(true);
    } finally {
      await context.close();
    }
  });

  it('skips to the content from the first Tab, and keeps long names whole for screen readers and on focus', async () => {
    const { context, page } = await openPage(browser, { viewport: { width: 1280, height: 800 } });
    try {
      await signInBrowser(context, base, gatehouse.database.db);
      await page.goto(`${base}/clients`);
      await page.keyboard.press('Tab');
      const skip = page.getByRole('link', { name: 'Skip to content' });
      expect(await skip.evaluate((el) => el === document.activeElement)).toBe(true);
      expect(await skip.isVisible()).toBe(true);
      await page.keyboard.press('Enter');
      expect(await page.evaluate(() => document.activeElement?.id)).toBe('main');

      // The name is cut with an ellipsis to its column, whole in the page and its title.
      const link = page.getByRole('link', { name: long.name });
      expect(await link.getAttribute('title')).toBe(long.name);
      const cut = await link.evaluate((el) => el.scrollWidth > el.clientWidth);
      expect(cut).toBe(true);
      await link.focus();
      expect(await link.evaluate((el) => el.scrollWidth > el.clientWidth)).toBe(false);
      // The username never wraps: one line, however long.
      const username = page.getByRole('row', { name: new RegExp(long.name) }).locator('code', { hasText: long.username });
      const height = await username.evaluate((el) => el.getBoundingClientRect().height);
      const line = await username.evaluate((el) => parseFloat(getComputedStyle(el).lineHeight) || 20);
      expect(height).toBeLessThan(line * 2);
    } finally {
      await context.close();
    }
  });

  it('lets a table wider than a phone scroll in its own region, which takes focus', async () => {
    const { context, page } = await openPage(browser, { viewport: { width: 390, height: 800 } });
    try {
      await signInBrowser(context, base, gatehouse.database.db);
      await page.goto(`${base}/clients`);
      const region = page.getByRole('region', { name: 'Clients table' });
      const widths = await region.evaluate((el) => [el.scrollWidth, el.clientWidth]);
      expect(widths[0]).toBeGreaterThan(widths[1]!);
      await region.focus();
      await page.keyboard.press('ArrowRight');
      await expect.poll(() => region.evaluate((el) => el.scrollLeft)).toBeGreaterThan(0);
      expect(await sidewaysScroll(page)).toBe(0);
      // A row menu opened at the table's far edge is not cut off by the region.
      await region.evaluate((el) => (el.scrollLeft = el.scrollWidth));
      await page.getByRole('button', { name: `Actions for Door` }).click();
      const edit = page.getByRole('row', { name: /Door/ }).getByRole('link', { name: 'Edit' });
      await edit.waitFor();
      const box = await edit.boundingBox();
      expect(box!.y).toBeGreaterThanOrEqual(0);
      expect(box!.x).toBeGreaterThanOrEqual(0);
      expect(box!.x + box!.width).toBeLessThanOrEqual(390);
      // It is painted where it is, not hidden under the region's edge: the topmost element there is the link.
      const hit = await page.evaluate(([x, y]) => document.elementFromPoint(x!, y!)?.textContent?.trim(), [box!.x + box!.width / 2, box!.y + box!.height / 2]);
      expect(hit).toBe('Edit');
    } finally {
      await context.close();
    }
  });

  it('moves focus into the in-row edit form and back to the row after Cancel and Save', async () => {
    const { context, page, problems } = await openPage(browser, { viewport: { width: 1280, height: 800 } });
    try {
      await signInBrowser(context, base, gatehouse.database.db);
      await page.goto(`${base}/clients`);
      await page.getByRole('button', { name: 'Actions for Door' }).click();
      await page.getByRole('row', { name: /Door/ }).getByRole('link', { name: 'Edit' }).click();
      const form = page.getByRole('form', { name: 'Edit Door' });
      await form.waitFor();
      await expect.poll(() => page.evaluate(() => (document.activeElement as HTMLInputElement | null)?.name)).toBe('name');
      await form.getByRole('button', { name: 'Cancel' }).click();
      await form.waitFor({ state: 'detached' });
      await expect.poll(() => page.evaluate(() => document.activeElement?.textContent)).toBe('Door');

      await page.getByRole('button', { name: 'Actions for Door' }).click();
      await page.getByRole('row', { name: /Door/ }).getByRole('link', { name: 'Edit' }).click();
      await form.waitFor();
      await form.getByLabel('Client Name').fill('Door renamed');
      await form.getByRole('button', { name: 'Save' }).click();
      await form.waitFor({ state: 'detached' });
      await expect.poll(() => page.evaluate(() => document.activeElement?.textContent)).toBe('Door renamed');
      expect(problems()).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
