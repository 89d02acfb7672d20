import type { AddressInfo } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { serve } from '@hono/node-server';
import { sql } from 'drizzle-orm';
import type { Redis } from 'ioredis';
import { createBroker, type Broker } from './broker';
import { checkEngine } from './broker/engine';
import { ResourceStack } from './resources';
import { openBrokerState, type BrokerState } from './broker/state';
import { createRedisFailureTrackers } from './cluster/failures';
import { connectRedis } from './cluster/redis';
import { createLocalDirectory, startClusterDirectory, type ClusterDirectory } from './cluster/connections';
import { startClusterSessions, type ClusterSessions } from './cluster/sessions';
import { ConfigError, type Config } from './config';
import { openDatabase, type OpenDatabase } from './db';
import { listenForAccessChanges, type AccessChanges } from './db/changes';
import { createSignInGuard } from './domain/administrators';
import { auditReasonCode, createAuditRecorder, startAuditRetention, type AuditRecorder, type AuditRecorderOptions } from './domain/audit';
import { createAuthenticator, type Authenticator } from './domain/access/authenticate';
import { loadAccessModel, type AccessModel } from './domain/access/model';
import type { SessionDirectory } from './domain/connections';
import { createLastSeenRecorder, type LastSeenRecorder } from './domain/lastSeen';
import { createSessionExpiryStore } from './domain/sessionExpiries';
import { prepareFirstAdministrator } from './domain/setup';
import { createMetrics } from './metrics';
import { createSampler, type Sampler } from './sampler';
import { createApp } from './web/app';
import { TOKEN_FAILURES_BEFORE_BACKOFF, TOKEN_MAX_BACKOFF_MS } from './web/api/auth';
import { createTlsService, readTlsFiles, type TlsService } from './tls';
import { createPipelineService, type PipelineService, type PipelineServiceOptions } from './pipelines/service';
import { loadEnabledTlsMaterial } from './domain/tlsSettings';

export interface Gatehouse {
  /** The console's plain HTTP port; 0 when PORT=off. */
  httpPort: number;
  /** MQTT over TCP's port; 0 when MQTT_PORT=off. */
  mqttPort: number;
  /** The TLS listeners (MQTTS, HTTPS with WSS): their ports and state, and `apply()` to re-read the certificates (SIGHUP). */
  tls: TlsService;
  database: OpenDatabase;
  broker: Broker;
  /** Where retained messages, persistent sessions and wills live. */
  brokerState: BrokerState;
  /** The CONNECT path, for its counters. */
  authenticator: Authenticator;
  /** Every client and rule, in memory (what CONNECT reads while it is current). */
  accessModel: AccessModel;
  /** Writes the overview's samples once a minute. */
  sampler: Sampler;
  /** The audit trail's buffer (sign-ins, MQTT refusals, console disconnects). */
  audit: AuditRecorder;
  app: ReturnType<typeof createApp>;
  /** Every node's live sessions, and how to end them. */
  sessions: SessionDirectory;
  /** Last seen times waiting for their batched write. */
  lastSeen: LastSeenRecorder;
  /** Forwarding to webhooks, TagoIO and other brokers: the outbox and its delivery. */
  pipelines: PipelineService;
  /** Stops accepting, closes MQTT sessions, the HTTP server, then the database. */
  close(): Promise<void>;
}

export interface StartOptions {
  config: Config;
  /** An already open database (tests); otherwise opened from the config. */
  database?: OpenDatabase;
  log?: (message: string) => void;
  /** Options of the audit buffer (tests: a clock). */
  audit?: AuditRecorderOptions;
  /** Timings of the pipelines' delivery (tests: shorter waits). */
  pipelines?: PipelineServiceOptions;
  /** Wraps the broker's store once opened (tests: one whose writes are held). */
  wrapBrokerState?: (state: BrokerState) => BrokerState;
}

