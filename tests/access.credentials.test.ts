import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CredentialTable } from '../src/domain/access/credentials';
import type { ClientCredentials } from '../src/domain/access/types';

const row = (id: number, username: string, extra: Partial<ClientCredentials> = {}): ClientCredentials => ({
  id,
  username,
  authType: 'password',
  passwordHash: `$argon2id$v=19$m=19456,t=2,p=1$${'s'.repeat(22)}$${String(id).padStart(43, 'h')}`,
  certFingerprint: null,
  version: 1,
  ...extra,
});

describe('the credential table', () => {
  it('finds a client by row id, username and fingerprint, and forgets the old username and fingerprint when it changes', () => {
    const table = new CredentialTable();
    table.set(row(1, 'meter-1'));
    table.set(row(2, 'door', { authType: 'certificate', passwordHash: '', certFingerprint: 'AB:CD', version: 3 }));
    table.set(row(3, 'zählер ✓'));
    expect(table.getByUsername('meter-1')).toEqual(row(1, 'meter-1'));
    expect(table.getByUsername('zählер ✓')).toEqual(row(3, 'zählер ✓'));
    expect(table.getByFingerprint('AB:CD')).toEqual(row(2, 'door', { authType: 'certificate', passwordHash: '', certFingerprint: 'AB:CD', version: 3 }));
    expect(table.getById(2)?.username).toBe('door');

    table.set(row(2, 'gate', { authType: 'certificate_password', certFingerprint: 'EF:01', version: 4 }));
    expect(table.getByUsername('door')).toBeNull();
    expect(table.getByFingerprint('AB:CD')).toBeNull();
    expect(table.getByFingerprint('EF:01')?.username).toBe('gate');
    expect(table.getByUsername('gate')?.version).toBe(4);

    expect(table.delete(1)).toBe(true);
    expect(table.delete(1)).toBe(false);
    expect(table.getByUsername('meter-1')).toBeNull();
    expect(table.getById(1)).toBeNull();
    expect(table.size).toBe(2);
    expect([...table.rowIds()].sort()).toEqual([2, 3]);
  });

  it('agrees with plain maps through any sequence of sets and deletes (growing, compacting, and shifting its tables)', () => {
    const usernames = fc.constantFrom('a', 'b', 'c', 'dd', 'e-1', 'f/2', 'ü', '', 'x'.repeat(128), 'long-' + 'y'.repeat(300));
    const operation = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), id: fc.integer({ min: 1, max: 40 }), username: usernames, fingerprint: fc.option(fc.constantFrom('F1', 'F2', 'F3'), { nil: null }), version: fc.integer({ min: 1, max: 9 }) }),
      fc.record({ kind: fc.constant('delete' as const), id: fc.integer({ min: 1, max: 40 }) }),
    );
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 300 }), (operations) => {
        const table = new CredentialTable();
        const byId = new Map<number, ClientCredentials>();
        for (const op of operations) {
          if (op.kind === 'delete') {
            expect(table.delete(op.id)).toBe(byId.delete(op.id));
            continue;
          }
          // Usernames and fingerprints are unique, as the database keeps them: take them from whoever had them.
          const taken = [...byId.values()].filter((other) => other.id !== op.id && (other.username === `${op.username}` || (op.fingerprint !== null && other.certFingerprint === op.fingerprint)));
          for (const other of taken) {
            table.delete(other.id);
            byId.delete(other.id);
          }
          const next = row(op.id, op.username, { version: op.version, certFingerprint: op.fingerprint, authType: op.fingerprint ? 'certificate' : 'password' });
          table.set(next);
          byId.set(op.id, next);
        }
        expect(table.size).toBe(byId.size);
        for (let id = 1; id <= 40; id++) expect(table.getById(id)).toEqual(byId.get(id) ?? null);
        for (const expected of byId.values()) {
          expect(table.getByUsername(expected.username)).toEqual(expected);
          if (expected.certFingerprint) expect(table.getByFingerprint(expected.certFingerprint)).toEqual(expected);
        }
        for (const fingerprint of ['F1', 'F2', 'F3']) {
          const owner = [...byId.values()].find((c) => c.certFingerprint === fingerprint) ?? null;
          expect(table.getByFingerprint(fingerprint)).toEqual(owner);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('holds 100,000 clients in well under 300 bytes each', () => {
    const table = new CredentialTable(100_000);
    for (let id = 1; id <= 100_000; id++) table.set(row(id, `device-${String(id).padStart(6, '0')}`));
    expect(table.getByUsername('device-054321')?.id).toBe(54_321);
    expect(table.memoryBytes() / table.size).toBeLessThan(300);
  });
});
