import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.{ts,tsx}'],
    pool: 'forks',
    testTimeout: 60_000,
    // Suites start whole Gatehouses (and Chromium) in their hooks: slow on a busy machine.
    hookTimeout: 120_000,
    // Argon2id and real sockets: a shared 2-core machine needs the headroom.
    maxWorkers: 2,
  },
});
