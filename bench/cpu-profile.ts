/**
 * Summarises a V8 CPU profile (`node --cpu-prof`, a `.cpuprofile` file):
 * `node --import tsx bench/cpu-profile.ts FILE [--top N] [--from MS] [--to MS]`.
 * Prints, as markdown tables, the samples by owner (the nearest frame on the
 * stack that belongs to a package, to Gatehouse's own `src/`, or to Node's
 * own code; the garbage collector and idle time apart), the functions with
 * the most self time, and the functions with the most inclusive time (each
 * function counted once per sample, so recursion does not count twice).
 * `--from`/`--to` keep the samples between those milliseconds of the profile,
 * `--window START:END` those between two instants on CLOCK_MONOTONIC in µs
 * (the profile's own clock: `process.hrtime.bigint() / 1000n` of any process
 * on the machine; the storm bench prints each storm's window);
 * `--callers TEXT` prints the stacks (up to 12 frames) above every function
 * whose name contains TEXT, with their time.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Milliseconds sampled (idle included). */
  totalMs: number;
  /** Milliseconds not idle. */
  busyMs: number;
  owners: Array<{ owner: string; ms: number }>;
  self: Array<{ frame: string; owner: string; ms: number }>;
  inclusive: Array<{ frame: string; owner: string; ms: number }>;
  /** With `callers`: the stacks above the functions named so, heaviest first. */
  callers: Array<{ stack: string[]; ms: number }>;
}

const SPECIAL = new Set(['(garbage collector)', '(program)', '(idle)', '(root)']);

