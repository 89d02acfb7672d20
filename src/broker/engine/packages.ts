import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/**
 * The packages whose internals the engine relies on, at the exact versions
 * it was written and checked against (package.json pins the same ones).
 */
export const ENGINE_PACKAGES = {
  aedes: '2.0.0-beta.1',
  'aedes-persistence-level': '9.2.0',
  'aedes-persistence-redis': '12.0.0',
  'mqemitter-redis': '7.2.1',
  /** MQEmitter, under mqemitter-redis (and Aedes' own bus). */
  mqemitter: '7.1.0',
  'mqtt-packet': '9.0.2',
} as const;

export type EnginePackage = keyof typeof ENGINE_PACKAGES;

/** Thrown at start when a package the engine reaches into is not what it expects. */
export class EngineMismatchError extends Error {
  constructor(
    readonly packageName: EnginePackage,
    readonly versionFound: string,
    readonly what: string,
  ) {
    super(
      `The broker engine does not match ${packageName} ${versionFound} (written for ${ENGINE_PACKAGES[packageName]}): ${what}. ` +
        'Run `npm install` (it applies patches/), or revisit src/broker/engine/ for this version.',
    );
  }
}

const require = createRequire(import.meta.url);

/** The directory a package is installed in (the one the broker loads). */
export function packageDirectory(name: EnginePackage): string {
  // aedes exports only its entry point: find the directory from it.
  let dir = path.dirname(require.resolve(name));
  while (!readPackageJson(dir)) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the package.json of ${name}`);
    dir = parent;
  }
  return dir;
}

function readPackageJson(dir: string): { name?: string; version?: string } | null {
  try {
    return JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
  } catch {
    return null;
  }
}

/** The version of `name` installed, as its package.json says. */
export function installedVersion(name: EnginePackage): string {
  return readPackageJson(packageDirectory(name))?.version ?? 'unknown';
}

/** The text of one of a package's files. */
export function packageSource(name: EnginePackage, file: string): string {
  return readFileSync(path.join(packageDirectory(name), file), 'utf8');
}
