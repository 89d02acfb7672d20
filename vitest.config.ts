import { readdirSync } from 'node:fs';
import path from 'node:path';
import { defineConfig } from 'vitest/config';

/**
 * The suite in five projects, by what a test file needs to run, so one kind
 * can be run alone (`npx vitest run --project broker`). `npm test` runs all.
 * Every test file belongs to exactly one: a file no project claims stops the
 * run, so nothing is left out unnoticed.
 */
const projects = {
  /** Pure code and local files: no database, no listening socket, no other program. */
  unit: [
    'tests/access.credentials.test.ts',
    'tests/acl.test.ts',
    'tests/config.test.ts',
    'tests/connections.paging.test.ts',
    'tests/engine.check.test.ts',
    'tests/logs.quoting.test.ts',
    'tests/pageCache.test.ts',
    'tests/sessionStore.test.ts',
    'tests/sessionExpiry.test.ts',
    'tests/persistence.test.ts',
    'tests/topics.test.ts',
  ],
  /** A real database (PGlite, and PostgreSQL with TEST_DATABASE_URL); the console through `app.request()`. */
  database: [
    'tests/*.domain.test.ts',
    'tests/*.listing.test.ts',
    'tests/*.concurrency.test.ts',
    'tests/access.rules.test.ts',
    'tests/admin.http.test.ts',
    'tests/api.answers.test.ts',
    'tests/api.pipelines.test.ts',
    'tests/api.scopes.test.ts',
    'tests/audit.test.ts',
    'tests/authenticate.test.ts',
    'tests/certificateClients.http.test.ts',
    'tests/clientAccess.http.test.ts',
    'tests/clientGroups.http.test.ts',
    'tests/clients.http.test.ts',
    'tests/groupRules.http.test.ts',
    'tests/groups.http.test.ts',
    'tests/password.foreign.test.ts',
    'tests/pipelines.test.ts',
    'tests/rehash.test.ts',
    'tests/transfer.bounds.test.ts',
  ],
  /**
   * A broker or a whole Gatehouse listening on real sockets in the test's
   * process (MQTT over TCP, WebSocket and TLS, the console over HTTP), and
   * the Redis suites (several nodes, shared counters; TEST_REDIS_URL).
   */
  broker: [
    'tests/*.broker.test.ts',
    'tests/access.model.test.ts',
    'tests/broker.*.test.ts',
    'tests/*.cluster.test.ts',
    'tests/*.redis.test.ts',
    'tests/admin.startup.test.ts',
    'tests/aedes.patches.test.ts',
    'tests/api.http.test.ts',
    'tests/api.tokens.test.ts',
    'tests/bodyLimits.http.test.ts',
    'tests/broker.test.ts',
    'tests/certificateClients.test.ts',
    'tests/certificates.http.test.ts',
    'tests/connections.test.ts',
    'tests/delivery.test.ts',
    'tests/fuzz.test.ts',
    'tests/metrics.test.ts',
    'tests/mqtt5.test.ts',
    'tests/mqtt5.features.test.ts',
    'tests/outage.test.ts',
    'tests/overview.http.test.ts',
    'tests/password.generated.test.ts',
    'tests/pipelines.http.test.ts',
    'tests/pipelines.mtls.test.ts',
    'tests/tls.test.ts',
  ],
  /** Other programs: Gatehouse's built bundle, its admin command, Mosquitto and its tools, redis-server. */
  process: [
    'tests/*.process.test.ts',
    'tests/admin.cli.test.ts',
    'tests/cluster.test.ts',
    'tests/pipelines.bridge.test.ts',
    'tests/process.test.ts',
    'tests/tls.mosquitto.test.ts',
    'tests/transfer.test.ts',
  ],
  /** Chromium driving the console (playwright-core, Debian's chromium). */
  browser: ['tests/*.browser.test.ts'],
} satisfies Record<string, string[]>;

const root = import.meta.dirname;

/** A pattern above as a regular expression: `*` stands for any characters but `/`. */
function patternToRegExp(pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*')}$`);
}

/** Every test file must be in exactly one project, or the config refuses to load. */
function checkEveryFileHasOneProject() {
  const files = readdirSync(path.join(root, 'tests'), { recursive: true, encoding: 'utf8' })
    .map((file) => `tests/${file.split(path.sep).join('/')}`)
    .filter((file) => /\.test\.tsx?$/.test(file));
  const owners = new Map<string, string[]>(files.map((file) => [file, []]));
  for (const [name, patterns] of Object.entries(projects)) {
    for (const pattern of patterns) {
      const matched = files.filter((file) => patternToRegExp(pattern).test(file));
      if (matched.length === 0) throw new Error(`vitest.config.ts: the ${name} project's pattern ${pattern} matches no test file`);
      for (const file of matched) owners.get(file)!.push(name);
    }
  }
  const wrong = [...owners].filter(([, names]) => new Set(names).size !== 1);
  if (wrong.length > 0) {
    const lines = wrong.map(([file, names]) => `  ${file}: ${names.length === 0 ? 'in no project' : `in ${[...new Set(names)].join(' and ')}`}`);
    throw new Error(`vitest.config.ts: every test file belongs to exactly one project (${Object.keys(projects).join(', ')}); add it to one:\n${lines.join('\n')}`);
  }
}
checkEveryFileHasOneProject();

const shared = {
  pool: 'forks',
  testTimeout: 60_000,
  // Suites start whole Gatehouses (and Chromium) in their hooks: slow on a busy machine.
  hookTimeout: 120_000,
} as const;

export default defineConfig({
  test: {
    // Once per run: the migrated embedded database every test file copies.
    globalSetup: ['tests/support/globalSetup.ts'],
    // Argon2id and real sockets: a shared 2-core machine needs the headroom.
    maxWorkers: 2,
    projects: Object.entries(projects).map(([name, include]) => ({
      test: {
        name,
        include,
        ...shared,
        // unit and database files start no server and leave nothing running
        // (each closes the databases it opens): a worker runs one file after
        // another without a new process each, so the modules under test and
        // PGlite (its compiled WebAssembly too) load once per worker, not per file.
        ...(name === 'unit' || name === 'database' ? { isolate: false } : {}),
        // Once per run when process tests run: the built bundle they start.
        ...(name === 'process' ? { globalSetup: ['tests/support/bundleSetup.ts'] } : {}),
      },
    })),
  },
});
