/**
 * `npm run bench`: initial sync against a raw copy, daemon memory, steady
 * state latency and capture overhead, measured in one run on fresh MariaDB
 * databases that the benchmark creates and drops. Prints one JSON document
 * (stdout, or --json FILE) and a short table (stderr, or stdout with --json).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { createConnection } from 'mysql2/promise';
import { captureOverhead } from './capture.js';
import { cleanupAll, cleanupOnSignals, interrupted, onCleanup } from './cleanup.js';
import { generateRows } from './db.js';
import { initialSync } from './initial-sync.js';
import { parseOptions, UsageError, type BenchOptions } from './options.js';
import { SyncPair } from './pair.js';
import { cliPath, serviceEnvironment } from './processes.js';
import { rawCopy } from './raw-copy.js';
import { evaluateTargets, humanTable, type BenchResult } from './report.js';
import { round } from './stats.js';
import { steadyState } from './steady-state.js';

const log = (message: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
};

async function main(): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n`);
      return err.message.startsWith('usage:') ? 0 : 2;
    }
    throw err;
  }
  if (!existsSync(cliPath)) {
    process.stderr.write(`${cliPath} is missing: run npm run build first (npm run bench does)\n`);
    return 2;
  }
  cleanupOnSignals();

  const dir = mkdtempSync(join(os.tmpdir(), 'tablesync-bench-'));
  // Profiles and detailed logs are there to be read: keep them.
  let keepDir = options.keep || options.cpuProf || ['info', 'debug', 'trace'].includes(options.logLevel);
  // Registered first, so it runs last: after the daemons are gone.
  onCleanup(`remove ${dir}`, () => {
    if (!keepDir && !daemonsComplained(dir)) rmSync(dir, { recursive: true, force: true });
  });

  const result: BenchResult = {
    benchmark: 'tablesync',
    startedAt: new Date().toISOString(),
    environment: await environment(options.serverUrl),
    options: {
      rows: options.rows,
      steadySeconds: options.steadySeconds,
      rate: options.rate,
      connections: options.connections,
      maxConnections: options.maxConnections,
      captureSeconds: options.captureSeconds,
      only: [...options.only],
      logLevel: options.logLevel,
      cpuProf: options.cpuProf,
    },
    targets: [],
    logs: null,
  };
  const { only } = options;
  const needsPair = only.has('initial') || only.has('raw') || only.has('steady');
  const runsInitial = only.has('initial') || only.has('steady');
  if (only.has('steady') && !only.has('initial')) log('--only steady: the initial sync runs first (the steady state needs B in step with A)');

  let failed = false;
  try {
    if (needsPair) {
      const pair = await SyncPair.create(options.serverUrl, dir, log, { logLevel: options.logLevel, cpuProfDir: options.cpuProf ? join(dir, 'cpu-profiles') : undefined });
      log(`databases ${pair.a.name} (A) and ${pair.b.name} (B); files and logs in ${dir}`);
      log(`generating ${options.rows.toLocaleString('en')} rows on A...`);
      let shown = 0;
      const generated = await generateRows(pair.a, 'items', options.rows, {
        progress: (done) => {
          if (done - shown >= 200_000) {
            shown = done;
            log(`  ${done.toLocaleString('en')} rows`);
          }
        },
      });
      result.generation = { rows: options.rows, seconds: round(generated, 1) };
      log(`generated in ${generated.toFixed(1)} s`);

      const loadByPhase: Record<string, string> = {};
      result.environment.loadAverageAtPhaseStart = loadByPhase;
      const phaseLoad = (phase: string): void => {
        loadByPhase[phase] = os.loadavg().map((l) => round(l, 2)).join(' ');
      };
      if (only.has('raw')) {
        phaseLoad('raw');
        log('raw copy A → B (no daemons running)...');
        result.rawCopy = await rawCopy(pair);
        log(`raw copy: ${result.rawCopy.rowsPerSecond.toLocaleString('en')} rows/s`);
      }
      if (runsInitial) {
        log('starting the daemons (B passive over http, A active, every 250ms)...');
        await pair.startDaemons();
        try {
          phaseLoad('initial');
          log('tablesync initial-sync -c a.yaml...');
          result.initialSync = await initialSync(pair, options.rows, (line) => log(`  initial-sync: ${line}`));
          const settle = result.initialSync.settle;
          log(`initial sync: ${result.initialSync.rowsPerSecond.toLocaleString('en')} rows/s; B ${result.initialSync.verified.ok ? 'equals' : 'DIFFERS FROM'} A; daemons ${settle.complete ? 'settled' : 'NOT settled'} ${settle.seconds} s after done`);
          if (result.rawCopy !== undefined) result.initialOverRaw = round(result.initialSync.rowsPerSecond / result.rawCopy.rowsPerSecond, 3);
          if (only.has('steady')) {
            phaseLoad('steady');
            log(`steady state: ${options.rate.toLocaleString('en')} changes/s for ${options.steadySeconds} s over ${options.connections} connections...`);
            result.steadyState = await steadyState(pair, { rows: options.rows, rate: options.rate, seconds: options.steadySeconds, connections: options.connections, maxConnections: options.maxConnections }, log);
            const s = result.steadyState;
            log(`steady state: ${s.achievedRate}/s, p99 ${String(s.latency.visibleOnBMs.p99)} ms, missing ${s.arrival.missingChanges}`);
          }
        } finally {
          log('stopping the daemons...');
          result.daemons = await pair.stopDaemons();
        }
      }
      // Out of the way of the capture measurement.
      await pair.a.drop();
      await pair.b.drop();
    }
    if (only.has('capture')) {
      result.environment.loadAverageAtCaptureStart = os.loadavg().map((l) => round(l, 2)).join(' ');
      log('capture overhead...');
      result.capture = await captureOverhead(options.serverUrl, dir, options.rows, options.captureSeconds, log);
      log(`capture: ratio ${result.capture.ratio}`);
    }
  } catch (err) {
    // Interrupted: the signal handler cleans up and exits.
    if (interrupted()) return new Promise<number>(() => undefined);
    failed = true;
    keepDir = true;
    result.error = (err as Error).message;
    log(`failed: ${(err as Error).stack ?? String(err)}`);
  } finally {
    await cleanupAll();
  }

  result.finishedAt = new Date().toISOString();
  result.environment.loadAverageAtEnd = os.loadavg().map((l) => round(l, 2)).join(' ');
  result.targets = evaluateTargets(result);
  result.logs = existsSync(dir) ? dir : null;
  const json = `${JSON.stringify(result, null, 2)}\n`;
  if (options.json !== undefined) {
    writeFileSync(options.json, json);
    process.stdout.write(`${humanTable(result)}\n`);
  } else {
    process.stdout.write(json);
    process.stderr.write(`${humanTable(result)}\n`);
  }
  if (failed) return 1;
  if (options.failOnMiss && result.targets.some((t) => !t.pass)) return 1;
  return 0;
}

async function environment(serverUrl: string): Promise<Record<string, unknown>> {
  const connection = await createConnection({ uri: serverUrl });
  try {
    const [rows] = await connection.query('SELECT VERSION() AS version, @@innodb_buffer_pool_size AS pool, @@innodb_flush_log_at_trx_commit AS flush, @@log_bin AS binlog');
    const row = (rows as { version: string; pool: number | string; flush: number | string; binlog: number | string }[])[0];
    const url = new URL(serverUrl);
    return {
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryGb: round(os.totalmem() / 1024 ** 3, 1),
      loadAverageAtStart: os.loadavg().map((l) => round(l, 2)).join(' '),
      mariadb: row?.version ?? 'unknown',
      server: `${url.hostname}:${url.port || '3306'}`,
      innodbBufferPoolMb: Math.round(Number(row?.pool ?? 0) / 1024 ** 2),
      innodbFlushLogAtTrxCommit: Number(row?.flush ?? 0),
      binlog: Number(row?.binlog ?? 0) === 1,
      daemonEnvironment: serviceEnvironment(),
    };
  } finally {
    await connection.end();
  }
}

/** Whether a daemon or command logged a warning or an error: then its folder is kept for a look. */
function daemonsComplained(dir: string): boolean {
  if (!existsSync(dir)) return false;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.log'))) {
    if (/"level":"(warn|error|fatal)"/.test(readFileSync(join(dir, file), 'utf8'))) return true;
  }
  return false;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    await cleanupAll();
    process.exitCode = 1;
  },
);
