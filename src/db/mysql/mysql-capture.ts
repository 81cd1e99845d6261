import type { CaptureSpec, TriggerDefinition } from '../dialect.js';
import { journalOps, stateTables, triggerName, type TriggerEvent } from '../state-names.js';

export function quoteMysql(identifier: string): string {
  return `\`${identifier.replace(/`/g, '``')}\``;
}

function literal(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** Epoch milliseconds of the statement, from the database's clock: when the application made the change. */
const now = 'ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000)';

/**
 * Byte comparison: `<=>` alone follows the column's collation, which would
 * miss a change of letter case or of trailing spaces.
 */
function changed(column: string): string {
  const q = quoteMysql(column);
  return `NOT (CAST(OLD.${q} AS BINARY) <=> CAST(NEW.${q} AS BINARY))`;
}

/**
 * AFTER triggers that journal the application's writes, skipped while the
 * session variable @tablesync_applying is set (tablesync's applier).
 */
export function mysqlCaptureTriggers(spec: CaptureSpec): TriggerDefinition[] {
  const journal = `INSERT INTO ${quoteMysql(stateTables.journal)} (table_name, record_id, op, columns, changed_at)`;
  const table = literal(spec.table);
  const key = quoteMysql(spec.key);
  const all = literal(spec.columns.join(','));
  const changedList = `CONCAT_WS(',', ${spec.columns.map((c) => `IF(${changed(c)}, ${literal(c)}, NULL)`).join(', ')})`;

  // Plain INSERT … VALUES only: an INSERT … SELECT counts as a bulk insert, which
  // holds the journal's table-level AUTO-INC lock to the end of the
  // application's statement and deadlocks concurrent writers.
  const bodies: Record<TriggerEvent, string> = {
    insert: `${journal} VALUES (${table}, NEW.${key}, '${journalOps.insert}', ${all}, ${now});`,
    update: [
      `IF ${changed(spec.key)} THEN`,
      // A new key is a different record as far as the peer knows: the old one goes, the new one comes.
      `    ${journal} VALUES (${table}, OLD.${key}, '${journalOps.delete}', '', ${now}), (${table}, NEW.${key}, '${journalOps.insert}', ${all}, ${now});`,
      '  ELSE',
      `    SET tablesync_columns = ${changedList};`,
      `    IF tablesync_columns <> '' THEN`,
      `      ${journal} VALUES (${table}, NEW.${key}, '${journalOps.update}', tablesync_columns, ${now});`,
      '    END IF;',
      '  END IF;',
    ].join('\n'),
    delete: `${journal} VALUES (${table}, OLD.${key}, '${journalOps.delete}', '', ${now});`,
  };

  return (Object.keys(bodies) as TriggerEvent[]).map((event) => {
    const declare = event === 'update' ? '  DECLARE tablesync_columns TEXT;\n' : '';
    const body = `BEGIN\n${declare}  IF @tablesync_applying IS NULL THEN\n  ${bodies[event]}\n  END IF;\nEND`;
    const name = triggerName(spec.table, event, body);
    return {
      name,
      table: spec.table,
      sql: `CREATE TRIGGER ${quoteMysql(name)} AFTER ${event.toUpperCase()} ON ${quoteMysql(spec.table)} FOR EACH ROW\n${body}`,
    };
  });
}
