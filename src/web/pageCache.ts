/**
 * What a list page read from the database, kept per request while nothing it
 * shows can have changed: each entry holds the version of the data it was
 * read under (`AccessControl.listVersion`: the access model's count of changes
 * heard and the last-seen writes of this node) and is used only while the
 * version is the same and it is younger than `maxAgeMs`. What no change
 * announces (another node's last-seen writes) is at most that old; where the
 * version names every change (a single node), the caller lifts the limit. A read in
 * progress is shared by the requests that come meanwhile; a failed read is
 * not kept. Without a version (no access model, or one not hearing changes)
 * every request reads.
 */
export interface PageCache<T> {
  /** `maxAgeMs` given here replaces the cache's own for this lookup (Infinity: while the version is the same). */
  get(key: string, version: string | null, read: () => Promise<T>, options?: { maxAgeMs?: number }): Promise<T>;
}

export function createPageCache<T>(options: { maxEntries?: number; maxAgeMs?: number; now?: () => number } = {}): PageCache<T> {
  const maxEntries = options.maxEntries ?? 100;
  const maxAgeMs = options.maxAgeMs ?? 2000;
  const now = options.now ?? (() => performance.now());
  // In the order of last use: the first is the one to drop.
  const entries = new Map<string, { version: string; at: number; value: Promise<T> }>();
  return {
    get(key, version, read, lookup) {
      if (version === null) return read();
      const known = entries.get(key);
      entries.delete(key);
      if (known && known.version === version && now() - known.at < (lookup?.maxAgeMs ?? maxAgeMs)) {
        entries.set(key, known);
        return known.value;
      }
      const entry = { version, at: now(), value: read() };
      entries.set(key, entry);
      if (entries.size > maxEntries) entries.delete(entries.keys().next().value!);
      entry.value.catch(() => {
        if (entries.get(key) === entry) entries.delete(key);
      });
      return entry.value;
    },
  };
}
