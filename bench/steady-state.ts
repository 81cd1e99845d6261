import type { Connection } from 'mysql2/promise';
import { compareLinked, idOfSku, quote, random, rows, tableSum } from './db.js';
import type { SyncPair } from './pair.js';
import { sleep } from './processes.js';
import { distribution, round, type Distribution } from './stats.js';

export interface SteadyStateResult {
  targetRate: number;
  seconds: number;
  /**
   * What A's and B's databases (the tables, tablesync's state) take, rows and indexes, when the load
   * starts, against the buffer pool: the changes touch random rows, and whatever is not cached waits on the disk.
   */
  databaseMb: { a: number; b: number; bufferPool: number };
  /**
   * Pages the server read from the disk (Innodb_buffer_pool_reads) per second over the load, A and B
   * together (they share the server): how far the changes went beyond the buffer pool.
   */
  diskPageReadsPerSecond: number;
  /** Connections that carried the load in the end (more are added while it falls behind schedule). */
  connections: number;
  changes: number;
  achievedRate: number;
  /** How late the last change started against its schedule, in ms: large when the load could not keep up. */
  scheduleLagMs: number;
  maxScheduleLagMs: number;
  /** Round trip of the application's UPDATE on A (autocommit), in ms. */
  updateRoundTripMs: Distribution;
  latency: {
    method: string;
    /** Per change: from the value written on A to B's first poll that sees the change (or a later one of the same row) committed. An upper bound of commit-to-commit. */
    visibleOnBMs: Distribution;
    /** Per change: from the value written on A to the moment B's applier wrote the row (SYSDATE(3) in a trigger on B, inside its batch transaction). A lower bound of commit-to-commit. */
    appliedOnBMs: Distribution;
    /** Per changed row, its final change only: B's synced_at (ON UPDATE CURRENT_TIMESTAMP(3)) minus updated_ms. */
    finalChangeSyncedAtMs: Distribution;
    pollIntervalMs: number;
  };
  arrival: {
    allArrived: boolean;
    /** Changes made on A that B does not hold (nor a later change of the same row) once the wait is over. */
    missingChanges: number;
    /** From the end of the load until B held every change (null if it never did within the wait). */
    catchUpSeconds: number | null;
    waitedSeconds: number;
    /** After the wait: every row of A compared with its linked row on B. */
    rowsOnA: number;
    rowsOnB: number;
    checksumMatches: boolean;
    differingRows: number;
  };
}

interface Change {
  id: number;
  revision: number;
  /** The value written to updated_ms: Date.now() just before the UPDATE. */
  writtenMs: number;
}

interface Applied {
  revision: number;
  appliedMs: number;
  visibleMs: number;
}

const pollIntervalMs = 50;
const arrivalWaitMs = 30_000;

/**
 * With both daemons running and the initial sync done, the application
 * updates random rows of A at a fixed rate for `seconds`, paced, over
 * `connections` connections, more (up to `maxConnections`) while it falls
 * behind schedule; a row is never updated by two connections at once, so
 * one row's changes commit in order. Each change writes its
 * time (updated_ms) and a per-row revision. On B, a trigger of the
 * benchmark's own (not tablesync's) logs every write tablesync makes to
 * items, with the time of the write; a poller reads that log every 50 ms.
 * A change has arrived when B holds its revision or a later one.
 */
