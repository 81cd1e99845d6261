import { afterAll, beforeAll, expect, it } from 'vitest';
import { Database } from '../../src/db/database.js';
import { mysqlAdapter } from '../../src/db/mysql/mysql-adapter.js';
import { ReadAheadGate, readAheadMinimumDiskReads } from '../../src/engine/read-ahead.js';
import { dialectCase, describeWithDialects, type TestDatabase } from '../support/databases.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Whether the daemon reads a batch's records ahead of its transaction: under
 * `readAhead: auto`, only while the server reads pages from the disk.
 */
describeWithDialects('the read-ahead gate [mysql]', ['mysql'], () => {
  let testDb: TestDatabase;
  let database: Database;

  beforeAll(async () => {
    testDb = await dialectCase('mysql').create();
    database = await Database.open(testDb.config);
  });

  afterAll(async () => {
    await database.close();
    await testDb.drop();
  });

  it("reads the server's counter of pages read from the disk, which never goes back", async () => {
    const count = mysqlAdapter.diskPageReads;
    if (count === undefined) throw new Error('the MySQL adapter reads ahead, so it must count disk reads');
    const first = await count(database.kysely);
    const second = await count(database.kysely);
    expect(Number.isSafeInteger(first) && first >= 0).toBe(true);
    expect(second).toBeGreaterThanOrEqual(first);
  });

  it('reads ahead on all its connections under always, on none under never, whatever the disk does', async () => {
    expect(await new ReadAheadGate(mysqlAdapter, 'always').connections(database.kysely)).toBe(mysqlAdapter.readAheadConnections);
    expect(await new ReadAheadGate(mysqlAdapter, 'never').connections(database.kysely)).toBe(0);
  });

  it('under auto, reads ahead while the disk reads go on, stops a second after they stop, and starts again when they resume', async () => {
    // The server's own counter cannot be made to move on demand (the test's tables are in its cache), so this one is counted here.
    let reads = 1_000;
    const gate = new ReadAheadGate({ readAheadConnections: 4, diskPageReads: () => Promise.resolve(reads) }, 'auto');
    // No look yet: it reads ahead, as it always did.
    expect(await gate.connections(database.kysely)).toBe(4);
    await sleep(1_100);
    // A second with no read from the disk: the tables are in the cache.
    expect(await gate.connections(database.kysely)).toBe(0);
    reads += readAheadMinimumDiskReads * 3;
    // One look decides for a second.
    expect(await gate.connections(database.kysely)).toBe(0);
    await sleep(1_100);
    expect(await gate.connections(database.kysely)).toBe(4);
    reads += readAheadMinimumDiskReads / 2;
    await sleep(1_100);
    // Fewer reads than the minimum a second: not worth it.
    expect(await gate.connections(database.kysely)).toBe(0);
  });

  it('under auto, reads ahead as before when the server will not say how much it reads from the disk', async () => {
    let looks = 0;
    const refuse = (): Promise<number> => {
      looks += 1;
      return Promise.reject(new Error('SHOW GLOBAL STATUS: access denied'));
    };
    const gate = new ReadAheadGate({ readAheadConnections: 4, diskPageReads: refuse }, 'auto');
    expect(await gate.connections(database.kysely)).toBe(4);
    await sleep(1_100);
    expect(await gate.connections(database.kysely)).toBe(4);
    // Asked once: a server that refused is not asked again.
    expect(looks).toBe(1);
  });

  it('leaves a dialect that does not read ahead alone', async () => {
    expect(await new ReadAheadGate({ readAheadConnections: 0 }, 'always').connections(database.kysely)).toBe(0);
  });
});
