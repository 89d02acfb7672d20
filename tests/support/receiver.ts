import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the receiver got. */
export interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
}

/**
 * A real HTTP endpoint on a free loopback port that records what it gets and
 * answers with `answer()` (200 by default): the other end of a webhook or of
 * the TagoIO stand-in. `down()` answers every request with `status` until
 * `up()`; `hold()` keeps requests waiting until `release()`.
 */
export interface Receiver {
  url: string;
  port: number;
  received: Received[];
  answer: (request: Received) => { status: number; body?: string; headers?: Record<string, string> };
  /** Resolves once `count` requests were answered 2xx. */
  waitFor(count: number, timeoutMs?: number): Promise<Received[]>;
  accepted(): Received[];
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const waiters: Array<{ count: number; resolve: (r: Received[]) => void }> = [];
  const receiver: Receiver = {
    url: '',
    port: 0,
    received: [],
    answer: () => ({ status: 200, body: 'ok' }),
    accepted: () => receiver.received.filter((r) => (r as Received & { status?: number }).status! < 300),
    waitFor(count, timeoutMs = 20_000) {
      if (receiver.accepted().length >= count) return Promise.resolve(receiver.accepted());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${receiver.accepted().length} of ${count} requests accepted within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          count,
          resolve: (r) => {
            clearTimeout(timer);
            resolve(r);
          },
        });
      });
    },
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request: Received & { status?: number } = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() };
      const reply = receiver.answer(request);
      request.status = reply.status;
      receiver.received.push(request);
      res.writeHead(reply.status, { 'content-type': 'text/plain', ...reply.headers });
      res.end(reply.body ?? '');
      const accepted = receiver.accepted();
      for (const waiter of [...waiters]) {
        if (accepted.length >= waiter.count) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(accepted);
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  receiver.port = (server.address() as AddressInfo).port;
  receiver.url = `http://127.0.0.1:${receiver.port}`;
  return receiver;
}
