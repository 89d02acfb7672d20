import { availableParallelism } from 'node:os';

/**
 * libuv's thread pool runs Argon2id and bcrypt verifies, LevelDB's reads and
 * writes and file operations. Its default, 4 threads, is a guess: on a larger
 * machine verifies would use 4 cores however many there are, on a smaller one
 * LevelDB could wait behind them. Sized to the machine instead — one thread
 * per core the process may run on (its CPU affinity counts), and one more so
 * LevelDB always has a thread while every core verifies (see
 * `concurrentVerifies` in server.ts) — unless UV_THREADPOOL_SIZE says
 * otherwise.
 *
 * libuv reads UV_THREADPOOL_SIZE once, when the pool first starts, and Node
 * starts it before an ES module's first line runs (it reads ES modules, the
 * entry too, with asynchronous file reads): so this file is the bundle's
 * entry, `dist/bin/main.js`, built as CommonJS (scripts/build.mjs), and it
 * loads the service, `main.mjs`, once the size is set. Under tsx
 * (`npm run dev`, the tests) the pool has its default size and
 * concurrentVerifies counts with that.
 */
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, availableParallelism() + 1));
