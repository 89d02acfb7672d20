import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../src/domain/clients';
import type { Gatehouse } from '../src/server';
import { signInBrowser } from './support/admin';
import { browserAvailable, formLayoutProblems, launchBrowser, openPage } from './support/browser';
import { startTestGatehouse } from './support/gatehouse';

/**
 * Forms as they are drawn: no label, hint or error text over an input or
 * button, and no label cut off, at 1280 and 390 px. The audit trail's filter
 * bar (its fields once ran together, labels cut and hints over the inputs),
 * and the errors of a group's permission rows and of a client's form.
 */
describe.runIf(browserAvailable)('form layout in Chromium', { timeout: 120_000 }, () => {
  let gatehouse: Gatehouse;
  let browser: Browser;
  let base: string;

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    base = `http://127.0.0.1:${gatehouse.httpPort}`;
    browser = await launchBrowser();
    await createClient(gatehouse.database.db, { name: 'Taken', username: 'taken', password: 'taken-password' });
    gatehouse.audit.record({ kind: 'mqtt.publish_refused', actor: 'pump-1', subject: 'plant/valve', details: { clientId: 'pump-1' }, address: '192.0.2.10' });
    await gatehouse.audit.flush();
  });
  afterAll(async () => {
    await browser?.close();
    await gatehouse?.close();
  });

  for (const width of [1280, 390]) {
    describe(`at ${width} px`, () => {
      async function withPage(run: (page: Page) => Promise<void>) {
        const opened = await openPage(browser, { viewport: { width, height: 800 } });
        try {
          await signInBrowser(opened.context, base, gatehouse.database.db);
          await run(opened.page);
          // The forms sent with errors are answered 422, as they should be.
          expect(opened.problems().filter((problem) => !problem.includes('status of 422'))).toEqual([]);
        } finally {
          await opened.context.close();
        }
      }

      it('draws the audit filter bar with each label whole and no hint over a field, in both views and with an error', async () => {
        await withPage(async (page) => {
          for (const path of ['/audit', '/audit?view=refusals', '/audit?view=all&from=not-a-date']) {
            await page.goto(`${base}${path}`);
            await page.getByRole('button', { name: 'Filter', exact: true }).waitFor();
            expect(await formLayoutProblems(page), path).toEqual([]);
          }
          // The fields are apart: no two share a row's space.
          const boxes = await page.locator('.filter-bar :is(input:not([type=hidden]), select)').evaluateAll((els) =>
            els.map((el) => {
              const r = el.getBoundingClientRect();
              return { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
            }),
          );
          expect(boxes.length).toBeGreaterThanOrEqual(4);
          for (let i = 0; i < boxes.length; i++) {
            for (let j = i + 1; j < boxes.length; j++) {
              const [a, b] = [boxes[i]!, boxes[j]!];
              const apart = a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top;
              expect(apart, `fields ${i} and ${j} overlap`).toBe(true);
            }
          }
        });
      });

      it("draws the errors of a group's permission rows and of a client's form below their fields, not over them", async () => {
        await withPage(async (page) => {
          await page.goto(`${base}/groups/new`);
          await page.locator('#name').fill('Broken');
          await page.locator('#permission-0-topic').fill('a/#/b');
          await page.getByRole('button', { name: 'Create group' }).click();
          await page.locator('#permission-0-topic-error').waitFor();
          expect(await formLayoutProblems(page)).toEqual([]);

          await page.goto(`${base}/clients/new`);
          await page.getByLabel('Client Name').fill('Another');
          await page.locator('#username').fill('taken');
          await page.getByRole('button', { name: 'Create client' }).click();
          await page.locator('.field-error').first().waitFor();
          expect(await formLayoutProblems(page)).toEqual([]);
        });
      });
    });
  }
});
