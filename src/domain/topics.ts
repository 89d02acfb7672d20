/**
 * MQTT topic names and topic filters, as pure functions (MQTT 3.1.1 §4.7).
 * Levels are separated by `/`; `+` fills exactly one level (an empty one too),
 * `#` fills any number of levels, including none after its parent: `a/#`
 * matches `a`. A topic starting with `$` is never matched by a filter whose
 * first level is a wildcard [MQTT-4.7.2-1].
 */

/** Longest topic (filter) MQTT can carry: a two-byte length prefix. */
export const MAX_TOPIC_BYTES = 65535;

const isWildcard = (level: string | undefined) => level === '+' || level === '#';
/** A first level that can only match `$` topics. */
const isDollarLevel = (level: string | undefined) => level !== undefined && !isWildcard(level) && level.startsWith('$');

/**
 * Why `filter` is not a valid topic filter, or null when it is. `%u` and `%c`
 * are allowed anywhere (they are substituted before matching).
 */
export function topicFilterProblem(filter: string): string | null {
  if (filter.length === 0) return 'Enter a topic filter.';
  if (Buffer.byteLength(filter, 'utf8') > MAX_TOPIC_BYTES) return `Use at most ${MAX_TOPIC_BYTES} bytes.`;
  if (filter.includes('\u0000')) return 'The null character is not allowed in a topic.';
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
      return '# must be the last level and stand alone, as in a/#.';
    }
    if (level.includes('+') && level !== '+') return '+ must fill a whole level, as in a/+/b.';
  }
  return null;
}

/** Why `topic` cannot be published to, or null when it can. */
export function topicNameProblem(topic: string): string | null {
  if (topic.length === 0) return 'Enter a topic.';
  if (Buffer.byteLength(topic, 'utf8') > MAX_TOPIC_BYTES) return `Use at most ${MAX_TOPIC_BYTES} bytes.`;
  if (topic.includes('\u0000')) return 'The null character is not allowed in a topic.';
  if (topic.includes('+') || topic.includes('#')) return 'A topic to publish to cannot contain + or #.';
  return null;
}

/** A filter split into levels once, for matching many topics. */
export type FilterLevels = readonly string[];

export function splitLevels(filter: string): FilterLevels {
  return filter.split('/');
}

/** True when the (valid) filter matches the topic name. */
export function topicMatches(filter: string | FilterLevels, topic: string): boolean {
  const f = typeof filter === 'string' ? splitLevels(filter) : filter;
  const t = topic.split('/');
  if (topic.startsWith('$') && isWildcard(f[0])) return false;
  for (let i = 0; i < f.length; i++) {
    const level = f[i]!;
    // Every level before it matched, so at least i levels exist: `#` takes the
    // rest, or none of it (the parent level).
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * True when `outer` matches every topic `inner` can match: a subscription to
 * `inner` is then entirely inside `outer`. Both are valid filters.
 */
export function filterCovers(outer: string | FilterLevels, inner: string | FilterLevels): boolean {
  const a = typeof outer === 'string' ? splitLevels(outer) : outer;
  const b = typeof inner === 'string' ? splitLevels(inner) : inner;
  // `inner` reaches `$` topics, which a leading wildcard never matches.
  if (isWildcard(a[0]) && isDollarLevel(b[0])) return false;
  for (let i = 0; i < b.length; i++) {
    const x = a[i];
    const y = b[i]!;
    if (x === undefined) return false;
    if (x === '#') return true;
    if (y === '#') {
      // `inner` goes on with any number of levels (its parent too when i > 0).
      // Only `+/#` in first position also matches "one or more levels".
      return i === 0 && x === '+' && a.length === 2 && a[1] === '#';
    }
    if (y === '+') {
      if (x !== '+') return false;
      continue;
    }
    if (x !== '+' && x !== y) return false;
  }
  if (a.length === b.length) return true;
  // `a/#` also matches `a` itself.
  return a.length === b.length + 1 && a[b.length] === '#';
}

/** True when some topic is matched by both filters. */
export function filtersOverlap(first: string | FilterLevels, second: string | FilterLevels): boolean {
  const a = typeof first === 'string' ? splitLevels(first) : first;
  const b = typeof second === 'string' ? splitLevels(second) : second;
  if ((isWildcard(a[0]) && isDollarLevel(b[0])) || (isWildcard(b[0]) && isDollarLevel(a[0]))) return false;
  for (let i = 0; ; i++) {
    const x = a[i];
    const y = b[i];
    if (x === '#' || y === '#') {
      // One filter ended at level i: the other's `#` matches it as its parent,
      // which exists only past the first level.
      if (x === undefined || y === undefined) return i > 0;
      return true;
    }
    if (x === undefined || y === undefined) return x === y;
    if (x !== '+' && y !== '+' && x !== y) return false;
  }
}

const UNSAFE_IN_TOPIC = /[+#/\u0000]/;

/**
 * `%u` → username, `%c` → MQTT client id, in one pass (an inserted value is
 * never scanned again). A value used that is empty or holds `+`, `#`, `/` (or
 * a null character) would widen or shift the filter: null is returned, and
 * the caller decides what the row becomes (`resolveAccess`: an Allow row
 * matches nothing, a Deny row denies everything for its action).
 */
export function substitutePlaceholders(template: string, who: { username: string; clientId: string | undefined }): string | null {
  if (!template.includes('%')) return template;
  let unusable = false;
  const result = template.replace(/%([uc])/g, (_match, key: string) => {
    const value = key === 'u' ? who.username : who.clientId;
    if (value === undefined || value.length === 0 || UNSAFE_IN_TOPIC.test(value)) unusable = true;
    return value ?? '';
  });
  return unusable ? null : result;
}

/**
 * True when an MQTT client id matches a group-rule pattern: `*` stands for any
 * run of characters (none too), everything else is literal and case-sensitive.
 * Linear time, no regular expression built from user input.
 */
export function clientIdPatternMatches(pattern: string, clientId: string): boolean {
  const parts = pattern.split('*');
  if (parts.length === 1) return pattern === clientId;
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (clientId.length < first.length + last.length) return false;
  if (!clientId.startsWith(first) || !clientId.endsWith(last)) return false;
  let at = first.length;
  const end = clientId.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const part = parts[i]!;
    if (part.length === 0) continue;
    const found = clientId.indexOf(part, at);
    if (found < 0 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}