/** Wires config → database → domain → broker + web, and listens. */
export async function startGatehouse(options: StartOptions): Promise<Gatehouse> {
  const { config } = options;
  const log = options.log ?? ((message: string) => console.log(message));
  // Unreadable or mismatched certificate files, and an engine that does not
  // fit its packages, stop the start before anything opens.
  readTlsFiles(config);
  await checkEngine({ redis: Boolean(config.REDIS_URL) });
  // Every part registers its close as it opens; a failed start and close()
  // unwind the same list, newest first.
  const resources = new ResourceStack();
  try {
    const database =
      options.database ??
      (await openDatabase(
        config.DATABASE_URL ? { kind: 'postgres', url: config.DATABASE_URL } : { kind: 'pglite', dataDir: config.DATA_DIR },
      ));
    if (!options.database) resources.defer('database', () => database.close());
    // Written in batches, off the hot path; flushed once everything else has closed.
    const audit = createAuditRecorder(database.db, { log, ...options.audit });
    resources.defer('audit trail', () => audit.close());
    const retention = startAuditRetention(database.db, { days: config.AUDIT_RETENTION_DAYS, log });
    resources.defer('audit retention', () => retention.stop());
    const firstRun = await prepareFirstAdministrator(database.db, config);
    // Several nodes share broker state and counters through Redis; one node
    // keeps its broker state under DATA_DIR, beside the embedded database.
    let brokerState = await openBrokerState(
      config.REDIS_URL ? { kind: 'redis', url: config.REDIS_URL } : { kind: 'local', dir: path.join(config.DATA_DIR, 'broker') },
      { concurrency: config.MQTT_CONCURRENCY, log },
    );
    // After the broker: its last writes land first.
    resources.defer('broker state', () => brokerState.close());
    if (options.wrapBrokerState) brokerState = options.wrapBrokerState(brokerState);
    const redis = config.REDIS_URL ? await connectRedis(config.REDIS_URL) : undefined;
    if (redis) resources.defer('redis', () => redis.disconnect());
    // Failed passwords counted in Redis: more nodes must not mean more guesses.
    const failureTrackers = redis ? createRedisFailureTrackers(redis, 'gatehouse:') : undefined;
    // Every client and rule in memory, kept current from every node's changes:
    // while it hears them, no CONNECT reads the database.
    const changes = await listenForAccessChanges(database, log);
    resources.defer('access changes', () => changes.close().catch(() => {}));
    const accessModel = await loadAccessModel(database.db, changes, { log });
    resources.defer('access model', () => accessModel.close());
    const authenticator = createAuthenticator(database.db, { failureTrackers, model: accessModel, maxConcurrentVerifies: concurrentVerifies() });
    const metrics = createMetrics();
    /** Where this node's MQTT listeners answer (a bridge to one of them would loop); known once they listen. */
    const ownMqttAddresses: string[] = [];
    const pipelines = createPipelineService({
      db: database.db,
      secretKey: config.SECRET_KEY,
      changes,
      destination: {
        allowPrivateNetworks: config.PIPELINES_ALLOW_PRIVATE_NETWORKS,
        nodeId: `${process.pid}`,
        ownMqttAddresses: () => ownMqttAddresses,
        storedCertificate: async () => (await loadEnabledTlsMaterial(database.db, config.SECRET_KEY)).material,
      },
      options: { retryMaxMs: config.PIPELINES_RETRY_MAX_MS, singleNode: database.driver === 'pglite', ...options.pipelines },
      log,
    });
    const openPipelines = pipelines;
    // After the broker: no more writes come; those in flight are committed.
    resources.defer('pipelines', () => openPipelines.close());
    // Mappings are read before the first device can publish.
    await openPipelines.reload();
    metrics.watchPipelines(() => openPipelines.figures());
    const recorder = createLastSeenRecorder(database.db, { flushMs: config.LAST_SEEN_FLUSH_MS, log });
    // After the broker: the sessions it closes are written with the rest.
    resources.defer('last seen', () => recorder.close());
    // The console's connections end after the broker has closed the MQTT
    // connections upgraded from them (server.close() waits for those too).
    let httpClosed: Promise<unknown> | undefined;
    resources.defer('console connections', () => httpClosed);
    // The cluster's parts open once the broker has its id, and close after
    // it, so the sessions it closes are counted down first. Best effort: the
    // other nodes find out by themselves.
    const cluster: { sessions?: ClusterSessions; directory?: ClusterDirectory } = {};
    resources.defer('cluster', async () => {
      await cluster.directory?.close().catch(() => {});
      await cluster.sessions?.close().catch(() => {});
    });
    const broker = await createBroker({
      // Messages mapped to a pipeline are in its outbox before the device is acknowledged.
      onPublishAccepted: openPipelines.onPublishAccepted,
      // One database read per CONNECT: credentials and permissions together.
      authenticate: authenticator.authenticate,
      // Wills are judged again when they fire, by what the client may do then.
      currentAccess: authenticator.currentAccess,
      limits: {
        drainTimeoutMs: config.MQTT_DRAIN_TIMEOUT_MS,
        concurrency: config.MQTT_CONCURRENCY,
        connectTimeoutMs: config.MQTT_CONNECT_TIMEOUT_MS,
        keepaliveLimitS: config.MQTT_KEEPALIVE_LIMIT_S,
        maxClientIdLength: config.MQTT_MAX_CLIENT_ID_LENGTH,
        queueLimit: config.MQTT_QUEUE_LIMIT,
        maxPacketBytes: config.MQTT_MAX_PACKET_BYTES,
        maxConnections: config.MQTT_MAX_CONNECTIONS,
        maxBufferedBytes: config.MQTT_MAX_BUFFERED_BYTES,
        maxSubscriptions: config.MQTT_MAX_SUBSCRIPTIONS,
        maxFilterBytes: config.MQTT_MAX_FILTER_BYTES,
        maxSessionFilterBytes: config.MQTT_MAX_SESSION_FILTER_BYTES,
        maxPendingPerAddress: config.MQTT_MAX_PENDING_PER_ADDRESS,
        maxPublishRate: config.MQTT_MAX_PUBLISH_RATE,
        maxSessionExpiryS: config.MQTT_MAX_SESSION_EXPIRY_S,
      },
      mq: brokerState.mq,
      persistence: brokerState.persistence,
      sessionExpiries: createSessionExpiryStore(database.db),
      heartbeatIntervalMs: config.NODE_HEARTBEAT_MS,
      onSessionChange: (clientRowId, delta, mqttClientId) => {
        cluster.sessions?.change(clientRowId, delta);
        if (delta < 0) recorder.note(clientRowId, new Date(), mqttClientId);
      },
      metrics: metrics.broker,
      audit: {
        authFailed: (event) => audit.authFailure(event),
        refused: (event) =>
          audit.record({
            kind: event.action === 'publish' ? 'mqtt.publish_refused' : 'mqtt.subscribe_refused',
            actor: event.username ?? null,
            subject: event.topic,
            address: event.address,
            // A 5.0 device's row names the reason code it was answered with.
            details: { clientId: event.clientId, transport: event.transport, ...(event.reasonCode === undefined ? {} : { reasonCode: auditReasonCode(event.reasonCode) }) },
          }),
      },
      log,
    });
    resources.defer('broker', () => broker.close());
    const localBroker = broker;
    metrics.watch({ connections: () => localBroker.connectionsByTransport(), authenticator, accessModel });
    const openSampler = createSampler({
      db: database.db,
      nodeId: broker.nodeId,
      connections: () => localBroker.connectionCount(),
      totals: () => metrics.totals(),
      retentionDays: config.AUDIT_RETENTION_DAYS,
      log,
    });
    resources.defer('sampler', () => openSampler.stop());
    if (redis) {
      cluster.sessions = await startClusterSessions({
        redis,
        nodeId: broker.nodeId,
        local: () => localBroker.sessionsByClient(),
        heartbeatMs: config.NODE_HEARTBEAT_MS,
        log,
      });
    }
    const sharedSessions = cluster.sessions;
    // Each node lists and ends its own sessions; with several, they ask each other through Redis.
    if (redis) cluster.directory = await startClusterDirectory({ redis, nodeId: broker.nodeId, local: broker, log });
    const sessions: SessionDirectory = cluster.directory ?? createLocalDirectory(broker);
    let consoleServer: HttpServer | undefined;
    const app = createApp({
      db: database.db,
      access: {
        accessOf: authenticator.accessOf,
        rules: authenticator.ruleModel,
        settled: accessModel.settled,
        listVersion: () => (accessModel.current() ? `${accessModel.changesHeard()}:${recorder.writes()}` : null),
        // The only node: no other node's last-seen writes go unannounced.
        listVersionComplete: broker.onlyNode,
      },
      pipelines: { service: openPipelines, secretKey: config.SECRET_KEY },
      audit,
      signIn: createSignInGuard(database.db, { failureTrackers }),
      // Failed API token attempts, per address: shared by every node, like sign-in's.
      apiTokenFailures: redis
        ? createRedisFailureTrackers(redis, 'gatehouse:api-token:')('address', { threshold: TOKEN_FAILURES_BEFORE_BACKOFF, maxBackoffMs: TOKEN_MAX_BACKOFF_MS })
        : undefined,
      metrics: config.METRICS_TOKEN ? { registry: metrics.registry, token: config.METRICS_TOKEN } : undefined,
      notReady: async () => {
        const missing: string[] = [];
        await database.db.execute(sql`select 1`).catch(() => missing.push('database'));
        if (!localBroker.listening()) missing.push('MQTT listener');
        if (config.PORT !== 'off' && !consoleServer?.listening) missing.push('HTTP listener');
        return missing;
      },
      live: {
        // Every node's sessions when there are several; Redis unreachable: this node's.
        sessionsByClient: async () => (sharedSessions ? sharedSessions.sessionsByClient().catch(() => localBroker.sessionsByClient()) : localBroker.sessionsByClient()),
        thisNode: () => openSampler.local(),
        sessions,
        topics: localBroker.topics,
      },
      log,
      trustProxy: config.TRUST_PROXY,
      setup: firstRun.kind === 'setup-link' ? firstRun.setup : undefined,
      tls: {
        status: () => openTls.status(),
        apply: () => openTls.apply(),
        filesInUse: Boolean(config.TLS_CERT_FILE),
        secretKeySet: Boolean(config.SECRET_KEY),
        secretKey: config.SECRET_KEY,
        ports: { mqtts: config.MQTTS_PORT, https: config.HTTPS_PORT },
      },
    });
    const tls = createTlsService({
      config,
      db: database.db,
      broker,
      fetch: app.fetch,
      handshakeFailed: (listener) => metrics.tlsHandshakeFailed(listener),
      log,
    });
    const openTls = tls;
    resources.defer('TLS listeners', () => openTls.close());
    // A change made on another node's Certificates page (or by hand) reaches
    // this node's listeners too: tls_settings announces itself (migration 0010).
    changes.onChange((payload) => {
      if (payload !== 'tls_settings' && payload !== 'resumed') return;
      openTls.apply().catch((error: unknown) => log(`TLS settings changed but could not be applied here: ${(error as Error).message}`));
    });
    const mqttPort = config.MQTT_PORT === 'off' ? 0 : await broker.listenTcp(config.MQTT_PORT, config.HOST);
    if (mqttPort) ownMqttAddresses.push(`${config.HOST}:${mqttPort}`, `127.0.0.1:${mqttPort}`, `localhost:${mqttPort}`, `[::1]:${mqttPort}`);
    await openPipelines.start();
    const plainPort = config.PORT;
    if (plainPort !== 'off') {
      const server = await new Promise<HttpServer>((resolve, reject) => {
        const server = serve({ fetch: app.fetch, port: plainPort, hostname: config.HOST }, () => resolve(server as HttpServer));
        server.once('error', reject);
      });
      consoleServer = server;
      resources.defer('console listener', () => {
        httpClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
      });
      broker.attachWebSocket(server, '/mqtt');
    }
    const httpServer = consoleServer;
    const httpPort = httpServer ? (httpServer.address() as AddressInfo).port : 0;
    const tlsStatus = await tls.apply();
    if (config.PORT === 'off' && tlsStatus.source === null) {
      throw new ConfigError(
        'Invalid configuration:\n  PORT: off leaves no console until TLS is on: set TLS_CERT_FILE and TLS_KEY_FILE, or enable certificates in the console before turning PORT off',
      );
    }
    if (config.MQTT_PORT === 'off' && tlsStatus.source === null) {
      log('MQTT_PORT=off and TLS is not on yet: devices have no MQTT listener until certificates are enabled.');
    }
    openSampler.start();
    const plainWarning = plainListenerWarning(config);
    if (plainWarning) log(plainWarning);
    if (firstRun.kind === 'created-from-environment') {
      log(`Created the administrator ${JSON.stringify(firstRun.administrator.username)} from ADMIN_USERNAME and ADMIN_PASSWORD.`);
    } else if (firstRun.kind === 'setup-link') {
      const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST;
      log(
        'No administrator exists yet. Open this one-time link to create the first one ' +
          `(it works once, until an administrator exists):\n  ${httpServer ? `http://${host}:${httpPort}` : `https://${host}:${tlsStatus.httpsPort}`}/setup?token=${firstRun.token}`,
      );
    }

    return {
      httpPort,
      mqttPort,
      tls: openTls,
      database,
      broker,
      brokerState,
      authenticator,
      accessModel,
      sampler: openSampler,
      audit,
      app,
      sessions,
      lastSeen: recorder,
      pipelines: openPipelines,
      close: () => resources.close(),
    };
  } catch (error) {
    await resources.close().catch(() => {});
    throw error;
  }
}

