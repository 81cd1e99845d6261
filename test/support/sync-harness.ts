import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { stringify } from 'yaml';
import type { ConflictRule, DialectName, Direction, ReadAheadMode, UserMatch } from '../../src/config/types.js';
import { runCli, startCli, type CliResult, type RunningCli } from './cli.js';
import { describeWithDialects, dialectCase, type AppConnection, type TestDatabase } from './databases.js';
import { freePort, makeCertificates, TestFtpServer, type Certificates } from './servers.js';

/**
 * End-to-end harness for the sync engine: instances with their own real
 * database, configuration file and folders in a temporary directory, each
 * with its daemon (`tablesync run`) as a real child process, and the
 * application's own connection to make changes as a user would.
 *
 * Nothing here sleeps for a fixed time: every wait polls a condition and,
 * when time runs out, fails with what it was waiting for, the rows of every
 * instance, tablesync's bookkeeping and the daemons' warnings.
 */

// ---------------------------------------------------------------- waiting

export interface WaitOptions {
  /** Default 20 s: the daemons exchange every 100–250 ms, so anything slower is a failure. */
  readonly timeoutMs?: number;
  /** Default 100 ms. */
  readonly intervalMs?: number;
  /** What to add to the failure message: the state of the world when time ran out. */
  readonly explain?: () => Promise<string>;
}

/**
 * What a probe reports: `true` (or an empty list) when the condition holds;
 * `false`, or a list of what is still wrong, when it does not yet.
 */
export type ProbeResult = boolean | readonly string[];
export type Probe = () => Promise<ProbeResult> | ProbeResult;

