import net from 'node:net';
import mqttPacket from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import type { Broker, BrokerMetrics } from '../src/broker';
import { connectRedis } from '../src/cluster/redis';
import { createRedisBus } from '../src/broker/engine/redisBus';
import { startBareBroker } from './support/broker';
import { requireOrSkip } from './support/env';
import { connect, endClient, subscribeCodes } from './support/mqtt';

/** A raw TCP connection that has sent CONNECT and got its CONNACK; resolves with the socket. */
function rawConnected(port: number, clientId: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const parser = mqttPacket.parser();
    parser.on('packet', (packet) => {
      if (packet.cmd === 'connack') resolve(socket);
    });
    socket.on('data', (chunk) => parser.parse(chunk));
    socket.on('error', reject);
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 60, username: 'device', password: Buffer.from('secret') }));
  });
}

const closed = (socket: net.Socket) => new Promise<void>((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));

describe('the broker edges', () => {
  let broker: Broker | undefined;
  afterEach(async () => {
    await broker?.close();
    broker = undefined;
  });

  it.each([
    ['a topic name', { cmd: 'publish', topic: 'a/\u0000b', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }],
    ['a topic filter', { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/\u0000/#', qos: 0 }] }],
  ] as const)('closes the connection for U+0000 in %s [MQTT-4.7.3-2]', async (_what, packet) => {
    const started = await startBareBroker();
    broker = started.broker;
    const port = Number(new URL(started.url).port);
    const socket = await rawConnected(port, 'nul');
    const received: string[] = [];
    const parser = mqttPacket.parser();
    parser.on('packet', (p) => received.push(p.cmd));
    socket.on('data', (chunk) => parser.parse(chunk));
    socket.write(mqttPacket.generate(packet as mqttPacket.Packet));
    await closed(socket);
    expect(received).not.toContain('suback');
    expect(started.logs.some((line) => line.includes('holds U+0000') && line.includes('"nul"'))).toBe(true);
  });

  it('refuses in SUBACK (0x80) a filter longer than the limit, and filters beyond the bytes a session may hold; UNSUBSCRIBE gives room back', async () => {
    const started = await startBareBroker({ limits: { maxFilterBytes: 40, maxSessionFilterBytes: 60 } });
    broker = started.broker;
    const client = await connect(started.url, { username: 'device', password: 'secret', clientId: 'filters' });
    try {
      const long = `long/${'x'.repeat(40)}`;
      const twenty = (n: number) => `twenty/${String(n).padStart(13, '0')}`; // 20 bytes
      expect(await subscribeCodes(client, { [long]: { qos: 0 }, [twenty(1)]: { qos: 0 } })).toEqual({ [long]: 128, [twenty(1)]: 0 });
      expect(await subscribeCodes(client, { [twenty(2)]: { qos: 0 }, [twenty(3)]: { qos: 0 }, [twenty(4)]: { qos: 0 } })).toEqual({
        [twenty(2)]: 0,
        [twenty(3)]: 0,
        [twenty(4)]: 128,
      });
      // The same filter again costs nothing more.
      expect(await subscribeCodes(client, { [twenty(3)]: { qos: 1 } })).toEqual({ [twenty(3)]: 1 });
      await client.unsubscribeAsync(twenty(1));
      expect(await subscribeCodes(client, { [twenty(4)]: { qos: 0 } })).toEqual({ [twenty(4)]: 0 });
    } finally {
      await endClient(client);
    }
  });

  it('closes connections from an address beyond MQTT_MAX_PENDING_PER_ADDRESS not yet past CONNECT, counts them, logs once, and lets one in once another completes', async () => {
    const refusals: string[] = [];
    const metrics: BrokerMetrics = { connect() {}, received() {}, sent() {}, refused() {}, connectionRefused: (reason) => refusals.push(reason) };
    const started = await startBareBroker({ limits: { maxPendingPerAddress: 2 }, metrics });
    broker = started.broker;
    const port = Number(new URL(started.url).port);
    const open = (): Promise<net.Socket> =>
      new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
        socket.on('error', () => {});
      });
    const idle = [await open(), await open()];
    const third = await open();
    const fourth = await open();
    await closed(third);
    await closed(fourth);
    expect(refusals).toEqual(['pending_per_address', 'pending_per_address']);
    expect(started.logs.filter((line) => line.includes('MQTT_MAX_PENDING_PER_ADDRESS'))).toHaveLength(1);
    // A connection that completes CONNECT no longer counts: with one idle socket gone, a device gets in, and then another.
    idle[0]!.destroy();
    await expect.poll(() => started.broker.connectionCount()).toBe(1);
    const device = await rawConnected(port, 'device-1');
    const another = await rawConnected(port, 'device-2');
    expect(refusals).toHaveLength(2);
    for (const socket of [device, another, idle[1]!]) socket.destroy();
  });
});

