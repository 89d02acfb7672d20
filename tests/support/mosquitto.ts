import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Issued } from './certs';
import { requireOrSkip } from './env';

const MOSQUITTO = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].find((p) => existsSync(p));

/** True when Debian's Mosquitto broker is installed (else the suite skips loudly, or fails under CI). */
export const mosquittoAvailable = requireOrSkip('mosquitto', Boolean(MOSQUITTO), 'apt-get install mosquitto to run the MQTT bridge suites');

export interface Mosquitto {
  port: number;
  /** The plain MQTT listener. */
  url: string;
  /** The other listeners asked for (MQTT over TLS, WebSocket, WebSocket over TLS). */
  urls: { mqtts?: string; ws?: string; wss?: string };
  stop(): Promise<void>;
  /** Starts it again on the same port (after stop()). */
  start(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface MosquittoOptions {
  /** Listeners over TLS (mqtts, and wss with `websockets`) with this server certificate; `clientCa`: they require a client certificate it signed. */
  tls?: { server: Issued; clientCa?: Issued };
  /** A WebSocket listener (and wss with `tls`). */
  websockets?: boolean;
}

/**
 * A Mosquitto of the test's own on free loopback ports, anonymous, keeping
 * persistent sessions across a stop (SIGTERM writes them) and start: a plain
 * MQTT listener, and those `options` ask for.
 */
export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-mosquitto-'));
  const port = await freePort();
  const config = path.join(dir, 'mosquitto.conf');
  const lines = ['per_listener_settings false', 'allow_anonymous true', 'persistence true', `persistence_location ${dir}/`, `listener ${port} 127.0.0.1`];
  // Run as root, Mosquitto becomes the user "mosquitto", who cannot read the test's own directories (its key, its persistence).
  if (process.getuid?.() === 0) lines.push('user root');
  const urls: Mosquitto['urls'] = {};
  const ports = [port];
  const listener = async (scheme: keyof Mosquitto['urls']) => {
    const listenerPort = await freePort();
    ports.push(listenerPort);
    urls[scheme] = `${scheme}://127.0.0.1:${listenerPort}${scheme.startsWith('ws') ? '/mqtt' : ''}`;
    lines.push(`listener ${listenerPort} 127.0.0.1`);
    if (scheme.startsWith('ws')) lines.push('protocol websockets');
    const tls = options.tls;
    if (tls && (scheme === 'mqtts' || scheme === 'wss')) {
      lines.push(`certfile ${tls.server.certFile}`, `keyfile ${tls.server.keyFile}`);
      if (tls.clientCa) lines.push(`cafile ${tls.clientCa.certFile}`, 'require_certificate true');
    }
  };
  if (options.tls) await listener('mqtts');
  if (options.websockets) await listener('ws');
  if (options.tls && options.websockets) await listener('wss');
  await writeFile(config, `${lines.join('\n')}\n`);
  let child: ChildProcess | undefined;
  const broker: Mosquitto = {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    urls,
    async start() {
      child = spawn(MOSQUITTO!, ['-c', config], { stdio: 'ignore' });
      const deadline = Date.now() + 10_000;
      const opened = new Set<number>();
      while (Date.now() < deadline) {
        for (const listening of ports) {
          if (opened.has(listening)) continue;
          const open = await new Promise<boolean>((resolve) => {
            const socket = net.connect(listening, '127.0.0.1', () => {
              socket.destroy();
              resolve(true);
            });
            socket.on('error', () => resolve(false));
          });
          if (open) opened.add(listening);
        }
        if (opened.size === ports.length) return;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error('mosquitto did not start');
    },
    async stop() {
      const running = child;
      child = undefined;
      if (!running || running.exitCode !== null) return;
      const exited = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGTERM');
      await exited;
    },
  };
  await broker.start();
  const stop = broker.stop;
  broker.stop = async () => {
    await stop();
  };
  process.once('exit', () => void rm(dir, { recursive: true, force: true }));
  return broker;
}
