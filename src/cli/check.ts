import { relative } from 'node:path';
import { checkAgainstDatabase } from '../config/check-database.js';
import type { InstanceConfig } from '../config/types.js';
import { captureSpecs, inspectCapture } from '../db/capture.js';
import { Database } from '../db/database.js';
import { installedVersion, stateSchemaVersion } from '../db/state-tables.js';
import { TablesyncError } from '../errors.js';
import { formatTable } from './table.js';

type Status = 'ok' | 'warn' | 'error';
type Finding = [Status, string, string];

/**
 * `tablesync check`: what would stop or trouble this instance, as a table of
 * findings. Changes nothing. Exit 1 when any finding is an error.
 */
export async function checkCommand(configs: readonly InstanceConfig[], out: NodeJS.WritableStream): Promise<number> {
  let errors = 0;
  for (const config of configs) {
    const findings = await checkInstance(config);
    errors += findings.filter(([status]) => status === 'error').length;
    out.write(`instance ${config.instance} (${relative(process.cwd(), config.file) || config.file})\n`);
    out.write(`${formatTable(findings)}\n\n`);
  }
  out.write(errors === 0 ? 'no errors found\n' : `${errors === 1 ? '1 error' : `${errors} errors`} found\n`);
  return errors === 0 ? 0 : 1;
}

async function checkInstance(config: InstanceConfig): Promise<Finding[]> {
  const tableCount = config.syncs.reduce((n, sync) => n + sync.tables.length, 0);
  const findings: Finding[] = [
    ['ok', 'configuration', `valid: ${plural(config.syncs.length, 'sync')}, ${plural(tableCount, 'synced table')}`],
  ];

  let database: Database;
  try {
    database = await Database.open(config.database);
  } catch (err) {
    if (!(err instanceof TablesyncError)) throw err;
    findings.push(['error', 'database', err.message]);
    return findings;
  }
  try {
    findings.push(['ok', 'database', `${database.target}, ${await database.serverVersion()}`]);
    const schema = await database.introspect();
    const problems = checkAgainstDatabase(config, schema, database.target);
    for (const problem of problems) {
      findings.push([problem.severity === 'error' ? 'error' : 'warn', problem.path, problem.message]);
    }
    config.syncs.forEach((sync, s) =>
      sync.tables.forEach((table, t) => {
        const prefix = `syncs[${s}].tables[${t}]`;
        if (!problems.some((p) => p.severity === 'error' && p.path.startsWith(prefix))) {
          findings.push(['ok', `table ${table.table}`, `sync ${sync.name}: ${plural(table.fields.length, 'field')}, key ${table.key}`]);
        }
      }),
    );
    findings.push(await captureFinding(config, database));
  } finally {
    await database.close();
  }
  return findings;
}

async function captureFinding(config: InstanceConfig, database: Database): Promise<Finding> {
  const version = await installedVersion(database.kysely).catch(() => 0);
  if (version === 0) return ['warn', 'capture', 'not installed yet: run tablesync setup (tablesync run does it too)'];
  const state = await inspectCapture(database, captureSpecs(config));
  if (version < stateSchemaVersion || state.missing.length > 0 || state.stale.length > 0) {
    return [
      'warn',
      'capture',
      `outdated (${state.missing.length} triggers to create, ${state.stale.length} to drop, state version ${version} of ${stateSchemaVersion}): run tablesync setup`,
    ];
  }
  return ['ok', 'capture', `installed: ${plural(state.installed.length, 'trigger')}, state version ${version}`];
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
