import { posix, resolve } from 'node:path';
import cron from 'node-cron';
import { parseDuration } from './duration.js';
import type { ConfigProblem } from '../errors.js';
import type { RawConfig, RawSync, RawTable } from './raw.js';
import { formatPath, type DocPath } from './path.js';

/**
 * Rules that relate one part of the file to another, checked once the file
 * has the right shape. Each returns problems instead of throwing, so that the
 * user sees every problem in one report.
 */
export function checkRules(config: RawConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const report = (path: DocPath, message: string): void => {
    problems.push({ path: formatPath(path), message });
  };

  checkDatabase(config, report);
  checkListen(config.listen, report);
  if (config.tls !== undefined && (config.tls.cert === undefined) !== (config.tls.key === undefined)) {
    report(['tls', config.tls.cert === undefined ? 'cert' : 'key'], 'is required with the other one: cert and key go together (give only ca to trust a peer\'s authority)');
  }
  checkUniqueNames(config.syncs, report);
  config.syncs.forEach((sync, s) => checkSync(config, sync, ['syncs', s], report));
  checkOneKeyPerTable(config.syncs, report);
  checkHealth(config, report);
  return problems;
}

type Report = (path: DocPath, message: string) => void;

/** The URL schemes each server dialect accepts (the first is the one shown), and its usual port for the examples. */
const serverUrls: Record<'mysql' | 'postgres', { readonly schemes: readonly string[]; readonly port: number }> = {
  mysql: { schemes: ['mysql'], port: 3306 },
  postgres: { schemes: ['postgres', 'postgresql'], port: 5432 },
};

