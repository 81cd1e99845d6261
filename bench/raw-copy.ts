import { createConnection } from 'mysql2';
import { onCleanup } from './cleanup.js';
import { createItemsTable, itemFields, quote, tableSum } from './db.js';
import type { SyncPair } from './pair.js';
import { perSecond, round } from './stats.js';

export interface RawCopyResult {
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  rowsPerStatement: number;
  method: string;
  verified: { rowsInCopy: number; checksumMatches: boolean };
}

const rowsPerStatement = 1000;

/**
 * The same rows moved with no sync logic at all: one connection streams
 * `SELECT … FROM A.items` (mysql2 query stream, backpressured), another
 * inserts them into `B.items_copy` (same columns, B's own ids) 1000 rows per
 * INSERT, autocommit. What a plain copy costs on this machine, in this run.
 */
export async function rawCopy(pair: SyncPair): Promise<RawCopyResult> {
  const target = await pair.b.connect();
  const source = createConnection({ uri: pair.a.url, dateStrings: true, supportBigNumbers: true, bigNumberStrings: true, decimalNumbers: false, charset: 'utf8mb4' });
  const closeSource = onCleanup('close the raw copy source connection', () => source.destroy());
  try {
    await target.query(createItemsTable('items_copy'));
    const columns = itemFields.map(quote).join(', ');
    const insert = `INSERT INTO items_copy (${columns}) VALUES ?`;

    const started = performance.now();
    const stream = source.query({ sql: `SELECT ${columns} FROM items ORDER BY id`, rowsAsArray: true }).stream({ highWaterMark: 4 * rowsPerStatement });
    let batch: unknown[][] = [];
    let rows = 0;
    for await (const row of stream as AsyncIterable<unknown[]>) {
      batch.push(row);
      if (batch.length === rowsPerStatement) {
        await target.query(insert, [batch]);
        rows += batch.length;
        batch = [];
      }
    }
    if (batch.length > 0) {
      await target.query(insert, [batch]);
      rows += batch.length;
    }
    const seconds = (performance.now() - started) / 1000;

    const [copy, original] = await Promise.all([tableSum(target, pair.b.name, 'items_copy'), tableSum(target, pair.a.name, 'items')]);
    await target.query('DROP TABLE items_copy');
    return {
      rows,
      seconds: round(seconds, 2),
      rowsPerSecond: perSecond(rows, seconds),
      rowsPerStatement,
      method: 'mysql2 query stream from A (one connection) → multi-row INSERT into B.items_copy (one connection, autocommit)',
      verified: { rowsInCopy: copy.rows, checksumMatches: copy.rows === original.rows && copy.checksum === original.checksum },
    };
  } finally {
    await closeSource();
    await pair.b.release(target);
  }
}
