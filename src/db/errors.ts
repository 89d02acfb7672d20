/**
 * Errors that say the database cannot be reached right now (as opposed to a
 * query it refused), on either driver, however Drizzle wraps them:
 * - postgres.js: a refused or lost connection, a connect timeout;
 * - PostgreSQL: SQLSTATE class 08 (connection exception), 57P01–57P03
 *   (shutting down, cannot connect now), 53300 (too many connections),
 *   58030 (I/O error);
 * - PGlite: the embedded database is closed or hit an I/O error.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current && typeof current === 'object'; depth++) {
    const { code, message } = current as { code?: unknown; message?: unknown };
    if (typeof code === 'string') {
      if (UNAVAILABLE_CODES.has(code) || code.startsWith('08')) return true;
    }
    if (typeof message === 'string' && /PGlite is closed|database is closed/i.test(message)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EPIPE',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  '57P01',
  '57P02',
  '57P03',
  '53300',
  '58030',
]);
