import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listPipelines } from '../src/domain/pipelines/pipelines';
import { signInBrowser } from './support/admin';
import { axeViolations, browserAvailable, launchBrowser } from './support/browser';
import { startTestGatehouse } from './support/gatehouse';
import { startReceiver, type Receiver } from './support/receiver';

const SECRET_KEY = 'a-secret-key-for-the-tests';

type Gatehouse = Awaited<ReturnType<typeof startTestGatehouse>>;

describe.skipIf(!browserAvailable)('the pipelines pages in Chromium', { timeout: 120_000 }, () => {
  let gatehouse: Gatehouse;
  let browser: Browser;
  let receiver: Receiver;
  let base: string;

  beforeAll(async () => {
    receiver = await startReceiver();
    gatehouse = await startTestGatehouse('pglite', { SECRET_KEY, PIPELINES_ALLOW_PRIVATE_NETWORKS: '1' });
    base = `http://127.0.0.1:${gatehouse.httpPort}`;
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await gatehouse?.close();
    await receiver?.close();
  });

  for (const javaScript of [true, false]) {
    it(`creates a webhook pipeline from the form, shows its secret once, and every page passes axe (JavaScript ${javaScript ? 'on' : 'off'})`, async () => {
      const context = await browser.newContext({ javaScriptEnabled: javaScript });
      context.setDefaultTimeout(10_000);
      await signInBrowser(context, base, gatehouse.database.db);
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      page.on('console', (message) => {
        if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) errors.push(message.text());
      });
      const audit = async () => {
        if (!javaScript) return;
        expect(await axeViolations(page), `axe on ${page.url()}`).toEqual([]);
      };
      try {
        const name = `lab ${javaScript ? 'js' : 'plain'}`;
        await page.goto(`${base}/pipelines/new`);
        await audit();
        // With JavaScript only the chosen destination's settings show; without, all of them.
        expect(await page.locator('fieldset[data-kind="tagoio"]').isVisible()).toBe(!javaScript);
        expect(await page.locator('fieldset[data-kind="webhook"]').isVisible()).toBe(true);
        if (javaScript) {
          await page.getByLabel('TagoIO', { exact: true }).check();
          expect(await page.locator('fieldset[data-kind="webhook"]').isVisible()).toBe(false);
          await page.getByLabel('Webhook', { exact: true }).check();
        }
        await page.getByLabel('Name', { exact: true }).fill(name);
        await page.locator('#url').fill(`${receiver.url}/hook`);
        // An unknown variable first: the form says so and keeps what was typed.
        await page.locator('#bodyTemplate').fill('{"t": {{tpoic}}}');
        await page.getByRole('textbox', { name: 'Topic filter, mapping 1' }).fill('sensors/#');
        await page.getByRole('button', { name: 'Create pipeline' }).click();
        await expect.poll(() => page.getByText('{{tpoic}} is not a variable').count()).toBe(1);
        expect(await page.getByLabel('Name', { exact: true }).inputValue()).toBe(name);
        await audit();
        await page.locator('#bodyTemplate').fill('{"t": {{topic | json}}}');
        await page.getByRole('button', { name: 'Create pipeline' }).click();
        await page.getByText('The signing secret, shown this once').waitFor();
        expect(await page.locator('code.secret').textContent()).toMatch(/^whsec_/);
        await audit();
        const pipeline = (await listPipelines(gatehouse.database.db, SECRET_KEY)).find((p) => p.name === name)!;
        await gatehouse.pipelines.onPublishAccepted({ topic: 'sensors/a', payload: Buffer.from('1'), qos: 1, retain: false }, { username: 'u', mqttClientId: 'c', groups: [] });
        await page.goto(`${base}/pipelines/${pipeline.id}`);
        await page.getByRole('button', { name: 'Send a test' }).click();
        await page.getByText('Accepted').first().waitFor();
        await audit();
        for (const path of ['/pipelines', `/pipelines/${pipeline.id}/edit`, `/pipelines/${pipeline.id}/dead-letters`, `/pipelines/${pipeline.id}/delete`]) {
          await page.goto(`${base}${path}`);
          await audit();
        }
        expect(errors).toEqual([]);
      } finally {
        await context.close();
      }
    });
  }
});
