import { afterEach, beforeEach, expect, it } from 'vitest';
import { checkAgainstDatabase } from '../../src/config/check-database.js';
import { Database } from '../../src/db/database.js';
import { describeEachDialect, type AppConnection, type TestDatabase } from '../support/databases.js';
import { instanceConfig, instanceYaml } from '../support/instance.js';
import { parseConfig } from '../../src/config/load-config.js';
import { tmpdir } from 'node:os';

/** PostgreSQL spells it in full; the others report it as written. */
const doubleType = (testDb: TestDatabase): string => (testDb.dialect === 'postgres' ? 'DOUBLE PRECISION' : 'DOUBLE');

describeEachDialect('configuration checked against the database', (dialect) => {
  let testDb: TestDatabase;
  let app: AppConnection;
  let database: Database;

  beforeEach(async () => {
    testDb = await dialect.create();
    app = await testDb.connect();
    await app.exec(`CREATE TABLE users (id ${testDb.autoId}, login VARCHAR(40), full_name VARCHAR(80))`);
    await app.exec(
      `CREATE TABLE clients (id ${testDb.autoId}, code VARCHAR(20), name VARCHAR(80), born DATE, score ${doubleType(testDb)}, ` +
        `manager_id INT, record_status INT NOT NULL DEFAULT 0, region VARCHAR(20) NOT NULL)`,
    );
    await app.exec('CREATE TABLE codes (code VARCHAR(20) NOT NULL, label VARCHAR(80))');
    database = await Database.open(testDb.config);
  });

  afterEach(async () => {
    await database.close();
    await app.close();
    await testDb.drop();
  });

  const findings = async (tables: string, users = '') => {
    const yaml = users === '' ? instanceYaml(testDb, tables) : `${users}\n${instanceYaml(testDb, tables)}`;
    const config = parseConfig(yaml, 'test.yaml', {}, tmpdir());
    return checkAgainstDatabase(config, await database.introspect(), database.target).map((f) => `${f.severity} ${f.path}: ${f.message}`);
  };

  it('accepts a configuration that fits, warning only of what will fail later', async () => {
    const result = await findings(
      `
      - table: clients
        number: 1
        key: id
        status: { column: record_status, deleted: 2 }
        addedAt: born
        fields:
          - { column: name, number: 2 }
          - { column: manager_id, number: 3, type: user }
`,
      'users: { table: users, key: id, login: login, fullName: full_name }',
    );
    expect(result).toEqual([
      'warning syncs[0].tables[0].fields: clients.region is NOT NULL without a default and is not synced, so records created on the peer cannot be inserted here',
    ]);
  });

  it('names each missing table and column, with the nearest name', async () => {
    const result = await findings(
      `
      - table: client
        number: 1
        key: id
        fields:
          - { column: name, number: 2 }
      - table: codes
        number: 2
        key: cod
        status: { column: state, deleted: 2 }
        addedAt: created
        fields:
          - { column: lable, number: 3 }
`,
      'users: { table: people, key: id }',
    );
    expect(result).toEqual([
      `error users.table: table people does not exist in ${database.target} (tables there: clients, codes, users)`,
      `error syncs[0].tables[0].table: table client does not exist in ${database.target} (did you mean clients?)`,
      'error syncs[0].tables[1].key: column cod does not exist in table codes (did you mean code?)',
      'error syncs[0].tables[1].fields[0].column: column lable does not exist in table codes (did you mean label?)',
      'error syncs[0].tables[1].status.column: column state does not exist in table codes (its columns: code, label)',
      'error syncs[0].tables[1].addedAt: column created does not exist in table codes (its columns: code, label)',
      'warning syncs[0].tables[1].fields: codes.code is NOT NULL without a default and is not synced, so records created on the peer cannot be inserted here',
    ]);
  });

  it('refuses a key that does not identify one record, and types that cannot hold what is written', async () => {
    const result = await findings(
      `
      - table: clients
        number: 1
        key: code
        status: { column: record_status, deleted: removed }
        addedAt: score
        fields:
          - { column: name, number: 2 }
          - { column: born, number: 3, type: user }
          - { column: region, number: 4 }
`,
      'users: { table: users, key: id, login: login }',
    );
    expect(result).toEqual([
      'error syncs[0].tables[0].key: code is neither the primary key nor a unique column of clients; the key must identify one record',
      `error syncs[0].tables[0].fields[1].type: clients.born has type date; a user field must be a number or text column`,
      `error syncs[0].tables[0].status.deleted: "removed" cannot be stored in clients.record_status, which has type ${{ mysql: 'int(11)', sqlite: 'int', postgres: 'integer' }[testDb.dialect]}`,
      `error syncs[0].tables[0].addedAt: clients.score has type ${doubleType(testDb).toLowerCase()}; the time a record was added must be a date, time stamp, number or text column`,
    ]);
  });

  it('warns that records from the peer cannot be inserted where the key is not numbered by the database', async () => {
    await app.exec('CREATE UNIQUE INDEX codes_code ON codes (code)');
    const result = await findings(`
      - table: codes
        number: 1
        key: code
        fields:
          - { column: label, number: 2 }
`);
    expect(result).toEqual([
      'warning syncs[0].tables[0].key: code is not numbered by the database, so records created on the peer cannot be inserted into codes',
    ]);
    // Upload-only: the peer never creates records here, so nothing to warn about.
    expect(
      await findings(`
      - table: codes
        number: 1
        key: code
        fields:
          - { column: label, number: 2, direction: upload }
`),
    ).toEqual([]);
  });

  it('ignores tablesync state tables when suggesting names', async () => {
    const config = instanceConfig(testDb, `
      - table: clients
        number: 1
        key: id
        fields:
          - { column: name, number: 2 }
`);
    expect(checkAgainstDatabase(config, await database.introspect(), database.target)).toEqual([
      {
        severity: 'warning',
        path: 'syncs[0].tables[0].fields',
        message: 'clients.region is NOT NULL without a default and is not synced, so records created on the peer cannot be inserted here',
      },
    ]);
  });
});
