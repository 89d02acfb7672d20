import { EngineMismatchError } from './broker/engine/packages';
import { BrokerStateLockedError } from './broker/state';
import { ConfigError, loadConfig } from './config';
import { DataDirLockedError } from './db/lock';
import { startGatehouse } from './server';

async function main() {
  const config = loadConfig();
  const gatehouse = await startGatehouse({ config });
  const where = config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : config.HOST;
  console.log(`Gatehouse is running (${gatehouse.database.driver}: ${gatehouse.database.location}; broker state: ${gatehouse.brokerState.location})`);
  if (gatehouse.httpPort) {
    console.log(`  console         http://${where}:${gatehouse.httpPort}/`);
  } else {
    console.log('  console         (PORT=off: over HTTPS only)');
  }
  if (gatehouse.mqttPort) console.log(`  MQTT over TCP   mqtt://${where}:${gatehouse.mqttPort}`);
  else console.log('  MQTT over TCP   (MQTT_PORT=off)');
  if (gatehouse.httpPort) console.log(`  MQTT over WS    ws://${where}:${gatehouse.httpPort}/mqtt`);
  const tls = gatehouse.tls.status();
  if (tls.source === null) console.log('  TLS             off (TLS_CERT_FILE and TLS_KEY_FILE, or the Certificates page)');

  // SIGHUP reads the certificates again (files and console) and gives them
  // to new connections; established sessions keep theirs.
  process.on('SIGHUP', () => {
    gatehouse.tls.apply().then(
      (status) => console.log(`SIGHUP: certificates read again (${status.source ?? 'TLS off'}); new connections use them.`),
      (error: unknown) => console.error(`SIGHUP: certificates not changed: ${(error as Error).message}`),
    );
  });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal} received, shutting down…`);
    const force = setTimeout(() => {
      console.error('Shutdown took too long; exiting.');
      process.exit(1);
    }, 10_000);
    force.unref();
    gatehouse.close().then(
      () => {
        console.log('Stopped.');
        process.exit(0);
      },
      (error: unknown) => {
        console.error(`Shutdown failed: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError || error instanceof DataDirLockedError || error instanceof BrokerStateLockedError || error instanceof EngineMismatchError) {
    console.error(error.message);
  } else if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
    console.error(`A port is already in use: ${(error as Error).message}. Set PORT, MQTT_PORT, MQTTS_PORT or HTTPS_PORT (0 picks a free port).`);
  } else {
    console.error('Gatehouse failed to start:', error);
  }
  process.exit(1);
});
