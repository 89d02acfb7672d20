import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.{ts,tsx}'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Argon2id and real sockets: a shared 2-core machine needs the headroom.
    maxWorkers: 2,
  },
});
