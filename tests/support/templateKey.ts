import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..', '..');

/** Every file under `dir`, in a stable order. */
export function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort();
}

/**
 * A short hash of what a migrated template database's content depends on:
 * the files' paths and contents, and `extra` (a version, say). A template is
 * named after it, so a changed migration makes a new one.
 */
export function contentKey(files: string[], extra = ''): string {
  const hash = createHash('sha256').update(`${extra}\n`);
  for (const file of files) hash.update(`${path.relative(root, file)}\n`).update(readFileSync(file)).update('\n');
  return hash.digest('hex').slice(0, 16);
}
