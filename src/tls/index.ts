import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { getRequestListener } from '@hono/node-server';
import type { Broker } from '../broker';
import { ConfigError, type Config } from '../config';
import type { Database } from '../db';
import { checkTlsMaterial, parseCertificates, SecretKeyError, summarizeCertificate, type CertificateSummary, type TlsMaterial } from '../domain/certificates';
import { loadEnabledTlsMaterial, MissingSecretKeyError } from '../domain/tlsSettings';

/**
 * The TLS listeners: MQTT over TLS on MQTTS_PORT, and the console with MQTT
 * over secure WebSocket on HTTPS_PORT. They run while TLS material is
 * available — from TLS_CERT_FILE/TLS_KEY_FILE/TLS_CA_FILE, which win, or from
 * the console's uploads once enabled there — and `apply()` follows a change
 * without a restart: new material goes to new connections through
 * `setSecureContext` (established sessions keep theirs), enabling starts the
 * listeners, disabling stops accepting (established sessions stay).
 */
export interface TlsService {
  /** Reads the material again (files and database) and applies it; throws what makes it unusable, keeping the old. */
  apply(): Promise<TlsStatus>;
  status(): TlsStatus;
  /** Stops both listeners and closes their connections. */
  close(): Promise<void>;
}

export interface TlsStatus {
  /** Where the material in use comes from; null while TLS is off. */
  source: 'files' | 'console' | null;
  requireClientCert: boolean;
  /** Bound ports while TLS is on. */
  mqttsPort: number | null;
  httpsPort: number | null;
  /** The CA in use signs client certificates (mTLS possible). */
  hasCa: boolean;
  /** The server certificate in use. */
  certificate: CertificateSummary | null;
}

export interface TlsDeps {
  config: Pick<Config, 'HOST' | 'MQTTS_PORT' | 'HTTPS_PORT' | 'TLS_CERT_FILE' | 'TLS_KEY_FILE' | 'TLS_CA_FILE' | 'SECRET_KEY' | 'MQTT_CONNECT_TIMEOUT_MS'>;
  db: Database;
  broker: Broker;
  fetch: Parameters<typeof getRequestListener>[0];
  /** Counts a failed handshake, by listener. */
  handshakeFailed?(listener: 'mqtts' | 'https'): void;
  log(message: string): void;
}

const FILE_VARIABLES = { cert: 'TLS_CERT_FILE', key: 'TLS_KEY_FILE', ca: 'TLS_CA_FILE' } as const;

/**
 * The material named by TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE; null
 * when they are unset. Throws ConfigError naming the variable whose file is
 * unreadable or wrong (a key that does not match the certificate: TLS_KEY_FILE).
 */
