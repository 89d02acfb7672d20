/**
 * Start-up as a resource stack: each part registers how it closes as soon as
 * it is open, and failure during start and `close()` both unwind the same
 * list, newest first (as Go's `defer` or `AsyncDisposableStack`, which Node 20
 * lacks). Every step runs whatever an earlier one threw: a failing flush must
 * not leave the database or the listeners open. The first failure is thrown
 * once all is closed.
 */
export class ResourceStack {
  private readonly steps: Array<{ name: string; close: () => unknown }> = [];
  private closing: Promise<void> | undefined;

  /** Registers `close` to run when the stack unwinds, before everything registered earlier. */
  defer(name: string, close: () => unknown): void {
    if (this.closing) throw new Error(`${name} opened while closing`);
    this.steps.push({ name, close });
  }

  /** Names of the steps, in the order they will run (tests). */
  order(): string[] {
    return this.steps.map((step) => step.name).reverse();
  }

  /** Closes everything, newest first; once, however often it is called. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const failures: unknown[] = [];
      for (const step of this.steps.splice(0).reverse()) {
        try {
          await step.close();
        } catch (error) {
          failures.push(error);
        }
      }
      if (failures.length > 0) throw failures[0];
    })();
    return this.closing;
  }
}
