import net from 'node:net';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createClient } from '../src/domain/clients';
import type { Gatehouse } from '../src/server';
import { grantGroup } from './support/acl';
import { startTestGatehouse } from './support/gatehouse';
import { brokerUrl, connect, endClient, nextMessage } from './support/mqtt';

/**
 * Hostile bytes on the broker's ports: whatever a connection sends, it may
 * lose that connection, never anyone else's, and the broker keeps serving.
 * `npm run fuzz` runs the same properties longer (FUZZ_RUNS, FUZZ_SEED).
 */
const runs = Number(process.env.FUZZ_RUNS ?? 60);
const seed = Number(process.env.FUZZ_SEED ?? 20261128);
const device = { username: 'fuzzed', password: 'fuzzed-password' };

const generate = (packet: object) => mqttPacket.generate(packet as mqttPacket.Packet);
const connectPacket = (overrides: Record<string, unknown> = {}) =>
  generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'fuzz', keepalive: 30, ...device, ...overrides });

/** Valid packets a session may send after CONNECT. */
const sessionPacket = fc.oneof(
  fc.record({ topic: fc.string({ maxLength: 40 }), payload: fc.uint8Array({ maxLength: 64 }), qos: fc.constantFrom(0, 1, 2), retain: fc.boolean() }).map((p) =>
    generate({ cmd: 'publish', messageId: 7, dup: false, ...p, payload: Buffer.from(p.payload) }),
  ),
  fc.array(fc.string({ maxLength: 30 }), { minLength: 1, maxLength: 4 }).map((topics) =>
    generate({ cmd: 'subscribe', messageId: 9, subscriptions: topics.map((topic) => ({ topic: topic || 'x', qos: 1 })) }),
  ),
  fc.constant(generate({ cmd: 'unsubscribe', messageId: 11, unsubscriptions: ['fuzz/#'] })),
  fc.constant(generate({ cmd: 'pingreq' })),
  fc.constant(generate({ cmd: 'pubrel', messageId: 7 })),
  fc.constant(generate({ cmd: 'disconnect' })),
);

/** One way to spoil a packet. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bits: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('length' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }) }),
);

type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(packet: Buffer, m: Mutation): Buffer {
  const at = 'at' in m ? m.at % Math.max(1, packet.length) : 0;
  switch (m.kind) {
    case 'flip': {
      const copy = Buffer.from(packet);
      copy[at] = copy[at]! ^ m.bits;
      return copy;
    }
    case 'truncate':
      return packet.subarray(0, at);
    case 'insert':
      return Buffer.concat([packet.subarray(0, at), Buffer.from(m.bytes), packet.subarray(at)]);
    case 'length':
      // A remaining length made of continuation bytes: announces more than is sent.
      return Buffer.concat([packet.subarray(0, 1), Buffer.from(m.bytes.map((b) => b | 0x80)), packet.subarray(1)]);
  }
}

/** What one hostile connection sends, in order. */
const hostileInput = fc.oneof(
  // Random bytes from the first byte on.
  fc.uint8Array({ minLength: 1, maxLength: 512 }).map((bytes) => [Buffer.from(bytes)]),
  // A spoiled CONNECT.
  mutation.map((m) => [mutate(connectPacket(), m)]),
  // A good CONNECT, then valid and spoiled packets.
  fc.array(fc.tuple(sessionPacket, fc.option(mutation, { nil: undefined })), { minLength: 1, maxLength: 6 }).map((packets) => [
    connectPacket(),
    ...packets.map(([packet, m]) => (m ? mutate(packet, m) : packet)),
  ]),
);

/** A short CONNECT (one-byte remaining length) with its protocol level byte replaced. */
function withProtocolLevel(packet: Buffer, level: number): Buffer {
  const copy = Buffer.from(packet);
  copy[2 + 6] = level; // fixed header (2), then "MQTT" as an MQTT string (6)
  return copy;
}

