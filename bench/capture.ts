import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Connection } from 'mysql2/promise';
import { writeCaptureConfig } from './configs.js';
import { BenchDatabase, createItemsTable, generateRows, one, quote, random } from './db.js';
import { CliProcess } from './processes.js';
import { round } from './stats.js';

export interface CaptureResult {
  rowsPerTable: number;
  secondsPerTable: number;
  /** Single-row UPDATEs per second, autocommit, one connection, random rows. */
  withCapture: { updates: number; updatesPerSecond: number; triggers: number; perRound: number[] };
  withoutCapture: { updates: number; updatesPerSecond: number; triggers: number; perRound: number[] };
  /** with / without. */
  ratio: number;
  /** Journal rows written by the capture triggers (should equal the updates of the table with capture, warm-up included). */
  journalRows: number;
  method: string;
}

/**
 * The application's write rate on a table with tablesync's capture triggers
 * (installed by `tablesync setup`, no daemon reading the journal) against an
 * identical table without, in a third database of its own: a database's
 * tsync_ triggers belong to the one configuration that runs against it, so
 * A's file cannot be borrowed. Short rounds alternate with/without,
 * without/with, so that drift in the machine's load falls on both alike.
 */
export async function captureOverhead(serverUrl: string, dir: string, rowsWanted: number, secondsPerTable: number, log: (message: string) => void): Promise<CaptureResult> {
  const db = await BenchDatabase.create(serverUrl, 'c');
  const connection = await db.connect();
  try {
    const rowsPerTable = Math.min(rowsWanted, 100_000);
    for (const table of ['cap_with', 'cap_without']) {
      await connection.query(createItemsTable(table));
      await generateRows(db, table, rowsPerTable);
    }
    const file = join(dir, 'capture.yaml');
    const upload = join(dir, 'capture-out');
    const download = join(dir, 'capture-in');
    mkdirSync(upload, { recursive: true });
    mkdirSync(download, { recursive: true });
    writeCaptureConfig(file, { url: db.url, table: 'cap_with', upload, download });
    const setup = new CliProcess('setup', ['setup', '-c', file], { logFile: join(dir, 'capture-setup.log') }, true);
    const { code } = await setup.exited;
    if (code !== 0) throw new Error(`tablesync setup exited with ${String(code)}:\n${setup.output()}`);

    const triggers = async (table: string): Promise<number> =>
      Number(
        (await one<{ n: number | string }>(connection, 'SELECT COUNT(*) AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = ?', [table])).n,
      );
    const withTriggers = await triggers('cap_with');
    const withoutTriggers = await triggers('cap_without');
    if (withTriggers < 3 || withoutTriggers !== 0) throw new Error(`capture triggers: cap_with has ${withTriggers}, cap_without ${withoutTriggers}; expected 3 and 0`);

    const rand = random(7);
    const totals = { cap_with: { updates: 0, ms: 0 }, cap_without: { updates: 0, ms: 0 } };
    // Warm-up: one second each, not counted.
    await updateFor(connection, 'cap_with', rowsPerTable, 1000, rand);
    await updateFor(connection, 'cap_without', rowsPerTable, 1000, rand);
    // Short alternating rounds (with, without, without, with, ...): the machine's ups and downs fall on both alike.
    const rounds = Math.max(2, Math.round(secondsPerTable) * 2);
    const roundMs = (secondsPerTable * 1000) / rounds;
    const perRound = { cap_with: [] as number[], cap_without: [] as number[] };
    for (let i = 0; i < rounds; i++) {
      const pair = i % 2 === 0 ? (['cap_with', 'cap_without'] as const) : (['cap_without', 'cap_with'] as const);
      for (const table of pair) {
        const { updates, ms } = await updateFor(connection, table, rowsPerTable, roundMs, rand);
        totals[table].updates += updates;
        totals[table].ms += ms;
        perRound[table].push(Math.round((updates * 1000) / ms));
      }
    }
    log(`capture overhead: rounds with ${perRound.cap_with.join(' ')}; without ${perRound.cap_without.join(' ')} updates/s`);
    const journalRows = Number((await one<{ n: number | string }>(connection, 'SELECT COUNT(*) AS n FROM tablesync_journal')).n);
    const rate = (t: { updates: number; ms: number }): number => Math.round((t.updates * 1000) / t.ms);
    return {
      rowsPerTable,
      secondsPerTable,
      withCapture: { updates: totals.cap_with.updates, updatesPerSecond: rate(totals.cap_with), triggers: withTriggers, perRound: perRound.cap_with },
      withoutCapture: { updates: totals.cap_without.updates, updatesPerSecond: rate(totals.cap_without), triggers: withoutTriggers, perRound: perRound.cap_without },
      ratio: round(rate(totals.cap_with) / rate(totals.cap_without), 3),
      journalRows,
      method: `UPDATE <table> SET qty = ?, revision = revision + 1, updated_ms = ? WHERE id = <random>; autocommit, one connection; ${rounds} rounds of ${Math.round(roundMs)} ms per table, alternating with/without, without/with`,
    };
  } finally {
    await db.release(connection);
  }
}

async function updateFor(connection: Connection, table: string, rows: number, ms: number, rand: () => number): Promise<{ updates: number; ms: number }> {
  const statement = `UPDATE ${quote(table)} SET qty = ?, revision = revision + 1, updated_ms = ? WHERE id = ?`;
  const started = performance.now();
  const end = started + ms;
  let updates = 0;
  while (performance.now() < end) {
    await connection.query(statement, [Math.floor(rand() * 10_000), Date.now(), 1 + Math.floor(rand() * rows)]);
    updates += 1;
  }
  return { updates, ms: performance.now() - started };
}
