import { createHash } from 'node:crypto';
import { access } from 'node:fs/promises';
import type { InstanceConfig } from '../config/types.js';
import type { Database } from '../db/database.js';
import type { AnyKysely } from '../db/dialect.js';
import { keysetPages } from '../db/keyset.js';
import type { DatabaseSchema } from '../db/schema-types.js';
import { installedVersion } from '../db/state-tables.js';
import { toWire } from '../engine/values.js';
import { UsageError } from '../errors.js';
import { backedUpStateTables, backupFormat, backupFormatVersion, type BackupColumn, type BackupHeader, type BackupTable } from './backup-format.js';
import { writeBackupFile } from './backup-stream.js';

/** What a backup reads: one instance's configuration, its open database and that database's schema. */
export interface BackupSource {
  readonly config: InstanceConfig;
  readonly database: Database;
  readonly schema: DatabaseSchema;
}

export interface BackupProgress {
  readonly table: string;
  readonly rows: number;
  readonly total: number;
  readonly done: boolean;
}

export interface BackupOptions {
  /** Encrypts the file with age, with a key derived from this password (scrypt). */
  readonly password?: string;
  readonly onProgress?: (progress: BackupProgress) => void;
  /** Rows read per query; default 2,000. */
  readonly pageRows?: number;
}

export interface BackupReport {
  readonly file: string;
  readonly header: BackupHeader;
  /** Rows written per table, in the header's order. */
  readonly rows: ReadonlyMap<string, number>;
  readonly total: number;
}

/**
 * The tables a backup of this instance holds: each synced table once (its
 * key, every synced column whatever the direction, its status and addedAt
 * columns; the union over the syncs it is in), then tablesync's own state
 * tables, when the database has them.
 */
export function backupTables(config: InstanceConfig, schema: DatabaseSchema, stateSchemaVersion: number): BackupTable[] {
  const columnsOf = (tableName: string, names: readonly string[]): BackupColumn[] => {
    const table = schema.get(tableName);
    return names.map((name) => {
      const column = table?.columns.get(name);
      // Instance.open has checked every configured table and column against the database.
      if (column === undefined) throw new Error(`${tableName}.${name} is not in the database schema`);
      return { name, type: column.dataType, family: column.family };
    });
  };

  const application = new Map<string, { key: string; columns: Set<string> }>();
  for (const sync of config.syncs) {
    for (const table of sync.tables) {
      const entry = application.get(table.table) ?? { key: table.key, columns: new Set([table.key]) };
      for (const field of table.fields) entry.columns.add(field.column);
      if (table.status !== undefined) entry.columns.add(table.status.column);
      if (table.addedAt !== undefined) entry.columns.add(table.addedAt);
      application.set(table.table, entry);
    }
  }
  const tables: BackupTable[] = [...application].map(([name, { key, columns }]) => ({ name, kind: 'application', key: [key], columns: columnsOf(name, [...columns]) }));
  if (stateSchemaVersion > 0) {
    for (const [name, key] of Object.entries(backedUpStateTables)) {
      const table = schema.get(name);
      // A table of a later state version than the database holds is simply not there yet.
      if (table !== undefined) tables.push({ name, kind: 'state', key, columns: columnsOf(name, [...table.columns.keys()]) });
    }
  }
  return tables;
}

/**
 * Writes a backup of the instance's synced tables and tablesync's state to
 * `file`, which must not exist yet. Every table is read in one snapshot of
 * the database (a consistent copy while the application and the daemon
 * go on), page by page in key order, and streamed through gzip (and age)
 * to the file: memory holds one page at a time.
 */
export async function writeBackup(source: BackupSource, file: string, options: BackupOptions = {}): Promise<BackupReport> {
  if (await access(file).then(() => true, () => false)) throw new UsageError(`${file} already exists; give another file name, or remove it first`);
  const { config, database } = source;
  const stateSchemaVersion = await installedVersion(database.kysely).catch(() => 0);
  const header: BackupHeader = {
    format: backupFormat,
    version: backupFormatVersion,
    instance: config.instance,
    dialect: database.adapter.dialect,
    createdAt: new Date().toISOString(),
    stateSchemaVersion,
    tables: backupTables(config, source.schema, stateSchemaVersion),
  };
  const pageRows = options.pageRows ?? 2000;
  const rows = new Map<string, number>();
  let total = 0;

  await database.readSnapshot(async (db) => {
    const totals = options.onProgress === undefined ? undefined : await countRows(db, header.tables);
    async function* lines(): AsyncGenerator<Buffer> {
      const hash = createHash('sha256');
      const hashed = (text: string): Buffer => {
        const bytes = Buffer.from(text);
        hash.update(bytes);
        return bytes;
      };
      yield hashed(`${JSON.stringify(header)}\n`);
      for (const table of header.tables) {
        const names = table.columns.map((c) => c.name);
        let count = 0;
        for await (const page of keysetPages(db, table.name, names, table.key, pageRows)) {
          yield hashed(page.map((row) => `${JSON.stringify(names.map((name) => toWire(row[name])))}\n`).join(''));
          count += page.length;
          options.onProgress?.({ table: table.name, rows: count, total: Math.max(count, totals?.get(table.name) ?? 0), done: false });
        }
        // An empty table gets no bar of its own: most of tablesync's state tables are empty most of the time.
        if (count > 0) options.onProgress?.({ table: table.name, rows: count, total: count, done: true });
        yield hashed(`${JSON.stringify({ end: table.name, rows: count })}\n`);
        rows.set(table.name, count);
        total += count;
      }
      yield Buffer.from(`${JSON.stringify({ end: true, rows: total, sha256: hash.digest('hex') })}\n`);
    }
    await writeBackupFile(file, lines(), options.password);
  });
  return { file, header, rows, total };
}

async function countRows(db: AnyKysely, tables: readonly BackupTable[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const table of tables) {
    const row = (await db
      .selectFrom(table.name)
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .executeTakeFirst()) as { n: number | string } | undefined;
    out.set(table.name, Number(row?.n ?? 0));
  }
  return out;
}

/** Whether any synced table of the instance holds a row: what makes a safety backup worth taking. */
export async function syncedTablesHoldData(source: BackupSource): Promise<boolean> {
  for (const table of backupTables(source.config, source.schema, 0)) {
    if ((await source.database.kysely.selectFrom(table.name).select(table.key).limit(1).executeTakeFirst()) !== undefined) return true;
  }
  return false;
}