/** Named cases the issue lists, beside the generated ones. */
const namedCases: Array<[string, Buffer[]]> = [
  ['a second CONNECT', [connectPacket(), connectPacket()]],
  ['an unknown protocol level', [withProtocolLevel(connectPacket(), 9)]],
  ['a 64 KB client id', [connectPacket({ clientId: 'x'.repeat(65_535) })]],
  ['invalid UTF-8 in the client id', [Buffer.from(connectPacket({ clientId: 'fuzz-\u00e9' }).toString('latin1').replace('\u00c3', '\u00ff'), 'latin1')]],
  ['invalid UTF-8 in a topic', [connectPacket(), Buffer.from([0x30, 0x06, 0x00, 0x02, 0xc3, 0x28, 0x6f, 0x6b])]],
  ['a topic with 5,000 levels', [connectPacket(), generate({ cmd: 'publish', topic: 'a/'.repeat(5000) + 'b', payload: Buffer.from('x'), qos: 0 })]],
  ['a subscription with 5,000 levels', [connectPacket(), generate({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'a/'.repeat(5000) + '#', qos: 1 }] })]],
  ['an oversized remaining length', [connectPacket(), Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])]],
  ['a truncated PUBLISH', [connectPacket(), generate({ cmd: 'publish', topic: 'fuzz/t', payload: Buffer.alloc(100), qos: 1, messageId: 1 }).subarray(0, 20)]],
];

/** Sends `chunks` on a new TCP connection; resolves when the broker closes it or after a short while. */
function sendTcp(port: number, chunks: Buffer[]): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, 150);
    socket.on('error', done);
    socket.on('close', done);
    socket.on('connect', () => {
      for (const chunk of chunks) socket.write(chunk);
    });
  });
}

function sendWs(url: string, chunks: Buffer[]): Promise<void> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, 'mqtt');
    const done = () => {
      clearTimeout(timer);
      ws.terminate();
      resolve();
    };
    const timer = setTimeout(done, 150);
    ws.on('error', done);
    ws.on('close', done);
    ws.on('open', () => {
      for (const chunk of chunks) ws.send(chunk);
    });
  });
}

describe('hostile input on the MQTT listeners', { timeout: Math.max(180_000, runs * 500) }, () => {
  let gatehouse: Gatehouse;
  let watcher: MqttClient;
  let talker: MqttClient;
  let probes = 0;

  beforeAll(async () => {
    gatehouse = await startTestGatehouse('pglite');
    await createClient(gatehouse.database.db, { name: 'Fuzzed', ...device });
    await grantGroup(gatehouse.database.db, {
      name: 'Fuzz',
      permissions: [
        ['allow', 'publish', '#'],
        ['allow', 'subscribe', '#'],
      ],
      usernames: ['fuzzed'],
    });
    watcher = await connect(brokerUrl(gatehouse, 'tcp'), { ...device, clientId: 'watcher' });
    await watcher.subscribeAsync('healthy/#', { qos: 1 });
    talker = await connect(brokerUrl(gatehouse, 'ws'), { ...device, clientId: 'talker' });
  });
  afterAll(async () => {
    await endClient(watcher);
    await endClient(talker);
    await gatehouse?.close();
  });

  /** The connections made before the hostile ones still carry a message, and a new one is accepted. */
  async function expectHealthy() {
    const topic = `healthy/${++probes}`;
    const received = nextMessage(watcher, topic);
    await talker.publishAsync(topic, 'still fine', { qos: 1 });
    expect((await received).payload).toBe('still fine');
    const fresh = await connect(brokerUrl(gatehouse, 'tcp'), { ...device, clientId: `fresh-${probes}` });
    await endClient(fresh);
  }

  it.each(namedCases)('survives %s over TCP and WebSocket, and serves everyone else', async (_name, chunks) => {
    await sendTcp(gatehouse.mqttPort, chunks);
    await sendWs(brokerUrl(gatehouse, 'ws'), chunks);
    await expectHealthy();
  });

  it(`survives ${runs} generated hostile connections over TCP (seed ${seed})`, async () => {
    let count = 0;
    await fc.assert(
      fc.asyncProperty(hostileInput, async (chunks) => {
        await sendTcp(gatehouse.mqttPort, chunks);
        if (++count % 10 === 0) await expectHealthy();
      }),
      { numRuns: runs, seed },
    );
    await expectHealthy();
  });

  it(`survives ${Math.ceil(runs / 3)} generated hostile connections over WebSocket (seed ${seed})`, async () => {
    let count = 0;
    await fc.assert(
      fc.asyncProperty(hostileInput, async (chunks) => {
        await sendWs(brokerUrl(gatehouse, 'ws'), chunks);
        if (++count % 10 === 0) await expectHealthy();
      }),
      { numRuns: Math.ceil(runs / 3), seed },
    );
    await expectHealthy();
  });
});
