import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { numberedPlaceholders, type TestDatabase } from './databases.js';

const require = createRequire(import.meta.url);

/**
 * The application writing on its own thread, as another process would: a
 * SQLite writer on tablesync's thread would block that thread in its busy
 * wait, which no real application can do.
 */
const writerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { dialect, file, url, statement, postgresStatement, modules } = workerData;
let stopping = false;
parentPort.on('message', () => { stopping = true; });
(async () => {
  let count = 0;
  if (dialect === 'sqlite') {
    const Sqlite = require(modules.sqlite);
    const db = new Sqlite(file, { timeout: 30000 });
    const insert = db.prepare(statement);
    while (!stopping) {
      insert.run(count);
      count += 1;
      // SQLite has one write lock: a writer that never pauses starves every other writer, tablesync or not.
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    db.close();
  } else if (dialect === 'postgres') {
    const pg = require(modules.pg);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    while (!stopping) {
      await client.query(postgresStatement, [count]);
      count += 1;
    }
    await client.end();
  } else {
    const mysql = require(modules.mysql);
    const connection = await mysql.createConnection(url);
    while (!stopping) {
      await connection.query(statement, [count]);
      count += 1;
    }
    await connection.end();
  }
  parentPort.postMessage(count);
})().catch((err) => { parentPort.postMessage({ error: String(err && err.stack || err) }); });
`;

export interface AppWriter {
  /** Stops writing and resolves with how many statements were executed. */
  stop(): Promise<number>;
}

/** Runs `statement` (one `?` parameter: a counter) again and again until stopped. */
export function startAppWriter(db: TestDatabase, statement: string): AppWriter {
  const worker = new Worker(writerSource, {
    eval: true,
    workerData: {
      dialect: db.dialect,
      file: db.config.file,
      url: db.config.url,
      statement,
      postgresStatement: numberedPlaceholders(statement),
      modules: { sqlite: require.resolve('better-sqlite3'), mysql: require.resolve('mysql2/promise'), pg: require.resolve('pg') },
    },
  });
  const result = new Promise<number>((resolve, reject) => {
    worker.once('message', (message: number | { error: string }) => {
      if (typeof message === 'number') resolve(message);
      else reject(new Error(message.error));
    });
    worker.once('error', reject);
  });
  return {
    async stop() {
      worker.postMessage('stop');
      try {
        return await result;
      } finally {
        await worker.terminate();
      }
    },
  };
}
