import type { CaptureSpec, TriggerDefinition } from '../dialect.js';
import { journalOps, stateTables, triggerName, type TriggerEvent } from '../state-names.js';

export function quotePostgres(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}

/** A string constant; standard_conforming_strings (on since PostgreSQL 9.1) leaves backslashes alone. */
function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/**
 * Epoch milliseconds of the statement, from the database's clock: when the
 * application made the change. statement_timestamp(), not now(): now() is
 * when the transaction began, which may be long before the write.
 */
const now = 'round(extract(epoch FROM statement_timestamp()) * 1000)::bigint';

/** The custom setting that tells the triggers to stand aside; set transaction-locally by the applier. */
export const applierSetting = 'tablesync.applier';

/**
 * Compared as text in the byte-wise "C" collation: a case-insensitive type
 * (citext) or a nondeterministic collation would hide a change of case,
 * and some types (json, point) have no equality operator at all.
 */
function changed(column: string): string {
  const q = quotePostgres(column);
  return `OLD.${q}::text IS DISTINCT FROM NEW.${q}::text COLLATE "C"`;
}

/**
 * AFTER ROW triggers that journal the application's writes, each calling a
 * plpgsql function of the same name. They stand aside while the transaction
 * has set tablesync.applier to 1 (tablesync's applier: the setting is
 * transaction-local, so it ends with the applier's commit or rollback).
 *
 * Each function runs with the search_path it was created with (the schema
 * tablesync works in), so that it finds tablesync_journal whatever the
 * application's own search_path is.
 */
export function postgresCaptureTriggers(spec: CaptureSpec): TriggerDefinition[] {
  const journal = `INSERT INTO ${quotePostgres(stateTables.journal)} (table_name, record_id, op, "columns", changed_at)`;
  const table = literal(spec.table);
  const key = quotePostgres(spec.key);
  const all = literal(spec.columns.join(','));
  // concat_ws skips the NULLs of the columns that did not change.
  const changedList = `concat_ws(',', ${spec.columns.map((c) => `CASE WHEN ${changed(c)} THEN ${literal(c)} END`).join(', ')})`;

  const bodies: Record<TriggerEvent, string> = {
    insert: `${journal} VALUES (${table}, NEW.${key}::text, '${journalOps.insert}', ${all}, ${now});`,
    update: [
      `IF ${changed(spec.key)} THEN`,
      // A new key is a different record as far as the peer knows: the old one goes, the new one comes.
      `      ${journal} VALUES (${table}, OLD.${key}::text, '${journalOps.delete}', '', ${now}), (${table}, NEW.${key}::text, '${journalOps.insert}', ${all}, ${now});`,
      '    ELSE',
      `      tablesync_columns := ${changedList};`,
      `      IF tablesync_columns <> '' THEN`,
      `        ${journal} VALUES (${table}, NEW.${key}::text, '${journalOps.update}', tablesync_columns, ${now});`,
      '      END IF;',
      '    END IF;',
    ].join('\n'),
    delete: `${journal} VALUES (${table}, OLD.${key}::text, '${journalOps.delete}', '', ${now});`,
  };

  return (Object.keys(bodies) as TriggerEvent[]).map((event) => {
    const declare = event === 'update' ? 'DECLARE\n  tablesync_columns text;\n' : '';
    const body = `${declare}BEGIN\n  IF current_setting(${literal(applierSetting)}, true) IS DISTINCT FROM '1' THEN\n    ${bodies[event]}\n  END IF;\n  RETURN NULL;\nEND`;
    const name = triggerName(spec.table, event, body);
    const fn = quotePostgres(name);
    return {
      name,
      table: spec.table,
      // Two statements in one: sent without parameters, they go as one simple query (see createTrigger).
      sql: [
        `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS ${literal(body)};`,
        `CREATE TRIGGER ${fn} AFTER ${event.toUpperCase()} ON ${quotePostgres(spec.table)} FOR EACH ROW EXECUTE FUNCTION ${fn}();`,
      ].join('\n'),
    };
  });
}
