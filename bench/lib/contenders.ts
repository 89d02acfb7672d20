/**
 * The three brokers every comparison runs, one after the other, rounds
 * interleaved; tables with one row per broker and the ratios
 * Gatehouse ÷ Mosquitto and Gatehouse ÷ bare Aedes.
 */
import { MOSQUITTO, mosquittoInstalled, startBareAedes, startGatehouse, startMosquitto, type RunningBroker } from './brokers';
import type { Fleet } from './fleet';

export const GATEHOUSE = 'Gatehouse (ACL on, LevelDB, embedded database)';
export const BARE_AEDES = 'bare Aedes (no hooks, LevelDB)';
export const MOSQUITTO_NAME = 'Mosquitto 2.0 (password file)';
export const GATEHOUSE_TYPED = 'Gatehouse, typed passwords (Argon2id; otherwise as above)';

export interface Contender {
  name: string;
  start(): Promise<RunningBroker>;
}

let warned = false;

/**
 * Mosquitto, bare Aedes and Gatehouse, each authenticating the bench user and
 * `fleet`; with `typed`, Gatehouse again with the fleet's passwords stored as
 * typed ones are (when the fleet has them).
 */
export function contenders(fleet: Fleet, brokerCpu: string | undefined, options: { typed?: boolean } = {}): Contender[] {
  const list: Contender[] = [];
  if (fleet.mosquittoPasswordFile && mosquittoInstalled()) {
    const passwordFile = fleet.mosquittoPasswordFile;
    list.push({ name: MOSQUITTO_NAME, start: () => startMosquitto(passwordFile, brokerCpu) });
  } else if (!warned) {
    warned = true;
    const line = '!'.repeat(78);
    console.warn(`\n${line}\n!! Mosquitto is not installed (${MOSQUITTO}): its rows are skipped.\n!! apt-get install mosquitto, then run again to compare with it.\n${line}\n`);
  }
  list.push({ name: BARE_AEDES, start: () => startBareAedes('level', brokerCpu, fleet.aedesUsersFile) });
  // BENCH_BEFORE=DIR: an earlier checkout (its own node_modules) just before this one, on the same data.
  const before = process.env.BENCH_BEFORE;
  if (before) list.push({ name: `${GATEHOUSE}, before (${before})`, start: () => startGatehouse({}, { template: fleet.gatehouseTemplate, cpus: brokerCpu, root: before }) });
  list.push({ name: GATEHOUSE, start: () => startGatehouse({}, { template: fleet.gatehouseTemplate, cpus: brokerCpu }) });
  const typedTemplate = fleet.typedTemplate;
  if (options.typed && typedTemplate) list.push({ name: GATEHOUSE_TYPED, start: () => startGatehouse({}, { template: typedTemplate, cpus: brokerCpu }) });
  return list;
}

export const median = (values: number[]) => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)]! : Number.NaN;
};

export const fmt = (n: number, digits = 1) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '—';

export function table(title: string, header: string[], rows: string[][], note?: string) {
  console.log(`\n### ${title}\n`);
  if (note) console.log(`${note}\n`);
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => ' --- ').join('|')}|`);
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
}

export interface Column {
  header: string;
  digits: number;
  /** No ratio for this column (counts, text). */
  noRatio?: boolean;
}

/**
 * One row per broker (the median of its rounds, each column on its own), then
 * Gatehouse ÷ Mosquitto and Gatehouse ÷ bare Aedes. `notes` (a broker that
 * died, runs that did not finish) go into the broker's first cell.
 */
export function comparisonTable(
  title: string,
  columns: Column[],
  results: Map<string, number[][]>,
  names: string[],
  notes: Map<string, string[]> = new Map(),
  intro?: string,
) {
  const medians = new Map(names.map((name) => [name, columns.map((_, c) => median((results.get(name) ?? []).map((row) => row[c]!)))]));
  const rows = names.map((name) => {
    const note = notes.get(name)?.length ? ` (${[...new Set(notes.get(name))].join('; ')})` : '';
    return [`${name}${note}`, ...columns.map((column, c) => fmt(medians.get(name)![c]!, column.digits))];
  });
  const ratioRow = (label: string, base: string) => {
    if (!medians.has(GATEHOUSE) || !medians.has(base)) return;
    rows.push([
      `**${label}**`,
      ...columns.map((column, c) => {
        if (column.noRatio) return '';
        const ratio = medians.get(GATEHOUSE)![c]! / medians.get(base)![c]!;
        return Number.isFinite(ratio) ? `${fmt(ratio, ratio >= 10 ? 0 : 2)}×` : '—';
      }),
    ]);
  };
  ratioRow('Gatehouse ÷ Mosquitto', MOSQUITTO_NAME);
  ratioRow('Gatehouse ÷ bare Aedes', BARE_AEDES);
  table(title, ['broker', ...columns.map((c) => c.header)], rows, intro);
}

/** Every broker death of the run, for its last line. */
export const deaths: string[] = [];

/** Reports a dead broker loudly, with what it printed last. */
export function reportDeath(name: string, broker: RunningBroker, during: string) {
  deaths.push(`${name} during ${during}`);
  const line = '!'.repeat(78);
  console.error(`\n${line}\n!! ${name} DIED during ${during}. Its last output:\n${broker.output().slice(-3000)}\n${line}\n`);
}
