import { AUTH_TYPES, type AuthType, type ClientCredentials } from './types';

/**
 * Every client's credentials in a few flat arrays, so that a million clients
 * fit in memory at about 200 bytes each (a plain object per client, with its
 * strings and two Map entries, costs about 300).
 *
 * A record is a slot in the column arrays (row id, version, authentication
 * type, where its bytes start and how long they are) and its bytes in one
 * shared buffer: the username (UTF-8), the stored hash and the certificate
 * fingerprint, one after the other. Three open-addressing hash tables (linear
 * probing, deletion by backward shift) find a record by row id, by username
 * and by fingerprint; they hold record numbers, and compare the bytes in the
 * buffer. A record that changes gets new bytes at the end of the buffer; the
 * buffer is compacted once half of it is left behind.
 */
export class CredentialTable {
  private ids: Int32Array;
  private versions: Int32Array;
  /** 0: a free record; else 1 + the index of its AUTH_TYPES entry. */
  private kinds: Uint8Array;
  private starts: Uint32Array;
  private usernameBytes: Uint32Array;
  private hashBytes: Uint32Array;
  private fingerprintBytes: Uint16Array;
  private bytes: Buffer;
  private used = 0;
  private garbage = 0;
  /** Records ever used; those freed since are listed in `free`. */
  private records = 0;
  private free: number[] = [];
  private live = 0;
  private byId: Int32Array;
  private byUsername: Int32Array;
  private byFingerprint: Int32Array;
  private fingerprints = 0;
  /** Where a key being looked up is encoded. */
  private scratch = Buffer.alloc(1024);

  /** `expected`: how many clients to make room for at once. */
  constructor(expected = 0) {
    const records = Math.max(16, expected);
    this.ids = new Int32Array(records);
    this.versions = new Int32Array(records);
    this.kinds = new Uint8Array(records);
    this.starts = new Uint32Array(records);
    this.usernameBytes = new Uint32Array(records);
    this.hashBytes = new Uint32Array(records);
    this.fingerprintBytes = new Uint16Array(records);
    this.bytes = Buffer.alloc(Math.max(1024, expected * 112));
    this.byId = new Int32Array(tableSizeFor(records));
    this.byUsername = new Int32Array(tableSizeFor(records));
    this.byFingerprint = new Int32Array(16);
  }

  /** Clients held. */
  get size(): number {
    return this.live;
  }

  /** Bytes the table holds on to (its arrays and buffer, allocated, used or not). */
  memoryBytes(): number {
    const columns = this.ids.byteLength + this.versions.byteLength + this.kinds.byteLength + this.starts.byteLength;
    const lengths = this.usernameBytes.byteLength + this.hashBytes.byteLength + this.fingerprintBytes.byteLength;
    const tables = this.byId.byteLength + this.byUsername.byteLength + this.byFingerprint.byteLength;
    return columns + lengths + tables + this.bytes.byteLength + this.free.length * 8;
  }

  /** The client with this row id, or null. */
  getById(id: number): ClientCredentials | null {
    const record = this.findId(id);
    return record < 0 ? null : this.read(record);
  }

  /** The client with this username (whatever its authentication type), or null. */
  getByUsername(username: string): ClientCredentials | null {
    const length = this.encode(username);
    const record = this.findBytes(this.byUsername, this.scratch, length, 'username');
    return record < 0 ? null : this.read(record);
  }

  /** The client whose certificate has this fingerprint, or null. */
  getByFingerprint(fingerprint: string): ClientCredentials | null {
    if (this.fingerprints === 0) return null;
    const length = this.encode(fingerprint);
    const record = this.findBytes(this.byFingerprint, this.scratch, length, 'fingerprint');
    return record < 0 ? null : this.read(record);
  }

