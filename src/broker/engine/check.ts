import { EngineMismatchError, installedVersion, packageSource, type EnginePackage } from './packages';

/** The line patches/aedes+1.2.0.patch writes into lib/handlers/publish.js. */
const ACKNOWLEDGED_ONCE_STORED = '// gatehouse: acknowledged once stored.';

/** One thing the engine relies on, and how to tell it still holds. */
interface Expectation {
  packageName: EnginePackage;
  /** What moved when `holds` is false, for the message. */
  what: string;
  holds(): boolean;
}

const expectations: Expectation[] = [
  {
    packageName: 'aedes',
    what: 'lib/handlers/publish.js does not carry the "acknowledged once stored" patch (patches/aedes+1.2.0.patch): PUBACK would go out before the message is stored',
    holds: () => packageSource('aedes', 'lib/handlers/publish.js').includes(ACKNOWLEDGED_ONCE_STORED),
  },
];

let checked = false;

/**
 * Checks, once per process and before any listener opens, everything the
 * engine relies on in other packages' internals. Throws EngineMismatchError
 * naming the package, the version found and what moved: a broker whose
 * engine does not fit must not start, rather than fail on its first device.
 */
export function checkEngine(): void {
  if (checked) return;
  for (const expectation of expectations) {
    let holds: boolean;
    try {
      holds = expectation.holds();
    } catch {
      holds = false;
    }
    if (!holds) throw new EngineMismatchError(expectation.packageName, installedVersion(expectation.packageName), expectation.what);
  }
  checked = true;
}