function checkDatabase(config: RawConfig, report: Report): void {
  const { dialect, url, file } = config.database;
  if (url !== undefined && file !== undefined) {
    report(['database'], 'give either url or file, not both');
  }
  if (dialect === 'sqlite') {
    if (file === undefined) report(['database', 'file'], 'is required for a sqlite database (the path of its file)');
    if (url !== undefined) report(['database', 'url'], 'is for server databases; a sqlite database takes file');
    return;
  }
  const { schemes, port } = serverUrls[dialect];
  if (url === undefined) {
    report(['database', 'url'], `is required for a ${dialect} database, such as ${dialect}://user:\${DB_PASSWORD}@127.0.0.1:${port}/crm`);
    return;
  }
  if (file !== undefined) report(['database', 'file'], `is for sqlite; a ${dialect} database takes url`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    report(['database', 'url'], `is not a valid URL; expected ${dialect}://user:password@host:port/database`);
    return;
  }
  if (!schemes.some((scheme) => parsed.protocol === `${scheme}:`)) {
    const or = schemes.slice(1).map((scheme) => ` (or ${scheme}://)`).join('');
    report(['database', 'url'], `must start with ${dialect}://${or} for dialect ${dialect} (found ${parsed.protocol}//)`);
  }
  if (parsed.pathname.replace(/^\//, '') === '') {
    report(['database', 'url'], `must name the database after the host, such as …@127.0.0.1:${port}/crm`);
  }
}

function checkListen(listen: string | number | undefined, report: Report): void {
  if (listen === undefined) return;
  const port = typeof listen === 'number' ? listen : Number(listen.slice(listen.lastIndexOf(':') + 1));
  if (port < 0 || port > 65535) report(['listen'], `must have a port from 0 to 65535 (found ${port}), such as 0.0.0.0:8470`);
}

/** Bounds of `every`: faster is a busy loop, slower overflows Node's timers. */
const minEveryMs = 50;
const maxEveryMs = 24 * 3_600_000;

/** Below a second, one slow exchange would make /healthz fail. */
const minPeerTimeoutMs = 1000;

/** A peer timeout no longer than a sync's period would fail /healthz between two exchanges that both succeed. */
function checkHealth(config: RawConfig, report: Report): void {
  const text = config.health?.peerTimeout;
  if (text === undefined || !/^[0-9]+(ms|s|m|h)$/.test(text)) return;
  const timeoutMs = parseDuration(text);
  if (timeoutMs < minPeerTimeoutMs) {
    report(['health', 'peerTimeout'], `must be at least 1s (found ${text})`);
    return;
  }
  config.syncs.forEach((sync, s) => {
    if (sync.every === undefined || !/^[0-9]+(ms|s|m|h)$/.test(sync.every)) return;
    if (parseDuration(sync.every) >= timeoutMs) {
      report(['health', 'peerTimeout'], `must be longer than syncs[${s}].every (${sync.every}), or /healthz would fail between two exchanges; a few times longer is better (found ${text})`);
    }
  });
}

/** Whether two folders are the same place: `out` and `./out/` are. FTP folders are paths on the server. */
function samePlace(type: 'folder' | 'ftp', a: string, b: string): boolean {
  const normal = (p: string): string => (type === 'ftp' ? posix.normalize(`/${p}`) : resolve(p)).replace(/\/+$/, '');
  return normal(a) === normal(b);
}

function checkUniqueNames(syncs: RawSync[], report: Report): void {
  const seen = new Map<string, number>();
  syncs.forEach((sync, s) => {
    const first = seen.get(sync.name);
    if (first === undefined) seen.set(sync.name, s);
    else report(['syncs', s, 'name'], `"${sync.name}" is already the name of syncs[${first}]; each sync needs its own name`);
  });
}

function checkSync(config: RawConfig, sync: RawSync, path: DocPath, report: Report): void {
  const { transport } = sync;
  if (transport.type === 'http') {
    if (sync.mode === 'active' && transport.url === undefined) {
      report([...path, 'transport', 'url'], 'is required on the active side of an http sync (where the passive side listens)');
    }
    if (sync.mode === 'passive' && config.listen === undefined) {
      report(['listen'], `is required because ${formatPath(path)} ("${sync.name}") is a passive http sync`);
    }
  }
  if (transport.type !== 'http' && samePlace(transport.type, transport.upload, transport.download)) {
    report([...path, 'transport', 'download'], 'must differ from upload: we would read back our own batches');
  }

  if (sync.every !== undefined && sync.schedule !== undefined) {
    report([...path, 'schedule'], 'give either every or schedule, not both');
  }
  if (sync.schedule !== undefined && !cron.validate(sync.schedule)) {
    report([...path, 'schedule'], `"${sync.schedule}" is not a valid cron expression (five fields, or six with seconds first, such as "*/5 * * * * *")`);
  }
  if (sync.every !== undefined && /^[0-9]+(ms|s|m|h)$/.test(sync.every)) {
    const ms = parseDuration(sync.every);
    if (ms < minEveryMs || ms > maxEveryMs) report([...path, 'every'], `must be from 50ms to 24h (found ${sync.every})`);
  }

  const tableNumbers = new Map<number, number>();
  const tableNames = new Map<string, number>();
  const fieldNumbers = new Map<number, string>();
  sync.tables.forEach((table, t) => {
    const tablePath = [...path, 'tables', t];
    const numberTwin = tableNumbers.get(table.number);
    if (numberTwin === undefined) tableNumbers.set(table.number, t);
    else report([...tablePath, 'number'], `must be unique within the sync (${table.number} is also the number of ${formatPath([...path, 'tables', numberTwin])})`);
    const nameTwin = tableNames.get(table.table);
    if (nameTwin === undefined) tableNames.set(table.table, t);
    else report([...tablePath, 'table'], `${table.table} is already synced by ${formatPath([...path, 'tables', nameTwin])} in this sync`);
    if (table.table.toLowerCase().startsWith('tablesync_')) {
      report([...tablePath, 'table'], 'names starting with tablesync_ are reserved for tablesync\'s own state');
    }

    table.fields.forEach((field, f) => {
      const fieldPath = formatPath([...tablePath, 'fields', f]);
      const twin = fieldNumbers.get(field.number);
      if (twin === undefined) fieldNumbers.set(field.number, fieldPath);
      else report([...tablePath, 'fields', f, 'number'], `must be unique within the sync (${field.number} is also the number of ${twin})`);
    });
    checkTable(config, sync, table, tablePath, report);
  });
}

function checkTable(config: RawConfig, sync: RawSync, table: RawTable, path: DocPath, report: Report): void {
  const columns = new Map<string, number>();
  table.fields.forEach((field, f) => {
    const fieldPath = [...path, 'fields', f];
    if (field.column === table.key) {
      report([...fieldPath, 'column'], `${field.column} is the table's key; keys are never synced, each side keeps its own record ids`);
    }
    if (table.status !== undefined && field.column === table.status.column) {
      report([...fieldPath, 'column'], `${field.column} is the status column; deletes travel through status:, so it cannot also be a synced field`);
    }
    const twin = columns.get(field.column);
    if (twin === undefined) columns.set(field.column, f);
    else report([...fieldPath, 'column'], `${field.column} is already synced by ${formatPath([...path, 'fields', twin])}`);

    if (field.type === 'user') {
      if (config.users === undefined) {
        report([...fieldPath, 'type'], 'a user field needs the users: section at the top of the file');
      } else if (sync.users !== 'id' && config.users[sync.users] === undefined) {
        report([...fieldPath, 'type'], `the sync matches users by ${sync.users}, so users.${sync.users} must name that column`);
      }
    }
  });
  if (table.addedAt !== undefined && (table.addedAt === table.key || columns.has(table.addedAt))) {
    report([...path, 'addedAt'], `${table.addedAt} is ${table.addedAt === table.key ? "the table's key" : 'a synced field'}; addedAt names a column of its own`);
  }
  if (table.status !== undefined && table.status.column === table.key) {
    report([...path, 'status', 'column'], `${table.key} is the table's key and cannot be the status column`);
  }
  const fieldNumbers = new Set(table.fields.map((field) => field.number));
  table.match.forEach((matchNumber, m) => {
    if (!fieldNumbers.has(matchNumber)) {
      report([...path, 'match', m], `${matchNumber} is not the number of a field of this table (its fields are ${[...fieldNumbers].join(', ')})`);
    }
  });
}

/** Capture writes one journal row per record, so a table has one key whichever syncs it takes part in. */
function checkOneKeyPerTable(syncs: RawSync[], report: Report): void {
  const keys = new Map<string, { key: string; where: string }>();
  syncs.forEach((sync, s) =>
    sync.tables.forEach((table, t) => {
      const known = keys.get(table.table);
      if (known === undefined) keys.set(table.table, { key: table.key, where: formatPath(['syncs', s, 'tables', t]) });
      else if (known.key !== table.key) {
        report(['syncs', s, 'tables', t, 'key'], `${table.table} has key ${known.key} in ${known.where}; a table has one key in every sync`);
      }
    }),
  );
}
