import { readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { Aedes, type Client as AedesClient } from 'aedes';
import { describe, expect, it } from 'vitest';
import { checkEngine, engineExpectations, verifyExpectations } from '../src/broker/engine/check';
import { EngineMismatchError, ENGINE_PACKAGES, installedVersion } from '../src/broker/engine/packages';
import { ResourceStack } from '../src/resources';

/** A fresh Aedes client (before CONNECT) on a stream that carries nothing. */
function freshClient(): { client: AedesClient; dispose(): void } {
  const broker = new Aedes({});
  const stream = new PassThrough();
  const client = broker.handle(stream);
  return {
    client,
    dispose() {
      client.close();
      stream.destroy();
      (broker as unknown as { mq: { close(done: () => void): void } }).mq.close(() => {});
    },
  };
}

describe('the engine check', () => {
  it('passes on the installed packages, the Redis bus included, at the versions package.json pins', async () => {
    await checkEngine({ redis: true });
    for (const [name, version] of Object.entries(ENGINE_PACKAGES)) expect(installedVersion(name as keyof typeof ENGINE_PACKAGES), name).toBe(version);
  });

  it('pins every package the engine reaches into at its exact version, for production installs and for the packages that depend on it', () => {
    const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      dependencies: Record<string, string>;
      overrides: Record<string, unknown>;
    };
    for (const [name, version] of Object.entries(ENGINE_PACKAGES)) {
      // A range (or a dev dependency only, left to another package's range)
      // would let a fresh install bring internals the engine was not written for.
      if (name === 'mqemitter' || name === 'mqtt-packet') expect(manifest.overrides[name], `overrides.${name}`).toBe(`$${name}`);
      expect(manifest.dependencies[name], name).toBe(version);
    }
  });

  it.each([
    ['_will', 'aedes', /`_will`/],
    ['deliverQoS', 'aedes', /`deliverQoS`/],
    ['connackSent', 'aedes', /`connackSent`/],
  ])('stops with the package, the version found and the field when a client no longer has %s', async (field, packageName, what) => {
    const fresh = freshClient();
    try {
      delete (fresh.client as unknown as Record<string, unknown>)[field];
      const check = verifyExpectations(engineExpectations(() => fresh.client));
      await expect(check).rejects.toBeInstanceOf(EngineMismatchError);
      await expect(check).rejects.toMatchObject({ packageName, versionFound: ENGINE_PACKAGES.aedes });
      await expect(check).rejects.toThrow(what);
      await expect(check).rejects.toThrow(new RegExp(`aedes ${ENGINE_PACKAGES.aedes.replace(/\./g, '\\.')}`));
    } finally {
      fresh.dispose();
    }
  });

  it("stops when the parser's _parseLength moved (the packet size limit would vanish)", async () => {
    const fresh = freshClient();
    try {
      const inside = fresh.client as unknown as { _parser: object };
      const parser = inside._parser;
      // A parser of a version that reads the length elsewhere.
      inside._parser = { packet: { length: 0 }, _emitError() {} };
      try {
        await expect(verifyExpectations(engineExpectations(() => fresh.client))).rejects.toThrow(/mqtt-packet 9\.0\.2 .*`_parseLength`/);
      } finally {
        inside._parser = parser;
      }
    } finally {
      fresh.dispose();
    }
  });
});

describe('the resource stack', () => {
  it('closes newest first, runs every step whatever one throws, throws the first failure, and closes once', async () => {
    const closed: string[] = [];
    const stack = new ResourceStack();
    stack.defer('database', () => closed.push('database'));
    stack.defer('store', async () => {
      closed.push('store');
      throw new Error('store failed');
    });
    stack.defer('broker', () => closed.push('broker'));
    expect(stack.order()).toEqual(['broker', 'store', 'database']);
    await expect(stack.close()).rejects.toThrow('store failed');
    await expect(stack.close()).rejects.toThrow('store failed');
    expect(closed).toEqual(['broker', 'store', 'database']);
  });
});
