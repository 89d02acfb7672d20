import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../src/domain/clients';
import type { Gatehouse } from '../src/server';
import { signIn, TEST_ORIGIN, type SignedInApp } from './support/admin';
import { createTestDatabase } from './support/db';
import { startTestGatehouse } from './support/gatehouse';
import { postForm } from './support/http';
import { createApp } from '../src/web/app';
import { createSignInGuard } from '../src/domain/administrators';
import type { OpenDatabase } from '../src/db';

/** What a raw HTTP exchange gave back: the status line's code, and whether the server closed the connection. */
interface RawAnswer {
  status: number;
  closedByServer: boolean;
  /** Body bytes the client had written when the answer arrived. */
  bytesSentBeforeAnswer: number;
}

/**
 * Sends `head` (request line and headers) and then body chunks of `chunkBytes`
 * until the server answers or `maxBodyBytes` are sent; never the whole body
 * the headers announce, so an answer proves the server judged it early.
 */
function rawPost(port: number, head: string, options: { chunked: boolean; chunkBytes: number; maxBodyBytes: number }): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    let sent = 0;
    let status = 0;
    let answered = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer after ${sent} body bytes`));
    }, 15_000);
    const chunk = Buffer.alloc(options.chunkBytes, 'a');
    const pump = () => {
      while (!answered && sent < options.maxBodyBytes) {
        const piece = options.chunked ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]) : chunk;
        sent += chunk.length;
        if (!socket.write(piece)) {
          socket.once('drain', pump);
          return;
        }
      }
    };
    socket.on('connect', () => {
      socket.write(head);
      setTimeout(pump, 50);
    });
    socket.on('data', (data) => {
      received += data.toString('latin1');
      const match = /^HTTP\/1\.1 (\d{3})/.exec(received);
      if (match && !answered) {
        answered = true;
        status = Number(match[1]);
        (socket as net.Socket & { bytesAtAnswer?: number }).bytesAtAnswer = sent;
      }
    });
    socket.on('error', () => {
      // A reset after the answer is the server refusing to read the rest.
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (!answered) return reject(new Error(`closed without an answer after ${sent} body bytes`));
      resolve({ status, closedByServer: true, bytesSentBeforeAnswer: (socket as net.Socket & { bytesAtAnswer?: number }).bytesAtAnswer ?? sent });
    });
  });
}

describe('request bodies over HTTP', () => {
  let gatehouse: Gatehouse;
  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
  });
  afterAll(async () => {
    await gatehouse?.close();
  });

  it('refuses a sign-in announcing 150 MB with 413 before reading any of it, and closes the connection', async () => {
    const head = [
      'POST /login HTTP/1.1',
      'Host: localhost',
      `Origin: http://localhost:${gatehouse.httpPort}`,
      'Content-Type: application/x-www-form-urlencoded',
      `Content-Length: ${150 * 1024 * 1024}`,
      '',
      '',
    ].join('\r\n');
    const answer = await rawPost(gatehouse.httpPort, head, { chunked: false, chunkBytes: 1024, maxBodyBytes: 0 });
    expect(answer.status).toBe(413);
    expect(answer.bytesSentBeforeAnswer).toBe(0);
    expect(answer.closedByServer).toBe(true);
  });

  it('cuts off a chunked sign-in body at its limit instead of reading it to the end', async () => {
    const head = [
      'POST /login HTTP/1.1',
      'Host: localhost',
      `Origin: http://localhost:${gatehouse.httpPort}`,
      'Content-Type: application/x-www-form-urlencoded',
      'Transfer-Encoding: chunked',
      '',
      '',
    ].join('\r\n');
    // Up to 64 MB offered; the answer must come long before.
    const answer = await rawPost(gatehouse.httpPort, head, { chunked: true, chunkBytes: 4096, maxBodyBytes: 64 * 1024 * 1024 });
    expect(answer.status).toBe(413);
    expect(answer.bytesSentBeforeAnswer).toBeLessThan(8 * 1024 * 1024);
    expect(answer.closedByServer).toBe(true);
  });

  it('still signs in with a form of ordinary size', async () => {
    const response = await fetch(`http://127.0.0.1:${gatehouse.httpPort}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: `http://127.0.0.1:${gatehouse.httpPort}` },
      body: new URLSearchParams({ username: 'nobody-here', password: 'wrong-password' }),
      redirect: 'manual',
    });
    expect(response.status).toBe(401);
  });
});

