/**
 * The Topics page's model: retained messages as a tree of topic levels, and
 * payloads as the console shows them (text when they are printable UTF-8,
 * else hex; never markup: views put them in text nodes).
 */

/** Bytes of a payload the console shows; the rest is counted. */
export const PAYLOAD_PREVIEW_BYTES = 256;

/** Retained messages the Topics page reads at most. */
export const RETAINED_LIMIT = 2_000;

export interface PayloadPreview {
  kind: 'text' | 'hex' | 'empty';
  text: string;
  /** The payload's whole size in bytes. */
  size: number;
  /** The preview shows only the first PAYLOAD_PREVIEW_BYTES. */
  cut: boolean;
}

/**
 * How payloads are shown: `auto` as text when they are printable UTF-8, else
 * as hex; `text` always as text (bytes that are not UTF-8 as U+FFFD, control
 * characters as their visible symbols, ␀ for NUL); `hex` always as hex.
 */
export const PAYLOAD_VIEWS = ['auto', 'text', 'hex'] as const;
export type PayloadView = (typeof PAYLOAD_VIEWS)[number];

/** The view a query parameter asks for; anything else is `auto`. */
export function parsePayloadView(value: string | undefined): PayloadView {
  return (PAYLOAD_VIEWS as readonly string[]).includes(value ?? '') ? (value as PayloadView) : 'auto';
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const lenientDecoder = new TextDecoder('utf-8');
// Control characters other than tab, line feed and carriage return make a payload binary.
const BINARY = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/;
const CONTROL = new RegExp(BINARY.source, 'g');

export function previewPayload(payload: Uint8Array, limit = PAYLOAD_PREVIEW_BYTES, view: PayloadView = 'auto'): PayloadPreview {
  if (payload.length === 0) return { kind: 'empty', text: '', size: 0, cut: false };
  const cut = payload.length > limit;
  const head = payload.subarray(0, limit);
  const hex = () => ({ kind: 'hex' as const, text: Buffer.from(head).toString('hex').replace(/(..)(?!$)/g, '$1 '), size: payload.length, cut });
  if (view === 'hex') return hex();
  // Cut inside a character: what decodes up to the last whole one.
  const whole = cut ? trimPartialCharacter(head) : head;
  if (view === 'text') {
    // U+2400-U+241F picture the C0 controls, U+2421 DEL.
    const text = lenientDecoder.decode(whole).replace(CONTROL, (ch) => String.fromCharCode(ch === '\u007F' ? 0x2421 : 0x2400 + ch.charCodeAt(0)));
    return { kind: 'text', text, size: payload.length, cut };
  }
  let text: string | null = null;
  try {
    text = decoder.decode(whole);
  } catch {
    text = null;
  }
  if (text !== null && !BINARY.test(text)) return { kind: 'text', text, size: payload.length, cut };
  return hex();
}

/** `bytes` without a UTF-8 sequence left incomplete at its end. */
function trimPartialCharacter(bytes: Uint8Array): Uint8Array {
  let end = bytes.length;
  let back = 0;
  while (end - back - 1 >= 0 && back < 4 && (bytes[end - back - 1]! & 0xc0) === 0x80) back++;
  const lead = bytes[end - back - 1];
  if (lead === undefined) return bytes;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return need > back + 1 ? bytes.subarray(0, end - back - 1) : bytes;
}

export interface TopicNode<T> {
  /** This level's name. */
  level: string;
  /** The whole topic up to here. */
  topic: string;
  /** The retained message at exactly this topic. */
  message?: T;
  /** Retained messages at and under this topic. */
  count: number;
  children: TopicNode<T>[];
}

/** Messages by topic level, each level's children sorted by name. */
export function topicTree<T extends { topic: string }>(messages: readonly T[]): TopicNode<T>[] {
  const root: TopicNode<T> = { level: '', topic: '', count: 0, children: [] };
  const index = new Map<TopicNode<T>, Map<string, TopicNode<T>>>();
  for (const message of messages) {
    let node = root;
    node.count++;
    const levels = message.topic.split('/');
    levels.forEach((level, i) => {
      let children = index.get(node);
      if (!children) index.set(node, (children = new Map()));
      let child = children.get(level);
      if (!child) {
        child = { level, topic: levels.slice(0, i + 1).join('/'), count: 0, children: [] };
        children.set(level, child);
        node.children.push(child);
      }
      child.count++;
      node = child;
    });
    node.message = message;
  }
  const sort = (nodes: TopicNode<T>[]) => {
    nodes.sort((a, b) => (a.level < b.level ? -1 : a.level > b.level ? 1 : 0));
    for (const node of nodes) sort(node.children);
  };
  sort(root.children);
  return root.children;
}
