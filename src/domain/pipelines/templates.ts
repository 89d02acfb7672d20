/**
 * Pipeline templates: text with `{{variable}}` placeholders, checked when a
 * pipeline is saved (an unknown variable is refused there, never rendered as
 * "undefined") and rendered for each message forwarded.
 *
 * Variables: `topic`, `payload` (the payload as UTF-8 text, also
 * `payload.text`), `payload.base64`, `payload.hex`, `payload.json` (the
 * payload parsed as JSON and written again), `payload.json.a.b` (a field of
 * it; `payload.json.items.0` indexes an array), `client.id` (MQTT client id),
 * `client.username`, `qos`, `retain`, `timestamp` (ISO 8601, when the broker
 * accepted the message), `message.id` (stable across retries).
 *
 * `{{topic | json}}` writes the value as a JSON literal (a quoted, escaped
 * string; objects and numbers as they are), which is how a value goes into a
 * JSON body safely. Without `| json` values are written as plain text: a
 * string field of the payload as its characters, anything else as JSON. A
 * field the payload does not have (or a payload that is not JSON) renders as
 * nothing (`null` with `| json`).
 */

export interface TemplateMessage {
  messageId: string;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  clientId: string | null;
  username: string | null;
  receivedAt: Date;
}

type Part = string | { path: string[]; json: boolean };

/** A parsed template, ready to render many messages. */
export interface Template {
  source: string;
  parts: Part[];
  /** True when some part reads `payload.json`. */
  readsJson: boolean;
}

const SIMPLE = new Set(['topic', 'payload', 'payload.text', 'payload.base64', 'payload.hex', 'payload.json', 'client.id', 'client.username', 'qos', 'retain', 'timestamp', 'message.id']);

export const TEMPLATE_VARIABLES = [...SIMPLE, 'payload.json.FIELD'];

const PLACEHOLDER = /\{\{([^{}]*)\}\}/g;
const FIELD = /^[A-Za-z0-9_$-]+$/;

export class TemplateError extends Error {}

/** Parses `source`; throws TemplateError naming the first unknown variable or broken placeholder. */
export function parseTemplate(source: string): Template {
  const parts: Part[] = [];
  let last = 0;
  let readsJson = false;
  for (const match of source.matchAll(PLACEHOLDER)) {
    if (match.index > last) parts.push(source.slice(last, match.index));
    last = match.index + match[0].length;
    const [expression = '', ...filters] = match[1]!.split('|').map((piece) => piece.trim());
    if (filters.length > 1 || (filters.length === 1 && filters[0] !== 'json')) {
      throw new TemplateError(`{{${match[1]!.trim()}}}: the only filter is “| json”.`);
    }
    const path = expression.split('.');
    const known = SIMPLE.has(expression) || (path.length > 2 && path[0] === 'payload' && path[1] === 'json' && path.slice(2).every((field) => FIELD.test(field)));
    if (!known) {
      throw new TemplateError(`{{${expression}}} is not a variable. Use ${[...SIMPLE].map((name) => `{{${name}}}`).join(', ')} or {{payload.json.FIELD}}.`);
    }
    if (path[0] === 'payload' && path[1] === 'json') readsJson = true;
    parts.push({ path, json: filters.length === 1 });
  }
  const rest = source.slice(last);
  if (rest.includes('{{') || rest.includes('}}')) {
    throw new TemplateError('A “{{” has no matching “}}” (or the other way round).');
  }
  if (rest) parts.push(rest);
  return { source, parts, readsJson };
}

/** Why `source` is not a valid template, or null. */
export function templateProblem(source: string): string | null {
  try {
    parseTemplate(source);
    return null;
  } catch (error) {
    if (error instanceof TemplateError) return error.message;
    throw error;
  }
}

const NOT_JSON = Symbol('not json');

/** The value of `template` for `message`. */
export function renderTemplate(template: Template, message: TemplateMessage): string {
  let parsed: unknown = NOT_JSON;
  if (template.readsJson) {
    try {
      parsed = JSON.parse(message.payload.toString('utf8'));
    } catch {
      parsed = NOT_JSON;
    }
  }
  let out = '';
  for (const part of template.parts) {
    if (typeof part === 'string') {
      out += part;
      continue;
    }
    const value = valueOf(part.path, message, parsed);
    if (part.json) out += value === undefined || value === NOT_JSON ? 'null' : JSON.stringify(value);
    else if (value === undefined || value === NOT_JSON || value === null) out += '';
    else out += typeof value === 'string' ? value : JSON.stringify(value);
  }
  return out;
}

function valueOf(path: string[], message: TemplateMessage, parsed: unknown): unknown {
  switch (path.join('.')) {
    case 'topic':
      return message.topic;
    case 'payload':
    case 'payload.text':
      return message.payload.toString('utf8');
    case 'payload.base64':
      return message.payload.toString('base64');
    case 'payload.hex':
      return message.payload.toString('hex');
    case 'payload.json':
      return parsed;
    case 'client.id':
      return message.clientId ?? '';
    case 'client.username':
      return message.username ?? '';
    case 'qos':
      return message.qos;
    case 'retain':
      return message.retain;
    case 'timestamp':
      return message.receivedAt.toISOString();
    case 'message.id':
      return message.messageId;
  }
  // payload.json.a.b…
  let value: unknown = parsed;
  for (const field of path.slice(2)) {
    if (value === null || typeof value !== 'object') return undefined;
    value = Object.hasOwn(value, field) ? (value as Record<string, unknown>)[field] : undefined;
  }
  return value;
}

/**
 * The body sent when a webhook has no template: one JSON object per message,
 * the payload as text when it is UTF-8, else as base64 (`payloadEncoding` says which).
 */
export function defaultMessageBody(message: TemplateMessage): Record<string, unknown> {
  const text = message.payload.toString('utf8');
  const isText = Buffer.from(text, 'utf8').equals(message.payload);
  return {
    id: message.messageId,
    topic: message.topic,
    payload: isText ? text : message.payload.toString('base64'),
    payloadEncoding: isText ? 'utf8' : 'base64',
    qos: message.qos,
    retain: message.retain,
    clientId: message.clientId,
    username: message.username,
    timestamp: message.receivedAt.toISOString(),
  };
}