describe('request bodies through the app', () => {
  let database: OpenDatabase;
  let app: ReturnType<typeof createApp>;
  let admin: SignedInApp;
  const signInGuard = { current: undefined as ReturnType<typeof createSignInGuard> | undefined };
  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    signInGuard.current = createSignInGuard(database.db);
    app = createApp({ db: database.db, signIn: signInGuard.current, log: () => {} });
    admin = await signIn(app, database.db);
    await createClient(database.db, { name: 'Sensor', username: 'sensor', password: 'sensor-password' });
  });
  afterAll(async () => {
    await database?.close();
  });

  it('refuses a sign-in body over 8 KB sent without a length (counted as it is read)', async () => {
    const response = await app.request('/login', {
      method: 'POST',
      body: new Blob([`username=admin&password=${'x'.repeat(9 * 1024)}`]).stream(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: TEST_ORIGIN },
      duplex: 'half',
    } as RequestInit);
    expect(response.status).toBe(413);
    expect(await response.text()).toContain('8 KB');
  });

  it('refuses a password longer than any administrator may have before hashing it', async () => {
    const before = signInGuard.current!.stats().verifies;
    const response = await postForm(app, '/login', { username: 'admin', password: 'p'.repeat(257) }, { origin: TEST_ORIGIN });
    expect(response.status).toBe(422);
    const html = await response.text();
    expect(html).toContain('at most 256 characters');
    expect(html).not.toContain('p'.repeat(257));
    expect(signInGuard.current!.stats().verifies).toBe(before);
  });

  it('refuses a username longer than any username before reading the database', async () => {
    const before = signInGuard.current!.stats().verifies;
    const response = await postForm(app, '/login', { username: 'u'.repeat(129), password: 'some-password' }, { origin: TEST_ORIGIN });
    expect(response.status).toBe(422);
    expect(signInGuard.current!.stats().verifies).toBe(before);
  });

  it('refuses a console form over 1 MB with 413 and saves nothing', async () => {
    const response = await admin.request('/clients/new', {
      method: 'POST',
      body: new URLSearchParams({ name: 'n'.repeat(1024 * 1024 + 10), username: 'big', password: 'big-password-1' }),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(response.status).toBe(413);
    const listing = await admin.request('/clients');
    expect(await listing.text()).not.toContain('>big<');
  });

  it('takes certificate uploads up to their own larger limit, and refuses past it with 413', async () => {
    // Three PEM fields of 70 KB each: over the per-field limit, under the route's.
    const form = new FormData();
    for (const field of ['ca', 'cert', 'key']) form.append(field, `-----BEGIN CERTIFICATE-----\n${'A'.repeat(70 * 1024)}\n`);
    const accepted = await admin.request('/certificates', { method: 'POST', body: form });
    expect(accepted.status).toBe(422);
    const huge = new FormData();
    huge.append('ca', 'A'.repeat(300 * 1024));
    const refused = await admin.request('/certificates', { method: 'POST', body: huge });
    expect(refused.status).toBe(413);
  });

  it('never shows a refused oversized upload back in the form', async () => {
    const marker = 'NEVER-ECHOED-';
    const pasted = `-----BEGIN CERTIFICATE-----\n${marker.repeat(6000)}\n-----END CERTIFICATE-----\n`;
    const form = new FormData();
    form.append('ca', pasted);
    form.append('certFile', new File([pasted], 'cert.pem'));
    const response = await admin.request('/certificates', { method: 'POST', body: form });
    expect(response.status).toBe(422);
    const html = await response.text();
    expect(html).toContain('Use at most 64 KB.');
    expect(html).not.toContain(marker);
  });
});
