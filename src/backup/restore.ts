import { createHash } from 'node:crypto';
import type { AnyKysely, DialectAdapter } from '../db/dialect.js';
import { keysetPages } from '../db/keyset.js';
import type { ColumnSchema, DatabaseSchema } from '../db/schema-types.js';
import { stateSchemaVersion } from '../db/state-tables.js';
import { stateTables } from '../db/state-names.js';
import type { Instance } from '../engine/instance.js';
import { chunks } from '../engine/outbox.js';
import { fromWire } from '../engine/values.js';
import { DatabaseError, UsageError } from '../errors.js';
import type { WireValue } from '../protocol/batch.js';
import { BackupFileError } from './backup-error.js';
import { backedUpStateTables, type BackupHeader, type BackupTable } from './backup-format.js';
import { readBackup, type BackupSummary } from './backup-reader.js';
import type { BackupKey } from './backup-stream.js';

export interface RestoreProgress {
  readonly table: string;
  readonly rows: number;
  readonly total: number;
  readonly done: boolean;
}

export interface RestoredTable {
  readonly name: string;
  readonly kind: BackupTable['kind'];
  readonly rows: number;
  /** Application tables: rows the database held that the backup does not, removed. */
  readonly removed: number;
}

export interface RestoreReport {
  readonly header: BackupHeader;
  readonly tables: readonly RestoredTable[];
  readonly total: number;
}

/**
 * Holds the keys of the backup's rows while a table is restored, to remove
 * the rows the backup does not have. Each as the SHA-256 (hex) of its text,
 * whatever the key's type: only ever compared with other such text (see
 * TableWriter.finish), never with the key column itself, which PostgreSQL
 * refuses for an integer key; and hex, so that no collation (MySQL's
 * case-insensitive or space-padding ones) takes two keys for one.
 */
const keysTable = 'tablesync_restore_keys';

function keyDigest(key: unknown): string {
  return createHash('sha256').update(String(key)).digest('hex');
}

/** Keys per page when looking for the rows the backup does not have. */
const keysPerPage = 1000;

/** Rows per statement: well under every dialect's limit of parameters per statement. */
function rowsPerStatement(columns: number): number {
  return Math.max(1, Math.min(500, Math.floor(30_000 / Math.max(1, columns))));
}

/**
 * Checks a backup from end to end (password, every layer's integrity, the
 * lines' checksum) without touching the database; resolves what it holds.
 */
export function checkBackup(key: BackupKey): Promise<BackupSummary> {
  return readBackup(key);
}

/**
 * Restores a backup into an instance's database, which may be of another
 * dialect than the one it came from:
 *
 * 1. the whole file is checked first (`checkBackup`), and that it fits this
 *    instance (same instance name; every table and column it holds exists
 *    here), before anything is changed;
 * 2. tablesync's state tables and capture are installed as `setup` does;
 * 3. the file is read again and restored in one transaction, as
 *    tablesync's applier so that the capture triggers do not journal it:
 *    each synced table ends up with exactly the backup's rows (rows are
 *    updated by key, columns the backup does not hold keep their values,
 *    rows it does not have are removed), and tablesync's state tables with
 *    exactly the backup's state. A failure rolls it all back.
 */
export async function restoreBackup(instance: Instance, key: BackupKey, onProgress?: (progress: RestoreProgress) => void): Promise<RestoreReport> {
  const checked = await checkBackup(key);
  assertFits(instance, checked.header, key.file);

  await instance.installCapture();
  const schema = await instance.database.introspect();
  const restored: RestoredTable[] = [];

  await instance.database.asApplier(async (db) => {
    // The state is replaced as a whole: what the backup does not hold (it may hold none) must not survive.
    for (const name of Object.keys(backedUpStateTables)) if (schema.has(name)) await db.deleteFrom(name).execute();
    // The primary key makes finish()'s lookups cheap.
    await db.schema
      .createTable(keysTable)
      .temporary()
      .ifNotExists()
      .addColumn('k', 'char(64)', (c) => c.primaryKey())
      .execute();

    let writer: TableWriter | undefined;
    const summary = await readBackup(key, {
      tableStart: async (table) => {
        writer = await TableWriter.start(db, table, schema);
      },
      row: async (table, values) => {
        await writer?.add(values);
        const rows = writer?.rows ?? 0;
        if (rows % 1000 === 0) onProgress?.({ table: table.name, rows, total: checked.rows.get(table.name) ?? 0, done: false });
      },
      tableEnd: async (table, rows) => {
        const removed = (await writer?.finish()) ?? 0;
        restored.push({ name: table.name, kind: table.kind, rows, removed });
        onProgress?.({ table: table.name, rows, total: rows, done: true });
      },
    });
    // Only the first pass's file was checked: a file changed in between must not be committed.
    if (summary.total !== checked.total) throw new BackupFileError(`${key.file} changed while it was being restored; nothing was restored`);
    await ensureVersionClock(db);
    // Last, after everything that can fail: PostgreSQL's setval is not undone by a rollback.
    await continueNumbering(instance.database.adapter, db, checked.header, schema);
  });
  return { header: checked.header, tables: restored, total: checked.total };
}

