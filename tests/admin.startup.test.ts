import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, configSchema } from '../src/config';
import { countAdministrators, listAdministrators } from '../src/domain/administrators';
import { startGatehouse } from '../src/server';
import { createTestDatabase, drivers } from './support/db';

// The broker keeps its state under DATA_DIR even when the database is given.
const dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-startup-'));
const baseConfig = { PORT: '0', MQTT_PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir };
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe.each(drivers)('first run at start on %s', (driver) => {
  it('prints a one-time setup link that works once over real HTTP', async () => {
    const database = await createTestDatabase(driver);
    const logs: string[] = [];
    const gatehouse = await startGatehouse({ config: configSchema.parse(baseConfig), database, log: (line) => logs.push(line) });
    try {
      const link = logs.join('\n').match(/http:\/\/127\.0\.0\.1:\d+\/setup\?token=[A-Za-z0-9_-]{43}/)?.[0];
      expect(link, logs.join('\n')).toBeDefined();
      expect(link).toContain(`:${gatehouse.httpPort}/`);
      const token = new URL(link!).searchParams.get('token')!;
      const origin = `http://127.0.0.1:${gatehouse.httpPort}`;

      expect((await fetch(link!)).status).toBe(200);
      const post = (username: string) =>
        fetch(`${origin}/setup`, {
          method: 'POST',
          redirect: 'manual',
          headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token, username, password: 'founder-password', confirm_password: 'founder-password' }),
        });
      const res = await post('founder');
      expect(res.status).toBe(303);
      expect(res.headers.getSetCookie().join()).toMatch(/gatehouse_session=[A-Za-z0-9_-]{43}; Max-Age=\d+; Path=\/; HttpOnly; SameSite=Lax/);
      expect((await post('intruder')).status).toBe(403);
      expect((await listAdministrators(database.db)).map((a) => a.username)).toEqual(['founder']);
    } finally {
      await gatehouse.close();
      await database.close();
    }
  });

  it('creates the administrator from ADMIN_USERNAME and ADMIN_PASSWORD, and prints no link', async () => {
    const database = await createTestDatabase(driver);
    const logs: string[] = [];
    const config = configSchema.parse({ ...baseConfig, ADMIN_USERNAME: 'ops', ADMIN_PASSWORD: 'ops-password-from-env' });
    const gatehouse = await startGatehouse({ config, database, log: (line) => logs.push(line) });
    try {
      expect(logs.join('\n')).toContain('Created the administrator "ops" from ADMIN_USERNAME and ADMIN_PASSWORD.');
      expect(logs.join('\n')).not.toContain('/setup?token=');
      expect((await fetch(`http://127.0.0.1:${gatehouse.httpPort}/setup?token=anything`, { redirect: 'manual' })).status).toBe(302);
    } finally {
      await gatehouse.close();
      await database.close();
    }
  });

  it('refuses to start with a bad ADMIN_PASSWORD, naming it', async () => {
    const database = await createTestDatabase(driver);
    try {
      const config = configSchema.parse({ ...baseConfig, ADMIN_USERNAME: 'ops', ADMIN_PASSWORD: 'short' });
      const error = await startGatehouse({ config, database, log: () => {} }).catch((e) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toContain('ADMIN_PASSWORD: Use at least 12 characters.');
      expect(await countAdministrators(database.db)).toBe(0);
    } finally {
      await database.close();
    }
  });
});
