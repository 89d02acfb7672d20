import type { AddressInfo } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { serve } from '@hono/node-server';
import { createBroker, type Broker } from './broker';
import type { Config } from './config';
import { openDatabase, type OpenDatabase } from './db';
import { createAuthenticator } from './domain/authenticate';
import { prepareFirstAdministrator } from './domain/setup';
import { createApp } from './web/app';

export interface Gatehouse {
  httpPort: number;
  mqttPort: number;
  database: OpenDatabase;
  broker: Broker;
  app: ReturnType<typeof createApp>;
  /** Stops accepting, closes MQTT sessions, the HTTP server, then the database. */
  close(): Promise<void>;
}

export interface StartOptions {
  config: Config;
  /** An already open database (tests); otherwise opened from the config. */
  database?: OpenDatabase;
  log?: (message: string) => void;
}

/** Wires config → database → domain → broker + web, and listens. */
export async function startGatehouse(options: StartOptions): Promise<Gatehouse> {
  const { config } = options;
  const log = options.log ?? ((message: string) => console.log(message));
  const database =
    options.database ??
    (await openDatabase(
      config.DATABASE_URL ? { kind: 'postgres', url: config.DATABASE_URL } : { kind: 'pglite', dataDir: config.DATA_DIR },
    ));

  let broker: Broker | undefined;
  let httpServer: HttpServer | undefined;
  try {
    const firstRun = await prepareFirstAdministrator(database.db, config);
    const authenticator = createAuthenticator(database.db);
    broker = await createBroker({
      // One database read per CONNECT: credentials and permissions together.
      authenticate: authenticator.authenticate,
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
      },
      log,
    });
    const app = createApp({
      db: database.db,
      live: broker,
      log,
      trustProxy: config.TRUST_PROXY,
      setup: firstRun.kind === 'setup-link' ? firstRun.setup : undefined,
    });
    const mqttPort = await broker.listenTcp(config.MQTT_PORT, config.HOST);
    httpServer = await new Promise<HttpServer>((resolve, reject) => {
      const server = serve({ fetch: app.fetch, port: config.PORT, hostname: config.HOST }, () => resolve(server as HttpServer));
      server.once('error', reject);
    });
    broker.attachWebSocket(httpServer, '/mqtt');
    const httpPort = (httpServer.address() as AddressInfo).port;
    if (firstRun.kind === 'created-from-environment') {
      log(`Created the administrator "${firstRun.administrator.username}" from ADMIN_USERNAME and ADMIN_PASSWORD.`);
    } else if (firstRun.kind === 'setup-link') {
      const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST;
      log(
        'No administrator exists yet. Open this one-time link to create the first one ' +
          `(it works once, until an administrator exists):\n  http://${host}:${httpPort}/setup?token=${firstRun.token}`,
      );
    }

    const openBroker = broker;
    const openHttp = httpServer;
    let closing: Promise<void> | undefined;
    return {
      httpPort,
      mqttPort,
      database,
      broker: openBroker,
      app,
      close() {
        closing ??= (async () => {
          const httpClosed = new Promise<void>((resolve) => openHttp.close(() => resolve()));
          await openBroker.close();
          openHttp.closeAllConnections?.();
          await httpClosed;
          if (!options.database) await database.close();
        })();
        return closing;
      },
    };
  } catch (error) {
    await broker?.close().catch(() => {});
    httpServer?.close();
    if (!options.database) await database.close().catch(() => {});
    throw error;
  }
}