/** Who a frame's code belongs to: a package (`aedes`, `@electric-sql/pglite`), `gatehouse`, `node`, or a special entry. */
export function ownerOf(frame: CallFrame): string | null {
  if (SPECIAL.has(frame.functionName) && !frame.url) return frame.functionName;
  const url = frame.url;
  if (!url) return null;
  const modules = url.lastIndexOf('/node_modules/');
  if (modules !== -1) {
    const [first, second] = url.slice(modules + '/node_modules/'.length).split('/');
    return first?.startsWith('@') ? `${first}/${second}` : (first ?? null);
  }
  if (url.startsWith('node:')) return 'node';
  if (/\/(src|views|dist)\//.test(url)) return 'gatehouse';
  return null;
}

function frameName(frame: CallFrame): string {
  const name = frame.functionName || '(anonymous)';
  if (!frame.url) return name;
  const modules = frame.url.lastIndexOf('/node_modules/');
  const file = modules !== -1 ? frame.url.slice(modules + '/node_modules/'.length) : frame.url.replace(/^.*?\/(src|views|bench|dist)\//, '$1/').replace(/^file:\/\//, '');
  return `${name} ${file}:${frame.lineNumber + 1}`;
}

export function summarise(profile: CpuProfile, options: { top?: number; fromMs?: number; toMs?: number; callers?: string } = {}): ProfileSummary {
  const top = options.top ?? 25;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  // Per node: its owner (the nearest frame up the stack that has one, Node's own
  // code counting only when nothing above it does), its stack's function keys.
  const ownerCache = new Map<number, string>();
  const resolveOwner = (id: number): string => {
    const cached = ownerCache.get(id);
    if (cached) return cached;
    let nodeOwner: string | undefined;
    let owner = 'unknown';
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const found = ownerOf(byId.get(at)!.callFrame);
      if (found === null) continue;
      if (found === 'node') {
        nodeOwner ??= found;
        continue;
      }
      owner = found;
      break;
    }
    if (owner === 'unknown' && nodeOwner) owner = nodeOwner;
    ownerCache.set(id, owner);
    return owner;
  };

  const selfMs = new Map<string, { owner: string; ms: number }>();
  const inclusiveMs = new Map<string, { owner: string; ms: number }>();
  const ownerMs = new Map<string, number>();
  const callerMs = new Map<string, number>();
  let totalMs = 0;
  let busyMs = 0;
  let time = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = (profile.timeDeltas[i] ?? 0) / 1000;
    time += delta;
    if (options.fromMs !== undefined && time < options.fromMs) continue;
    if (options.toMs !== undefined && time > options.toMs) continue;
    const id = profile.samples[i]!;
    const node = byId.get(id)!;
    totalMs += delta;
    const owner = resolveOwner(id);
    ownerMs.set(owner, (ownerMs.get(owner) ?? 0) + delta);
    if (owner === '(idle)') continue;
    busyMs += delta;
    const leaf = frameName(node.callFrame);
    const entry = selfMs.get(leaf) ?? { owner, ms: 0 };
    entry.ms += delta;
    selfMs.set(leaf, entry);
    const seen = new Set<string>();
    let stack: string[] | undefined;
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frameNode = byId.get(at)!;
      if (frameNode.callFrame.functionName === '(root)') continue;
      const key = frameName(frameNode.callFrame);
      if (stack && stack.length < 12) stack.push(key);
      if (!stack && options.callers && frameNode.callFrame.functionName.includes(options.callers)) stack = [key];
      if (seen.has(key)) continue;
      seen.add(key);
      const inclusive = inclusiveMs.get(key) ?? { owner: resolveOwner(at), ms: 0 };
      inclusive.ms += delta;
      inclusiveMs.set(key, inclusive);
    }
    if (stack) {
      const joined = stack.join('\n');
      callerMs.set(joined, (callerMs.get(joined) ?? 0) + delta);
    }
  }
  const sorted = (map: Map<string, { owner: string; ms: number }>) =>
    [...map]
      .map(([frame, { owner, ms }]) => ({ frame, owner, ms }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, top);
  return {
    totalMs,
    busyMs,
    owners: [...ownerMs].map(([owner, ms]) => ({ owner, ms })).sort((a, b) => b.ms - a.ms),
    self: sorted(selfMs),
    inclusive: sorted(inclusiveMs),
    callers: [...callerMs]
      .map(([stack, ms]) => ({ stack: stack.split('\n'), ms }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, top),
  };
}

export function printSummary(summary: ProfileSummary, label: string) {
  const pct = (ms: number) => `${((100 * ms) / Math.max(1, summary.busyMs)).toFixed(1)} %`;
  const ms = (value: number) => value.toFixed(0);
  console.log(`\n#### ${label}: ${ms(summary.busyMs)} ms busy of ${ms(summary.totalMs)} ms sampled\n`);
  console.log('| owner (nearest frame on the stack) | ms | share of busy |');
  console.log('| --- | --- | --- |');
  for (const row of summary.owners) if (row.owner !== '(idle)') console.log(`| ${row.owner} | ${ms(row.ms)} | ${pct(row.ms)} |`);
  console.log('\n| self time: function | owner | ms | share of busy |');
  console.log('| --- | --- | --- | --- |');
  for (const row of summary.self) console.log(`| \`${row.frame}\` | ${row.owner} | ${ms(row.ms)} | ${pct(row.ms)} |`);
  console.log('\n| inclusive time: function | owner | ms | share of busy |');
  console.log('| --- | --- | --- | --- |');
  for (const row of summary.inclusive) console.log(`| \`${row.frame}\` | ${row.owner} | ${ms(row.ms)} | ${pct(row.ms)} |`);
  for (const row of summary.callers) console.log(`\n${ms(row.ms)} ms (${pct(row.ms)}):\n  ${row.stack.join('\n  ')}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const option = (name: string) => {
    const index = args.indexOf(name);
    if (index === -1) return undefined;
    const [value] = args.splice(index, 2).slice(1);
    return value === undefined ? undefined : Number(value);
  };
  const top = option('--top');
  let fromMs = option('--from');
  let toMs = option('--to');
  const windowIndex = args.indexOf('--window');
  const window = windowIndex === -1 ? undefined : args.splice(windowIndex, 2)[1]?.split(':').map(Number);
  const callersIndex = args.indexOf('--callers');
  const callers = callersIndex === -1 ? undefined : args.splice(callersIndex, 2)[1];
  if (args.length === 0) {
    console.error('usage: node --import tsx bench/cpu-profile.ts FILE.cpuprofile [FILE…] [--top N] [--from MS] [--to MS] [--window START_US:END_US] [--callers TEXT]');
    process.exit(2);
  }
  for (const file of args) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    if (window) [fromMs, toMs] = [(window[0]! - profile.startTime) / 1000, (window[1]! - profile.startTime) / 1000];
    printSummary(summarise(profile, { top, fromMs, toMs, callers }), path.basename(file));
  }
}
