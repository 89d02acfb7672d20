/**
 * What one core needs for one Argon2id verify at Gatehouse's parameters: the
 * floor of a storm of devices whose passwords were typed (each first CONNECT
 * costs one verify). Run pinned to the broker's core; prints the median wall
 * time of `BENCH_FLOOR_VERIFIES` verifies made one after the other, and the
 * process's CPU time per verify (the thread pool's included), in milliseconds:
 * on a shared machine the wall time includes waiting for the core, the CPU
 * time does not.
 */
import { hashPassword, verifyPasswordHash } from '../src/domain/password';

const count = Number(process.env.BENCH_FLOOR_VERIFIES ?? 200);
const hash = await hashPassword('a typed password of a device');
const times: number[] = [];
const cpuBefore = process.cpuUsage();
for (let i = 0; i < count; i++) {
  const started = performance.now();
  if (!(await verifyPasswordHash(hash, 'a typed password of a device'))) throw new Error('the verify failed');
  times.push(performance.now() - started);
}
const cpu = process.cpuUsage(cpuBefore);
times.sort((a, b) => a - b);
console.log(`verify ms ${times[Math.floor(times.length / 2)]!.toFixed(3)} cpu ms ${((cpu.user + cpu.system) / 1000 / count).toFixed(3)}`);
