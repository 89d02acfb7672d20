import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import type { Gatehouse } from '../src/server';
import { signInBrowser } from './support/admin';
import { accessibilityViolations, browserAvailable, launchBrowser, openPage as openAnonymousPage } from './support/browser';
import { certificateFactory } from './support/certs';
import { startTestGatehouse } from './support/gatehouse';
import { saveTlsUpload, setTlsEnabled } from '../src/domain/tlsSettings';
import { getClient, listClients } from '../src/domain/clients';
import { connect, endClient } from './support/mqtt';

const SECRET_KEY = 'browser-test-secret-key';

// Chromium, axe and whole pages on a shared machine: more than the default minute.
describe.runIf(browserAvailable)('certificates page in Chromium', () => {
  const certs = certificateFactory();
  const ca = certs.ca('Browser CA');
  const server = certs.server(ca, 'browser-server');
  const other = certs.server(ca, 'browser-other');
  let gatehouse: Gatehouse;
  let browser: Browser;
  let base: string;

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite', { SECRET_KEY, MQTTS_PORT: '0', HTTPS_PORT: '0' });
    base = `http://127.0.0.1:${gatehouse.httpPort}`;
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await gatehouse?.close();
    certs.remove();
  });

  async function openPage(options: Parameters<typeof openAnonymousPage>[1] = {}) {
    const opened = await openAnonymousPage(browser, options);
    await signInBrowser(opened.context, base, gatehouse.database.db);
    return opened;
  }

  it('with JavaScript: shows errors in place, saves uploaded files and enables TLS after a confirmation', async () => {
    const { context, page, problems } = await openPage();
    try {
      await page.goto(`${base}/certificates`);
      expect(await accessibilityViolations(page)).toEqual([]);

      // A key that is not the certificate's: the form comes back in place.
      await page.getByRole('group', { name: 'Server Certificate' }).getByLabel('Paste PEM').fill(server.cert);
      await page.getByRole('group', { name: 'Server Private Key' }).getByLabel('Paste PEM').fill(other.key);
      await page.getByRole('button', { name: 'Save certificates' }).click();
      await page.getByText('This private key does not belong to the server certificate.').waitFor();
      expect(await page.getByRole('group', { name: 'Server Certificate' }).getByLabel('Paste PEM').inputValue()).toBe(server.cert.trim() + '\n');
      expect(await page.getByRole('group', { name: 'Server Private Key' }).getByLabel('Paste PEM').inputValue()).toBe('');
      expect(page.url()).toBe(`${base}/certificates`);
      expect(await accessibilityViolations(page)).toEqual([]);

      // Files instead; the file wins over what is pasted.
      await page.getByRole('group', { name: 'CA Certificate' }).getByLabel('or upload a file').setInputFiles(ca.certFile);
      await page.getByRole('group', { name: 'Server Certificate' }).getByLabel('or upload a file').setInputFiles(server.certFile);
      await page.getByRole('group', { name: 'Server Private Key' }).getByLabel('or upload a file').setInputFiles(server.keyFile);
      await page.getByRole('button', { name: 'Save certificates' }).click();
      await page.waitForURL(`${base}/certificates?done=saved`);
      await page.getByText(server.fingerprint).first().waitFor();

      await page.getByRole('button', { name: 'Enable certificates' }).click();
      const dialog = page.getByRole('dialog');
      await dialog.getByText('Devices connected now are not affected').waitFor();
      expect(await accessibilityViolations(page)).toEqual([]);
      await dialog.getByRole('button', { name: 'Enable certificates' }).click();
      await page.waitForURL(`${base}/certificates?done=enable`);
      await page.getByText('Certificates enabled').waitFor();
      expect(gatehouse.tls.status().source).toBe('console');
      expect(await page.getByText(`MQTT over TLS on port ${gatehouse.tls.status().mqttsPort}`).count()).toBe(1);
      expect(await accessibilityViolations(page)).toEqual([]);
      // The no-JavaScript confirmation page (axe needs script, so it is checked here).
      await page.goto(`${base}/certificates/disable`);
      await page.getByText('Devices connected over TLS stay connected').waitFor();
      expect(await accessibilityViolations(page)).toEqual([]);
      expect(problems().filter((p) => !p.includes('422'))).toEqual([]);
    } finally {
      await context.close();
    }
  }, 180_000);

  it('without JavaScript: confirms on a page of its own, then requires client certificates and disables', async () => {
    // On its own too: certificates stored and enabled.
    const db = gatehouse.database.db;
    await saveTlsUpload(db, { ca: ca.cert, cert: server.cert, key: server.key }, SECRET_KEY);
    await setTlsEnabled(db, true);
    await gatehouse.tls.apply();
    const { context, page } = await openPage({ javaScriptEnabled: false });
    try {
      await page.goto(`${base}/certificates`);
      await page.getByRole('button', { name: 'Require client certificates (mTLS)' }).click();
      await page.waitForURL(`${base}/certificates/require-client-cert`);
      await page.getByText('refused at CONNECT (CONNACK 5)').waitFor();
      await page.getByRole('button', { name: 'Require client certificates (mTLS)' }).click();
      await page.waitForURL(`${base}/certificates?done=require-client-cert`);
      expect(gatehouse.tls.status().requireClientCert).toBe(true);

      await page.getByRole('button', { name: 'Disable' }).click();
      await page.waitForURL(`${base}/certificates/disable`);
      await page.getByRole('button', { name: 'Disable' }).click();
      await page.waitForURL(`${base}/certificates?done=disable`);
      await page.getByText('Certificates disabled').waitFor();
      expect(gatehouse.tls.status().source).toBeNull();

      // A form error without JavaScript: the whole page, with the certificate kept.
      await page.getByRole('group', { name: 'CA Certificate' }).getByLabel('Paste PEM').fill('-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----');
      await page.getByRole('button', { name: 'Save certificates' }).click();
      await page.getByText('This is not a PEM certificate').waitFor();
      expect(await page.getByRole('group', { name: 'CA Certificate' }).getByLabel('Paste PEM').inputValue()).toContain('not base64');
    } finally {
      await context.close();
    }
  }, 180_000);

  it('creates certificate clients on the New client page, with and without JavaScript, and they connect over MQTTS', async () => {
    const db = gatehouse.database.db;
    await saveTlsUpload(db, { ca: ca.cert, cert: server.cert, key: server.key }, SECRET_KEY);
    await setTlsEnabled(db, true);
    await gatehouse.tls.apply();
    const doorCert = certs.client(ca, 'browser-door');
    const gateCert = certs.client(ca, 'browser-gate');
    for (const javaScriptEnabled of [true, false]) {
      const { context, page } = await openPage({ javaScriptEnabled });
      try {
        await page.goto(`${base}/clients/new`);
        if (javaScriptEnabled) {
          await page.getByLabel('Client Name').fill('Door');
          await page.getByLabel('Authentication Type').selectOption('certificate');
          await page.getByLabel('Username').fill('door');
          await page.getByLabel('Upload the certificate').setInputFiles(doorCert.certFile);
          expect(await accessibilityViolations(page)).toEqual([]);
        } else {
          await page.getByLabel('Client Name').fill('Gate');
          await page.getByLabel('Authentication Type').selectOption('certificate_password');
          await page.getByLabel('Username').fill('gate');
          await page.getByLabel('or paste its SHA-256 fingerprint').fill(gateCert.fingerprint);
          await page.getByLabel('Password').fill('gate-password');
        }
        await page.getByRole('button', { name: 'Create client' }).click();
        await page.waitForURL(/\/clients\/\d+$/);
        await page.getByRole('heading', { level: 1, name: javaScriptEnabled ? 'Door' : 'Gate' }).waitFor();
      } finally {
        await context.close();
      }
    }
    const door = (await listClients(db, { query: 'door' })).clients[0]!;
    expect(await getClient(db, door.id)).toMatchObject({ authType: 'certificate', certFingerprint: doorCert.fingerprint });
    const url = `mqtts://127.0.0.1:${gatehouse.tls.status().mqttsPort}`;
    const devices = [
      await connect(url, { ca: ca.cert, servername: 'localhost', cert: doorCert.cert, key: doorCert.key }),
      await connect(url, { ca: ca.cert, servername: 'localhost', cert: gateCert.cert, key: gateCert.key, username: 'gate', password: 'gate-password' }),
    ];
    for (const device of devices) await endClient(device);
  }, 180_000);
});
