import net from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IClientOptions, MqttClient } from 'mqtt';
import { createClient } from '../src/domain/clients';
import { grantGroup } from './support/acl';
import { certificateFactory, type Issued } from './support/certs';
import { startTestGatehouse } from './support/gatehouse';
import { endClient, subscribeCodes, tryConnect } from './support/mqtt';
import { connectWithConnack, listenerOf, rawClient, recordMessages, waitFor, type AnyTransport, type Heard } from './support/mqtt5';

/**
 * What a 5.0 device gets beyond reason codes (README, "MQTT 5"): each
 * feature through a whole Gatehouse, over plain TCP and over WebSocket with
 * TLS (the engine does the same on every listener; these two cover the
 * WebSocket framing and TLS).
 */
const device = { username: 'feat', password: 'feat-password' };
const responder = { username: 'feat-responder', password: 'responder-password' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const certs = certificateFactory();
let ca: Issued;

afterAll(() => certs.remove());

describe.each(['tcp', 'wss'] as AnyTransport[])('MQTT 5 features over %s', { timeout: 60_000 }, (transport) => {
  let gatehouse: Awaited<ReturnType<typeof startTestGatehouse>>;
  const open: MqttClient[] = [];

  const options = (clientId: string, extra: IClientOptions = {}): IClientOptions => ({
    ...listenerOf(gatehouse, transport, ca).options,
    protocolVersion: 5,
    clientId,
    ...device,
    ...extra,
  });
  const url = () => listenerOf(gatehouse, transport, ca).url;
  async function connect5(clientId: string, extra: IClientOptions = {}, before?: (client: MqttClient) => void) {
    const connected = await connectWithConnack(url(), options(clientId, extra), before);
    open.push(connected.client);
    return connected;
  }

  beforeAll(async () => {
    ca ??= certs.ca('Features CA');
    const server = certs.server(ca, `features-${transport}`);
    gatehouse = await startTestGatehouse('pglite', {
      MQTTS_PORT: '0',
      HTTPS_PORT: '0',
      TLS_CERT_FILE: server.certFile,
      TLS_KEY_FILE: server.keyFile,
      MQTT_KEEPALIVE_LIMIT_S: '600',
    });
    await createClient(gatehouse.database.db, { name: 'Features', ...device });
    await createClient(gatehouse.database.db, { name: 'Responder', ...responder });
    await grantGroup(gatehouse.database.db, {
      name: 'Features',
      permissions: [
        ['allow', 'publish', 'feat/#'],
        ['allow', 'subscribe', 'feat/#'],
        ['deny', 'publish', 'feat/locked/#'],
      ],
      usernames: [device.username],
    });
    await grantGroup(gatehouse.database.db, {
      name: 'Responders',
      permissions: [
        ['allow', 'subscribe', 'feat/requests/#'],
        ['allow', 'publish', 'feat/replies/#'],
      ],
      usernames: [responder.username],
    });
  });
  afterAll(async () => {
    for (const client of open) client.end(true);
    await gatehouse?.close();
  });

  it('advertises what it supports truthfully in CONNACK, and refuses a shared subscription with 0x9E', async () => {
    const { client, connack } = await connect5('feat-caps', { keepalive: 0 });
    const properties = connack.properties ?? {};
    // Shared subscriptions: not available (and said so); everything else
    // defaults to available when not named ([MQTT-3.2.2-9..13]).
    expect(properties.sharedSubscriptionAvailable).toBe(false);
    expect(properties).not.toHaveProperty('maximumQoS');
    expect(properties).not.toHaveProperty('retainAvailable');
    expect(properties).not.toHaveProperty('wildcardSubscriptionAvailable');
    expect(properties).not.toHaveProperty('subscriptionIdentifiersAvailable');
    // keepalive 0 over MQTT_KEEPALIVE_LIMIT_S: the server's keep alive instead.
    expect(properties.serverKeepAlive).toBe(600);
    expect(await subscribeCodes(client, { '$share/group/feat/x': { qos: 1 }, 'feat/+/x': { qos: 2 } })).toEqual({ '$share/group/feat/x': 0x9e, 'feat/+/x': 2 });
    expect(client.connected).toBe(true);
  });

  it('refuses a CONNECT naming an authentication method with 0x8C: enhanced authentication is not supported', async () => {
    const outcome = await tryConnect(url(), options('feat-auth', { properties: { authenticationMethod: 'SCRAM-SHA-256' } }));
    expect(outcome).toMatchObject({ ok: false, code: 0x8c });
  });

  it('assigns a client identifier to an empty one, also for a session that outlives the connection', async () => {
    // Clean Start with a Session Expiry: a new session, kept after the connection ends.
    const { client, connack } = await connect5('', { clean: true, properties: { sessionExpiryInterval: 60 } });
    const assigned = connack.properties?.assignedClientIdentifier;
    expect(assigned).toMatch(/^aedes_[0-9a-f-]{36}$/);
    await client.subscribeAsync('feat/assigned', { qos: 1 });
    await endClient(client);
    // The assigned id names the session: coming back with it resumes it.
    const back = await connect5(assigned!, { clean: false, properties: { sessionExpiryInterval: 60 } });
    expect(back.connack.sessionPresent).toBe(true);
  });

  it.runIf(transport === 'tcp')('still refuses an empty client id with clean session 0 from a 3.1.1 device', async () => {
    // Neither mqtt.js nor mqtt-packet will write it: written by hand.
    const string = (text: string) => Buffer.concat([Buffer.from([0, Buffer.byteLength(text)]), Buffer.from(text)]);
    // Protocol name and level 4, flags: username, password, clean session 0; keep alive 60; empty client id.
    const body = Buffer.concat([string('MQTT'), Buffer.from([4, 0xc0, 0, 60]), string(''), string(device.username), string(device.password)]);
    const socket = net.connect(gatehouse.mqttPort, '127.0.0.1');
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const connack = new Promise<Packet>((resolve) => parser.once('packet', resolve));
    socket.on('data', (data) => parser.parse(data));
    socket.on('error', () => {});
    socket.write(Buffer.concat([Buffer.from([0x10, body.length]), body]));
    expect(await connack).toMatchObject({ cmd: 'connack', returnCode: 2 });
    socket.destroy();
  });

  it('drops a queued message whose expiry passed while the session was away, and forwards the rest with the time left', async () => {
    const session = { clean: false, properties: { sessionExpiryInterval: 300 } };
    const away = await connect5('feat-expiry-sub', session);
    await away.client.subscribeAsync('feat/expiry/#', { qos: 1 });
    await endClient(away.client);
    const { client: publisher } = await connect5('feat-expiry-pub');
    await publisher.publishAsync('feat/expiry/short', 'gone', { qos: 1, properties: { messageExpiryInterval: 1 } });
    await publisher.publishAsync('feat/expiry/long', 'kept', { qos: 1, properties: { messageExpiryInterval: 120 } });
    await sleep(2100);
    let heard: Heard[] = [];
    await connect5('feat-expiry-sub', session, (client) => (heard = recordMessages(client)));
    const kept = await waitFor(heard, 'feat/expiry/long');
    // Queued in publishing order: the expired one would have come first.
    expect(heard.map((m) => m.topic)).toEqual(['feat/expiry/long']);
    expect(kept.properties.messageExpiryInterval).toBeLessThanOrEqual(118);
    expect(kept.properties.messageExpiryInterval).toBeGreaterThan(100);
  });

  it('does not send a retained message whose expiry passed, and sends the rest with the time left', async () => {
    const { client: publisher } = await connect5('feat-retained-pub');
    await publisher.publishAsync('feat/retained/a-short', 'gone', { qos: 1, retain: true, properties: { messageExpiryInterval: 1 } });
    await publisher.publishAsync('feat/retained/b-long', 'kept', { qos: 1, retain: true, properties: { messageExpiryInterval: 120 } });
    await sleep(2100);
    const { client } = await connect5('feat-retained-sub');
    const heard = recordMessages(client);
    await client.subscribeAsync('feat/retained/#', { qos: 1 });
    const kept = await waitFor(heard, 'feat/retained/b-long');
    // The store gives retained messages in topic order: a-short would have come first.
    expect(heard.map((m) => m.topic)).toEqual(['feat/retained/b-long']);
    expect(kept.retain).toBe(true);
    expect(kept.properties.messageExpiryInterval).toBeLessThanOrEqual(118);
  });

  it('publishes a will after its delay, and not at all when the device is back within it', async () => {
    const { client: observer } = await connect5('feat-will-observer');
    const heard = recordMessages(observer);
    await observer.subscribeAsync('feat/will/#', { qos: 1 });
    const will = (topic: string) => ({ topic, payload: Buffer.from('gone'), qos: 1 as const, retain: false, properties: { willDelayInterval: 1 } });
    const session = { clean: false, properties: { sessionExpiryInterval: 60 } };

    const lost = await connect5('feat-will-lost', { ...session, will: will('feat/will/lost') });
    const returning = await connect5('feat-will-back', { ...session, will: will('feat/will/back') });
    const droppedAt = Date.now();
    lost.client.stream.destroy();
    returning.client.stream.destroy();
    // Back within the delay: its will is not published.
    await connect5('feat-will-back', session);
    const fired = await waitFor(heard, 'feat/will/lost');
    expect(fired.payload).toBe('gone');
    expect(Date.now() - droppedAt).toBeGreaterThanOrEqual(1000);
    await sleep(1500);
    expect(heard.map((m) => m.topic)).toEqual(['feat/will/lost']);
  });

  it('honours No Local, Retain As Published and Retain Handling 0, 1 and 2', async () => {
    const { client: publisher } = await connect5('feat-options-pub');
    await publisher.publishAsync('feat/rh/x', 'retained x', { qos: 1, retain: true });
    await publisher.publishAsync('feat/rh/y', 'retained y', { qos: 1, retain: true });
    const { client } = await connect5('feat-options');
    const heard = recordMessages(client);

    // Retain Handling 2: no retained message; 1: only for a new subscription; 0: always.
    await client.subscribeAsync('feat/rh/x', { qos: 1, rh: 2 });
    await client.subscribeAsync('feat/rh/y', { qos: 1, rh: 1 });
    await waitFor(heard, 'feat/rh/y');
    await client.subscribeAsync('feat/rh/y', { qos: 1, rh: 1 });
    await client.subscribeAsync('feat/rh/x', { qos: 1, rh: 0 });
    await waitFor(heard, 'feat/rh/x');
    // Each SUBSCRIBE's retained messages are read after the one before: x (rh 2) and y again (rh 1) would be here.
    expect(heard.map((m) => `${m.topic} ${m.retain}`)).toEqual(['feat/rh/y true', 'feat/rh/x true']);

    // No Local: not its own messages; Retain As Published: the flag as published.
    heard.length = 0;
    await client.subscribeAsync('feat/nl', { qos: 1, nl: true });
    await client.subscribeAsync('feat/rap/kept', { qos: 1, rap: true, rh: 2 });
    await client.subscribeAsync('feat/rap/cleared', { qos: 1, rh: 2 });
    await client.publishAsync('feat/nl', 'own', { qos: 1 });
    await publisher.publishAsync('feat/nl', 'other', { qos: 1 });
    await publisher.publishAsync('feat/rap/kept', 'r', { qos: 1, retain: true });
    await publisher.publishAsync('feat/rap/cleared', 'r', { qos: 1, retain: true });
    await waitFor(heard, 'feat/rap/cleared');
    expect(heard.map((m) => `${m.topic} ${m.payload} ${m.retain}`)).toEqual(['feat/nl other false', 'feat/rap/kept r true', 'feat/rap/cleared r false']);
  });

  it('echoes the subscription identifiers of the subscriptions a message matched', async () => {
    const { client } = await connect5('feat-si');
    const heard = recordMessages(client);
    await client.subscribeAsync('feat/si/#', { qos: 1, properties: { subscriptionIdentifier: 7 } });
    await client.subscribeAsync('feat/other/+', { qos: 1, properties: { subscriptionIdentifier: 9 } });
    await client.subscribeAsync('feat/si/+', { qos: 1, properties: { subscriptionIdentifier: 11 } });
    await client.publishAsync('feat/si/a', '1', { qos: 1 });
    await client.publishAsync('feat/other/b', '2', { qos: 1 });
    // One copy of a message matching two subscriptions, naming both ([MQTT-3.3.4-4]).
    expect((await waitFor(heard, 'feat/si/a')).properties.subscriptionIdentifier).toEqual([7, 11]);
    expect((await waitFor(heard, 'feat/other/b')).properties.subscriptionIdentifier).toBe(9);
    expect(heard.filter((m) => m.topic === 'feat/si/a')).toHaveLength(1);
  });

  it('sends a device no more unacknowledged QoS 1/2 messages than the Receive Maximum it asked for, the rest as it acknowledges', async () => {
    const raw = await rawClient(url(), listenerOf(gatehouse, transport, ca).options);
    open.push({ end: () => raw.close() } as unknown as MqttClient);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'feat-narrow', clean: true, keepalive: 0, ...device, properties: { receiveMaximum: 1 } });
    expect(await raw.next('connack')).toMatchObject({ reasonCode: 0 });
    raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'feat/window', qos: 1 }] });
    expect(await raw.next('suback')).toMatchObject({ granted: [1] });
    const { client: publisher } = await connect5('feat-window-pub');
    // Each PUBACK to the publisher waits until the message reached the device's delivery.
    for (const payload of ['a', 'b', 'c']) await publisher.publishAsync('feat/window', payload, { qos: 1 });
    const seen: string[] = [];
    for (let round = 0; round < 3; round++) {
      const sent = await raw.publishesBeforePing();
      expect(sent).toHaveLength(1);
      seen.push(sent[0]!.payload.toString());
      raw.send({ cmd: 'puback', messageId: sent[0]!.messageId });
    }
    expect(seen).toEqual(['a', 'b', 'c']);
    expect(await raw.publishesBeforePing()).toEqual([]);
  });

  it('does not send a device a message larger than the Maximum Packet Size it asked for, and keeps the connection', async () => {
    const { client } = await connect5('feat-small', { properties: { maximumPacketSize: 512 } });
    const heard = recordMessages(client);
    await client.subscribeAsync('feat/sized', { qos: 1 });
    const { client: publisher } = await connect5('feat-sized-pub');
    await publisher.publishAsync('feat/sized', 'x'.repeat(600), { qos: 1 });
    await publisher.publishAsync('feat/sized', 'fits', { qos: 1 });
    await waitFor(heard, 'feat/sized');
    // Delivered in publishing order: the large one would have come first.
    expect(heard.map((m) => m.payload)).toEqual(['fits']);
    expect(client.connected).toBe(true);
    expect(gatehouse.logs.filter((line) => line.includes('not sent: the client accepts at most 512'))).toHaveLength(1);
  });

  it('carries request and response: the response topic is an ordinary topic for the responder\'s groups', async () => {
    const requester = await connect5('feat-requester');
    const answers = recordMessages(requester.client);
    await requester.client.subscribeAsync('feat/replies/#', { qos: 1 });
    const service = await connect5('feat-service', { ...responder });
    const requests = recordMessages(service.client);
    await service.client.subscribeAsync('feat/requests/#', { qos: 1 });

    const ask = (responseTopic: string, id: string) =>
      requester.client.publishAsync('feat/requests/time', 'now?', { qos: 1, properties: { responseTopic, correlationData: Buffer.from(id) } });
    await ask('feat/replies/requester', 'r-1');
    const request = await waitFor(requests, 'feat/requests/time');
    expect(request.properties.responseTopic).toBe('feat/replies/requester');
    await service.client.publishAsync(request.properties.responseTopic as string, '12:00', { qos: 1, properties: { correlationData: request.properties.correlationData as Buffer } });
    const answer = await waitFor(answers, 'feat/replies/requester');
    expect(answer.payload).toBe('12:00');
    expect(Buffer.from(answer.properties.correlationData as Buffer).toString()).toBe('r-1');

    // A response topic the responder's groups do not allow: refused like any publish.
    requests.length = 0;
    await ask('feat/locked/replies', 'r-2');
    const second = await waitFor(requests, 'feat/requests/time');
    const refused = await service.client
      .publishAsync(second.properties.responseTopic as string, '12:01', { qos: 1 })
      .then(() => null, (error: { code?: number }) => error.code);
    expect(refused).toBe(0x87);
  });
});