/** Refuses, before anything is changed, a backup that this instance cannot take. */
function assertFits(instance: Instance, header: BackupHeader, file: string): void {
  if (header.instance !== instance.config.instance) {
    throw new UsageError(
      `${file} is a backup of instance "${header.instance}", and ${instance.config.file} is instance "${instance.config.instance}"; ` +
        "tablesync's state names its instance, so restore it into an instance of the same name",
    );
  }
  if (header.stateSchemaVersion > stateSchemaVersion) {
    throw new UsageError(`${file} holds tablesync state of version ${header.stateSchemaVersion}, newer than this tablesync understands (${stateSchemaVersion}); upgrade tablesync`);
  }
  const missing: string[] = [];
  for (const table of header.tables.filter((t) => t.kind === 'application')) {
    const here = instance.schema.get(table.name);
    if (here === undefined) missing.push(`table ${table.name}`);
    else for (const column of table.columns) if (!here.columns.has(column.name)) missing.push(`column ${table.name}.${column.name}`);
  }
  if (missing.length > 0) {
    throw new UsageError(
      `${instance.database.target} lacks what ${file} holds: ${missing.join(', ')}; restore copies rows, not table definitions, so create them first`,
    );
  }
}

/** The version clock's row exists from the first migration on (see state-tables.ts); a backup without state has none. */
async function ensureVersionClock(db: AnyKysely): Promise<void> {
  const clock = await db.selectFrom(stateTables.cursors).select('name').where('sync_name', '=', '').where('name', '=', 'version-clock').executeTakeFirst();
  if (clock === undefined) await db.insertInto(stateTables.cursors).values({ sync_name: '', name: 'version-clock', position: '0.0', updated_at: 0 }).execute();
}

/**
 * The rows came with their own keys, which do not move PostgreSQL's
 * sequences: without this, the application's next insert into a restored
 * table, or the capture trigger's into tablesync_journal, takes a key
 * already there. Asked of every restored application table and every state
 * table with a one-column key (journal, conflicts, parked, refused batches,
 * whether or not the backup held rows for them): the adapter leaves alone a
 * key that the database does not number.
 */
async function continueNumbering(adapter: DialectAdapter, db: AnyKysely, header: BackupHeader, schema: DatabaseSchema): Promise<void> {
  if (adapter.continueNumbering === undefined) return;
  const tables = new Map<string, readonly string[]>(header.tables.filter((t) => t.kind === 'application').map((t) => [t.name, t.key]));
  for (const [name, key] of Object.entries(backedUpStateTables)) if (schema.has(name)) tables.set(name, key);
  for (const [name, key] of tables) {
    const [column] = key;
    if (key.length !== 1 || column === undefined) continue;
    try {
      await adapter.continueNumbering(db, name, column);
    } catch (err) {
      throw new DatabaseError(`restore could not make the numbering of ${name}.${column} go on above the restored keys: ${(err as Error).message}; the restore was rolled back`, {
        cause: err,
      });
    }
  }
}

/** Writes one table's rows as they stream in, a few hundred at a time. */
class TableWriter {
  rows = 0;
  #pending: WireValue[][] = [];

  private constructor(
    private readonly db: AnyKysely,
    private readonly table: BackupTable,
    private readonly columns: readonly ColumnSchema[],
    /** An application table that held rows before: rows are matched by key, and those the backup lacks removed at the end. */
    private readonly merge: boolean,
  ) {}

