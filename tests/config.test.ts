import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config';
import { describePostgresUrl } from '../src/db';
import { acquireDataDirLock, DataDirLockedError } from '../src/db/lock';

describe('configuration', () => {
  it('has the documented defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      PORT: 3000,
      MQTT_PORT: 1883,
      HOST: '0.0.0.0',
      DATA_DIR: './data',
      TRUST_PROXY: false,
      MQTT_DRAIN_TIMEOUT_MS: 5000,
      MQTT_MAX_PACKET_BYTES: 1048576,
    });
    expect(config.DATABASE_URL).toBeUndefined();
  });

  it('refuses REDIS_URL without DATABASE_URL, naming it and saying why', () => {
    expect(() => loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379' })).toThrow(/REDIS_URL: several nodes need PostgreSQL: set DATABASE_URL too/);
    expect(() => loadConfig({ REDIS_URL: 'http://cache', DATABASE_URL: 'postgres://db/gh' })).toThrow(/REDIS_URL: must start with redis:\/\//);
    const config = loadConfig({ REDIS_URL: 'redis://cache:6379', DATABASE_URL: 'postgres://db/gh' });
    expect(config).toMatchObject({ REDIS_URL: 'redis://cache:6379', NODE_HEARTBEAT_MS: 10_000 });
  });

  it('accepts port 0 and a postgres URL, treating empty values as unset', () => {
    const config = loadConfig({ PORT: '0', MQTT_PORT: '0', DATABASE_URL: 'postgresql://u:p@db:5432/gh', ADMIN_USERNAME: '' });
    expect(config).toMatchObject({ PORT: 0, MQTT_PORT: 0, DATABASE_URL: 'postgresql://u:p@db:5432/gh', ADMIN_USERNAME: undefined });
  });

  it.each([
    ['PORT', '70000'],
    ['MQTT_PORT', 'abc'],
    ['DATABASE_URL', 'mysql://localhost/db'],
    ['TRUST_PROXY', 'maybe'],
    ['MQTT_DRAIN_TIMEOUT_MS', '-1'],
  ])('refuses %s=%s with a message naming it', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^Invalid configuration:\\n\\s+${name}:`));
  });

  it('never prints database credentials', () => {
    expect(describePostgresUrl('postgres://admin:hunter2@db.example:5432/gatehouse')).toBe('postgres://db.example:5432/gatehouse');
  });
});

describe('data directory lock', () => {
  it('is exclusive, released on release, and never blocked by a pid file a dead holder left', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-lock-'));
    try {
      const lock = await acquireDataDirLock(dir);
      expect(await readFile(path.join(dir, 'gatehouse.pid'), 'utf8')).toBe(String(process.pid));
      const refused = await acquireDataDirLock(dir).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(DataDirLockedError);
      expect((refused as Error).message).toContain(`${dir} is in use by another Gatehouse process (pid ${process.pid})`);
      await lock.release();
      const again = await acquireDataDirLock(dir);
      await again.release();

      // After a crash the files stay, naming a pid that runs (pid 1 always does,
      // and in a container it is often the restarted process itself): the
      // kernel released the lock with its holder, so it is taken.
      // The lock file of an earlier version names a live process that is no
      // Gatehouse: ignored and removed.
      const other = spawn('sleep', ['30'], { stdio: 'ignore' });
      try {
        await writeFile(path.join(dir, 'gatehouse.pid'), '1');
        await writeFile(path.join(dir, 'gatehouse.lock'), String(other.pid));
        const takeover = await acquireDataDirLock(dir);
        expect(await readFile(path.join(dir, 'gatehouse.pid'), 'utf8')).toBe(String(process.pid));
        await expect(readFile(path.join(dir, 'gatehouse.lock'), 'utf8')).rejects.toThrow();
        await takeover.release();
      } finally {
        other.kill();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('is refused while the lock file of an earlier version names a running node process', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-lock-'));
    const old = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
    try {
      await writeFile(path.join(dir, 'gatehouse.lock'), String(old.pid));
      const refused = await acquireDataDirLock(dir).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(DataDirLockedError);
      expect((refused as Error).message).toContain(`(pid ${old.pid})`);
      // Its own kernel lock was let go: once the old process is gone, it starts.
      old.kill();
      await new Promise((resolve) => old.once('exit', resolve));
      const lock = await acquireDataDirLock(dir);
      await lock.release();
    } finally {
      old.kill();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reports a data directory it cannot lock for another reason as that reason, not as another process', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-lock-'));
    try {
      // A file where LevelDB needs the lock's directory: its path names "lock".
      await writeFile(path.join(dir, 'lock'), 'not a directory');
      const failed = await acquireDataDirLock(dir).catch((error: unknown) => error);
      expect(failed).toBeInstanceOf(Error);
      expect(failed).not.toBeInstanceOf(DataDirLockedError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

});