const LOOPBACK = /^(127\.|::1$|localhost$|::ffff:127\.)/;

/**
 * Passwords (MQTT CONNECT, console sign-in) cross a plain listener in clear:
 * the warning said at start when one listens beyond this machine; null when
 * none does.
 */
export function plainListenerWarning(config: Pick<Config, 'HOST' | 'MQTT_PORT' | 'PORT'>): string | null {
  if (LOOPBACK.test(config.HOST)) return null;
  const plain = [
    config.MQTT_PORT !== 'off' ? `MQTT on port ${config.MQTT_PORT} (MQTT_PORT)` : null,
    config.PORT !== 'off' ? `the console and MQTT over WebSocket on port ${config.PORT} (PORT)` : null,
  ].filter(Boolean);
  if (plain.length === 0) return null;
  return (
    `Warning: passwords are accepted in clear over ${plain.join(' and ')}, bound to ${config.HOST}. ` +
    'Turn TLS on and set MQTT_PORT=off and PORT=off, or bind HOST to 127.0.0.1 behind a TLS proxy.'
  );
}

/**
 * Argon2id verifies run on libuv's thread pool, which LevelDB's reads and
 * writes and file operations share (src/threadPool.ts sizes it to the
 * machine: a thread per core, and one more): as many verifies at once as the
 * process has cores (its CPU affinity counts), and always a pool thread left
 * for the broker's store, so a storm of typed passwords uses every core yet
 * never makes QoS 1 messages wait behind it.
 */
function concurrentVerifies(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.min(availableParallelism(), pool - 1));
}
