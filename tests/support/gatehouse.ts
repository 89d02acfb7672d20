import { configSchema, type Config } from '../../src/config';
import { startGatehouse, type Gatehouse } from '../../src/server';
import { createTestDatabase, type DriverName } from './db';

/** A whole Gatehouse on free ports over a fresh database. */
export async function startTestGatehouse(
  driver: DriverName = 'pglite',
  overrides: Partial<Record<keyof Config, string>> = {},
): Promise<Gatehouse> {
  const config = configSchema.parse({ PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', ...overrides });
  const database = await createTestDatabase(driver);
  const logs: string[] = [];
  try {
    const gatehouse = await startGatehouse({ config, database, log: (line) => logs.push(line) });
    return {
      ...gatehouse,
      async close() {
        await gatehouse.close();
        await database.close();
      },
    };
  } catch (error) {
    await database.close();
    throw error;
  }
}