function verdict(result: ProbeResult): { ok: boolean; problems: readonly string[] } {
  if (typeof result === 'boolean') return { ok: result, problems: [] };
  return { ok: result.length === 0, problems: result };
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it holds; on timeout, throws naming `description`, the last problems seen and `explain()`. */
export async function waitFor(description: string, probe: Probe, options: WaitOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 20_000;
  const intervalMs = options.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let last: readonly string[] = [];
  let lastError: unknown;
  for (;;) {
    try {
      const { ok, problems } = verdict(await probe());
      if (ok) return;
      last = problems;
      lastError = undefined;
    } catch (err) {
      // A database busy with the daemon's transaction, say: try again until the deadline.
      lastError = err;
    }
    if (Date.now() >= deadline) break;
    await pause(intervalMs);
  }
  const lines = [`timed out after ${timeoutMs} ms waiting for ${description}`];
  if (last.length > 0) lines.push('still wrong:', ...last.map((p) => `  - ${p}`));
  if (lastError !== undefined) lines.push(`the last check failed: ${(lastError as Error).message}`);
  if (options.explain !== undefined) lines.push(await options.explain().catch((err: Error) => `(could not describe the state: ${err.message})`));
  throw new Error(lines.join('\n'));
}

/** Polls `probe` for `forMs` and fails at the first poll where it does not hold: for "and it stays so". */
export async function holdsFor(description: string, probe: Probe, forMs: number, options: Omit<WaitOptions, 'timeoutMs'> = {}): Promise<void> {
  const until = Date.now() + forMs;
  do {
    const { ok, problems } = verdict(await probe());
    if (!ok) {
      const lines = [`expected ${description} to hold for ${forMs} ms, but it stopped holding`];
      if (problems.length > 0) lines.push(...problems.map((p) => `  - ${p}`));
      if (options.explain !== undefined) lines.push(await options.explain());
      throw new Error(lines.join('\n'));
    }
    await pause(options.intervalMs ?? 100);
  } while (Date.now() < until);
}

/**
 * Lets the wall clock move on by a few milliseconds, so that the next change
 * is stamped (by the database's clock, in ms) strictly later than the last:
 * what `newest-wins` orders by.
 */
export async function clockTick(ms = 5): Promise<void> {
  const from = Date.now();
  await waitFor('the clock to move on', () => Date.now() >= from + ms, { intervalMs: 1 });
}

// ---------------------------------------------------------------- configuration

export interface FieldSpec {
  readonly column: string;
  readonly number: number;
  readonly direction?: Direction;
  readonly type?: 'value' | 'user';
}

export interface TableSpec {
  readonly table: string;
  readonly number: number;
  readonly key: string;
  readonly status?: { readonly column: string; readonly deleted: string | number };
  /** The table's `match:`: field numbers that identify a record both sides already have, at initial sync. */
  readonly match?: readonly number[];
  readonly fields: readonly FieldSpec[];
}

export interface UsersSpec {
  readonly table: string;
  readonly key: string;
  readonly login?: string;
  readonly fullName?: string;
}

export interface SyncOptions {
  readonly name: string;
  /** Default 250ms: quick enough for tests (an arrival triggers an exchange at once), light enough to run many daemons side by side. */
  readonly every?: string;
  readonly conflicts?: ConflictRule;
  readonly users?: UserMatch;
  /** How batches travel between the two sides; default `folder`. */
  readonly transport?: TransportKind;
}

/**
 * How a sync's two daemons are connected:
 * - `folder`: two local folders (the default);
 * - `http`: the active side calls the passive side's listener on a free loopback port;
 * - `https`: the same over TLS, with a certificate from a private CA made for the test,
 *   which the active side trusts through its `tls: { ca }`;
 * - `ftp`: both sides are clients of an FTP server (ftp-srv) that the cluster runs in the test's process;
 * - `folder/ftp` and `ftp/folder`: one side (active/passive, in that order) reads and writes the
 *   FTP server's folders directly on disk with the folder transport, the other goes through the server.
 */
export type TransportKind = 'folder' | 'http' | 'https' | 'ftp' | 'folder/ftp' | 'ftp/folder';

/** One end of a sync, as one instance's file describes it. */
interface SyncEnd {
  readonly options: SyncOptions;
  readonly mode: 'active' | 'passive';
  /**
   * This side's folders as seen on this machine: those of the folder transport, or, over ftp, the
   * server's folders on disk. Undefined over http, where batches wait in the passive daemon's memory.
   */
  readonly upload: string | undefined;
  readonly download: string | undefined;
  readonly tables: readonly TableSpec[];
  /** How the sync travels (the same on both ends). */
  readonly kind: TransportKind;
  /** The sync's `transport:` section, made each time the file is written (ports are known by then). */
  readonly transport: () => Record<string, unknown>;
}

export interface LogLine {
  level: string;
  msg: string;
  [key: string]: unknown;
}

// ---------------------------------------------------------------- instances

/** Counts of tablesync's bookkeeping that must drop to zero once everything has travelled. */
export interface Backlog {
  journal: number;
  outbox: number;
  batchesOut: number;
  parked: number;
}

/**
 * One instance: its database, the application's connection to it, its
 * configuration file and, while running, its daemon.
 */
export class SyncInstance {
  readonly syncs: SyncEnd[] = [];
  users: UsersSpec | undefined;
  /** Where the daemon's http listener listens (127.0.0.1), when it serves passive http syncs. */
  listenPort: number | undefined;
  /** The instance's `tls:` section: `cert` and `key` to serve https, `ca` to trust a peer's authority. */
  tls: { cert?: string; key?: string; ca?: string } | undefined;
  /** Environment variables the daemon runs with, besides the test's own (a shifted clock, say). */
  env: NodeJS.ProcessEnv = {};
  /** The instance's `backups.dir`; by default tablesync's (`backups/` beside the file, which the cluster's instances share). */
  backupsDir: string | undefined;
  /** The instance's `database.readAhead`; by default tablesync's (`auto`). */
  readAhead: ReadAheadMode | undefined;
  /** Work to finish before the file can be written (a port to pick, a server to start, certificates to make). */
  readonly #preparations: (() => Promise<void>)[] = [];
  /** The file as last written, to tell whether it is out of date (a peer moved to another port). */
  #written: string | undefined;
  #daemon: RunningCli | undefined;
  /** Output of every run of the daemon so far, in order. */
  #pastOutput = '';
  /** SQLite only: a connection that asks for the write lock without waiting, to see whether the daemon holds it. */
  #probe: BetterSqlite3.Database | undefined;

  constructor(
    readonly name: string,
    readonly db: TestDatabase,
    readonly app: AppConnection,
    readonly configFile: string,
  ) {}

  get dialect(): DialectName {
    return this.db.dialect;
  }

  get running(): boolean {
    return this.#daemon !== undefined;
  }

  /** The table this instance syncs in `sync` under `number`. */
  table(sync: string, number: number): TableSpec {
    const end = this.syncs.find((s) => s.options.name === sync);
    const table = end?.tables.find((t) => t.number === number);
    if (table === undefined) throw new Error(`${this.name} has no table ${number} in sync ${sync}`);
    return table;
  }

  /** Adds work to do before the daemon first starts (once: the work remembers itself). */
  beforeStart(preparation: () => Promise<void>): void {
    this.#preparations.push(preparation);
  }

  /** The YAML file, from what the cluster has set up. */
  renderConfig(): string {
    const config = {
      instance: this.name,
      database: {
        ...(this.db.config.dialect === 'sqlite' ? { dialect: 'sqlite', file: this.db.config.file } : { dialect: this.db.config.dialect, url: this.db.config.url }),
        ...(this.readAhead === undefined ? {} : { readAhead: this.readAhead }),
      },
      ...(this.listenPort === undefined ? {} : { listen: `127.0.0.1:${this.listenPort}` }),
      ...(this.tls === undefined ? {} : { tls: this.tls }),
      log: { level: 'info' },
      ...(this.backupsDir === undefined ? {} : { backups: { dir: this.backupsDir } }),
      ...(this.users === undefined ? {} : { users: this.users }),
      syncs: this.syncs.map((end) => ({
        name: end.options.name,
        mode: end.mode,
        transport: end.transport(),
        every: end.options.every ?? '250ms',
        conflicts: end.options.conflicts ?? 'newest-wins',
        users: end.options.users ?? 'login',
        tables: end.tables.map((t) => ({
          table: t.table,
          number: t.number,
          key: t.key,
          ...(t.status === undefined ? {} : { status: t.status }),
          ...(t.match === undefined ? {} : { match: t.match }),
          fields: t.fields.map((f) => ({ column: f.column, number: f.number, direction: f.direction ?? 'both', ...(f.type === undefined ? {} : { type: f.type }) })),
        })),
      })),
    };
    return stringify(config);
  }

  /** Writes the YAML file from what the cluster has set up; called before every start. */
  writeConfig(): void {
    const text = this.renderConfig();
    // Only its owner may read it, as in a real deployment: the file holds the syncs' passwords.
    writeFileSync(this.configFile, text, { mode: 0o600 });
    this.#written = text;
  }

  /** Whether the running daemon's file differs from what it would be now (a peer's listener moved). */
  get configStale(): boolean {
    return this.#written !== undefined && this.#written !== this.renderConfig();
  }

  /**
   * Starts the daemon and waits until it says it is running. A listener
   * whose port was taken meanwhile (it was free when picked) moves to
   * another free port, and the start is tried again.
   */
  async start(): Promise<void> {
    if (this.#daemon !== undefined) throw new Error(`${this.name}'s daemon is already running`);
    for (const preparation of this.#preparations) await preparation();
    for (let attempt = 1; ; attempt += 1) {
      this.writeConfig();
      const daemon = startCli(['run', '-c', this.configFile], { env: this.env });
      this.#daemon = daemon;
      try {
        await daemon.waitFor('"msg":"tablesync is running"', 30_000);
        return;
      } catch (err) {
        await this.kill();
        if (this.listenPort !== undefined && attempt < 4 && /address is in use/.test(daemon.output())) {
          this.listenPort = await freePort();
          continue;
        }
        throw new Error(`${this.name}'s daemon did not start: ${(err as Error).message}`);
      }
    }
  }

  /** SIGTERM: the daemon finishes the work in hand and exits; resolves its exit code. */
  async stop(): Promise<number | null> {
    const daemon = this.#daemon;
    if (daemon === undefined) return null;
    daemon.child.kill('SIGTERM');
    const timer = setTimeout(() => daemon.child.kill('SIGKILL'), 20_000);
    const code = await daemon.exited;
    clearTimeout(timer);
    this.#finished(daemon);
    return code;
  }

  /** SIGKILL: the daemon dies wherever it is, as in a power cut. */
  async kill(): Promise<void> {
    const daemon = this.#daemon;
    if (daemon === undefined) return;
    daemon.child.kill('SIGKILL');
    await daemon.exited;
    this.#finished(daemon);
  }

  #finished(daemon: RunningCli): void {
    if (this.#daemon !== daemon) return;
    this.#pastOutput += daemon.output();
    this.#daemon = undefined;
  }

  /** Everything every run of the daemon printed. */
  output(): string {
    return this.#pastOutput + (this.#daemon?.output() ?? '');
  }

  /** The daemon's log lines (JSON), over every run. */
  logLines(): LogLine[] {
    return this.output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => {
        try {
          return JSON.parse(line) as LogLine;
        } catch {
          return { level: 'unparsed', msg: line };
        }
      });
  }

  /** `tablesync COMMAND -c FILE ARGS...`, as a user runs it beside the daemon. */
  cli(command: string, ...args: string[]): Promise<CliResult> {
    return runCli([command, '-c', this.configFile, ...args]);
  }

  /** The same in the background (`initial-sync` waiting for its peer), killed when the test finishes if it still runs. */
  startCli(context: ClusterTestContext, command: string, ...args: string[]): RunningCli {
    const running = startCli([command, '-c', this.configFile, ...args]);
    // Registered after the cluster's disposal, so it runs first: a MariaDB database is not dropped under an open transaction.
    context.onTestFinished(async () => {
      if (running.child.exitCode === null && running.child.signalCode === null) {
        running.child.kill('SIGKILL');
        await running.exited;
      }
    });
    return running;
  }

  query<T = Record<string, unknown>>(statement: string, params?: unknown[]): Promise<T[]> {
    return this.app.query<T>(statement, params);
  }

  exec(statement: string, params?: unknown[]): Promise<void> {
    return this.app.exec(statement, params);
  }

  /** Every row of a table, ordered by key, values as text (null stays null) so that dialects compare. */
  async rows(table: string, key: string): Promise<Record<string, string | null>[]> {
    const rows = await this.app.query(`SELECT * FROM ${table} ORDER BY ${key}`);
    return rows.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, normalize(v)])));
  }

  /** The links of one table of one sync: our id → the peer's. */
  async links(sync: string, tableNumber: number): Promise<Map<string, string>> {
    const rows = await this.app.query<{ local_id: string; peer_id: string }>(
      'SELECT local_id, peer_id FROM tablesync_links WHERE sync_name = ? AND table_number = ? ORDER BY local_id',
      [sync, tableNumber],
    );
    return new Map(rows.map((r) => [String(r.local_id), String(r.peer_id)]));
  }

  async backlog(): Promise<Backlog> {
    // Lower-case aliases: PostgreSQL folds unquoted names to lower case.
    const [row] = await this.app.query<Record<'journal' | 'outbox' | 'batches_out' | 'parked', number | string>>(
      'SELECT (SELECT COUNT(*) FROM tablesync_journal) AS journal, (SELECT COUNT(*) FROM tablesync_outbox) AS outbox, ' +
        '(SELECT COUNT(*) FROM tablesync_batches_out) AS batches_out, (SELECT COUNT(*) FROM tablesync_parked) AS parked',
    );
    if (row === undefined) throw new Error('no backlog row');
    return { journal: Number(row.journal), outbox: Number(row.outbox), batchesOut: Number(row.batches_out), parked: Number(row.parked) };
  }

  /** A cursor of tablesync_cursors (`in`, `out`, `acked`...). */
  async cursor(sync: string, name: string): Promise<string | undefined> {
    const [row] = await this.app.query<{ position: string }>('SELECT position FROM tablesync_cursors WHERE sync_name = ? AND name = ?', [sync, name]);
    return row === undefined ? undefined : String(row.position);
  }

  /** How many batches this side has built for `sync` so far (its `out` cursor). */
  async batchesBuilt(sync: string): Promise<number> {
    return Number((await this.cursor(sync, 'out')) ?? 0);
  }

  /** Whether every batch built for `sync` has been handed to the transport. */
  async allBuiltSent(sync: string): Promise<boolean> {
    const unsent = await this.app.query('SELECT seq FROM tablesync_batches_out WHERE sync_name = ? AND sent_at IS NULL', [sync]);
    return unsent.length === 0;
  }

  /** This side's end of `sync`. */
  end(sync: string): SyncEnd {
    const end = this.syncs.find((s) => s.options.name === sync);
    if (end === undefined) throw new Error(`${this.name} has no sync ${sync}`);
    return end;
  }

  /** This side's download folder of `sync` on this machine (folder transport, or the FTP server's folder on disk). */
  downloadFolder(sync: string): string {
    const folder = this.end(sync).download;
    if (folder === undefined) throw new Error(`${this.name}'s sync ${sync} has no folder on this machine (it travels over http)`);
    return folder;
  }

  /** This side's upload folder of `sync` on this machine. */
  uploadFolder(sync: string): string {
    const folder = this.end(sync).upload;
    if (folder === undefined) throw new Error(`${this.name}'s sync ${sync} has no folder on this machine (it travels over http)`);
    return folder;
  }

  /** Batch files (not acknowledgements) waiting in this side's download folder of `sync`, unread or not yet done. */
  waitingBatches(sync: string): string[] {
    let names: string[];
    try {
      names = readdirSync(this.downloadFolder(sync));
    } catch (err) {
      // Over ftp, the folder exists once a daemon made it.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return names.filter((name) => /^[A-Za-z0-9_-][A-Za-z0-9._-]*\.json$/.test(name) && !name.includes('.ack.'));
  }

  /** Batches this side refused and kept aside (tablesync_refused_batches), oldest first. */
  async refusedBatches(): Promise<{ id: number; sync_name: string; name: string; reason: string; body: string; size: number }[]> {
    const rows = await this.app.query<{ id: number; sync_name: string; name: string; reason: string; body: string; size: number | string }>(
      'SELECT id, sync_name, name, reason, body, size FROM tablesync_refused_batches ORDER BY id',
    );
    return rows.map((row) => ({ ...row, size: Number(row.size) }));
  }

  /**
   * Whether another connection (the daemon's) is in the middle of work on
   * this database right now: on SQLite, it holds the write lock (we cannot
   * take it without waiting); on MariaDB and PostgreSQL, it has an open
   * transaction or a statement running.
   */
  async databaseBusy(): Promise<boolean> {
    if (this.db.config.dialect === 'sqlite') {
      this.#probe ??= new BetterSqlite3(this.db.config.file ?? '', { timeout: 0 });
      try {
        this.#probe.exec('BEGIN IMMEDIATE');
      } catch (err) {
        if ((err as { code?: string }).code === 'SQLITE_BUSY') return true;
        throw err;
      }
      this.#probe.exec('ROLLBACK');
      return false;
    }
    if (this.db.config.dialect === 'postgres') {
      const [row] = await this.app.query<{ n: number | string }>(
        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')",
      );
      return Number(row?.n ?? 0) > 0;
    }
    const [row] = await this.app.query<{ n: number | string }>(
      'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST p LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID ' +
        "WHERE p.DB = DATABASE() AND p.ID <> CONNECTION_ID() AND (t.trx_id IS NOT NULL OR (p.COMMAND = 'Query' AND p.INFO IS NOT NULL))",
    );
    return Number(row?.n ?? 0) > 0;
  }

  /** Releases the test's own connections (not the daemon: see kill). */
  async close(): Promise<void> {
    this.#probe?.close();
    this.#probe = undefined;
    await this.app.close();
  }

  /** Conflicts in tablesync_conflicts still waiting for someone. */
  async openConflicts(): Promise<{ id: number; local_id: string; field_number: number; ours: string | null; theirs: string | null }[]> {
    return this.app.query('SELECT id, local_id, field_number, ours, theirs FROM tablesync_conflicts WHERE resolved_at IS NULL ORDER BY id');
  }

  /** Every conflict recorded, open or resolved. */
  async conflicts(): Promise<{ id: number; local_id: string; field_number: number; ours: string | null; theirs: string | null; resolution: string | null }[]> {
    return this.app.query('SELECT id, local_id, field_number, ours, theirs, resolution FROM tablesync_conflicts ORDER BY id');
  }
}

