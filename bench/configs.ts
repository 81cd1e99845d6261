import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { itemFields } from './db.js';

/** The sync between A and B, and its one table: `items`, number 1, fields 2..9 in the order of `itemFields`. */
export const syncName = 'bench';

function itemsTable(table = 'items'): Record<string, unknown> {
  return {
    table,
    number: 1,
    key: 'id',
    fields: itemFields.map((column, i) => ({ column, number: i + 2, direction: 'both' })),
  };
}

export interface PairFiles {
  readonly a: string;
  readonly b: string;
}

/** A (active, calls B over http every 250ms) and B (passive, listens on 127.0.0.1:port). */
export function writePairConfigs(files: PairFiles, options: { aUrl: string; bUrl: string; port: number; password: string; logLevel: string }): void {
  const sync = (mode: 'active' | 'passive'): Record<string, unknown> => ({
    name: syncName,
    mode,
    transport: mode === 'active' ? { type: 'http', url: `http://127.0.0.1:${options.port}`, password: options.password } : { type: 'http', password: options.password },
    every: '250ms',
    conflicts: 'newest-wins',
    tables: [itemsTable()],
  });
  writeFileSync(
    files.a,
    stringify({ instance: 'bench-a', database: { dialect: 'mysql', url: options.aUrl }, log: { level: options.logLevel }, syncs: [sync('active')] }),
  );
  writeFileSync(
    files.b,
    stringify({
      instance: 'bench-b',
      database: { dialect: 'mysql', url: options.bUrl },
      listen: `127.0.0.1:${options.port}`,
      log: { level: options.logLevel },
      syncs: [sync('passive')],
    }),
  );
}

/**
 * For the capture overhead: a file whose only purpose is `tablesync setup`
 * installing capture on `table` (no daemon runs on it; the folders are never used).
 */
export function writeCaptureConfig(file: string, options: { url: string; table: string; upload: string; download: string }): void {
  writeFileSync(
    file,
    stringify({
      instance: 'bench-capture',
      database: { dialect: 'mysql', url: options.url },
      log: { level: 'warn' },
      syncs: [{ name: 'capture', mode: 'active', transport: { type: 'folder', upload: options.upload, download: options.download }, tables: [itemsTable(options.table)] }],
    }),
  );
}
