import type { MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import type { AcceptedMessage, Broker, PublishingSession } from '../src/broker';
import { startBareBroker } from './support/broker';
import { connect, endClient, nextMessage } from './support/mqtt';

/** A promise and the functions that settle it. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** The acknowledgements (puback, pubrec) `client` received, by packet id. */
function watchAcks(client: MqttClient) {
  const acks: Array<{ cmd: string; messageId?: number }> = [];
  client.on('packetreceive', (packet) => {
    if (packet.cmd === 'puback' || packet.cmd === 'pubrec') acks.push({ cmd: packet.cmd, messageId: (packet as { messageId?: number }).messageId });
  });
  return acks;
}

describe('onPublishAccepted', () => {
  let broker: Broker | undefined;
  const clients: MqttClient[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) await endClient(client);
    await broker?.close();
    broker = undefined;
  });

  async function client(url: string, clientId: string, extra: object = {}) {
    const made = await connect(url, { username: 'device', password: 'secret', clientId, ...extra });
    clients.push(made);
    return made;
  }

  it.each([1, 2] as const)('holds the QoS %i acknowledgement and the delivery until its promise resolves, and is told who published', async (qos) => {
    const calls: Array<{ message: AcceptedMessage; session: PublishingSession }> = [];
    const called = deferred();
    const release = deferred();
    const started = await startBareBroker({
      onPublishAccepted(message, session) {
        calls.push({ message, session });
        if (message.topic !== 'held/1') return;
        called.resolve();
        return release.promise;
      },
    });
    broker = started.broker;
    const subscriber = await client(started.url, 'watcher');
    await subscriber.subscribeAsync('held/#', { qos: 1 });
    const publisher = await client(started.url, 'publisher');
    const acks = watchAcks(publisher);
    const received: string[] = [];
    subscriber.on('message', (topic) => received.push(topic));

    const published = publisher.publishAsync('held/1', 'payload', { qos, retain: true });
    await called.promise;
    // A message from someone else goes all the way through meanwhile: the held one has not.
    const other = await client(started.url, 'other');
    const marker = nextMessage(subscriber, 'held/marker');
    await other.publishAsync('held/marker', 'm', { qos: 1 });
    await marker;
    expect(acks).toEqual([]);
    expect(received).toEqual(['held/marker']);

    release.resolve();
    const delivered = nextMessage(subscriber, 'held/1');
    await published;
    expect(acks.map((ack) => ack.cmd)).toEqual([qos === 1 ? 'puback' : 'pubrec']);
    expect((await delivered).payload).toBe('payload');

    const held = calls.find((call) => call.message.topic === 'held/1')!;
    expect(held.message).toMatchObject({ topic: 'held/1', qos, retain: true });
    expect(held.message.payload.toString()).toBe('payload');
    expect(held.session).toMatchObject({ clientRowId: 7, username: 'device', mqttClientId: 'publisher', transport: 'tcp', groups: ['Everything'] });
  });

  it('neither acknowledges nor delivers a QoS 1 message whose promise rejects, and closes the MQTT 3.1.1 connection', async () => {
    const started = await startBareBroker({
      onPublishAccepted(message) {
        if (message.topic === 'refused/1') return Promise.reject(Object.assign(new Error('quota exceeded'), { reasonCode: 0x97 }));
      },
    });
    broker = started.broker;
    const subscriber = await client(started.url, 'watcher');
    await subscriber.subscribeAsync('refused/#', { qos: 1 });
    const publisher = await client(started.url, 'publisher', { reconnectPeriod: 0 });
    const acks = watchAcks(publisher);
    const received: string[] = [];
    subscriber.on('message', (topic) => received.push(topic));

    const closed = new Promise<void>((resolve) => publisher.once('close', () => resolve()));
    publisher.publish('refused/1', 'payload', { qos: 1 });
    await closed;
    expect(acks).toEqual([]);

    const other = await client(started.url, 'other');
    const marker = nextMessage(subscriber, 'refused/marker');
    await other.publishAsync('refused/marker', 'm', { qos: 1 });
    await marker;
    expect(received).toEqual(['refused/marker']);
    expect(started.logs.some((line) => line.includes('"refused/1"') && line.includes('not accepted') && line.includes('quota exceeded'))).toBe(true);
  });

  it('offers QoS 0 messages without waiting for them, and never offers a will', async () => {
    const topics: string[] = [];
    const started = await startBareBroker({
      onPublishAccepted(message) {
        topics.push(message.topic);
        return new Promise<void>(() => {}); // never settles
      },
    });
    broker = started.broker;
    const subscriber = await client(started.url, 'watcher');
    await subscriber.subscribeAsync('fire/#', { qos: 0 });
    const publisher = await client(started.url, 'publisher', { will: { topic: 'fire/will', payload: Buffer.from('gone'), qos: 0, retain: false } });
    const delivered = nextMessage(subscriber, 'fire/1');
    publisher.publish('fire/1', 'now', { qos: 0 });
    expect((await delivered).payload).toBe('now');
    expect(topics).toEqual(['fire/1']);

    const will = nextMessage(subscriber, 'fire/will');
    (publisher as unknown as { stream: { destroy(): void } }).stream.destroy();
    expect((await will).payload).toBe('gone');
    expect(topics).toEqual(['fire/1']);
  });
});