function normalize(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value)) return value.toString('hex');
  return String(value);
}

// ---------------------------------------------------------------- syncs between instances

/** One sync between two instances, with what each side calls each table. */
export class SyncLink {
  /** The sync's http password (both sides' `transport.password`), for tests that sign requests themselves. */
  readonly password = `e2e-${randomBytes(12).toString('hex')}`;
  /**
   * Over http: where the active side calls instead of the passive side's
   * listener (a fault proxy in between); read each time the active side's
   * file is written, so set it before (re)starting the active daemon.
   */
  activeUrl: string | undefined;

  constructor(
    readonly name: string,
    readonly active: SyncInstance,
    readonly passive: SyncInstance,
    readonly transport: TransportKind = 'folder',
  ) {}

  /** Over http(s): the passive daemon's listener, `http://127.0.0.1:<port>` (known once the passive side has been prepared or started). */
  get listenerUrl(): string {
    if (this.transport !== 'http' && this.transport !== 'https') throw new Error(`sync ${this.name} travels over ${this.transport}, not http`);
    if (this.passive.listenPort === undefined) throw new Error(`${this.passive.name} has no listen port yet: start it first`);
    return `${this.transport}://127.0.0.1:${this.passive.listenPort}`;
  }

  /**
   * What is still different in table `number` between the two sides, seen
   * through the record links: every live record must be linked both ways to
   * a live record of the peer, every `both` field (but user references) must hold the same value,
   * and a record deleted (hard, or by status) on one side must be deleted on
   * the other. Empty when the two sides are in step.
   */
  async differences(number: number): Promise<string[]> {
    const [a, b] = await Promise.all([this.#side(this.active, number), this.#side(this.passive, number)]);
    const problems: string[] = [];
    // User references hold each side's own user ids, which differ by design: the tests compare those themselves.
    const compared = a.table.fields.filter(
      (f) => f.type !== 'user' && (f.direction ?? 'both') === 'both' && (b.table.fields.find((g) => g.number === f.number)?.direction ?? 'both') === 'both',
    );

    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      for (const [local, peer] of x.links) {
        if (y.links.get(peer) !== local) problems.push(`${x.instance.name} links ${x.table.table} ${local} to ${peer}, but ${y.instance.name} links ${peer} to ${y.links.get(peer) ?? 'nothing'}`);
      }
      for (const [id, row] of x.rows) {
        if (!x.live(row)) continue;
        const peer = x.links.get(id);
        if (peer === undefined) {
          problems.push(`${x.instance.name}'s ${x.table.table} ${id} is linked to no record of ${y.instance.name}`);
          continue;
        }
        const other = y.rows.get(peer);
        if (other === undefined || !y.live(other)) problems.push(`${x.instance.name}'s ${x.table.table} ${id} is live, but its peer ${y.instance.name} ${peer} is ${other === undefined ? 'gone' : 'deleted'}`);
      }
    }
    for (const [id, row] of a.rows) {
      const peer = a.links.get(id);
      const other = peer === undefined ? undefined : b.rows.get(peer);
      if (other === undefined || !a.live(row) || !b.live(other)) continue;
      for (const field of compared) {
        const theirs = b.table.fields.find((g) => g.number === field.number);
        if (theirs === undefined) continue;
        const ours = row[field.column] ?? null;
        const value = other[theirs.column] ?? null;
        if (ours !== value) {
          problems.push(`field ${field.number}: ${a.instance.name} ${a.table.table} ${id}.${field.column} = ${JSON.stringify(ours)}, ${b.instance.name} ${b.table.table} ${peer}.${theirs.column} = ${JSON.stringify(value)}`);
        }
      }
    }
    return problems;
  }

  async #side(instance: SyncInstance, number: number) {
    const table = instance.table(this.name, number);
    const rows = new Map((await instance.rows(table.table, table.key)).map((row) => [row[table.key] ?? '', row]));
    const links = await instance.links(this.name, number);
    const status = table.status;
    const live = (row: Record<string, string | null>): boolean => status === undefined || row[status.column] !== String(status.deleted);
    return { instance, table, rows, links, live };
  }
}

