import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { requireOrSkip } from './env';

const MOSQUITTO = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].find((p) => existsSync(p));

/** True when Debian's Mosquitto broker is installed (else the suite skips loudly, or fails under CI). */
export const mosquittoAvailable = requireOrSkip('mosquitto', Boolean(MOSQUITTO), 'apt-get install mosquitto to run the MQTT bridge suites');

export interface Mosquitto {
  port: number;
  url: string;
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

/**
 * A Mosquitto of the test's own on a free loopback port, anonymous, keeping
 * persistent sessions across a stop (SIGTERM writes them) and start.
 */
export async function startMosquitto(): Promise<Mosquitto> {
  const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-mosquitto-'));
  const port = await freePort();
  const config = path.join(dir, 'mosquitto.conf');
  await writeFile(config, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${dir}/\n`);
  let child: ChildProcess | undefined;
  const broker: Mosquitto = {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    async start() {
      child = spawn(MOSQUITTO!, ['-c', config], { stdio: 'ignore' });
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        const open = await new Promise<boolean>((resolve) => {
          const socket = net.connect(port, '127.0.0.1', () => {
            socket.destroy();
            resolve(true);
          });
          socket.on('error', () => resolve(false));
        });
        if (open) return;
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
