import { createHash } from 'node:crypto';
import type { WireValue } from '../protocol/batch.js';
import { BackupFileError } from './backup-error.js';
import { parseHeader, parseRow, type BackupHeader, type BackupTable, type Trailer } from './backup-format.js';
import { readBackupLines, type BackupKey } from './backup-stream.js';

/** What a pass over a backup does with what it reads; every handler is awaited before the next line is read. */
export interface BackupHandlers {
  header?(header: BackupHeader): Promise<void> | void;
  /** Before the first row (or the end, for an empty table) of each table, in the header's order. */
  tableStart?(table: BackupTable): Promise<void> | void;
  row?(table: BackupTable, values: WireValue[]): Promise<void> | void;
  tableEnd?(table: BackupTable, rows: number): Promise<void> | void;
}

export interface BackupSummary {
  readonly header: BackupHeader;
  /** Rows per table, in the header's order. */
  readonly rows: ReadonlyMap<string, number>;
  readonly total: number;
}

/**
 * One pass over a backup file (see backup-format.ts for its layout):
 * decrypts, decompresses, checks every line's shape and order, the row
 * counts and the SHA-256 of the whole, and hands what it reads to
 * `handlers`. Resolves only when the whole file checked out; before that,
 * what the handlers did must be undoable (restore runs its second pass in
 * one transaction).
 */
export async function readBackup(key: BackupKey, handlers: BackupHandlers = {}): Promise<BackupSummary> {
  const damaged = (what: string): BackupFileError => new BackupFileError(`${key.file} is damaged: ${what}`);
  const hash = createHash('sha256');
  const rows = new Map<string, number>();
  let header: BackupHeader | undefined;
  let index = 0;
  let started = false;
  let inTable = 0;
  let total = 0;
  let trailer: Trailer | undefined;

  const current = async (): Promise<BackupTable> => {
    const table = header?.tables[index];
    if (table === undefined) throw damaged('it holds more tables than its header lists');
    if (!started) {
      started = true;
      await handlers.tableStart?.(table);
    }
    return table;
  };

  await readBackupLines(key, async (bytes) => {
    if (trailer !== undefined) throw damaged('it goes on after its last line');
    const line = bytes.toString('utf8', 0, bytes.length - 1);
    if (header === undefined) {
      const parsed = parseHeader(line);
      if (typeof parsed === 'string') throw new BackupFileError(`${key.file} cannot be restored: ${parsed}`);
      header = parsed;
      hash.update(bytes);
      await handlers.header?.(header);
      return;
    }
    if (line.startsWith('[')) {
      const table = await current();
      const values = parseRow(line, table);
      if (typeof values === 'string') throw damaged(values);
      hash.update(bytes);
      inTable += 1;
      await handlers.row?.(table, values);
      return;
    }
    let marker: { end?: unknown; rows?: unknown; sha256?: unknown };
    try {
      marker = JSON.parse(line) as { end?: unknown; rows?: unknown; sha256?: unknown };
    } catch {
      throw damaged('a line is neither a row nor a table marker');
    }
    if (marker === null || typeof marker !== 'object') throw damaged('a line is neither a row nor a table marker');
    if (marker.end === true) {
      if (index !== header.tables.length) throw damaged(`it ends after ${index} of its ${header.tables.length} tables`);
      if (marker.rows !== total) throw damaged(`its last line counts ${String(marker.rows)} rows, but it holds ${total}`);
      if (marker.sha256 !== hash.digest('hex')) throw damaged('its checksum (SHA-256) does not match its contents');
      trailer = marker as unknown as Trailer;
      return;
    }
    const table = await current();
    if (marker.end !== table.name) throw damaged(`the end of table ${String(marker.end)} comes where ${table.name} was expected`);
    if (marker.rows !== inTable) throw damaged(`table ${table.name} should have ${String(marker.rows)} rows, but ${inTable} were found`);
    hash.update(bytes);
    await handlers.tableEnd?.(table, inTable);
    rows.set(table.name, inTable);
    total += inTable;
    index += 1;
    started = false;
    inTable = 0;
  });

  if (header === undefined) throw damaged('it is empty');
  if (trailer === undefined) throw new BackupFileError(`${key.file} is cut short: its last line, with the checksum, is missing`);
  return { header, rows, total };
}
