import { afterEach, beforeEach, expect, it } from 'vitest';
import { Database } from '../../src/db/database.js';
import { insertRows } from '../../src/db/insert-rows.js';
import { describeEachDialect, type AppConnection, type TestDatabase } from '../support/databases.js';

/**
 * insertRows with the dialect's skipTaken: how links a peer confirms are
 * written, leaving out those whose record of either side is linked already.
 */
describeEachDialect('insertRows leaving out rows whose unique keys are taken', (dialect) => {
  let testDb: TestDatabase;
  let app: AppConnection;
  let database: Database;

  beforeEach(async () => {
    testDb = await dialect.create();
    app = await testDb.connect();
    await app.exec('CREATE TABLE pairs (ours VARCHAR(20) NOT NULL PRIMARY KEY, theirs VARCHAR(20) NOT NULL UNIQUE, note VARCHAR(20) NOT NULL)');
    await app.exec("INSERT INTO pairs (ours, theirs, note) VALUES ('o1', 't1', 'before')");
    database = await Database.open(testDb.config);
  });

  afterEach(async () => {
    await database.close();
    await app.close();
    await testDb.drop();
  });

  const pairs = async (): Promise<string[]> =>
    ((await database.kysely.selectFrom('pairs').select(['ours', 'theirs', 'note']).orderBy('ours').execute()) as { ours: string; theirs: string; note: string }[]).map(
      (r) => `${r.ours}:${r.theirs}:${r.note}`,
    );

  it('keeps what is there, takes the new rows, and the first of two new rows that share a key', async () => {
    await database.transaction((db) =>
      insertRows(
        db,
        'pairs',
        [
          { ours: 'o1', theirs: 't9', note: 'ours taken' },
          { ours: 'o9', theirs: 't1', note: 'theirs taken' },
          { ours: 'o2', theirs: 't2', note: 'new' },
          { ours: 'o2', theirs: 't3', note: 'ours twice' },
          { ours: 'o3', theirs: 't2', note: 'theirs twice' },
          { ours: 'o4', theirs: 't4', note: 'new' },
        ],
        { skipTaken: database.adapter.skipTaken },
      ),
    );
    expect(await pairs()).toEqual(['o1:t1:before', 'o2:t2:new', 'o4:t4:new']);
  });

  it('without skipTaken, a taken key fails the statement and writes none of it', async () => {
    await expect(
      database.transaction((db) =>
        insertRows(db, 'pairs', [
          { ours: 'o5', theirs: 't5', note: 'new' },
          { ours: 'o1', theirs: 't6', note: 'ours taken' },
        ]),
      ),
    ).rejects.toThrow();
    expect(await pairs()).toEqual(['o1:t1:before']);
  });
});
