import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { configSchema, type Config } from '../../src/config';
import { startGatehouse, type Gatehouse, type StartOptions } from '../../src/server';
import { createTestDatabase, type DriverName } from './db';

/**
 * A whole Gatehouse on free ports over a fresh database (its overview sampler
 * stopped: call `sampler.tick()`), with its broker state
 * in a DATA_DIR of its own (removed on close) unless `overrides` names one.
 */
export async function startTestGatehouse(
  driver: DriverName = 'pglite',
  overrides: Partial<Record<keyof Config, string>> = {},
  options: Pick<StartOptions, 'audit'> = {},
): Promise<Gatehouse & { logs: string[] }> {
  const ownDataDir = overrides.DATA_DIR ? undefined : await mkdtemp(path.join(tmpdir(), 'gatehouse-test-'));
  const config = configSchema.parse({ PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: ownDataDir, ...overrides });
  const database = await createTestDatabase(driver);
  const logs: string[] = [];
  const removeDataDir = () => (ownDataDir ? rm(ownDataDir, { recursive: true, force: true }) : Promise.resolve());
  try {
    const gatehouse = await startGatehouse({ config, database, log: (line) => logs.push(line), ...options });
    // The overview's sampler writes when a minute turns, which would land in
    // the middle of tests that count database queries: tests call its tick().
    await gatehouse.sampler.stop();
    return {
      ...gatehouse,
      /** What the Gatehouse logged, in order. */
      logs,
      async close() {
        await gatehouse.close();
        await database.close();
        await removeDataDir();
      },
    };
  } catch (error) {
    await database.close();
    await removeDataDir();
    throw error;
  }
}
