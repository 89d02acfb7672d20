/**
 * Bare Aedes, no hooks: our engine's ceiling. `BENCH_PERSISTENCE=memory|level|level-plain`:
 * `level` is LevelDB under BENCH_DIR as Gatehouse stores it (writes coalesced),
 * `level-plain` the same without coalescing. Prints `port N` once listening.
 */
import net from 'node:net';
import { Aedes } from 'aedes';
import aedesPersistenceLevel from 'aedes-persistence-level';
import { ClassicLevel } from 'classic-level';
import { coalesceWrites } from '../src/broker/coalescingLevel';

const kind = process.env.BENCH_PERSISTENCE ?? 'memory';
let persistence;
if (kind === 'level' || kind === 'level-plain') {
  const db = new ClassicLevel<string, Uint8Array>(process.env.BENCH_DIR ?? './bench-level', { keyEncoding: 'utf8', valueEncoding: 'view' });
  await db.open();
  persistence = aedesPersistenceLevel(kind === 'level' ? coalesceWrites(db) : db) as never;
}
const aedes = await Aedes.createBroker({ persistence, concurrency: 1000, drainTimeout: 5000 });
const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  aedes.handle(socket);
});
server.listen(0, '127.0.0.1', () => console.log(`port ${(server.address() as net.AddressInfo).port}`));
process.on('SIGTERM', () => process.exit(0));
