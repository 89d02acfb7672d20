import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { coalesceWrites } from '../src/broker/coalescingLevel';

describe('the broker store', () => {
  it("passes aedes-persistence's abstract suite (LevelDB with coalesced writes)", () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', 'tests/persistence/abstractSuite.ts'], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    const summary = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(run.stdout)?.[1]);
    expect(summary('fail'), run.stdout.slice(-4000) + run.stderr).toBe(0);
    expect(summary('pass')).toBeGreaterThanOrEqual(50);
    expect(run.status).toBe(0);
  });
});

describe('coalesced LevelDB writes', () => {
  let dir: string;
  let db: ClassicLevel<string, Uint8Array>;
  let batches: number;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-coalesce-'));
    db = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    await db.open();
    batches = 0;
    const batch = db.batch.bind(db) as (...args: unknown[]) => unknown;
    (db as unknown as { batch: (...args: unknown[]) => unknown }).batch = (...args) => {
      if (args.length > 0) batches++;
      return batch(...args);
    };
  });
  afterEach(async () => {
    if (db.status === 'open') await db.close();
    await rm(dir, { recursive: true, force: true });
  });

  const bytes = (text: string) => Buffer.from(text);
  const text = (value: Uint8Array | undefined) => (value === undefined ? undefined : Buffer.from(value).toString());

  it('sends the writes of one turn to LevelDB as one batch, and resolves each once it is written', async () => {
    const store = coalesceWrites(db);
    const writes = [store.put('a', bytes('1')), store.put('b', bytes('2')), store.del('c'), store.batch([{ type: 'put', key: 'd', value: bytes('4') }])];
    expect(batches).toBe(0);
    await Promise.all(writes);
    expect(batches).toBe(1);
    // Written, not only remembered: LevelDB itself answers.
    expect(text(await db.get('a'))).toBe('1');
    expect(text(await db.get('d'))).toBe('4');
  });

  it('reads its own writes before they reach LevelDB, deletes and clears included', async () => {
    await db.put('kept', bytes('old'));
    await db.put('range:1', bytes('x'));
    const store = coalesceWrites(db);
    const pending = [store.put('fresh', bytes('new')), store.del('kept'), store.clear({ gte: 'range:', lt: 'range;' })];
    expect(text(await store.get('fresh'))).toBe('new');
    expect(await store.get('kept')).toBeUndefined();
    expect(await store.get('range:1')).toBeUndefined();
    // A write after the clear lands after it.
    const after = store.put('range:2', bytes('y'));
    await Promise.all([...pending, after]);
    expect(text(await db.get('range:2'))).toBe('y');
    expect(await db.get('range:1')).toBeUndefined();
    const values: string[] = [];
    for await (const value of store.values({ gte: 'range:', lt: 'range;' })) values.push(text(value)!);
    expect(values).toEqual(['y']);
  });

  it('takes writes made while a batch is being written into the next batch, in order', async () => {
    const store = coalesceWrites(db);
    const first = store.put('k', bytes('1'));
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    const second = store.put('k', bytes('2'));
    await Promise.all([first, second]);
    expect(batches).toBe(2);
    expect(text(await db.get('k'))).toBe('2');
  });

  it('writes on close what was written while it drained, before closing LevelDB', async () => {
    const store = coalesceWrites(db);
    // Each write, once on disk, makes the next one: three batches in a row.
    const chained = store.put('first', bytes('1')).then(() => store.put('second', bytes('2')).then(() => store.put('third', bytes('3'))));
    await store.close();
    await chained;
    const reopened = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    try {
      expect(text(await reopened.get('second'))).toBe('2');
      expect(text(await reopened.get('third'))).toBe('3');
    } finally {
      await reopened.close();
    }
  });

  it('rejects the writes of a batch LevelDB refused', async () => {
    const store = coalesceWrites(db);
    await db.close();
    await expect(store.put('lost', bytes('1'))).rejects.toThrow();
  });
});
