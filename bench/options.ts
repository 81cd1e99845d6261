import { parseArgs } from 'node:util';

export const phaseNames = ['initial', 'raw', 'steady', 'capture'] as const;
export type PhaseName = (typeof phaseNames)[number];

export interface BenchOptions {
  /** Rows in the table that the initial sync and the raw copy move. */
  readonly rows: number;
  /** How long the steady-state load runs. */
  readonly steadySeconds: number;
  /** Changes per second that the steady-state load aims at. */
  readonly rate: number;
  /** Connections the steady-state load starts with. */
  readonly connections: number;
  /** Connections it may grow to while it falls behind schedule. */
  readonly maxConnections: number;
  /** Seconds of updates per table in the capture overhead measurement. */
  readonly captureSeconds: number;
  /** The phases to run (all by default). */
  readonly only: ReadonlySet<PhaseName>;
  /** Where to write the JSON document; stdout when absent. */
  readonly json: string | undefined;
  /** The daemons' log level (warn by default; info for a rerun that shows every batch). */
  readonly logLevel: string;
  /** Run the daemons and the initial-sync command under `node --cpu-prof`, profiles kept with the logs. */
  readonly cpuProf: boolean;
  /** Keep the folder with the configuration files and logs (kept anyway when a daemon logged a warning or an error). */
  readonly keep: boolean;
  /** Exit 1 when a target is missed. */
  readonly failOnMiss: boolean;
  /** The MariaDB server: a mysql:// URL without a database. */
  readonly serverUrl: string;
}

export const usage = `usage: npm run bench -- [options]

  --rows N             rows for the initial sync and the raw copy (default 1000000)
  --steady-seconds S   duration of the steady-state load (default 60)
  --rate R             steady-state changes per second on A (default 2000)
  --connections C      connections the steady-state load starts with (default 4)
  --max-connections M  connections it may grow to while behind schedule (default 32)
  --capture-seconds S  seconds of updates per table for the capture overhead (default 10)
  --only PHASE         initial | raw | steady | capture; repeatable (steady runs the initial sync first)
  --json FILE          write the JSON document to FILE instead of stdout
  --log-level LEVEL    the daemons' log level (default warn)
  --cpu-prof           run the daemons and initial-sync under node --cpu-prof (profiles kept with the logs)
  --keep               keep the folder with the configuration files and logs
  --fail-on-miss       exit 1 when a target is missed

MariaDB: TABLESYNC_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306); the
benchmark creates and drops its own tsbench_* databases.`;

export class UsageError extends Error {}

export function parseOptions(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      rows: { type: 'string' },
      'steady-seconds': { type: 'string' },
      rate: { type: 'string' },
      connections: { type: 'string' },
      'max-connections': { type: 'string' },
      'capture-seconds': { type: 'string' },
      only: { type: 'string', multiple: true },
      json: { type: 'string' },
      'log-level': { type: 'string' },
      'cpu-prof': { type: 'boolean' },
      keep: { type: 'boolean' },
      'fail-on-miss': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help === true) throw new UsageError(usage);

  const only = new Set<PhaseName>();
  for (const item of (values.only ?? []).flatMap((v) => v.split(','))) {
    const name = item.trim();
    if (!(phaseNames as readonly string[]).includes(name)) throw new UsageError(`--only ${name}: must be one of ${phaseNames.join(', ')}`);
    only.add(name as PhaseName);
  }
  const logLevel = values['log-level'] ?? 'warn';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) throw new UsageError(`--log-level ${logLevel}: not a log level`);

  return {
    rows: whole('--rows', values.rows, 1_000_000, 1),
    steadySeconds: positive('--steady-seconds', values['steady-seconds'], 60),
    rate: positive('--rate', values.rate, 2000),
    connections: whole('--connections', values.connections, 4, 1),
    maxConnections: whole('--max-connections', values['max-connections'], 32, 1),
    captureSeconds: positive('--capture-seconds', values['capture-seconds'], 10),
    only: only.size === 0 ? new Set(phaseNames) : only,
    json: values.json,
    logLevel,
    cpuProf: values['cpu-prof'] === true,
    keep: values.keep === true,
    failOnMiss: values['fail-on-miss'] === true,
    serverUrl: process.env.TABLESYNC_BENCH_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306',
  };
}

function whole(flag: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const value = Number(text.replace(/[_,]/g, ''));
  if (!Number.isSafeInteger(value) || value < min) throw new UsageError(`${flag} ${text}: must be a whole number of at least ${min}`);
  return value;
}

function positive(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text.replace(/[_,]/g, ''));
  if (!Number.isFinite(value) || value <= 0) throw new UsageError(`${flag} ${text}: must be a positive number`);
  return value;
}
