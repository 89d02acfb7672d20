/**
 * aedes-persistence's own abstract suite (written for node:test) against the
 * broker store Gatehouse ships: aedes-persistence-level over LevelDB with
 * coalesced writes. Run by tests/persistence.test.ts as
 * `node --import tsx --test tests/persistence/abstractSuite.ts`.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'node:test';
import abstractPersistence from 'aedes-persistence/abstract.js';
import AsyncLevelPersistence from 'aedes-persistence-level/asyncPersistence.js';
import { ClassicLevel } from 'classic-level';
import { coalesceWrites } from '../../src/broker/coalescingLevel';

const root = mkdtempSync(path.join(tmpdir(), 'gatehouse-abstract-'));
let counter = 0;

abstractPersistence({
  test,
  testAsync: true,
  persistence() {
    const db = new ClassicLevel<string, Uint8Array>(path.join(root, String(++counter)), { keyEncoding: 'utf8', valueEncoding: 'view' });
    return new AsyncLevelPersistence(coalesceWrites(db));
  },
});
