import type { AnyKysely } from '../db/dialect.js';
import { stateTables } from '../db/state-names.js';

/**
 * Named positions per sync, in tablesync_cursors:
 * - `in`: the last batch of the peer's applied here;
 * - `out`: the last batch we built;
 * - `acked`: the last of ours the peer confirmed;
 * - `peer`: the peer's instance name, learnt from its first batch;
 * - `last-in-at`, `last-out-at`: when a batch last arrived and last left (ms);
 * - `initial:<table>[:<field>]`: how far an initial sync has come (JSON).
 */
export type CursorName = 'in' | 'out' | 'acked' | 'peer' | 'last-in-at' | 'last-out-at' | `initial:${string}`;

export async function readCursor(db: AnyKysely, sync: string, name: CursorName, lock = false): Promise<string | undefined> {
  let query = db.selectFrom(stateTables.cursors).select('position').where('sync_name', '=', sync).where('name', '=', name);
  if (lock) query = query.forUpdate();
  const row = (await query.executeTakeFirst()) as { position: string } | undefined;
  return row?.position;
}

export async function readSeq(db: AnyKysely, sync: string, name: CursorName, lock = false): Promise<number> {
  return Number((await readCursor(db, sync, name, lock)) ?? 0);
}

export async function writeCursor(db: AnyKysely, sync: string, name: CursorName, position: string | number): Promise<void> {
  const values = { position: String(position), updated_at: Date.now() };
  const existing = await readCursor(db, sync, name);
  if (existing === undefined) await db.insertInto(stateTables.cursors).values({ sync_name: sync, name, ...values }).execute();
  else await db.updateTable(stateTables.cursors).set(values).where('sync_name', '=', sync).where('name', '=', name).execute();
}
