/**
 * The load generator: worker processes (bench/lib/worker.ts), so the clients
 * are not one event loop whose stalls would look like the broker's. They
 * inherit this process's CPU affinity (core 0 once run.ts pinned itself).
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { trackChild } from './cleanup';
import type { Request } from './worker';
import { newHistogram } from './histogram';

const workerPath = fileURLToPath(new URL('./worker.ts', import.meta.url));

class Worker {
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (value: any) => void; reject: (error: Error) => void }>();
  private exited = false;

  constructor(readonly child: ChildProcess) {
    child.on('message', (message: { id: number; result?: unknown; error?: string }) => {
      const waiter = this.waiting.get(message.id);
      if (!waiter) return;
      this.waiting.delete(message.id);
      if (message.error) waiter.reject(new Error(`load generator worker: ${message.error}`));
      else waiter.resolve(message.result);
    });
    child.once('exit', (code, signal) => {
      this.exited = true;
      for (const waiter of this.waiting.values()) waiter.reject(new Error(`load generator worker exited (${code ?? signal})`));
      this.waiting.clear();
    });
  }

  request<T = any>(request: Request): Promise<T> {
    if (this.exited) return Promise.reject(new Error('load generator worker has exited'));
    const id = ++this.nextId;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.child.send({ id, request });
    });
  }
}

export class Generator {
  private constructor(readonly workers: Worker[]) {}

  /** `cpus`: pin the workers there instead of inheriting this process's affinity. */
  static async start(count: number, cpus?: string): Promise<Generator> {
    const workers: Worker[] = [];
    for (let i = 0; i < count; i++) {
      const child = fork(workerPath, [], {
        execArgv: ['--import', 'tsx'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        // BigInt due times cross the channel as they are.
        serialization: 'advanced',
      });
      const forget = trackChild(child.pid!);
      child.once('exit', forget);
      if (cpus) execFileSync('taskset', ['-pc', cpus, String(child.pid)], { stdio: 'ignore' });
      workers.push(new Worker(child));
    }
    // Loading tsx and mqtt.js takes a moment: wait until every worker answers.
    await Promise.all(workers.map((w) => w.request({ op: 'stats' })));
    return new Generator(workers);
  }

  get size() {
    return this.workers.length;
  }

  pids(): number[] {
    return this.workers.map((w) => w.child.pid!);
  }

  /** Sends `make(i)` to every worker i at once; undefined skips a worker. */
  all<T = any>(make: (index: number) => Request | undefined): Promise<T[]> {
    return Promise.all(
      this.workers.flatMap((worker, i) => {
        const request = make(i);
        return request ? [worker.request<T>(request)] : [];
      }),
    );
  }

  /**
   * What the subscribers of every worker received, latencies merged, how
   * late the publishers sent (a generator starved of CPU sends late; those
   * latencies are then its own, not the broker's), and how long after its due
   * time each QoS 1/2 message was acknowledged to its publisher.
   */
  async stats(reset = false): Promise<{ received: number; histogram: hdr.Histogram; lag: hdr.Histogram; acks: hdr.Histogram }> {
    const parts = await this.all<{ received: number; histogram: string; lag: string; acks: string }>(() => ({ op: 'stats', reset }));
    const histogram = newHistogram();
    const lag = newHistogram();
    const acks = newHistogram();
    let received = 0;
    for (const part of parts) {
      received += part.received;
      for (const [into, encoded] of [
        [histogram, part.histogram],
        [lag, part.lag],
        [acks, part.acks],
      ] as const) {
        const decoded = hdr.decodeFromCompressedBase64(encoded);
        into.add(decoded);
        decoded.destroy();
      }
    }
    return { received, histogram, lag, acks };
  }

  async close() {
    await Promise.race([this.all(() => ({ op: 'exit' })).catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
    for (const worker of this.workers) worker.child.kill('SIGKILL');
  }
}