  /** Adds the client, or replaces the one with its row id. */
  set(row: ClientCredentials): void {
    this.delete(row.id);
    const kind = AUTH_TYPES.indexOf(row.authType) + 1;
    if (kind === 0) throw new Error(`unknown authentication type ${JSON.stringify(row.authType)}`);
    const usernameLength = Buffer.byteLength(row.username, 'utf8');
    const hashLength = Buffer.byteLength(row.passwordHash, 'utf8');
    const fingerprint = row.certFingerprint ?? '';
    const fingerprintLength = Buffer.byteLength(fingerprint, 'utf8');
    if (fingerprintLength > 0xffff) throw new Error('a certificate fingerprint longer than 65,535 bytes');
    const length = usernameLength + hashLength + fingerprintLength;
    this.reserveBytes(length);
    const record = this.free.pop() ?? this.newRecord();
    const start = this.used;
    this.bytes.write(row.username, start, 'utf8');
    this.bytes.write(row.passwordHash, start + usernameLength, 'utf8');
    if (fingerprintLength > 0) this.bytes.write(fingerprint, start + usernameLength + hashLength, 'utf8');
    this.used += length;
    this.ids[record] = row.id;
    this.versions[record] = row.version;
    this.kinds[record] = kind;
    this.starts[record] = start;
    this.usernameBytes[record] = usernameLength;
    this.hashBytes[record] = hashLength;
    this.fingerprintBytes[record] = fingerprintLength;
    this.live++;
    this.growTables();
    insert(this.byId, hashId(row.id), record);
    insert(this.byUsername, hashBytes(this.bytes, start, usernameLength), record);
    if (fingerprintLength > 0) {
      this.fingerprints++;
      insert(this.byFingerprint, hashBytes(this.bytes, start + usernameLength + hashLength, fingerprintLength), record);
    }
  }

  /** Forgets the client with this row id; true when there was one. */
  delete(id: number): boolean {
    const record = this.findId(id);
    if (record < 0) return false;
    remove(this.byId, record, (r) => hashId(this.ids[r]!));
    remove(this.byUsername, record, (r) => hashBytes(this.bytes, this.starts[r]!, this.usernameBytes[r]!));
    if (this.fingerprintBytes[record]! > 0) {
      remove(this.byFingerprint, record, (r) => hashBytes(this.bytes, this.fingerprintStart(r), this.fingerprintBytes[r]!));
      this.fingerprints--;
    }
    this.garbage += this.usernameBytes[record]! + this.hashBytes[record]! + this.fingerprintBytes[record]!;
    this.kinds[record] = 0;
    this.ids[record] = 0;
    this.free.push(record);
    this.live--;
    return true;
  }

  /** Every client's row id, in no particular order. */
  *rowIds(): IterableIterator<number> {
    for (let record = 0; record < this.records; record++) if (this.kinds[record] !== 0) yield this.ids[record]!;
  }

  private read(record: number): ClientCredentials {
    const start = this.starts[record]!;
    const usernameLength = this.usernameBytes[record]!;
    const hashLength = this.hashBytes[record]!;
    const fingerprintLength = this.fingerprintBytes[record]!;
    return {
      id: this.ids[record]!,
      username: this.bytes.toString('utf8', start, start + usernameLength),
      authType: AUTH_TYPES[this.kinds[record]! - 1] as AuthType,
      passwordHash: this.bytes.toString('utf8', start + usernameLength, start + usernameLength + hashLength),
      certFingerprint: fingerprintLength === 0 ? null : this.bytes.toString('utf8', this.fingerprintStart(record), this.fingerprintStart(record) + fingerprintLength),
      version: this.versions[record]!,
    };
  }

  private fingerprintStart(record: number): number {
    return this.starts[record]! + this.usernameBytes[record]! + this.hashBytes[record]!;
  }

  /** `text` as UTF-8 in `scratch`; its length in bytes. */
  private encode(text: string): number {
    if (text.length * 3 > this.scratch.length) this.scratch = Buffer.alloc(text.length * 3);
    return this.scratch.write(text, 0, 'utf8');
  }

  private findId(id: number): number {
    const table = this.byId;
    const mask = table.length - 1;
    for (let slot = hashId(id) & mask; ; slot = (slot + 1) & mask) {
      const entry = table[slot]!;
      if (entry === 0) return -1;
      if (this.ids[entry - 1] === id) return entry - 1;
    }
  }

  private findBytes(table: Int32Array, key: Buffer, length: number, field: 'username' | 'fingerprint'): number {
    const mask = table.length - 1;
    for (let slot = hashBytes(key, 0, length) & mask; ; slot = (slot + 1) & mask) {
      const entry = table[slot]!;
      if (entry === 0) return -1;
      const record = entry - 1;
      const start = field === 'username' ? this.starts[record]! : this.fingerprintStart(record);
      const size = field === 'username' ? this.usernameBytes[record]! : this.fingerprintBytes[record]!;
      if (size === length && this.bytes.compare(key, 0, length, start, start + size) === 0) return record;
    }
  }

