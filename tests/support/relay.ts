import net from 'node:net';

/**
 * A TCP relay between Gatehouse and PostgreSQL that a test can cut (every
 * connection dropped, new ones refused, as when the server is down) and
 * restore: a database outage without stopping the server other suites share.
 * `silenceListeners()` makes the connections that sent a LISTEN drop every
 * byte both ways while staying open, as a NAT or a proxy that forgot them does;
 * `delayListeners(ms)` makes what the server sends them arrive `ms` late (in
 * order), as a slow network would: notifications come after the writes' answers.
 */
export async function startRelay(target: URL) {
  const sockets = new Set<net.Socket>();
  const links = new Set<{ listens: boolean; silent: boolean }>();
  let listenerDelayMs = 0;
  /** While set, a connection is silenced as soon as it sends a LISTEN. */
  let silencingListeners = false;
  const server = net.createServer((socket) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    const link = { listens: false, silent: false };
    links.add(link);
    for (const s of [socket, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    socket.on('data', (chunk: Buffer) => {
      if (/listen/i.test(chunk.toString('latin1'))) {
        link.listens = true;
        if (silencingListeners) link.silent = true;
      }
      if (!link.silent) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (link.silent) return;
      if (link.listens && listenerDelayMs > 0) setTimeout(() => socket.write(chunk), listenerDelayMs);
      else socket.write(chunk);
    });
    socket.on('close', () => {
      links.delete(link);
      upstream.destroy();
    });
    upstream.on('close', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: Object.assign(new URL(target.toString()), { port: String(port), hostname: '127.0.0.1' }).toString(),
    async cut() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
    /**
     * Returns how many open connections it silenced. `keep`: connections that
     * LISTEN later are silenced too, until `hearListenersAgain()`.
     */
    silenceListeners(keep = false): number {
      silencingListeners = keep;
      const listening = [...links].filter((link) => link.listens && !link.silent);
      for (const link of listening) link.silent = true;
      return listening.length;
    },
    /** Connections that LISTEN from now on are carried again (those silenced stay so). */
    hearListenersAgain() {
      silencingListeners = false;
    },
    delayListeners(ms: number) {
      listenerDelayMs = ms;
    },
    restore: () => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        if (server.listening) server.close(() => resolve());
        else resolve();
      }),
  };
}