const redisUrl = process.env.TEST_REDIS_URL;
const haveRedis = requireOrSkip('Redis (TEST_REDIS_URL)', Boolean(redisUrl), 'set TEST_REDIS_URL=redis://… to run the Redis bus test');

describe.runIf(haveRedis)('the Redis message bus', () => {
  it('hears a/+ from another node although a literal topic a/* is subscribed on the same bus first', async () => {
    const prefix = `gatehouse:edges-${process.pid}:mqtt/`;
    const [connA, connB] = await Promise.all([connectRedis(redisUrl!), connectRedis(redisUrl!)]);
    const a = await createRedisBus({ url: redisUrl!, conn: connA, prefix, concurrency: 10, log: () => {} });
    const b = await createRedisBus({ url: redisUrl!, conn: connB, prefix, concurrency: 10, log: () => {} });
    try {
      const heard: string[] = [];
      const listen = (filter: string) =>
        new Promise<void>((resolve) => a.on(filter, (packet: { topic: string }, done: () => void) => (heard.push(`${filter} ${packet.topic}`), done()), () => resolve()));
      await listen('a/*');
      await listen('a/+');
      await new Promise<void>((resolve) => b.emit({ topic: 'a/x', payload: Buffer.from('1') } as never, () => resolve()));
      await new Promise<void>((resolve) => b.emit({ topic: 'a/*', payload: Buffer.from('2') } as never, () => resolve()));
      await expect.poll(() => [...heard].sort(), { timeout: 5000 }).toEqual(['a/* a/*', 'a/+ a/*', 'a/+ a/x']);
    } finally {
      await new Promise<void>((resolve) => a.close(() => resolve()));
      await new Promise<void>((resolve) => b.close(() => resolve()));
      connA.disconnect();
      connB.disconnect();
    }
  });

  it('drops a message it cannot decode (said once), and lets an error of a delivery through, neither holding a delivery slot', async () => {
    const prefix = `gatehouse:edges-guard-${process.pid}:mqtt/`;
    const [connA, connB] = await Promise.all([connectRedis(redisUrl!), connectRedis(redisUrl!)]);
    // The subscriber connection the bus makes of connA, kept in hand here.
    const subscriber = connA.duplicate();
    connA.duplicate = () => subscriber;
    const logs: string[] = [];
    // One slot: a message whose slot is never given back stops every later one.
    const a = await createRedisBus({ url: redisUrl!, conn: connA, prefix, concurrency: 1, log: (line) => logs.push(line) });
    const b = await createRedisBus({ url: redisUrl!, conn: connB, prefix, concurrency: 1, log: () => {} });
    // What the guarded subscriber lets through goes to ioredis, and from there
    // to the process: caught here instead.
    const escaped: unknown[] = [];
    const guarded = subscriber.emit.bind(subscriber);
    subscriber.emit = (event: string | symbol, ...args: unknown[]) => {
      try {
        return guarded(event, ...args);
      } catch (error) {
        escaped.push(error);
        return true;
      }
    };
    try {
      const heard: string[] = [];
      let failing = false;
      const listenerError = new Error('a listener failed');
      await new Promise<void>((resolve) =>
        a.on(
          'guard/+',
          (packet: { topic: string }, done: () => void) => {
            if (failing) throw listenerError;
            heard.push(packet.topic);
            done();
          },
          () => resolve(),
        ),
      );
      const send = (topic: string) => new Promise<void>((resolve) => b.emit({ topic, payload: Buffer.from('x') } as never, () => resolve()));

      await send('guard/1');
      await expect.poll(() => heard, { timeout: 5000 }).toEqual(['guard/1']);

      // A listener that throws: its error is not taken for one of decoding.
      failing = true;
      await send('guard/2');
      await expect.poll(() => escaped, { timeout: 5000 }).toEqual([listenerError]);
      expect(logs).toEqual([]);
      failing = false;
      await send('guard/3');
      await expect.poll(() => heard, { timeout: 5000 }).toEqual(['guard/1', 'guard/3']);

      // Bytes that are no message: dropped and said once, no slot taken.
      await connB.publish(`${prefix}guard/4`, Buffer.from([0xc1]));
      await connB.publish(`${prefix}guard/5`, Buffer.from([0xc1]));
      await send('guard/6');
      await expect.poll(() => heard, { timeout: 5000 }).toEqual(['guard/1', 'guard/3', 'guard/6']);
      expect(logs).toEqual([expect.stringContaining('dropped a Redis message the broker could not read')]);
      expect(escaped).toEqual([listenerError]);
    } finally {
      await new Promise<void>((resolve) => a.close(() => resolve()));
      await new Promise<void>((resolve) => b.close(() => resolve()));
      connA.disconnect();
      connB.disconnect();
    }
  });
});
