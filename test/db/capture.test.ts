import { afterEach, beforeEach, expect, it } from 'vitest';
import { captureSpecs, installCapture, inspectCapture } from '../../src/db/capture.js';
import { Database } from '../../src/db/database.js';
import type { AnyKysely } from '../../src/db/dialect.js';
import { stateSchemaVersion } from '../../src/db/state-tables.js';
import { describeEachDialect, type AppConnection, type TestDatabase } from '../support/databases.js';
import { startAppWriter } from '../support/app-writer.js';
import { instanceConfig } from '../support/instance.js';

const clientsTable = `
      - table: clients
        number: 1
        key: id
        status: { column: record_status, deleted: 2 }
        fields:
          - { column: name, number: 2 }
          - { column: email, number: 3 }
          - { column: phone, number: 4, direction: upload }
`;

interface JournalRow {
  table_name: string;
  record_id: string;
  op: string;
  columns: string;
  changed_at: number | string;
}

describeEachDialect('change capture', (dialect) => {
  let testDb: TestDatabase;
  let app: AppConnection;
  let database: Database;

  beforeEach(async () => {
    testDb = await dialect.create();
    app = await testDb.connect();
    await app.exec(
      `CREATE TABLE clients (id ${testDb.autoId}, name VARCHAR(80), email VARCHAR(120), phone VARCHAR(40), notes TEXT, record_status INT NOT NULL DEFAULT 0)`,
    );
    database = await Database.open(testDb.config);
  });

  afterEach(async () => {
    await database.close();
    await app.close();
    await testDb.drop();
  });

  const journal = (): Promise<JournalRow[]> =>
    app.query<JournalRow>('SELECT table_name, record_id, op, columns, changed_at FROM tablesync_journal ORDER BY seq');
  const brief = async (): Promise<string[]> => (await journal()).map((r) => `${r.op} ${r.table_name}#${r.record_id} ${r.columns}`);
  const install = (tables = clientsTable) => installCapture(database, captureSpecs(instanceConfig(testDb, tables)));

  it('installs state tables and three triggers per table, and a second setup changes nothing', async () => {
    const first = await install();
    expect(first.state).toEqual({ from: 0, to: stateSchemaVersion });
    expect(first.created.map((t) => t.table)).toEqual(['clients', 'clients', 'clients']);
    expect(first.dropped).toEqual([]);

    const second = await install();
    expect(second.state).toEqual({ from: stateSchemaVersion, to: stateSchemaVersion });
    expect(second.created).toEqual([]);
    expect(second.dropped).toEqual([]);
    expect(second.unchanged.map((t) => t.name).sort()).toEqual(first.created.map((t) => t.name).sort());
    expect(await database.adapter.listCaptureTriggers(database.kysely)).toHaveLength(3);
  });

  it('journals an insert with every watched column, at the time the database made it', async () => {
    await install();
    const before = Date.now();
    await app.exec("INSERT INTO clients (name, email, phone, notes) VALUES ('Ann', 'ann@example.com', '555', 'x')");
    const after = Date.now();
    const rows = await journal();
    expect(rows.map((r) => `${r.op} ${r.record_id} ${r.columns}`)).toEqual(['I 1 name,email,phone,record_status']);
    // The database's clock, not the daemon's: allow for rounding to the millisecond.
    expect(Number(rows[0]?.changed_at)).toBeGreaterThanOrEqual(before - 1000);
    expect(Number(rows[0]?.changed_at)).toBeLessThanOrEqual(after + 1000);
  });

  it('journals an update with only the columns whose value really changed', async () => {
    await install();
    await app.exec("INSERT INTO clients (name, email, phone) VALUES ('Ann', 'ann@example.com', '555')");
    await app.exec("UPDATE clients SET email = 'ann@new.example' WHERE id = 1");
    await app.exec("UPDATE clients SET name = 'Anne', phone = '556' WHERE id = 1");
    await app.exec("UPDATE clients SET name = 'Anne', email = 'ann@new.example' WHERE id = 1"); // same values
    await app.exec("UPDATE clients SET notes = 'not synced' WHERE id = 1");
    await app.exec("UPDATE clients SET name = 'ANNE' WHERE id = 1"); // a change of case only
    await app.exec("UPDATE clients SET phone = NULL WHERE id = 1");
    await app.exec('UPDATE clients SET record_status = 2 WHERE id = 1');
    expect(await brief()).toEqual([
      'I clients#1 name,email,phone,record_status',
      'U clients#1 email',
      'U clients#1 name,phone',
      'U clients#1 name',
      'U clients#1 phone',
      'U clients#1 record_status',
    ]);
  });

  it('journals a delete, and a change of key as a delete and an insert', async () => {
    await install();
    await app.exec("INSERT INTO clients (name) VALUES ('Ann'), ('Bob')");
    await app.exec('DELETE FROM clients WHERE id = 1');
    await app.exec('UPDATE clients SET id = 10 WHERE id = 2');
    expect(await brief()).toEqual([
      'I clients#1 name,email,phone,record_status',
      'I clients#2 name,email,phone,record_status',
      'D clients#1 ',
      'D clients#2 ',
      'I clients#10 name,email,phone,record_status',
    ]);
  });

  it('leaves the application statements working as before (multi-row insert, generated ids)', async () => {
    await install();
    await app.exec("INSERT INTO clients (name) VALUES ('A'), ('B'), ('C')");
    await app.exec("INSERT INTO clients (name, email) VALUES ('D', 'd@example.com')");
    const rows = await app.query<{ id: number; name: string }>('SELECT id, name FROM clients ORDER BY id');
    expect(rows.map((r) => `${r.id}:${r.name}`)).toEqual(['1:A', '2:B', '3:C', '4:D']);
    await app.exec("UPDATE clients SET notes = 'bulk'");
    await app.exec('DELETE FROM clients WHERE id > 2');
    expect((await journal()).filter((r) => r.op === 'D').map((r) => r.record_id)).toEqual(['3', '4']);
  });

  it("does not journal the applier's writes, and journals the application again afterwards", async () => {
    await install();
    await app.exec("INSERT INTO clients (name) VALUES ('Ann')");
    await database.asApplier(async (db: AnyKysely) => {
      await db.insertInto('clients').values({ name: 'From peer', email: 'peer@example.com' }).execute();
      await db.updateTable('clients').set({ email: 'changed@peer' }).where('id', '=', 1).execute();
      await db.deleteFrom('clients').where('name', '=', 'From peer').execute();
    });
    // A failed applier transaction rolls back and still clears the marker.
    await expect(
      database.asApplier(async (db: AnyKysely) => {
        await db.insertInto('clients').values({ name: 'Rolled back' }).execute();
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    // tablesync's own connection, outside the applier, is captured like any other writer.
    await database.transaction(async (db: AnyKysely) => {
      await db.updateTable('clients').set({ phone: '777' }).where('id', '=', 1).execute();
    });
    await app.exec("UPDATE clients SET name = 'Ann B' WHERE id = 1");
    expect(await brief()).toEqual(['I clients#1 name,email,phone,record_status', 'U clients#1 phone', 'U clients#1 name']);
    expect(await app.query('SELECT id FROM clients WHERE name = ?', ['Rolled back'])).toEqual([]);
  });

  it('re-creates the triggers when the configuration changes, keeping the journal', async () => {
    const first = await install();
    await app.exec("INSERT INTO clients (name, notes) VALUES ('Ann', 'first')");
    await app.exec("UPDATE clients SET notes = 'ignored for now' WHERE id = 1");

    const withNotes = `${clientsTable}          - { column: notes, number: 5 }\n`;
    const second = await install(withNotes);
    // The insert and update triggers name the columns; the delete trigger does not, and stays.
    const changedEvents = (names: readonly { name: string }[]) => names.map((t) => t.name.split('_').at(-2)).sort();
    expect(changedEvents(second.created)).toEqual(['i', 'u']);
    expect(changedEvents(second.dropped)).toEqual(['i', 'u']);
    expect(second.dropped.every((t) => first.created.some((f) => f.name === t.name))).toBe(true);
    expect(changedEvents(second.unchanged)).toEqual(['d']);
    const state = await inspectCapture(database, captureSpecs(instanceConfig(testDb, withNotes)));
    expect(state.missing).toEqual([]);
    expect(state.stale).toEqual([]);

    await app.exec("UPDATE clients SET notes = 'now synced' WHERE id = 1");
    expect(await brief()).toEqual(['I clients#1 name,email,phone,record_status', 'U clients#1 notes']);

    // A table no longer configured loses its capture; its journal rows stay.
    await app.exec(`CREATE TABLE orders (id ${testDb.autoId}, total INT)`);
    const ordersOnly = `
      - table: orders
        number: 7
        key: id
        fields:
          - { column: total, number: 8 }
`;
    const third = await install(ordersOnly);
    expect(third.dropped.map((t) => t.table)).toEqual(['clients', 'clients', 'clients']);
    await app.exec("UPDATE clients SET name = 'not captured' WHERE id = 1");
    await app.exec('INSERT INTO orders (total) VALUES (5)');
    expect(await brief()).toEqual(['I clients#1 name,email,phone,record_status', 'U clients#1 notes', 'I orders#1 total']);
  });

  it('captures every write of two application connections writing at the same time', async () => {
    await install();
    const other = await testDb.connect();
    const writes = 150;
    const writer = async (connection: AppConnection, prefix: string): Promise<void> => {
      for (let i = 0; i < writes; i++) {
        await connection.exec('INSERT INTO clients (name) VALUES (?)', [`${prefix}${i}`]);
        await connection.exec('UPDATE clients SET email = ? WHERE name = ?', [`${prefix}${i}@example.com`, `${prefix}${i}`]);
      }
    };
    try {
      await Promise.all([writer(app, 'a'), writer(other, 'b'), writer(app, 'c')]);
    } finally {
      await other.close();
    }
    const rows = await journal();
    expect(rows.filter((r) => r.op === 'I')).toHaveLength(3 * writes);
    expect(rows.filter((r) => r.op === 'U' && r.columns === 'email')).toHaveLength(3 * writes);
    const ids = await app.query<{ id: number }>('SELECT id FROM clients');
    expect(new Set(rows.map((r) => r.record_id))).toEqual(new Set(ids.map((r) => String(r.id))));
  });
});

describeEachDialect('capture during a configuration upgrade', (dialect) => {
  it('misses no write while the triggers are replaced again and again', async () => {
    const testDb = await dialect.create();
    const app = await testDb.connect();
    const database = await Database.open(testDb.config);
    try {
      await app.exec(`CREATE TABLE clients (id ${testDb.autoId}, name VARCHAR(80), email VARCHAR(120), notes TEXT)`);
      const configs = [
        `
      - table: clients
        number: 1
        key: id
        fields:
          - { column: name, number: 2 }
`,
        `
      - table: clients
        number: 1
        key: id
        fields:
          - { column: name, number: 2 }
          - { column: notes, number: 3 }
`,
      ].map((tables) => captureSpecs(instanceConfig(testDb, tables)));
      await installCapture(database, configs[0] ?? []);

      const writer = startAppWriter(testDb, "INSERT INTO clients (name) VALUES (CONCAT('n', ?))".replace(
        "CONCAT('n', ?)",
        testDb.dialect === 'mysql' ? "CONCAT('n', ?)" : "'n' || ?",
      ));
      const rows = async (): Promise<number> => Number((await app.query<{ n: number }>('SELECT COUNT(*) AS n FROM clients'))[0]?.n);
      const progress = async (): Promise<void> => {
        const before = await rows();
        await expect.poll(rows, { timeout: 20_000, interval: 5 }).toBeGreaterThan(before + 2);
      };
      let inserted: number;
      try {
        for (let round = 1; round <= 12; round++) {
          await progress();
          await installCapture(database, configs[round % 2] ?? []);
        }
        await progress();
      } finally {
        inserted = await writer.stop();
      }

      const journal = await app.query<{ record_id: string }>("SELECT record_id FROM tablesync_journal WHERE op = 'I'");
      // While old and new triggers overlap a write may be journaled twice; it is never missed.
      expect(new Set(journal.map((r) => r.record_id)).size).toBe(inserted);
      expect(inserted).toBeGreaterThan(12);
    } finally {
      await database.close();
      await app.close();
      await testDb.drop();
    }
  });
});
