import { join } from 'node:path';
import type { Connection } from 'mysql2/promise';
import { compareLinked, one, quote, tableSum } from './db.js';
import type { DaemonMemory, SyncPair } from './pair.js';
import { CliProcess, sleep } from './processes.js';
import { mb, perSecond, round } from './stats.js';

export interface InitialSyncResult {
  rows: number;
  /** From starting `tablesync initial-sync` to its `done:` line. */
  seconds: number;
  rowsPerSecond: number;
  /** The command's own `done:` line. */
  doneLine: string;
  verified: {
    rowsOnA: number;
    rowsOnB: number;
    checksumMatches: boolean;
    /** Rows of B linked to a row of A, compared field by field (byte for byte). */
    linkedRows: number;
    differingRows: number;
    /** Links A (the sender) holds once the command is done: whether it has learnt B's ids. */
    linksOnA: number;
    ok: boolean;
  };
  /**
   * After `done:`, until the daemons have nothing left to do (journal, outbox
   * and unacknowledged batches empty on both sides, and A holding a link for
   * every row): the bookkeeping that travels after the rows themselves.
   */
  settle: { seconds: number; complete: boolean; linksOnA: number; backlog: Record<string, number> };
  memory: {
    /** Each daemon over this phase: VmHWM at its end (peak since the daemon started) and the largest sampled VmRSS. */
    daemonA: DaemonMemory;
    daemonB: DaemonMemory;
    /** The initial-sync command, which reads A's rows: largest sampled VmRSS. */
    initialSyncCommandMaxSampledRssMb: number | null;
  };
}

/**
 * `tablesync initial-sync -c a.yaml` beside the running daemons, timed from
 * its start to its `done:` line (the peer has acknowledged every row), then
 * B checked against A, then a wait until the daemons have settled (A has
 * learnt B's ids), so that the steady state starts from a quiet pair.
 */
export async function initialSync(pair: SyncPair, rows: number, progress: (line: string) => void): Promise<InitialSyncResult> {
  pair.checkDaemons();
  pair.sampler.startPhase();
  const started = performance.now();
  const cpuProfDir = pair.cpuProfDir;
  // --no-backup: the figure is the sync's; a safety backup of A's rows would be timed with it.
  const command = new CliProcess('initial-sync', ['initial-sync', '-c', pair.files.a, '--no-backup'], { logFile: join(pair.dir, 'initial-sync.log'), ...(cpuProfDir === undefined ? {} : { cpuProfDir }) }, true);
  pair.sampler.watch('initial-sync', command.pid);
  let lastShown = 0;
  const timeoutMs = 600_000 + rows * 5; // 10 minutes plus 5 ms a row: only against a hang
  const match = await command.waitForOutput(/^done: .*$/m, timeoutMs, (line) => {
    if (Date.now() - lastShown < 5000 || line.startsWith('done:')) return;
    lastShown = Date.now();
    progress(line.trim());
  });
  const seconds = (performance.now() - started) / 1000;
  pair.sampler.unwatch('initial-sync');
  const { code } = await command.exited;
  if (code !== 0) throw new Error(`tablesync initial-sync exited with ${String(code)}:\n${command.output().slice(-4000)}`);
  pair.checkDaemons();
  const phaseMax = (name: string): number | null => mb(pair.sampler.phaseMaxKb(name));

  const connection = await pair.a.connect();
  try {
    const [onA, onB] = await Promise.all([tableSum(connection, pair.a.name, 'items'), tableSum(connection, pair.b.name, 'items')]);
    const linked = await compareLinked(connection, pair.a.name, pair.b.name, pair.sync);
    const checksumMatches = onA.rows === onB.rows && onA.checksum === onB.checksum;
    const linksOnA = await countLinks(connection, pair);
    const settle = await settleAfter(pair, connection, rows, 120_000 + rows * 0.3);
    const memory = pair.memoryNow();
    return {
      rows,
      seconds: round(seconds, 2),
      rowsPerSecond: perSecond(rows, seconds),
      doneLine: match[0].trim(),
      verified: {
        rowsOnA: onA.rows,
        rowsOnB: onB.rows,
        checksumMatches,
        linkedRows: linked.linked,
        differingRows: linked.differing,
        linksOnA,
        ok: checksumMatches && onA.rows === rows && linked.linked === rows && linked.differing === 0,
      },
      settle,
      memory: {
        daemonA: { peakRssMb: memory.a.peakRssMb, maxSampledRssMb: phaseMax('daemon-a') },
        daemonB: { peakRssMb: memory.b.peakRssMb, maxSampledRssMb: phaseMax('daemon-b') },
        initialSyncCommandMaxSampledRssMb: phaseMax('initial-sync'),
      },
    };
  } finally {
    await pair.a.release(connection);
  }
}

async function countLinks(connection: Connection, pair: SyncPair): Promise<number> {
  const row = await one<{ n: number | string }>(connection, `SELECT COUNT(*) AS n FROM ${quote(pair.a.name)}.tablesync_links WHERE sync_name = ?`, [pair.sync]);
  return Number(row.n);
}

/** Waits (up to `timeoutMs`) until neither side has anything left to send or confirm. */
async function settleAfter(pair: SyncPair, connection: Connection, rows: number, timeoutMs: number): Promise<InitialSyncResult['settle']> {
  const started = performance.now();
  const tables = (['a', 'b'] as const).flatMap((side) => ['journal', 'outbox', 'batches_out'].map((t) => ({ key: `${side}.${t}`, name: `${quote(pair[side].name)}.${quote(`tablesync_${t}`)}` })));
  // Polled cheaply (does any row exist?), counted once at the end: counting a big outbox every second would load the server being measured.
  const anyWaiting = async (): Promise<boolean> => {
    const row = await one<{ waiting: number | string }>(connection, `SELECT ${tables.map((t) => `EXISTS (SELECT 1 FROM ${t.name})`).join(' OR ')} AS waiting`);
    return Number(row.waiting) !== 0;
  };
  let complete = false;
  for (;;) {
    pair.checkDaemons();
    complete = !(await anyWaiting()) && (await countLinks(connection, pair)) >= rows;
    if (complete || performance.now() - started > timeoutMs) break;
    await sleep(1000);
  }
  const seconds = round((performance.now() - started) / 1000, 2);
  const backlog: Record<string, number> = {};
  for (const t of tables) backlog[t.key] = Number((await one<{ n: number | string }>(connection, `SELECT COUNT(*) AS n FROM ${t.name}`)).n);
  return { seconds, complete, linksOnA: await countLinks(connection, pair), backlog };
}
