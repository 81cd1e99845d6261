import { afterEach, beforeEach, expect, it } from 'vitest';
import { checkAgainstDatabase } from '../../src/config/check-database.js';
import { captureSpecs, installCapture } from '../../src/db/capture.js';
import { Database } from '../../src/db/database.js';
import type { AnyKysely } from '../../src/db/dialect.js';
import { DatabaseConnectError } from '../../src/errors.js';
import { createPostgresDatabase, describeWithDialects, type AppConnection, type TestDatabase } from '../support/databases.js';
import { instanceConfig } from '../support/instance.js';

/**
 * What only PostgreSQL has: a schema other than public, its own types, keys
 * numbered by sequences. Capture, state tables and the engine run on it in
 * every describeEachDialect suite and in the end-to-end pairs.
 */

const clientsTable = `
      - table: clients
        number: 1
        key: id
        fields:
          - { column: name, number: 2 }
`;

describeWithDialects('PostgreSQL specifics', ['postgres'], () => {
  let testDb: TestDatabase;
  let app: AppConnection;
  const opened: Database[] = [];

  const open = async (url = testDb.config.url ?? ''): Promise<Database> => {
    const database = await Database.open({ dialect: 'postgres', url });
    opened.push(database);
    return database;
  };
  const withSchema = (schema: string): string => {
    const url = new URL(testDb.config.url ?? '');
    url.searchParams.set('schema', schema);
    return url.toString();
  };

  beforeEach(async () => {
    testDb = await createPostgresDatabase();
    app = await testDb.connect();
  });

  afterEach(async () => {
    for (const database of opened.splice(0)) await database.close();
    await app.close();
    await testDb.drop();
  });

  it('works in the schema named by ?schema=, and captures writes made with any search_path', async () => {
    await app.exec('CREATE SCHEMA sales');
    await app.exec('CREATE TABLE sales.clients (id SERIAL PRIMARY KEY, name VARCHAR(80))');
    await app.exec('CREATE TABLE public.clients (id SERIAL PRIMARY KEY, other TEXT)');
    const database = await open(withSchema('sales'));
    expect(database.target).toMatch(/^postgres 127\.0\.0\.1:5432\/ts_test_\w+ \(schema sales\)$/);
    expect([...((await database.introspect()).get('clients')?.columns.keys() ?? [])]).toEqual(['id', 'name']);

    await installCapture(database, captureSpecs(instanceConfig(testDb, clientsTable)));
    const stateTables = await app.query<{ schemaname: string }>("SELECT DISTINCT schemaname FROM pg_tables WHERE tablename LIKE 'tablesync\\_%'");
    expect(stateTables).toEqual([{ schemaname: 'sales' }]);

    // The application's own connection searches public only: the trigger still finds sales.tablesync_journal.
    await app.exec("INSERT INTO sales.clients (name) VALUES ('Ann')");
    await app.exec("UPDATE sales.clients SET name = 'Anne'");
    expect(await app.query('SELECT op, record_id, columns FROM sales.tablesync_journal ORDER BY seq')).toEqual([
      { op: 'I', record_id: '1', columns: 'name' },
      { op: 'U', record_id: '1', columns: 'name' },
    ]);
  });

  it('refuses a schema that does not exist, in one sentence', async () => {
    const error = await open(withSchema('nowhere')).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(DatabaseConnectError);
    expect((error as Error).message).toMatch(/^schema "nowhere" does not exist in database "ts_test_\w+" on the postgres server at 127\.0\.0\.1:5432; create it, or fix \?schema= in database\.url$/);
  });

  it('sees its types: enums and domains by what they hold, arrays and intervals as unsyncable, sequences and identities as numbering', async () => {
    await app.exec("CREATE TYPE mood AS ENUM ('sad', 'happy')");
    await app.exec('CREATE DOMAIN email AS VARCHAR(100)');
    await app.exec(
      'CREATE TABLE things (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, serial_no SERIAL UNIQUE, m mood, e email NOT NULL, ' +
        "ts TIMESTAMPTZ, d DATE, n NUMERIC(10,2), b BOOLEAN, bin BYTEA, j JSONB, u UUID, tags TEXT[], span INTERVAL, code CHAR(3) DEFAULT 'abc')",
    );
    const database = await open();
    const things = (await database.introspect()).get('things');
    const columns = [...(things?.columns.values() ?? [])].map((c) => [c.name, c.dataType, c.family, c.nullable, c.hasDefault, c.autoIncrement, c.maxLength ?? null]);
    expect(columns).toEqual([
      ['id', 'bigint', 'integer', false, true, true, null],
      ['serial_no', 'integer', 'integer', false, true, true, null],
      ['m', 'mood', 'text', true, false, false, null],
      ['e', 'email', 'text', false, false, false, 100],
      ['ts', 'timestamp with time zone', 'datetime', true, false, false, null],
      ['d', 'date', 'date', true, false, false, null],
      ['n', 'numeric(10,2)', 'decimal', true, false, false, null],
      ['b', 'boolean', 'boolean', true, false, false, null],
      ['bin', 'bytea', 'binary', true, false, false, null],
      ['j', 'jsonb', 'json', true, false, false, null],
      ['u', 'uuid', 'text', true, false, false, null],
      ['tags', 'text[]', 'other', true, false, false, null],
      ['span', 'interval', 'other', true, false, false, null],
      ['code', 'character(3)', 'text', true, true, false, 3],
    ]);
    expect([...(things?.uniqueColumns ?? [])].sort()).toEqual(['id', 'serial_no']);

    const config = instanceConfig(testDb, `
      - table: things
        number: 1
        key: id
        fields:
          - { column: m, number: 2 }
          - { column: tags, number: 3 }
`);
    expect(checkAgainstDatabase(config, await database.introspect(), database.target).map((f) => `${f.severity} ${f.message}`)).toEqual([
      'error things.tags has type text[], which tablesync cannot sync',
      'warning things.e is NOT NULL without a default and is not synced, so records created on the peer cannot be inserted here',
    ]);
  });

  it('reads dates and time stamps as text, a timestamptz in UTC without its offset, and json as written', async () => {
    await app.exec('CREATE TABLE stamps (id SERIAL PRIMARY KEY, ts TIMESTAMPTZ, plain TIMESTAMP(3), d DATE, j JSON)');
    await app.exec(`INSERT INTO stamps (ts, plain, d, j) VALUES ('2025-03-01 12:00:26.652+02', '2025-03-01 10:00:26.652', '2025-03-01', '{"a":  1}')`);
    const database = await open();
    expect(await database.kysely.selectFrom('stamps').select(['ts', 'plain', 'd', 'j']).execute()).toEqual([
      { ts: '2025-03-01 10:00:26.652', plain: '2025-03-01 10:00:26.652', d: '2025-03-01', j: '{"a":  1}' },
    ]);
    // What travels back is read in UTC again: the same instant.
    await database.kysely.updateTable('stamps').set({ ts: '2025-03-01 10:00:26.652' }).execute();
    expect(await app.query("SELECT ts = '2025-03-01 12:00:26.652+02' AS same FROM stamps")).toEqual([{ same: true }]);
  });

  it('numbers inserted rows in order, continues a sequence above restored keys, and blames only the data for a data error', async () => {
    await app.exec('CREATE TABLE items (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, label VARCHAR(5) UNIQUE)');
    await app.exec('CREATE TABLE restored (id SERIAL PRIMARY KEY, label TEXT)');
    const database = await open();
    const { adapter } = database;

    const rows = Array.from({ length: 1200 }, (_, i) => ({ label: String(i) }));
    const ids = await database.transaction((db: AnyKysely) => adapter.insertNumbered(db, 'items', rows, 'id'));
    const stored = await app.query<{ id: string; label: string }>('SELECT id, label FROM items');
    const byLabel = new Map(stored.map((r) => [r.label, String(r.id)]));
    expect(ids).toEqual(rows.map((r) => byLabel.get(r.label)));

    await app.exec("INSERT INTO restored (id, label) VALUES (1, 'a'), (7, 'b')");
    await adapter.continueNumbering?.(database.kysely, 'restored', 'id');
    await app.exec("INSERT INTO restored (label) VALUES ('next')");
    expect(await app.query("SELECT id FROM restored WHERE label = 'next'")).toEqual([{ id: 8 }]);
    await app.exec('DELETE FROM restored');
    await adapter.continueNumbering?.(database.kysely, 'restored', 'id');
    await app.exec("INSERT INTO restored (label) VALUES ('first')");
    expect(await app.query('SELECT id FROM restored')).toEqual([{ id: 1 }]);

    const reason = async (work: (db: AnyKysely) => Promise<unknown>): Promise<string | undefined> => {
      try {
        await work(database.kysely);
        return 'no error';
      } catch (err) {
        return adapter.dataErrorReason(err);
      }
    };
    expect(await reason((db) => db.insertInto('items').values({ label: 'too long' }).execute())).toBe('value too long for type character varying(5) (22001)');
    expect(await reason((db) => db.insertInto('items').values({ label: '0' }).execute())).toBe(
      'duplicate key value violates unique constraint "items_label_key": Key (label)=(0) already exists. (23505)',
    );
    expect(await reason((db) => db.selectFrom('no_such_table').selectAll().execute())).toBeUndefined();
  });
});
