import { PassThrough } from 'node:stream';
import { Aedes, type Client as AedesClient } from 'aedes';
import { clientExpectations } from './client';
import type { Expectation } from './expectation';
import { incomingExpectations } from './incoming';
import { EngineMismatchError, installedVersion, packageSource } from './packages';
import { parserExpectations } from './parser';
import { redisBusExpectations } from './redisBus';
import { sessionStoreExpectations } from './sessionStore';
import { storedSessionExpectations } from './storedSessions';
import { topicsExpectations } from './topics';

/**
 * A patch of patches/aedes+2.0.0-beta.1+*.patch, known by a line it writes
 * into `file`. Each is tested in tests/aedes.patches.test.ts (and the
 * acknowledgement order in tests/acknowledged.process.test.ts).
 */
const AEDES_PATCHES: Array<{ patch: string; file: string; line: string; without: string }> = [
  { patch: '001', file: 'lib/client.js', line: 'GHSA-52qw-whmv-87c5', without: 'a client id or topic named like an Object property (constructor, __proto__) breaks the broker' },
  { patch: '002', file: 'lib/handlers/publish.js', line: 'function reserveInbound', without: 'inbound QoS 2 messages are unbounded and the advertised Receive Maximum is not enforced' },
  { patch: '003', file: 'lib/handlers/connect.js', line: 'GHSA-p8r9-qf8w-p73r', without: 'a clean session keeps its unfinished QoS 2 message ids' },
  { patch: '004', file: 'lib/handlers/connect.js', line: '[MQTT-3.1.2-5] Without Clean Start', without: 'a resumed MQTT 5 session without Session Expiry loses its queued messages' },
  { patch: '005', file: 'aedes.js', line: 'the session moved to another broker', without: 'a node wipes a session that moved to another node' },
  { patch: '006', file: 'lib/handlers/publish.js', line: 'const { topicAlias, ...properties } = packet.properties', without: 'a message published with a topic alias cannot be delivered from a store or another node' },
  { patch: '007', file: 'aedes.js', line: 'taken over on another broker', without: 'a session taken over on another node is wiped by the old one' },
  { patch: '008', file: 'lib/handlers/publish.js', line: '// gatehouse: acknowledged once stored.', without: 'PUBACK would go out before the message is stored' },
  { patch: '009', file: 'lib/handlers/connect.js', line: 'the hook may name the CONNACK reason code itself', without: 'a 5.0 device is not told why its CONNECT or PUBLISH was refused' },
  { patch: '010', file: 'lib/client.js', line: 'close once it is flushed', without: 'a server DISCONNECT (0x98, 0x8B, 0x8E) may be dropped before it reaches the device' },
  { patch: '011', file: 'lib/outgoing.js', line: 'export function writePublish', without: "a 5.0 device's Receive Maximum and Maximum Packet Size are not respected on what it is sent" },
  { patch: '012', file: 'lib/handlers/subscribe.js', line: 'function subscriptionIdentifiersFor', without: 'a message matching several subscriptions of a 5.0 device carries only one subscription identifier' },
  { patch: '013', file: 'lib/client.js', line: 'A message queued and never sent has no packet id', without: "an expired session's queued messages stay in LevelDB and go to the next session of its client id" },
];

const patchExpectations: Expectation[] = AEDES_PATCHES.map(({ patch, file, line, without }) => ({
  packageName: 'aedes',
  what: `${file} does not carry patch ${patch} (patches/aedes+2.0.0-beta.1+${patch}+…): ${without}`,
  holds: () => packageSource('aedes', file).includes(line),
}));

/**
 * A client of a broker that never listens, on a stream that carries nothing:
 * what a fresh connection looks like inside Aedes, for the field checks.
 */
function probeClient() {
  let made: { client: AedesClient; stream: PassThrough; broker: Aedes } | undefined;
  return {
    get: () => {
      if (!made) {
        const broker = new Aedes({});
        const stream = new PassThrough();
        made = { broker, stream, client: broker.handle(stream) };
      }
      return made.client;
    },
    dispose: () => {
      if (!made) return;
      made.client.close();
      made.stream.destroy();
      (made.broker as unknown as { mq: { close(done: () => void): void } }).mq.close(() => {});
    },
  };
}

/** Every expectation of the engine (those of the Redis bus with `redis`). */
export function engineExpectations(probe: () => AedesClient, options: { redis?: boolean } = {}): Expectation[] {
  return [
    ...patchExpectations,
    ...clientExpectations(probe),
    ...parserExpectations(probe),
    ...sessionStoreExpectations,
    ...incomingExpectations,
    ...storedSessionExpectations(probe),
    ...topicsExpectations(),
    ...(options.redis ? redisBusExpectations() : []),
  ];
}

/** Throws EngineMismatchError for the first expectation that does not hold. */
export async function verifyExpectations(expectations: readonly Expectation[]): Promise<void> {
  for (const expectation of expectations) {
    let holds: boolean;
    try {
      await expectation.prepare?.();
      holds = expectation.holds();
    } catch {
      holds = false;
    }
    if (!holds) throw new EngineMismatchError(expectation.packageName, installedVersion(expectation.packageName), expectation.what);
  }
}

const passed = new Set<string>();

/**
 * Checks, once per process and before any listener opens, everything the
 * engine relies on in other packages' internals (this folder's accessors,
 * the patch, the stores' error strings, with `redis` the Redis bus). Throws
 * EngineMismatchError naming the package, the version found and what moved:
 * a broker whose engine does not fit must not start, rather than fail on its
 * first device. Nothing is checked again per connection.
 */
export async function checkEngine(options: { redis?: boolean } = {}): Promise<void> {
  const key = options.redis ? 'redis' : 'local';
  if (passed.has(key)) return;
  const probe = probeClient();
  try {
    await verifyExpectations(engineExpectations(probe.get, options));
  } finally {
    probe.dispose();
  }
  passed.add(key);
}
