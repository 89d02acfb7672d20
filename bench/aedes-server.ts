/**
 * Bare Aedes, no hooks but a cheap password check: our engine's ceiling with
 * authentication on, as every contender has it. `BENCH_PERSISTENCE=memory|level|level-plain|redis`:
 * `level` is LevelDB under BENCH_DIR as Gatehouse stores it (writes coalesced),
 * `level-plain` the same without coalescing, `redis` the store and the bus of
 * several nodes on BENCH_REDIS_URL (aedes-persistence-redis, mqemitter-redis).
 * `BENCH_AEDES_DIR`: another copy of the engine to load (the `acknowledged`
 * scenario's, without patch 008). Users: the bench user, plus the
 * `username:password` lines of BENCH_USERS_FILE when set (the storm's fleet),
 * compared in memory: no hashing, so what it costs is Aedes' own CONNECT path.
 * Prints `port N` once listening.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Aedes as AedesClass } from 'aedes';
import aedesPersistenceLevel from 'aedes-persistence-level';
import { ClassicLevel } from 'classic-level';
import { coalesceWrites } from '../src/broker/coalescingLevel';
import { BENCH_USER } from './lib/user';

const users = new Map<string, Buffer>([[BENCH_USER.username, Buffer.from(BENCH_USER.password)]]);
if (process.env.BENCH_USERS_FILE) {
  for (const line of readFileSync(process.env.BENCH_USERS_FILE, 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) users.set(line.slice(0, colon), Buffer.from(line.slice(colon + 1)));
  }
}

const kind = process.env.BENCH_PERSISTENCE ?? 'memory';
let persistence;
let mq;
if (kind === 'level' || kind === 'level-plain') {
  const db = new ClassicLevel<string, Uint8Array>(process.env.BENCH_DIR ?? './bench-level', { keyEncoding: 'utf8', valueEncoding: 'view' });
  await db.open();
  persistence = aedesPersistenceLevel(kind === 'level' ? coalesceWrites(db) : db) as never;
} else if (kind === 'redis') {
  const url = process.env.BENCH_REDIS_URL;
  if (!url) throw new Error('BENCH_PERSISTENCE=redis needs BENCH_REDIS_URL');
  const [{ Redis }, { default: aedesPersistenceRedis }, { default: mqemitterRedis }] = await Promise.all([import('ioredis'), import('aedes-persistence-redis'), import('mqemitter-redis')]);
  persistence = aedesPersistenceRedis({ conn: new Redis(url) }) as never;
  mq = mqemitterRedis({ connectionString: url, concurrency: 1000 }) as never;
}
const { Aedes } = (await import(process.env.BENCH_AEDES_DIR ? pathToFileURL(path.join(process.env.BENCH_AEDES_DIR, 'aedes.js')).href : 'aedes')) as { Aedes: typeof AedesClass };
const aedes = await Aedes.createBroker({
  persistence,
  mq,
  concurrency: 1000,
  drainTimeout: 5000,
  authenticate(_client, username, password, done) {
    const expected = username === undefined ? undefined : users.get(username);
    const given = password ? Buffer.from(password) : undefined;
    if (expected && given && expected.length === given.length && timingSafeEqual(expected, given)) return done(null, true);
    done(Object.assign(new Error('bad username or password'), { returnCode: 4 }) as never, false);
  },
});
const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  aedes.handle(socket);
});
server.listen(0, '127.0.0.1', () => console.log(`port ${(server.address() as net.AddressInfo).port}`));
process.on('SIGTERM', () => process.exit(0));