export function readTlsFiles(config: TlsDeps['config']): TlsMaterial | null {
  if (!config.TLS_CERT_FILE || !config.TLS_KEY_FILE) return null;
  const read = (variable: string, file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (error) {
      throw new ConfigError(`Invalid configuration:\n  ${variable}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
  };
  const material: TlsMaterial = {
    certPem: read('TLS_CERT_FILE', config.TLS_CERT_FILE),
    keyPem: read('TLS_KEY_FILE', config.TLS_KEY_FILE),
    caPem: config.TLS_CA_FILE ? read('TLS_CA_FILE', config.TLS_CA_FILE) : undefined,
  };
  const { errors } = checkTlsMaterial(material);
  const lines = (Object.keys(errors) as Array<keyof typeof errors>).map((field) => `  ${FILE_VARIABLES[field]}: ${errors[field]}`);
  if (lines.length > 0) throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  return material;
}

/** Node's defaults for ciphers; never below TLS 1.2. */
function secureOptions(material: TlsMaterial): tls.SecureContextOptions {
  return { cert: material.certPem, key: material.keyPem, ca: material.caPem, minVersion: 'TLSv1.2' };
}

/** Addresses whose failed handshakes were logged, and when: once a minute each. */
const LOG_EVERY_MS = 60_000;
const MAX_REMEMBERED_ADDRESSES = 10_000;

export function createTlsService(deps: TlsDeps): TlsService {
  const { config, log } = deps;
  let mqtts: tls.Server | undefined;
  let httpsServer: https.Server | undefined;
  const off: TlsStatus = { source: null, requireClientCert: false, mqttsPort: null, httpsPort: null, hasCa: false, certificate: null };
  let status = off;
  let requireClientCert = false;
  const loggedAt = new Map<string, number>();
  let applying = Promise.resolve();
  /** Every HTTPS server started, to end their kept-alive connections at shutdown. */
  const webServers: https.Server[] = [];

  function noteHandshakeFailure(listener: 'mqtts' | 'https', error: Error, socket: tls.TLSSocket) {
    // With a 'tlsClientError' listener, ending the socket is ours to do (a
    // handshake timeout would otherwise leave it open).
    socket.destroy();
    deps.handshakeFailed?.(listener);
    const address = socket.remoteAddress ?? 'unknown';
    const now = Date.now();
    const last = loggedAt.get(address);
    if (last !== undefined && now - last < LOG_EVERY_MS) return;
    if (loggedAt.size >= MAX_REMEMBERED_ADDRESSES) {
      for (const [key, at] of loggedAt) if (now - at >= LOG_EVERY_MS) loggedAt.delete(key);
      if (loggedAt.size >= MAX_REMEMBERED_ADDRESSES) loggedAt.clear();
    }
    loggedAt.set(address, now);
    log(`TLS handshake from ${address} failed on the ${listener === 'mqtts' ? 'MQTTS' : 'HTTPS'} listener: ${error.message} (logged once a minute per address)`);
  }

  function listen(server: tls.Server | https.Server, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, config.HOST, () => {
        server.off('error', reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  }

  async function start(material: TlsMaterial) {
    const options = {
      ...secureOptions(material),
      // Client certificates are always asked for (certificate clients use them);
      // whether one the CA did not sign ends the handshake is mTLS's switch.
      requestCert: true,
      rejectUnauthorized: requireClientCert,
      // The handshake counts against the time a connection has to send CONNECT.
      handshakeTimeout: config.MQTT_CONNECT_TIMEOUT_MS,
    };
    const mqttServer = tls.createServer(options);
    mqttServer.on('tlsClientError', (error, socket) => noteHandshakeFailure('mqtts', error, socket));
    mqttServer.on('error', (error) => log(`MQTTS listener error: ${error.message}`));
    deps.broker.attachTls(mqttServer, { requireClientCert: () => requireClientCert });
    // The console stays reachable by browsers without a certificate: a
    // certificate is checked where MQTT starts (the /mqtt upgrade), and one
    // presented but not signed by the CA ends the connection under mTLS.
    const webServer: https.Server = https.createServer({ ...options, rejectUnauthorized: false }, getRequestListener(deps.fetch));
    webServer.on('tlsClientError', (error, socket) => noteHandshakeFailure('https', error, socket));
    webServer.on('secureConnection', (socket) => {
      socket.on('error', () => socket.destroy());
      if (requireClientCert && !socket.authorized && Object.keys(socket.getPeerCertificate() ?? {}).length > 0) {
        noteHandshakeFailure('https', new Error(`client certificate refused: ${String(socket.authorizationError)}`), socket);
        socket.destroy();
      }
    });
    webServer.on('error', (error) => log(`HTTPS listener error: ${error.message}`));
    deps.broker.attachWebSocket(webServer as unknown as import('node:http').Server, '/mqtt', { requireClientCert: () => requireClientCert });
    try {
      const mqttsPort = await listen(mqttServer, config.MQTTS_PORT);
      const httpsPort = await listen(webServer, config.HTTPS_PORT);
      mqtts = mqttServer;
      httpsServer = webServer;
      webServers.push(webServer);
      return { mqttsPort, httpsPort };
    } catch (error) {
      mqttServer.close();
      webServer.close();
      throw error;
    }
  }

  /** Stops accepting; established sessions stay until they end. */
  function stop() {
    mqtts?.close();
    httpsServer?.close();
    mqtts = undefined;
    httpsServer = undefined;
  }

  let closed = false;

  async function applyNow(): Promise<TlsStatus> {
    // A change heard while shutting down starts nothing.
    if (closed) return status;
    const files = readTlsFiles(config);
    let material: TlsMaterial | null = files;
    let fromConsole;
    try {
      fromConsole = await loadEnabledTlsMaterial(deps.db, config.SECRET_KEY);
    } catch (error) {
      if (error instanceof MissingSecretKeyError || error instanceof SecretKeyError) {
        throw new ConfigError(`Invalid configuration:\n  SECRET_KEY: ${error.message}`);
      }
      throw error;
    }
    if (!material) material = fromConsole.material;
    const hasCa = Boolean(material?.caPem);
    const wantClientCert = fromConsole.requireClientCert && hasCa;
    if (fromConsole.requireClientCert && material && !hasCa) log('Client certificates are required in the console, but no CA is in use: they are not required until one is.');
    requireClientCert = wantClientCert;
    if (!material) {
      if (mqtts) {
        void stop();
        log('TLS turned off: the MQTTS and HTTPS listeners no longer accept connections (established ones stay).');
      }
      status = off;
      return status;
    }
    const source = files ? 'files' : 'console';
    const certificate = summarizeCertificate(parseCertificates(material.certPem)[0]!);
    if (mqtts && httpsServer) {
      mqtts.setSecureContext(secureOptions(material));
      httpsServer.setSecureContext(secureOptions(material));
      // Read for each new connection (node's tls.Server keeps it as a property).
      (mqtts as tls.Server & { rejectUnauthorized: boolean }).rejectUnauthorized = requireClientCert;
      status = { ...status, source, requireClientCert, hasCa, certificate };
      return status;
    }
    const ports = await start(material);
    status = { source, requireClientCert, hasCa, certificate, ...ports };
    const where = config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : config.HOST;
    log(`TLS listeners started (certificates from ${source === 'files' ? 'TLS_CERT_FILE/TLS_KEY_FILE' : 'the console'}):`);
    log(`  console         https://${where}:${ports.httpsPort}/`);
    log(`  MQTT over TLS   mqtts://${where}:${ports.mqttsPort}`);
    log(`  MQTT over WSS   wss://${where}:${ports.httpsPort}/mqtt`);
    return status;
  }

  return {
    apply() {
      // One change at a time: two quick toggles must not start the listeners twice.
      const next = applying.then(applyNow, applyNow);
      applying = next.then(
        () => undefined,
        () => undefined,
      );
      return next;
    },
    status: () => status,
    async close() {
      closed = true;
      await applying;
      stop();
      // MQTT connections (over TLS and WSS) are ended by the broker's close.
      for (const server of webServers) server.closeAllConnections();
    },
  };
}
