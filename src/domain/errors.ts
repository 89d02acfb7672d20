/** Field name → message, as the forms show them. */
export type FieldErrors = Record<string, string>;

/** Input that breaks a rule; the form is shown again with these messages. */
export class ValidationError extends Error {
  constructor(readonly fieldErrors: FieldErrors) {
    super(`Invalid input: ${Object.keys(fieldErrors).join(', ')}`);
  }
}

/** A unique value already taken, reported on the field that holds it. */
export class ConflictError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
  get fieldErrors(): FieldErrors {
    return { [this.field]: this.message };
  }
}

/** A row that does not exist (any more). */
export class NotFoundError extends Error {}
