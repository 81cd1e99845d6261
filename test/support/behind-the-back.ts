import type { SyncInstance } from './sync-harness.js';

/**
 * Runs a statement on the application's connection as tablesync's applier
 * does, so that capture ignores it: a change made behind tablesync's back,
 * which no batch will ever carry (what `tablesync verify` is for). Each
 * dialect has its own marker (src/db/<dialect>/*-capture.ts): a session
 * variable on MySQL, a transaction-local setting on PostgreSQL, a row of
 * tablesync_applier inside the transaction on SQLite.
 */
export async function behindTheBack(instance: SyncInstance, statement: string, params: unknown[] = []): Promise<void> {
  switch (instance.dialect) {
    case 'mysql':
      await instance.exec('SET @tablesync_applying = 1');
      try {
        await instance.exec(statement, params);
      } finally {
        await instance.exec('SET @tablesync_applying = NULL');
      }
      return;
    case 'postgres':
      await instance.exec('BEGIN');
      try {
        await instance.exec("SELECT set_config('tablesync.applier', '1', true)");
        await instance.exec(statement, params);
        await instance.exec('COMMIT');
      } catch (err) {
        await instance.exec('ROLLBACK');
        throw err;
      }
      return;
    case 'sqlite':
      await instance.exec('BEGIN');
      await instance.exec('INSERT INTO tablesync_applier (marker) VALUES (1)');
      await instance.exec(statement, params);
      await instance.exec('DELETE FROM tablesync_applier');
      await instance.exec('COMMIT');
      return;
  }
}
