import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Every string a device chooses (its client id, a username, a topic or
 * filter) is written into a log line quoted, as JSON.stringify quotes it, so
 * a newline or a control character in it cannot forge a line of its own.
 * Checked here over the source: in the arguments of every log call (`log`,
 * `log…`, `deps.log?.`, `console.log/error/warn/info`), and in the templates
 * of a function of the same file that such a call interpolates (e.g.
 * `describeSession`), a name that holds such a string may appear only inside
 * `JSON.stringify(…)`. The text of string and template literals is not
 * code and is not searched; their `${…}` parts are.
 */
const DEVICE_STRINGS = /\b(client\.id|clientIds?|mqttClientIds?|usernames?|topics?|filters?)\b/;

const LOG_CALL = /(?<![\w$])(console\s*\.\s*(?:log|error|warn|info)|log(?:[A-Z]\w*)?)\s*(?:\?\.)?\s*\(/g;

interface Lexed {
  /** The code read: literal text left out, `${…}` parts kept. */
  code: string;
  /** Only the code inside template literals' `${…}` parts. */
  interpolated: string;
  /** Where reading stopped (just after the closing bracket). */
  end: number;
}

/**
 * Reads JavaScript from `start` until the bracket that closes the one before
 * `start` (`)` for a call's arguments, `}` for a body or a `${`), leaving the
 * text of strings, templates and comments out.
 */
function lex(source: string, start: number, close: ')' | '}'): Lexed {
  let code = '';
  let interpolated = '';
  let depth = 0;
  let i = start;
  while (i < source.length) {
    const c = source[i]!;
    if (c === '/' && source[i + 1] === '/') {
      i = source.indexOf('\n', i);
      if (i < 0) i = source.length;
      continue;
    }
    if (c === '/' && source[i + 1] === '*') {
      i = source.indexOf('*/', i + 2) + 2;
      continue;
    }
    if (c === "'" || c === '"') {
      i++;
      while (i < source.length && source[i] !== c) i += source[i] === '\\' ? 2 : 1;
      i++;
      code += "''";
      continue;
    }
    if (c === '`') {
      i++;
      code += '``';
      while (i < source.length && source[i] !== '`') {
        if (source[i] === '\\') {
          i += 2;
        } else if (source[i] === '$' && source[i + 1] === '{') {
          const inner = lex(source, i + 2, '}');
          code += ` ${inner.code} `;
          interpolated += ` ${inner.code} `;
          i = inner.end;
        } else {
          i++;
        }
      }
      i++;
      continue;
    }
    if (c === '(' || c === '{' || c === '[') depth++;
    if (c === ')' || c === '}' || c === ']') {
      if (depth === 0 && c === close) return { code, interpolated, end: i + 1 };
      depth--;
    }
    code += c;
    i++;
  }
  return { code, interpolated, end: i };
}

/** `code` without every `JSON.stringify(…)` call. */
function withoutQuoted(code: string): string {
  let out = code;
  for (let at = out.indexOf('JSON.stringify('); at >= 0; at = out.indexOf('JSON.stringify(')) {
    const inner = lex(out, at + 'JSON.stringify('.length, ')');
    out = `${out.slice(0, at)}''${out.slice(inner.end)}`;
  }
  return out;
}

/** The body of `function name(…) {…}` in `source`, or undefined. */
function functionBody(source: string, name: string): string | undefined {
  const declared = new RegExp(`function\\s+${name}\\s*\\(`).exec(source);
  if (!declared) return undefined;
  const parameters = lex(source, declared.index + declared[0].length, ')');
  const open = source.indexOf('{', parameters.end);
  return source.slice(open + 1, lex(source, open + 1, '}').end);
}

/** The log calls of `source` that write a device's string unquoted, as `line: call`. */
export function unquotedDeviceStrings(source: string): { calls: number; raw: string[] } {
  const raw: string[] = [];
  let calls = 0;
  for (const match of source.matchAll(LOG_CALL)) {
    calls++;
    const args = lex(source, match.index + match[0].length, ')');
    const line = source.slice(0, match.index).split('\n').length;
    const call = source.slice(match.index, args.end).replace(/\s+/g, ' ');
    const code = withoutQuoted(args.code);
    if (DEVICE_STRINGS.test(code)) raw.push(`${line}: ${call}`);
    // One level down: a function of this file that the call interpolates.
    for (const helper of code.matchAll(/(?<![\w$.])([A-Za-z_$][\w$]*)\s*\(/g)) {
      const body = functionBody(source, helper[1]!);
      if (body === undefined) continue;
      const templates = withoutQuoted(lex(`${body}}`, 0, '}').interpolated);
      if (DEVICE_STRINGS.test(templates)) raw.push(`${line}: ${call} (through ${helper[1]})`);
    }
  }
  return { calls, raw };
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((file) => /\.tsx?$/.test(file))
    .map((file) => path.join(dir, file));
}

describe('device strings in log lines', () => {
  it('finds an unquoted client id, username or topic in a log call, and passes quoted ones', () => {
    const flagged = (source: string) => unquotedDeviceStrings(source).raw.length;
    expect(flagged('log(`refused ${client.id}`);')).toBe(1);
    expect(flagged('deps.log?.(`user ${principal.username} gone`);')).toBe(1);
    expect(flagged("console.error('topic ' + packet.topic);")).toBe(1);
    expect(flagged('logRefusal(address, `filter ${filter} refused`);')).toBe(1);
    expect(flagged('log(`of ${owner ? owner.username : "?"}`);')).toBe(1);
    expect(flagged('function describe(s) { return `id ${s.mqttClientId}`; }\nlog(`ended ${describe(s)}`);')).toBe(1);

    expect(flagged('log(`refused ${JSON.stringify(client.id)} to ${JSON.stringify(packet.topic)}`);')).toBe(0);
    expect(flagged('log(`of ${owner ? JSON.stringify(owner.username) : "a client"} (${JSON.stringify(owner?.mqttClientId ?? "?")})`);')).toBe(0);
    expect(flagged('log(`the username and the topic are quoted: ${count}`);')).toBe(0);
    expect(flagged('function describe(s) { return `id ${JSON.stringify(s.mqttClientId)}`; }\nlog(`ended ${describe(s)}`);')).toBe(0);
    // Not log calls.
    expect(flagged('login(`${username}`); catalog(`${topic}`); logs.push(`${topic}`);')).toBe(0);
  });

  it('quotes every one in src/', () => {
    const root = path.join(import.meta.dirname, '..', 'src');
    let calls = 0;
    const raw: string[] = [];
    for (const file of sourceFiles(root)) {
      const found = unquotedDeviceStrings(readFileSync(file, 'utf8'));
      calls += found.calls;
      raw.push(...found.raw.map((line) => `${path.relative(root, file)}:${line}`));
    }
    // The scan sees the log calls (the broker's, the console's, the domain's…).
    expect(calls).toBeGreaterThan(60);
    expect(raw).toEqual([]);
  });
});