// ---------------------------------------------------------------- clusters

export interface InstanceOptions {
  readonly dialect: DialectName;
  /** The application's tables: statements run before the daemon first starts. */
  readonly schema: (db: TestDatabase) => readonly string[];
  readonly users?: UsersSpec;
}

/**
 * A set of instances in one temporary folder, with the syncs between them.
 * `dispose()` kills every daemon, closes connections, drops the databases
 * and removes the folder, whatever state the test left them in.
 */
export class SyncCluster {
  readonly root = mkdtempSync(join(tmpdir(), 'tablesync-e2e-'));
  readonly instances: SyncInstance[] = [];
  readonly links: SyncLink[] = [];
  readonly #databases: TestDatabase[] = [];
  #ftp: Promise<TestFtpServer> | undefined;
  #ftpServer: TestFtpServer | undefined;
  #certificates: Promise<Certificates> | undefined;

  /** The cluster's FTP server (one per cluster, started when a daemon that needs it first starts). */
  get ftpServer(): TestFtpServer {
    if (this.#ftpServer === undefined) throw new Error('this cluster runs no FTP server yet: connect a sync over ftp and start a daemon first');
    return this.#ftpServer;
  }

  /** Starts the cluster's FTP server, once; its root is `<cluster root>/ftp`. */
  startFtpServer(): Promise<TestFtpServer> {
    this.#ftp ??= (async () => {
      const root = join(this.root, 'ftp');
      mkdirSync(root, { recursive: true });
      const server = new TestFtpServer(root);
      await server.start();
      this.#ftpServer = server;
      return server;
    })();
    return this.#ftp;
  }

  /** The private CA and the passive listeners' certificate, made once per cluster. */
  certificates(): Promise<Certificates> {
    this.#certificates ??= (async () => {
      const dir = join(this.root, 'tls');
      mkdirSync(dir, { recursive: true });
      return makeCertificates(dir);
    })();
    return this.#certificates;
  }

  async addInstance(name: string, options: InstanceOptions): Promise<SyncInstance> {
    const db = await dialectCase(options.dialect).create();
    this.#databases.push(db);
    const app = await db.connect();
    const instance = new SyncInstance(name, db, app, join(this.root, `${name}.yaml`));
    instance.users = options.users;
    this.instances.push(instance);
    for (const statement of options.schema(db)) await app.exec(statement);
    return instance;
  }

  /**
   * Adds a sync between two instances, by `options.transport` (default
   * `folder`: through two folders of their own; see TransportKind).
   */
  connect(active: SyncInstance, passive: SyncInstance, options: SyncOptions, tables: { active: readonly TableSpec[]; passive: readonly TableSpec[] }): SyncLink {
    const kind = options.transport ?? 'folder';
    const link = new SyncLink(options.name, active, passive, kind);
    const ends = (transports: { active: () => Record<string, unknown>; passive: () => Record<string, unknown> }, folders?: { toPassive: string; toActive: string }): void => {
      active.syncs.push({ options, mode: 'active', kind, upload: folders?.toPassive, download: folders?.toActive, tables: tables.active, transport: transports.active });
      passive.syncs.push({ options, mode: 'passive', kind, upload: folders?.toActive, download: folders?.toPassive, tables: tables.passive, transport: transports.passive });
    };
    const toPassiveName = `${active.name}-to-${passive.name}`;
    const toActiveName = `${passive.name}-to-${active.name}`;

    switch (kind) {
      case 'folder': {
        const folder = join(this.root, 'exchange', options.name);
        const toPassive = join(folder, toPassiveName);
        const toActive = join(folder, toActiveName);
        mkdirSync(toPassive, { recursive: true });
        mkdirSync(toActive, { recursive: true });
        ends(
          {
            active: () => ({ type: 'folder', upload: toPassive, download: toActive }),
            passive: () => ({ type: 'folder', upload: toActive, download: toPassive }),
          },
          { toPassive, toActive },
        );
        break;
      }
      case 'http':
      case 'https': {
        let prepared: Promise<void> | undefined;
        // Once for both sides, so that both files name the same port.
        const listen = (): Promise<void> =>
          (prepared ??= (async () => {
            passive.listenPort ??= await freePort();
            if (kind === 'https') {
              const { ca, cert, key } = await this.certificates();
              passive.tls = { ...passive.tls, cert, key };
              active.tls = { ...active.tls, ca };
            }
          })());
        passive.beforeStart(listen);
        active.beforeStart(listen);
        ends({
          active: () => ({ type: 'http', url: link.activeUrl ?? link.listenerUrl, password: link.password }),
          passive: () => ({ type: 'http', password: link.password }),
        });
        break;
      }
      case 'ftp':
      case 'folder/ftp':
      case 'ftp/folder': {
        // Folders on the server: /<sync>/<from>-to-<to>; on disk, the same under the server's root.
        const onServer = (name: string): string => `/${options.name}/${name}`;
        const onDisk = (name: string): string => join(this.root, 'ftp', options.name, name);
        const serve = async (): Promise<void> => {
          await this.startFtpServer();
        };
        passive.beforeStart(serve);
        active.beforeStart(serve);
        const ftp = (upload: string, download: string) => (): Record<string, unknown> => {
          const server = this.ftpServer;
          return { type: 'ftp', host: '127.0.0.1', port: server.port, user: server.user, password: server.password, secure: false, upload: onServer(upload), download: onServer(download) };
        };
        const folder = (upload: string, download: string) => (): Record<string, unknown> => ({ type: 'folder', upload: onDisk(upload), download: onDisk(download) });
        const activeSide = kind === 'folder/ftp' ? folder : ftp;
        const passiveSide = kind === 'ftp/folder' ? folder : ftp;
        ends(
          { active: activeSide(toPassiveName, toActiveName), passive: passiveSide(toActiveName, toPassiveName) },
          { toPassive: onDisk(toPassiveName), toActive: onDisk(toActiveName) },
        );
        break;
      }
    }
    this.links.push(link);
    return link;
  }

  /**
   * Starts every daemon not running yet: those that listen for passive http
   * syncs first, as a deployment does (the passive side is the one that is
   * always up). A daemon whose file went out of date meanwhile (its passive
   * peer had to move to another port) is restarted with the new file.
   */
  async startAll(): Promise<void> {
    const toStart = this.instances.filter((i) => !i.running);
    const listens = (i: SyncInstance): boolean => i.syncs.some((end) => end.mode === 'passive' && (end.kind === 'http' || end.kind === 'https'));
    await Promise.all(toStart.filter(listens).map((i) => i.start()));
    await Promise.all(toStart.filter((i) => !listens(i)).map((i) => i.start()));
    for (const instance of this.instances) {
      if (!instance.running || !instance.configStale) continue;
      await instance.stop();
      await instance.start();
    }
  }

  async stopAll(): Promise<void> {
    const codes = await Promise.all(this.instances.map(async (i) => [i.name, await i.stop()] as const));
    const failed = codes.filter(([, code]) => code !== null && code !== 0);
    if (failed.length > 0) throw new Error(`daemons exited with an error on SIGTERM: ${failed.map(([n, c]) => `${n} (${c})`).join(', ')}\n${await this.describe()}`);
  }

  /** Waits for `probe`, failing with the state of every instance. */
  waitFor(description: string, probe: Probe, options: Omit<WaitOptions, 'explain'> = {}): Promise<void> {
    return waitFor(description, probe, { ...options, explain: () => this.describe() });
  }

  holdsFor(description: string, probe: Probe, forMs: number): Promise<void> {
    return holdsFor(description, probe, forMs, { explain: () => this.describe() });
  }

  /** Waits until every sync's table `number` is in step on both sides (see SyncLink.differences). */
  async waitInStep(number = 1, options: Omit<WaitOptions, 'explain'> = {}): Promise<void> {
    await this.waitFor(
      `table ${number} to be in step in ${this.links.map((l) => `${l.name} (${l.active.name} ↔ ${l.passive.name})`).join(', ')}`,
      async () => (await Promise.all(this.links.map((link) => link.differences(number)))).flat(),
      options,
    );
  }

  /**
   * Waits until every change has been read, sent, applied and acknowledged
   * everywhere: no journal rows, no outbox entries and no unacknowledged
   * batches on any instance.
   */
  async waitSettled(options: Omit<WaitOptions, 'explain'> = {}): Promise<void> {
    await this.waitFor(
      'every change to be sent, applied and acknowledged (journal, outbox and batches_out empty everywhere)',
      async () => {
        const problems: string[] = [];
        for (const instance of this.instances) {
          const backlog = await instance.backlog();
          if (backlog.journal + backlog.outbox + backlog.batchesOut > 0) problems.push(`${instance.name}: ${JSON.stringify(backlog)}`);
        }
        return problems;
      },
      options,
    );
  }

  /** Every instance's synced rows, links, backlog and the daemons' warnings: for failure messages. */
  async describe(): Promise<string> {
    const out: string[] = [];
    for (const instance of this.instances) {
      out.push(`--- ${instance.name} (${instance.dialect}, daemon ${instance.running ? 'running' : 'stopped'})`);
      const tables = new Map<string, TableSpec>();
      for (const end of instance.syncs) for (const table of end.tables) tables.set(table.table, table);
      for (const table of tables.values()) {
        const rows = await instance.rows(table.table, table.key).catch((err: Error) => err.message);
        if (typeof rows === 'string') out.push(`  ${table.table}: ${rows}`);
        else {
          out.push(`  ${table.table} (${rows.length} rows):`);
          for (const row of rows.slice(0, 40)) out.push(`    ${JSON.stringify(row)}`);
          if (rows.length > 40) out.push(`    ... ${rows.length - 40} more`);
        }
      }
      for (const end of instance.syncs) {
        for (const table of end.tables) {
          const links = await instance.links(end.options.name, table.number).catch(() => new Map<string, string>());
          const shown = [...links].slice(0, 40).map(([l, p]) => `${l}→${p}`).join(' ');
          out.push(`  links ${end.options.name}/${table.number}: ${links.size === 0 ? 'none' : shown}${links.size > 40 ? ' ...' : ''}`);
        }
      }
      out.push(`  backlog: ${await instance.backlog().then((b) => JSON.stringify(b), (err: Error) => err.message)}`);
      const notable = instance.logLines().filter((l) => l.level === 'warn' || l.level === 'error' || l.level === 'fatal' || l.level === 'unparsed');
      if (notable.length > 0) {
        out.push('  daemon warnings and errors (last 12):');
        for (const line of notable.slice(-12)) out.push(`    ${JSON.stringify(line).slice(0, 600)}`);
      }
    }
    return out.join('\n');
  }

  async dispose(): Promise<void> {
    await Promise.allSettled(this.instances.map((i) => i.kill()));
    await Promise.allSettled([this.#ftp?.then((server) => server.stop())]);
    await Promise.allSettled(this.instances.map((i) => i.close()));
    await Promise.allSettled(this.#databases.map((db) => db.drop()));
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** The slice of vitest's test context that a cluster needs: the test's own hook (right for concurrent tests too). */
export interface ClusterTestContext {
  onTestFinished(fn: () => Promise<void> | void): void;
}

/**
 * A new cluster for the running test, disposed of when the test finishes,
 * passed or failed: every daemon killed, every database dropped.
 */
export function newCluster(context: ClusterTestContext): SyncCluster {
  const cluster = new SyncCluster();
  context.onTestFinished(() => cluster.dispose());
  return cluster;
}

// ---------------------------------------------------------------- dialect pairs

export interface DialectPair {
  /** The active side's dialect. */
  readonly active: DialectName;
  /** The passive side's dialect. */
  readonly passive: DialectName;
}

/** The pairs that the main suite runs on. */
export const dialectPairs: readonly DialectPair[] = [
  { active: 'sqlite', passive: 'sqlite' },
  { active: 'mysql', passive: 'mysql' },
  { active: 'mysql', passive: 'sqlite' },
  { active: 'postgres', passive: 'postgres' },
  { active: 'postgres', passive: 'mysql' },
];

export function pairLabel(pair: DialectPair): string {
  return `${pair.active}↔${pair.passive}`;
}

/**
 * Runs the same suite once per pair of dialects; MariaDB and PostgreSQL
 * pairs are skipped or fail as describeEachDialect's are (see databases.ts). The tests run
 * concurrently (they mostly wait on their daemons): take `expect` and
 * `onTestFinished` from the test's context.
 */
export function describeEachPair(title: string, body: (pair: DialectPair) => void, pairs: readonly DialectPair[] = dialectPairs): void {
  for (const pair of pairs) {
    describeWithDialects(`${title} [${pairLabel(pair)}]`, [pair.active, pair.passive], () => body(pair), { concurrent: true });
  }
}