export async function steadyState(pair: SyncPair, options: { rows: number; rate: number; seconds: number; connections: number; maxConnections: number }, log: (message: string) => void): Promise<SteadyStateResult> {
  pair.checkDaemons();
  const databaseMb = await databaseSizes(pair);
  const bSetup = await pair.b.connect();
  await bSetup.query(`CREATE TABLE bench_applied (
      seq BIGINT AUTO_INCREMENT PRIMARY KEY,
      sku VARCHAR(32) NOT NULL,
      revision INT NOT NULL,
      updated_ms BIGINT NOT NULL,
      applied_ms BIGINT NOT NULL) ENGINE=InnoDB`);
  await bSetup.query(`CREATE TRIGGER bench_items_applied AFTER UPDATE ON items FOR EACH ROW
      INSERT INTO bench_applied (sku, revision, updated_ms, applied_ms) VALUES (NEW.sku, NEW.revision, NEW.updated_ms, ROUND(UNIX_TIMESTAMP(SYSDATE(3)) * 1000))`);
  await pair.b.release(bSetup);

  const revisions = new Int32Array(options.rows + 1);
  const seenOnB = new Int32Array(options.rows + 1);
  const applied = new Map<number, Applied[]>();
  const poller = new AppliedPoller(await pair.b.connect(), (sku, entry) => {
    const id = idOfSku(sku);
    let list = applied.get(id);
    if (list === undefined) applied.set(id, (list = []));
    list.push(entry);
    if (entry.revision > (seenOnB[id] ?? 0)) seenOnB[id] = entry.revision;
  });
  const polling = poller.run();

  // ---- the load
  const changes: Change[] = [];
  const roundTrips: number[] = [];
  const { rate, seconds } = options;
  const maxConnections = Math.min(options.rows, Math.max(options.connections, options.maxConnections));
  const connectionsA: Connection[] = [];
  /** Rows with an UPDATE in flight: a row's next change waits for its last, so revisions commit in order. */
  const inFlight = new Set<number>();
  const rand = random(1000);
  const readsBefore = await diskPageReads(pair);
  const start = performance.now();
  const end = start + seconds * 1000;
  let next = 0;
  let lag = 0;
  let maxLag = 0;
  let lastReport = start;
  let lastAdded = start;
  const workers: Promise<void>[] = [];
  const worker = async (connection: Connection): Promise<void> => {
    for (;;) {
      const k = next++;
      const due = start + (k * 1000) / rate;
      // Stops on time, however far behind schedule the load has fallen.
      if (due >= end || performance.now() >= end) return;
      const wait = due - performance.now();
      if (wait >= 1) await sleep(wait);
      lag = Math.max(0, performance.now() - due);
      maxLag = Math.max(maxLag, lag);
      // Behind schedule by more than 100 ms: one more connection (at most one every 250 ms).
      if (lag > 100 && workerCount < maxConnections && performance.now() - lastAdded > 250) {
        lastAdded = performance.now();
        addWorker();
      }
      let id = 1 + Math.floor(rand() * options.rows);
      while (inFlight.has(id)) id = 1 + Math.floor(rand() * options.rows);
      inFlight.add(id);
      const revision = (revisions[id] ?? 0) + 1;
      revisions[id] = revision;
      const writtenMs = Date.now();
      const t0 = performance.now();
      try {
        await connection.query('UPDATE items SET qty = ?, revision = ?, updated_ms = ? WHERE id = ?', [Math.floor(rand() * 10_000), revision, writtenMs, id]);
      } finally {
        inFlight.delete(id);
      }
      roundTrips.push(performance.now() - t0);
      changes.push({ id, revision, writtenMs });
      if (performance.now() - lastReport >= 10_000) {
        lastReport = performance.now();
        pair.checkDaemons();
        log(`steady state: ${changes.length.toLocaleString('en')} changes in ${((lastReport - start) / 1000).toFixed(0)} s over ${connectionsA.length} connections, ${poller.seen.toLocaleString('en')} writes seen on B`);
      }
    }
  };
  let workerCount = 0;
  const addWorker = (): void => {
    workerCount += 1;
    workers.push(
      (async () => {
        const connection = await pair.a.connect();
        connectionsA.push(connection);
        await worker(connection);
      })(),
    );
  };
  for (let i = 0; i < Math.min(options.connections, maxConnections); i++) addWorker();
  // Workers added meanwhile join the list: wait until it stops growing.
  for (let settled = 0; settled < workers.length; ) {
    const count = workers.length;
    await Promise.all(workers);
    settled = count;
  }
  const loadSeconds = (performance.now() - start) / 1000;
  for (const connection of connectionsA) await pair.a.release(connection);
  const loadEndedAt = performance.now();
  const diskPageReadsPerSecond = ((await diskPageReads(pair)) - readsBefore) / loadSeconds;
  log(`steady state: load done (${changes.length.toLocaleString('en')} changes in ${loadSeconds.toFixed(1)} s); waiting up to ${arrivalWaitMs / 1000} s for B to hold every change`);

  // ---- wait until B holds every row's last change
  const changedIds = [...new Set(changes.map((c) => c.id))];
  const behind = (): number => changedIds.reduce((n, id) => n + ((seenOnB[id] ?? 0) < (revisions[id] ?? 0) ? 1 : 0), 0);
  let catchUpSeconds: number | null = null;
  for (;;) {
    if (behind() === 0) {
      catchUpSeconds = round((performance.now() - loadEndedAt) / 1000, 2);
      break;
    }
    if (performance.now() - loadEndedAt > arrivalWaitMs) break;
    pair.checkDaemons();
    await sleep(pollIntervalMs);
  }
  const waitedSeconds = round((performance.now() - loadEndedAt) / 1000, 2);
  await sleep(2 * pollIntervalMs);
  poller.stop();
  await polling;
  await pair.b.release(poller.connection);

  // ---- latencies: for each change, the first write on B of its revision or a later one
  const visible: number[] = [];
  const appliedLatency: number[] = [];
  let missing = 0;
  for (const change of changes) {
    const list = applied.get(change.id);
    const entry = list === undefined ? undefined : firstAtLeast(list, change.revision);
    if (entry === undefined) {
      missing += 1;
      continue;
    }
    visible.push(entry.visibleMs - change.writtenMs);
    appliedLatency.push(entry.appliedMs - change.writtenMs);
  }

  const connection = await pair.a.connect();
  try {
    const finals = await rows<{ latency: number | string }>(
      connection,
      `SELECT ROUND(UNIX_TIMESTAMP(synced_at) * 1000) - updated_ms AS latency FROM ${quote(pair.b.name)}.items WHERE revision > 0`,
    );
    const [onA, onB] = await Promise.all([tableSum(connection, pair.a.name, 'items'), tableSum(connection, pair.b.name, 'items')]);
    const compared = await compareLinked(connection, pair.a.name, pair.b.name, pair.sync);
    return {
      targetRate: rate,
      seconds: round(loadSeconds, 2),
      databaseMb,
      diskPageReadsPerSecond: Math.round(diskPageReadsPerSecond),
      connections: connectionsA.length,
      changes: changes.length,
      achievedRate: Math.round(changes.length / loadSeconds),
      scheduleLagMs: round(lag, 1),
      maxScheduleLagMs: round(maxLag, 1),
      updateRoundTripMs: distribution(roundTrips),
      latency: {
        method:
          'every change: a trigger of the benchmark on B logs each row tablesync writes (revision, SYSDATE(3)); a poller reads that log every 50 ms; ' +
          "a change's latency runs from the updated_ms it wrote on A to the first write (applied) or poll (visible) on B of its revision or a later one",
        visibleOnBMs: distribution(visible),
        appliedOnBMs: distribution(appliedLatency),
        finalChangeSyncedAtMs: distribution(finals.map((r) => Number(r.latency))),
        pollIntervalMs,
      },
      arrival: {
        allArrived: missing === 0 && compared.changesBehind === 0,
        missingChanges: Math.max(missing, compared.changesBehind),
        catchUpSeconds,
        waitedSeconds,
        rowsOnA: onA.rows,
        rowsOnB: onB.rows,
        checksumMatches: onA.rows === onB.rows && onA.checksum === onB.checksum,
        differingRows: compared.differing,
      },
    };
  } finally {
    await pair.a.release(connection);
  }
}

