import type { CaptureSpec, TriggerDefinition } from '../dialect.js';
import { journalOps, stateTables, triggerName, type TriggerEvent } from '../state-names.js';

export function quoteSqlite(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}

function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** Epoch milliseconds of the statement, from the database's clock. */
const now = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)";

/** Byte comparison, whatever collation the column declares (NOCASE would hide a change of case). */
function changed(column: string): string {
  const q = quoteSqlite(column);
  return `OLD.${q} IS NOT NEW.${q} COLLATE BINARY`;
}

/**
 * AFTER triggers that journal the application's writes. They stand aside
 * while tablesync's applier has its marker row in tablesync_applier: the row
 * exists only inside the applier's open transaction, which no other
 * connection can see.
 */
export function sqliteCaptureTriggers(spec: CaptureSpec): TriggerDefinition[] {
  const journal = `INSERT INTO ${quoteSqlite(stateTables.journal)} (table_name, record_id, op, columns, changed_at)`;
  const table = literal(spec.table);
  const key = quoteSqlite(spec.key);
  const all = literal(spec.columns.join(','));
  const keyChanged = changed(spec.key);
  const changedList = `rtrim(${spec.columns.map((c) => `CASE WHEN ${changed(c)} THEN ${literal(`${c},`)} ELSE '' END`).join(' || ')}, ',')`;

  const bodies: Record<TriggerEvent, string> = {
    insert: `${journal} VALUES (${table}, NEW.${key}, '${journalOps.insert}', ${all}, ${now});`,
    update: [
      // A new key is a different record as far as the peer knows: the old one goes, the new one comes.
      `${journal} SELECT ${table}, OLD.${key}, '${journalOps.delete}', '', ${now} WHERE ${keyChanged};`,
      `  ${journal} SELECT ${table}, NEW.${key}, '${journalOps.insert}', ${all}, ${now} WHERE ${keyChanged};`,
      `  ${journal} SELECT ${table}, NEW.${key}, '${journalOps.update}', c.cols, ${now} FROM (SELECT ${changedList} AS cols) AS c WHERE NOT (${keyChanged}) AND c.cols <> '';`,
    ].join('\n'),
    delete: `${journal} VALUES (${table}, OLD.${key}, '${journalOps.delete}', '', ${now});`,
  };

  return (Object.keys(bodies) as TriggerEvent[]).map((event) => {
    const body = `WHEN NOT EXISTS (SELECT 1 FROM ${quoteSqlite(stateTables.applier)})\nBEGIN\n  ${bodies[event]}\nEND`;
    const name = triggerName(spec.table, event, body);
    return {
      name,
      table: spec.table,
      sql: `CREATE TRIGGER ${quoteSqlite(name)} AFTER ${event.toUpperCase()} ON ${quoteSqlite(spec.table)} FOR EACH ROW\n${body}`,
    };
  });
}
