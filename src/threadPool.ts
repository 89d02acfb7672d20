import { availableParallelism } from 'node:os';

/**
 * libuv's thread pool runs Argon2id verifies (`@node-rs/argon2`), LevelDB's
 * reads and writes and file operations. Its default, 4 threads, is a guess:
 * on a larger machine verifies would use 4 cores however many there are, on a
 * smaller one LevelDB could wait behind them. Sized to the machine instead —
 * one thread per core the process may run on (its CPU affinity counts), and
 * one more so LevelDB always has a thread while every core verifies (see
 * `concurrentVerifies` in server.ts) — unless UV_THREADPOOL_SIZE says
 * otherwise. libuv reads it when the pool first starts, so this module is
 * imported first, before anything can use the pool.
 */
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, availableParallelism() + 1));