/** Megabytes of rows and indexes in A's and B's databases (InnoDB's estimates), and the buffer pool's size. */
async function databaseSizes(pair: SyncPair): Promise<SteadyStateResult['databaseMb']> {
  const connection = await pair.a.connect();
  try {
    const sizes = await rows<{ name: string; bytes: number | string }>(
      connection,
      'SELECT table_schema AS name, SUM(data_length + index_length) AS bytes FROM information_schema.tables WHERE table_schema IN (?, ?) GROUP BY table_schema',
      [pair.a.name, pair.b.name],
    );
    const [pool] = await rows<{ bytes: number | string }>(connection, 'SELECT @@innodb_buffer_pool_size AS bytes');
    const mbOf = (name: string): number => Math.round(Number(sizes.find((s) => s.name === name)?.bytes ?? 0) / 1024 ** 2);
    return { a: mbOf(pair.a.name), b: mbOf(pair.b.name), bufferPool: Math.round(Number(pool?.bytes ?? 0) / 1024 ** 2) };
  } finally {
    await pair.a.release(connection);
  }
}

/** The server's count of InnoDB pages read from the disk since it started. */
async function diskPageReads(pair: SyncPair): Promise<number> {
  const connection = await pair.a.connect();
  try {
    const [row] = await rows<{ Value: string }>(connection, "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_reads'");
    return Number(row?.Value ?? 0);
  } finally {
    await pair.a.release(connection);
  }
}

/** The first entry (in B's write order) whose revision is at least `revision`. */
function firstAtLeast(list: readonly Applied[], revision: number): Applied | undefined {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((list[mid]?.revision ?? 0) >= revision) hi = mid;
    else lo = mid + 1;
  }
  return list[lo];
}

/**
 * Reads B's bench_applied log as it grows. Only B's applier writes to B's
 * items, one batch transaction at a time, so the log's sequence follows
 * commit order and nothing committed is ever behind what was read.
 */
class AppliedPoller {
  #stopped = false;
  #last = 0;
  seen = 0;

  constructor(
    readonly connection: Connection,
    private readonly onRow: (sku: string, entry: Applied) => void,
  ) {}

  async run(): Promise<void> {
    while (!this.#stopped) {
      const started = performance.now();
      await this.poll();
      const rest = pollIntervalMs - (performance.now() - started);
      if (rest > 0) await sleep(rest);
    }
    await this.poll();
  }

  async poll(): Promise<void> {
    for (;;) {
      const found = await rows<{ seq: string; sku: string; revision: number; applied_ms: string }>(
        this.connection,
        'SELECT seq, sku, revision, applied_ms FROM bench_applied WHERE seq > ? ORDER BY seq LIMIT 50000',
        [this.#last],
      );
      const visibleMs = Date.now();
      for (const row of found) {
        this.onRow(row.sku, { revision: Number(row.revision), appliedMs: Number(row.applied_ms), visibleMs });
        this.#last = Number(row.seq);
      }
      this.seen += found.length;
      if (found.length < 50_000) return;
    }
  }

  stop(): void {
    this.#stopped = true;
  }
}
