import { existsSync } from 'node:fs';
import AxeBuilder from '@axe-core/playwright';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';
import { requireOrSkip } from './env';

/** Debian's Chromium (apt-get install chromium); Playwright cannot download its own here. */
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const browserAvailable = requireOrSkip(
  `Chromium (${chromiumPath})`,
  existsSync(chromiumPath),
  'install it with `apt-get install chromium` (or set CHROMIUM_PATH) to run the browser suites',
);

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/**
 * A page that records console errors (CSP violations show up there) and
 * uncaught exceptions; `problems()` lists them for an assertion.
 */
export async function openPage(browser: Browser, options: BrowserContextOptions = {}): Promise<{ context: BrowserContext; page: Page; problems: () => string[] }> {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  const seen: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') seen.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => seen.push(`page error: ${error.message}`));
  return { context, page, problems: () => [...seen] };
}

/** Runs axe on the current page (WCAG 2.2 A and AA); returns its violations in a readable form. */
export async function accessibilityViolations(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']).analyze();
  return results.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
}

/** Every violation axe finds on the page as it is now, best practices included (empty is good). */
export async function axeViolations(page: Page): Promise<Array<{ id: string; help: string; targets: string[] }>> {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations.map((v) => ({ id: v.id, help: v.help, targets: v.nodes.map((n) => n.target.join(' ')) }));
}

/**
 * Where text on the page sits over a form control or is cut off, inside
 * `within`: a label's, hint's or error's text box that intersects an input,
 * select, textarea or button (other than its own control), and a label or
 * hint whose text is wider than its box (clipped). Empty when the form is laid out cleanly.
 */
export async function formLayoutProblems(page: Page, within = 'main'): Promise<string[]> {
  return page.evaluate((selector) => {
    const root = document.querySelector(selector);
    if (!root) return [`no ${selector}`];
    const visible = (el: Element) => {
      const style = getComputedStyle(el);
      const r = el.getBoundingClientRect();
      return style.visibility !== 'hidden' && style.display !== 'none' && r.width > 0 && r.height > 0;
    };
    const describe = (el: Element) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.getAttribute('name') ? `[name=${el.getAttribute('name')}]` : ''} “${(el.textContent ?? '').trim().slice(0, 40)}”`;
    const controls = [...root.querySelectorAll('input:not([type=hidden]), select, textarea, button')].filter(visible);
    // Text boxes: each text node of labels, hints and errors (not the controls' own text).
    const texts: Array<{ owner: Element; rect: DOMRect }> = [];
    for (const owner of root.querySelectorAll('label, small, .field-error, legend')) {
      if (!visible(owner)) continue;
      for (const node of owner.childNodes) {
        if (node.nodeType !== Node.TEXT_NODE || !node.textContent?.trim()) continue;
        const range = document.createRange();
        range.selectNodeContents(node);
        for (const rect of range.getClientRects()) if (rect.width > 0 && rect.height > 0) texts.push({ owner, rect });
      }
    }
    const problems: string[] = [];
    const overlap = (a: DOMRect, b: DOMRect) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1;
    for (const control of controls) {
      const box = control.getBoundingClientRect();
      for (const text of texts) {
        if (control.contains(text.owner)) continue;
        if (overlap(box, text.rect)) problems.push(`${describe(text.owner)} is drawn over ${describe(control)}`);
      }
    }
    for (const el of root.querySelectorAll('label, small, .field-error')) {
      if (!visible(el)) continue;
      const style = getComputedStyle(el);
      const clips = style.overflowX !== 'visible' || style.textOverflow === 'ellipsis';
      if (clips && el.scrollWidth > el.clientWidth + 1) problems.push(`${describe(el)} is cut off`);
    }
    return [...new Set(problems)];
  }, within);
}
