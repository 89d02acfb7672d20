import type { z } from 'zod';
import { ValidationError, type FieldErrors } from './errors';

/**
 * Parses `input` with `schema`; on failure throws a ValidationError holding the
 * first message for each field (the form shows one message per field).
 */
export function parseInput<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const fieldErrors: FieldErrors = {};
  for (const issue of result.error.issues) {
    const field = issue.path.length ? issue.path.map(String).join('.') : 'form';
    fieldErrors[field] ??= issue.message;
  }
  throw new ValidationError(fieldErrors);
}
