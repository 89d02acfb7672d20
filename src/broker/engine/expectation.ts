import type { EnginePackage } from './packages';

/** One thing the engine relies on inside another package, and how to tell it still holds. */
export interface Expectation {
  packageName: EnginePackage;
  /** What moved when `holds` is false, for the message. */
  what: string;
  /** Loads what `holds` looks at (a module imported only when it is used). */
  prepare?(): Promise<void>;
  holds(): boolean;
}