  private newRecord(): number {
    if (this.records === this.ids.length) {
      const capacity = this.ids.length * 2;
      this.ids = grown(this.ids, capacity);
      this.versions = grown(this.versions, capacity);
      this.kinds = grown(this.kinds, capacity);
      this.starts = grown(this.starts, capacity);
      this.usernameBytes = grown(this.usernameBytes, capacity);
      this.hashBytes = grown(this.hashBytes, capacity);
      this.fingerprintBytes = grown(this.fingerprintBytes, capacity);
    }
    return this.records++;
  }

  /** Room for `length` more bytes: compacted when half is garbage, else grown. */
  private reserveBytes(length: number): void {
    if (this.used + length <= this.bytes.length) return;
    if (this.garbage * 2 >= this.used) {
      this.compact(Math.max(this.bytes.length, (this.used - this.garbage + length) * 2));
      if (this.used + length <= this.bytes.length) return;
    }
    const bigger = Buffer.alloc(Math.max(this.bytes.length * 2, this.used + length));
    this.bytes.copy(bigger, 0, 0, this.used);
    this.bytes = bigger;
  }

  /** Copies the live records' bytes into a new buffer of `capacity`, in record order. */
  private compact(capacity: number): void {
    const next = Buffer.alloc(capacity);
    let at = 0;
    for (let record = 0; record < this.records; record++) {
      if (this.kinds[record] === 0) continue;
      const length = this.usernameBytes[record]! + this.hashBytes[record]! + this.fingerprintBytes[record]!;
      this.bytes.copy(next, at, this.starts[record]!, this.starts[record]! + length);
      this.starts[record] = at;
      at += length;
    }
    this.bytes = next;
    this.used = at;
    this.garbage = 0;
  }

  /** Keeps every table at most half full. */
  private growTables(): void {
    if (this.live * 2 > this.byId.length) {
      this.byId = rehash(this.byId, this.byId.length * 2, (r) => hashId(this.ids[r]!));
      this.byUsername = rehash(this.byUsername, this.byUsername.length * 2, (r) => hashBytes(this.bytes, this.starts[r]!, this.usernameBytes[r]!));
    }
    if ((this.fingerprints + 1) * 2 > this.byFingerprint.length) {
      this.byFingerprint = rehash(this.byFingerprint, this.byFingerprint.length * 2, (r) => hashBytes(this.bytes, this.fingerprintStart(r), this.fingerprintBytes[r]!));
    }
  }
}

type Column = Int32Array | Uint32Array | Uint16Array | Uint8Array;

function grown<T extends Column>(column: T, capacity: number): T {
  const next = new (column.constructor as new (length: number) => T)(capacity);
  next.set(column);
  return next;
}

/** A power of two at least twice `records`. */
function tableSizeFor(records: number): number {
  let size = 16;
  while (size < records * 2) size *= 2;
  return size;
}

function hashId(id: number): number {
  return Math.imul(id ^ (id >>> 16), 0x45d9f3b) >>> 0;
}

/** FNV-1a over bytes, then mixed (the table takes the low bits). */
function hashBytes(buffer: Buffer, start: number, length: number): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < start + length; i++) hash = Math.imul(hash ^ buffer[i]!, 0x01000193);
  hash ^= hash >>> 15;
  return Math.imul(hash, 0x2c1b3c6d) >>> 0;
}

function insert(table: Int32Array, hash: number, record: number): void {
  const mask = table.length - 1;
  let slot = hash & mask;
  while (table[slot] !== 0) slot = (slot + 1) & mask;
  table[slot] = record + 1;
}

/** Removes `record` from `table`, moving later entries of its run back so none is cut off from its home slot. */
function remove(table: Int32Array, record: number, hashOf: (record: number) => number): void {
  const mask = table.length - 1;
  let slot = hashOf(record) & mask;
  while (table[slot] !== record + 1) {
    if (table[slot] === 0) throw new Error('a record missing from its table');
    slot = (slot + 1) & mask;
  }
  let hole = slot;
  for (let next = (hole + 1) & mask; table[next] !== 0; next = (next + 1) & mask) {
    const home = hashOf(table[next]! - 1) & mask;
    // Move the entry back unless its home lies cyclically in (hole, next].
    const between = hole <= next ? home > hole && home <= next : home > hole || home <= next;
    if (!between) {
      table[hole] = table[next]!;
      hole = next;
    }
  }
  table[hole] = 0;
}

function rehash(table: Int32Array, size: number, hashOf: (record: number) => number): Int32Array {
  const next = new Int32Array(size);
  for (const entry of table) if (entry !== 0) insert(next, hashOf(entry - 1), entry - 1);
  return next;
}
