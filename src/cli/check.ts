import { relative } from 'node:path';
import { checkAgainstDatabase } from '../config/check-database.js';
import type { InstanceConfig, SyncConfig } from '../config/types.js';
import { captureSpecs, inspectCapture } from '../db/capture.js';
import { Database } from '../db/database.js';
import type { CacheFit } from '../db/dialect.js';
import { stateTables } from '../db/state-names.js';
import { installedVersion, stateSchemaVersion } from '../db/state-tables.js';
import { TablesyncError } from '../errors.js';
import { compareSides, decodeDescription, describeSide } from '../protocol/description.js';
import { transportFor } from '../transports/create-transport.js';
import type { Transport } from '../transports/transport.js';
import { formatTable } from './table.js';

type Status = 'ok' | 'warn' | 'error';
export type Finding = [Status, string, string];

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
    const fit = await database.adapter.cacheFit?.(database.kysely, [...new Set(config.syncs.flatMap((sync) => sync.tables.map((t) => t.table))), ...Object.values(stateTables)]);
    if (fit !== undefined) findings.push(cacheFinding(fit));
  } finally {
    await database.close();
  }
  for (const sync of config.syncs) findings.push(...(await peerFindings(config, sync)));
  return findings;
}

/** Reaches the peer (or the place it publishes to) and compares the two sides' numbers and directions. */
async function peerFindings(config: InstanceConfig, sync: SyncConfig): Promise<Finding[]> {
  const subject = `peer of ${sync.name}`;
  let transport: Transport;
  try {
    transport = transportFor(config, sync);
  } catch (err) {
    if (!(err instanceof TablesyncError)) throw err;
    return [['error', subject, err.message]];
  }
  try {
    if (!transport.reachesPeer) return [['ok', subject, 'the active side calls us; run tablesync check there to compare both sides']];
    let body: Buffer | undefined;
    try {
      body = await transport.readPeerDescription();
    } catch (err) {
      if (!(err instanceof TablesyncError)) throw err;
      return [['error', subject, `cannot reach it: ${err.message}`]];
    }
    if (body === undefined) return [['warn', subject, 'reachable, but it has not described itself yet: start its daemon (tablesync run), then check again']];
    const theirs = decodeDescription(body);
    if (theirs === undefined) return [['warn', subject, 'reachable, but its description is not one this version understands: are both sides on the same tablesync?']];
    const ours = describeSide(config, sync);
    return [
      ['ok', subject, `reachable: instance ${theirs.instance}, ${theirs.mode}`],
      ...compareSides(ours, theirs).map((f): Finding => [f.status, `${sync.name}: ${f.subject}`, f.detail]),
    ];
  } finally {
    await transport.close();
  }
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

/**
 * Whether the synced tables and tablesync's state fit the server's cache. When
 * they do not, a change to a record whose pages were pushed out reads them
 * from the disk first, on both sides, and a steady stream of changes all over
 * a table falls behind: the benchmark's million rows kept up with 2,000
 * changes a second with a 1 GB buffer pool and not with 128 MB.
 */
export function cacheFinding(fit: CacheFit): Finding {
  const subject = 'database cache';
  const sizes = `${fit.setting} ${megabytes(fit.cacheBytes)}, synced tables and tablesync's state ${megabytes(fit.tablesBytes)}`;
  if (fit.tablesBytes <= fit.cacheBytes) return ['ok', subject, `${sizes}: they fit`];
  return [
    'warn',
    subject,
    `${sizes}: they do not fit, so changes to records all over the tables will wait on the disk and syncing may fall behind; ` +
      `raise ${fit.setting} above ${megabytes(fit.tablesBytes)} (more as the tables grow)`,
  ];
}

function megabytes(bytes: number): string {
  return `${Math.ceil(bytes / 1024 ** 2).toLocaleString('en')} MB`;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