  static async start(db: AnyKysely, table: BackupTable, schema: DatabaseSchema): Promise<TableWriter> {
    const here = schema.get(table.name);
    const columns = table.columns.map((c) => here?.columns.get(c.name));
    if (columns.some((c) => c === undefined)) {
      // assertFits checked the application tables; a state table of an older layout gets here.
      throw new UsageError(`${table.name} in the database lacks columns the backup holds; upgrade tablesync`);
    }
    let merge = false;
    if (table.kind === 'application') {
      merge = (await db.selectFrom(table.name).select(table.key).limit(1).executeTakeFirst()) !== undefined;
      if (merge) await db.deleteFrom(keysTable).execute();
    }
    return new TableWriter(db, table, columns as ColumnSchema[], merge);
  }

  async add(values: WireValue[]): Promise<void> {
    this.#pending.push(values);
    this.rows += 1;
    if (this.#pending.length >= rowsPerStatement(this.columns.length)) await this.#flush();
  }

  /**
   * Writes what is pending; returns how many rows the backup does not have
   * were removed. The table's keys are read page by page and looked up
   * among the backup's (which #flush recorded as the database gives them
   * back, so that both sides are digested alike); what is missing is
   * deleted by its key as read. The database only ever compares like with
   * like, so every dialect takes it, and memory holds one page.
   */
  async finish(): Promise<number> {
    await this.#flush();
    if (!this.merge) return 0;
    const key = this.#key();
    let removed = 0;
    for await (const page of keysetPages(this.db, this.table.name, [key], [key], keysPerPage)) {
      const keys = page.map((row) => row[key]);
      const found = (await this.db.selectFrom(keysTable).select('k').where('k', 'in', keys.map(keyDigest)).execute()) as { k: string }[];
      const kept = new Set(found.map((row) => row.k));
      const missing = keys.filter((k) => !kept.has(keyDigest(k)));
      if (missing.length === 0) continue;
      // The page's rows are behind the next page's start (keyset pagination): deleting them skips nothing.
      const result = await this.db.deleteFrom(this.table.name).where(key, 'in', missing).executeTakeFirst();
      removed += Number(result.numDeletedRows);
    }
    return removed;
  }

  #key(): string {
    // Application tables have a key of one column (the configuration's `key`).
    return this.table.key[0] as string;
  }

  async #flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    const records = this.#pending.map((values) => Object.fromEntries(this.columns.map((column, i) => [column.name, fromWire(values[i] ?? null, column)])));
    this.#pending = [];
    if (!this.merge) {
      await this.#insert(records);
      return;
    }
    const key = this.#key();
    const keys = records.map((r) => r[key]);
    const found = (await this.db.selectFrom(this.table.name).select(key).where(key, 'in', keys).execute()) as Record<string, unknown>[];
    const existing = new Set(found.map((r) => String(r[key])));
    const fresh: Record<string, unknown>[] = [];
    for (const record of records) {
      if (!existing.has(String(record[key]))) {
        fresh.push(record);
        continue;
      }
      const { [key]: id, ...values } = record;
      if (Object.keys(values).length === 0) continue;
      await this.db.updateTable(this.table.name).set(values).where(key, '=', id).execute();
    }
    await this.#insert(fresh);
    // The keys as the database gives them back (a decimal or time stamp key may read otherwise than it was
    // written), since finish() compares them with the table's keys as read.
    const written = (await this.db.selectFrom(this.table.name).select(key).where(key, 'in', keys).execute()) as Record<string, unknown>[];
    if (written.length !== keys.length) {
      throw new DatabaseError(`restore wrote ${keys.length} rows of ${this.table.name} but finds ${written.length} of them by their key ${key}; nothing was restored`);
    }
    await this.db
      .insertInto(keysTable)
      .values(written.map((r) => ({ k: keyDigest(r[key]) })))
      .execute();
  }

  async #insert(records: readonly Record<string, unknown>[]): Promise<void> {
    for (const chunk of chunks(records, rowsPerStatement(this.columns.length))) await this.db.insertInto(this.table.name).values(chunk).execute();
  }
}
