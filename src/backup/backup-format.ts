import type { DialectName } from '../config/types.js';
import { stateTables } from '../db/state-names.js';
import type { ColumnFamily } from '../db/schema-types.js';
import type { WireValue } from '../protocol/batch.js';

/**
 * The backup file, before compression and encryption: JSON lines.
 *
 * 1. A header: `{"format":"tablesync-backup","version":1,...}` with the
 *    instance, the dialect it came from, and every table with its key and
 *    columns (name, declared type, family).
 * 2. For each table, in the header's order: one line per row, a JSON array
 *    of the row's values in the header's column order, each as it travels
 *    between instances (`null`, a string, a number, a boolean, or
 *    `{"b64": "..."}` for bytes: see engine/values.ts); then
 *    `{"end":"<table>","rows":N}`.
 * 3. A trailer: `{"end":true,"rows":N,"sha256":"..."}`, the SHA-256 of every
 *    byte before it, so that a file cut short or altered is refused even
 *    without encryption (gzip's CRC and age's MACs check the layers
 *    around it).
 *
 * The whole is gzip-compressed, and encrypted with age (scrypt, from a
 * password) when a password is given.
 */

export const backupFormat = 'tablesync-backup';
export const backupFormatVersion = 1;

/** An age-encrypted file starts with this line; a gzip file with 1f 8b. */
export const ageMagic = Buffer.from('age-encryption.org/v1\n');

export interface BackupColumn {
  readonly name: string;
  /** As the source database declared it (`varchar(80)`): for people reading the header. */
  readonly type: string;
  readonly family: ColumnFamily;
}

export interface BackupTable {
  readonly name: string;
  /** `application`: a synced table (its key, synced columns, status and addedAt); `state`: one of tablesync's own. */
  readonly kind: 'application' | 'state';
  /** The key's columns, which are among `columns`. */
  readonly key: readonly string[];
  readonly columns: readonly BackupColumn[];
}

export interface BackupHeader {
  readonly format: typeof backupFormat;
  readonly version: typeof backupFormatVersion;
  readonly instance: string;
  /** Where the rows came from; any dialect can take them. */
  readonly dialect: DialectName;
  readonly createdAt: string;
  /** tablesync's state schema version at the source; 0 when it had no state tables. */
  readonly stateSchemaVersion: number;
  readonly tables: readonly BackupTable[];
}

export interface TableEnd {
  readonly end: string;
  readonly rows: number;
}

export interface Trailer {
  readonly end: true;
  readonly rows: number;
  readonly sha256: string;
}

type StateTableName = (typeof stateTables)[keyof typeof stateTables];

/**
 * tablesync's tables that a backup copies, each with its primary key (see
 * state-tables.ts), in the order they are restored. `tablesync_meta` is the
 * header's stateSchemaVersion; `tablesync_applier` is empty outside the
 * applier's own transactions; the verify tables and the peers' backup
 * reports hold only what a running `verify` or `initial-sync` waits for,
 * meaningless once restored. A new state
 * table fails to compile here until it is added.
 */
export const backedUpStateTables: Readonly<
  Record<Exclude<StateTableName, 'tablesync_meta' | 'tablesync_applier' | 'tablesync_verify_runs' | 'tablesync_verify_replies' | 'tablesync_peer_backups'>, readonly string[]>
> = {
  [stateTables.journal]: ['seq'],
  [stateTables.links]: ['sync_name', 'table_number', 'local_id'],
  [stateTables.fieldVersions]: ['table_name', 'record_id', 'column_name'],
  [stateTables.cursors]: ['sync_name', 'name'],
  [stateTables.conflicts]: ['id'],
  [stateTables.outbox]: ['sync_name', 'table_number', 'record_id'],
  [stateTables.batchesOut]: ['sync_name', 'seq'],
  [stateTables.parked]: ['id'],
  [stateTables.origins]: ['table_name', 'record_id'],
  [stateTables.refused]: ['id'],
};

const families = new Set<ColumnFamily>(['integer', 'decimal', 'float', 'text', 'binary', 'datetime', 'date', 'time', 'boolean', 'json', 'other']);

/**
 * The header line, checked: a file that is not a tablesync backup, or of a
 * later format, is refused here. Returns a sentence saying what is wrong,
 * or the header.
 */
export function parseHeader(line: string): BackupHeader | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return 'its first line is not a tablesync backup header';
  }
  const header = value as Partial<BackupHeader> | null;
  if (header === null || typeof header !== 'object' || header.format !== backupFormat) return 'its first line is not a tablesync backup header';
  if (header.version !== backupFormatVersion) {
    return `it is a backup of format version ${String(header.version)}, and this tablesync reads version ${backupFormatVersion} only; use the tablesync that wrote it`;
  }
  if (typeof header.instance !== 'string' || typeof header.dialect !== 'string' || typeof header.stateSchemaVersion !== 'number' || !Array.isArray(header.tables)) {
    return 'its header lacks the instance, dialect, state version or tables';
  }
  const names = new Set<string>();
  for (const table of header.tables as unknown[]) {
    const t = table as Partial<BackupTable> | null;
    if (t === null || typeof t !== 'object' || typeof t.name !== 'string' || (t.kind !== 'application' && t.kind !== 'state') || !Array.isArray(t.columns) || !Array.isArray(t.key)) {
      return 'its header describes a table without a name, kind, key or columns';
    }
    if (names.has(t.name)) return `its header lists table ${t.name} twice`;
    names.add(t.name);
    if (t.kind === 'state' && !(t.name in backedUpStateTables)) return `its header lists ${t.name} as one of tablesync's tables, which it is not`;
    if (t.kind === 'application' && t.name.startsWith('tablesync_')) return `its header lists ${t.name} as an application table`;
    const columns = new Set<string>();
    for (const column of t.columns as unknown[]) {
      const c = column as Partial<BackupColumn> | null;
      if (c === null || typeof c !== 'object' || typeof c.name !== 'string' || typeof c.type !== 'string' || !families.has(c.family as ColumnFamily)) {
        return `its header describes a column of ${t.name} without a name, type or family`;
      }
      columns.add(c.name);
    }
    if (t.key.length === 0 || t.key.some((k) => typeof k !== 'string' || !columns.has(k))) return `the key of ${t.name} in its header is not among its columns`;
  }
  return header as BackupHeader;
}

/** A row line's values, checked against its table; a sentence when they do not fit. */
export function parseRow(line: string, table: BackupTable): WireValue[] | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return `a row of ${table.name} is not valid JSON`;
  }
  if (!Array.isArray(value) || value.length !== table.columns.length) return `a row of ${table.name} does not have its ${table.columns.length} columns`;
  for (const item of value as unknown[]) {
    const ok =
      item === null ||
      typeof item === 'string' ||
      typeof item === 'boolean' ||
      (typeof item === 'number' && Number.isFinite(item)) ||
      (typeof item === 'object' && typeof (item as { b64?: unknown }).b64 === 'string' && Object.keys(item).length === 1);
    if (!ok) return `a row of ${table.name} holds a value that is not a backup value`;
  }
  return value as WireValue[];
}
