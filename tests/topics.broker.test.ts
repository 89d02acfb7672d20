import { and, eq } from 'drizzle-orm';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditEvents } from '../src/db/schema';
import { createClient } from '../src/domain/clients';
import type { Gatehouse } from '../src/server';
import { LIVE_BURST } from '../src/web/topics';
import { signIn, type SignedInApp } from './support/admin';
import { grantGroup } from './support/acl';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient } from './support/mqtt';

/** Publishes and waits for the broker's acknowledgement (QoS 1: a retained message is stored by then). */
function publish(device: MqttClient, topic: string, payload: string | Buffer, options: { retain?: boolean; qos?: 0 | 1 } = {}): Promise<void> {
  return new Promise((resolve, reject) => device.publish(topic, payload, { qos: options.qos ?? 1, retain: options.retain ?? false }, (error) => (error ? reject(error) : resolve())));
}

/** Server-sent events read from a streamed response, one at a time. */
function eventReader(response: Response) {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  return {
    async next(timeoutMs = 10_000): Promise<{ event: string; data: any }> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const end = buffer.indexOf('\n\n');
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (data !== undefined) return { event, data: JSON.parse(data) };
          continue;
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error('no event in time');
        const chunk = await Promise.race([reader.read(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no event in time')), left))]);
        if (chunk.done) throw new Error('the stream ended');
        buffer += decoder.decode(chunk.value, { stream: true });
      }
    },
    cancel: () => reader.cancel(),
  };
}

describe('the Topics page with a broker', () => {
  let gatehouse: Gatehouse;
  let app: SignedInApp;
  let device: MqttClient;

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    app = await signIn(gatehouse.app, gatehouse.database.db, 'topics-admin');
    const db = gatehouse.database.db;
    await createClient(db, { name: 'Plant', username: 'plant', password: 'plant-password' });
    await grantGroup(db, { name: 'Plant', permissions: [['allow', 'publish', 'plant/#'], ['allow', 'subscribe', 'plant/#']], usernames: ['plant'] });
    await gatehouse.accessModel.settled();
    device = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'plant', password: 'plant-password', clientId: 'plant-1' });
    await publish(device, 'plant/a/temp', '21.5', { retain: true });
    await publish(device, 'plant/a/html', '<script>alert(1)</script>', { retain: true });
    await publish(device, 'plant/b/bin', Buffer.from([0, 1, 2, 255]), { retain: true });
    await publish(device, 'plant/b/long', 'x'.repeat(1000), { retain: true });
    await publish(device, 'plant/not-retained', 'gone');
  });
  afterAll(async () => {
    await endClient(device);
    await gatehouse?.close();
  });

  it('shows the retained messages as a tree with counts, payloads as text or hex, cut to size, never as markup', async () => {
    const response = await app.request('/topics');
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain('4 retained messages.');
    expect(html).toMatch(/<code class="topic-level">plant<\/code> <span class="topic-count">4 messages<\/span>/);
    expect(html).toMatch(/<code class="topic-level">a<\/code> <span class="topic-count">2 messages<\/span>/);
    expect(html).toContain('data-topic="plant/a/temp"');
    expect(html).toContain('<code class="payload payload-text" data-kind="text">21.5</code>');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).not.toContain('<script>alert(1)');
    expect(html).toContain('<code class="payload payload-hex" data-kind="hex">hex 00 01 02 ff</code>');
    expect(html).toContain(`${'x'.repeat(256)} … (1000 B)`);
    expect(html).not.toContain('x'.repeat(257));
    expect(html).not.toContain('plant/not-retained');
    // Seen published by this node: its age is known.
    expect(html).toMatch(/4 B · QoS 1 · \d+ s old/);
  });

  it('shows payloads as text or hex when asked (?payload=, no JavaScript needed), in the tree, the live stream and a collect, never as markup', async () => {
    const asHex = await (await app.request('/topics?payload=hex')).text();
    expect(asHex).toContain('<code class="payload payload-hex" data-kind="hex">hex 32 31 2e 35</code>'); // "21.5"
    expect(asHex).toContain('hex 3c 73 63 72'); // "<scr…"
    expect(asHex).toContain('Payloads show as hex,');
    expect(asHex).toContain('<a href="/topics?payload=hex" aria-current="true">Hex</a>');
    expect(asHex).toContain('<a href="/topics">Automatic</a>');

    const asText = await (await app.request('/topics?payload=text')).text();
    // Binary as text: control characters as their symbols, a byte that is not UTF-8 as U+FFFD.
    expect(asText).toContain('<code class="payload payload-text" data-kind="text">\u2400\u2401\u2402\ufffd</code>');
    expect(asText).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(asText).not.toContain('<script>alert(1)');
    // Anything else is the automatic view.
    expect(await (await app.request('/topics?payload=%3Cb%3E')).text()).toContain('<code class="payload payload-hex" data-kind="hex">hex 00 01 02 ff</code>');

    // The filter keeps the view: in its form, its links and the live stream's address.
    const watching = await (await app.request('/topics?filter=plant%2Flive%2F%23&payload=hex')).text();
    expect(watching).toContain('<input type="hidden" name="payload" value="hex"/>');
    expect(watching).toContain('data-live-stream="/topics/live?filter=plant%2Flive%2F%23&amp;payload=hex"');
    expect(watching).toContain('<a href="/topics?filter=plant%2Flive%2F%23&amp;payload=text">Text</a>');
    const events = eventReader(await app.request('/topics/live?filter=plant%2Fview%2F%23&payload=hex'));
    try {
      expect((await events.next()).event).toBe('ready');
      await publish(device, 'plant/view/one', 'ok');
      expect((await events.next()).data).toMatchObject({ topic: 'plant/view/one', kind: 'hex', text: '6f 6b' });
    } finally {
      await events.cancel();
    }
  });

  it('clears a retained message after a confirmation, and records it', async () => {
    const confirm = await app.request('/topics/clear?topic=plant%2Fa%2Ftemp');
    expect(confirm.status).toBe(200);
    const page = await confirm.text();
    expect(page).toContain('Clear this retained message?');
    expect(page).toContain('<input type="hidden" name="topic" value="plant/a/temp"/>');
    // Nothing is cleared by looking at the confirmation.
    expect(await (await app.request('/topics')).text()).toContain('data-topic="plant/a/temp"');

    const cleared = await app.request('/topics/clear', { method: 'POST', body: new URLSearchParams({ topic: 'plant/a/temp' }) });
    expect(cleared.status).toBe(303);
    expect(cleared.headers.get('location')).toBe('/topics');
    const after = await (await app.request('/topics')).text();
    expect(after).not.toContain('data-topic="plant/a/temp"');
    expect(after).toContain('3 retained messages.');
    expect((await app.request('/topics/clear?topic=plant%2Fa%2Ftemp')).status).toBe(404);
    // A device subscribing now gets the others' retained messages, not this one.
    const subscriber = await connect(brokerUrl(gatehouse, 'tcp'), { username: 'plant', password: 'plant-password', clientId: 'plant-2' });
    const received: string[] = [];
    subscriber.on('message', (topic) => received.push(topic));
    await new Promise<void>((resolve, reject) => subscriber.subscribe('plant/a/#', { qos: 1 }, (error) => (error ? reject(error) : resolve())));
    await publish(device, 'plant/a/marker', 'm');
    await expect.poll(() => received.includes('plant/a/marker') && received.includes('plant/a/html')).toBe(true);
    expect(received).not.toContain('plant/a/temp');
    expect(await gatehouse.broker.topics.retainedOf('plant/a/temp')).toBeUndefined();
    await endClient(subscriber);

    const audited = await gatehouse.database.db.select().from(auditEvents).where(and(eq(auditEvents.kind, 'retained.cleared'), eq(auditEvents.subject, 'plant/a/temp')));
    expect(audited).toHaveLength(1);
    expect(audited[0]!.actor).toBe('topics-admin');
  });

  it('streams the messages of a filter live, payloads as JSON text, at a bounded rate with the rest counted, and records the watching', async () => {
    const response = await app.request('/topics/live?filter=plant%2F%23');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const events = eventReader(response);
    try {
      expect((await events.next()).event).toBe('ready');
      await publish(device, 'plant/live/one', '<b>bold</b>');
      const first = await events.next();
      expect(first.event).toBe('message');
      expect(first.data).toMatchObject({ topic: 'plant/live/one', kind: 'text', text: '<b>bold</b>', size: 11, retain: false });
      await publish(device, 'plant/live/bin', Buffer.from([0xff, 0xfe]));
      expect((await events.next()).data).toMatchObject({ topic: 'plant/live/bin', kind: 'hex', text: 'ff fe' });

      // A burst far above the rate: some shown, the rest counted, none lost from the count.
      const burst = 200;
      await Promise.all(Array.from({ length: burst }, (_, i) => publish(device, `plant/burst/${i}`, String(i), { qos: 0 })));
      await publish(device, 'plant/burst/end', 'end');
      let shown = 0;
      let skipped = 0;
      while (shown + skipped < burst + 1) {
        const event = await events.next();
        if (event.event === 'message') shown++;
        else if (event.event === 'skipped') skipped += event.data.count;
      }
      expect(shown + skipped).toBe(burst + 1);
      expect(skipped).toBeGreaterThan(0);
      expect(shown).toBeLessThan(burst);
      expect(shown).toBeGreaterThanOrEqual(LIVE_BURST - 2);
    } finally {
      await events.cancel();
    }
    await gatehouse.audit.flush();
    const audited = await gatehouse.database.db.select().from(auditEvents).where(eq(auditEvents.kind, 'topics.watched'));
    expect(audited.map((row) => [row.subject, row.actor])).toContainEqual(['plant/#', 'topics-admin']);
  });

  it('collects a filter for 5 seconds without JavaScript', async () => {
    let stop = false;
    const publishing = (async () => {
      for (let i = 0; !stop && i < 100; i++) {
        await publish(device, 'plant/collect/x', `<i>${i}</i>`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();
    const response = await app.request('/topics?filter=plant%2Fcollect%2F%2B&collect=5');
    stop = true;
    await publishing;
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toMatch(/\d+ messages? in 5 seconds/);
    expect(html).toMatch(/<code class="payload payload-text" data-kind="text">&lt;i&gt;\d+&lt;\/i&gt;<\/code>/);
  });

  it('refuses a bad filter on its field, keeping what was typed, and only to a signed-in administrator', async () => {
    const bad = await app.request('/topics?filter=plant%2F%23%2Fx&collect=5');
    expect(bad.status).toBe(422);
    const html = await bad.text();
    expect(html).toContain('value="plant/#/x"');
    expect(html).toContain('id="filter-error"');
    expect((await app.request('/topics/live?filter=plant%2F%23%2Fx')).status).toBe(422);
    const anonymous = await gatehouse.app.request('/topics/live?filter=%23');
    expect(anonymous.headers.get('content-type') ?? '').not.toContain('text/event-stream');
    expect([302, 303, 401]).toContain(anonymous.status);
  });
});
