import { describe, expect, it } from 'vitest';
import { createPageCache } from '../src/web/pageCache';

describe('the page cache', () => {
  const counting = () => {
    let reads = 0;
    return { read: async () => ++reads, reads: () => reads };
  };

  it('reads once per version, again when the version changes, and every time without one', async () => {
    const cache = createPageCache<number>();
    const source = counting();
    expect(await cache.get('/clients', '1:0', source.read)).toBe(1);
    expect(await cache.get('/clients', '1:0', source.read)).toBe(1);
    expect(await cache.get('/clients?q=a', '1:0', source.read)).toBe(2);
    expect(await cache.get('/clients', '2:0', source.read)).toBe(3);
    expect(await cache.get('/clients', null, source.read)).toBe(4);
    expect(await cache.get('/clients', null, source.read)).toBe(5);
  });

  it('reads again once an entry is older than its maximum age, counted from when its read began', async () => {
    let now = 0;
    const cache = createPageCache<number>({ maxAgeMs: 100, now: () => now });
    const source = counting();
    await cache.get('/clients', 'v', source.read);
    now = 99;
    expect(await cache.get('/clients', 'v', source.read)).toBe(1);
    now = 100;
    expect(await cache.get('/clients', 'v', source.read)).toBe(2);
    // A version that names every change: no age limit, until the version changes.
    now = 1_000_000;
    expect(await cache.get('/clients', 'v', source.read, { maxAgeMs: Infinity })).toBe(2);
    expect(await cache.get('/clients', 'w', source.read, { maxAgeMs: Infinity })).toBe(3);
  });

  it('shares a read in progress, and keeps no failed read', async () => {
    const cache = createPageCache<number>();
    let release!: (value: number) => void;
    let reads = 0;
    const slow = () => {
      reads++;
      return new Promise<number>((resolve) => (release = resolve));
    };
    const first = cache.get('/clients', 'v', slow);
    const second = cache.get('/clients', 'v', slow);
    release(7);
    expect([await first, await second, reads]).toEqual([7, 7, 1]);

    const failing = () => Promise.reject(new Error('database unavailable'));
    await expect(cache.get('/clients?q=x', 'v', failing)).rejects.toThrow('database unavailable');
    expect(await cache.get('/clients?q=x', 'v', async () => 8)).toBe(8);
  });

  it('keeps at most maxEntries, dropping the least recently used', async () => {
    const cache = createPageCache<number>({ maxEntries: 2 });
    const source = counting();
    await cache.get('a', 'v', source.read);
    await cache.get('b', 'v', source.read);
    await cache.get('a', 'v', source.read);
    await cache.get('c', 'v', source.read);
    expect(source.reads()).toBe(3);
    expect(await cache.get('a', 'v', source.read)).toBe(1);
    expect(await cache.get('b', 'v', source.read)).toBe(4);
  });
});
