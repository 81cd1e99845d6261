import { resolve } from 'node:path';
import { unlockBackup } from '../backup/backup-stream.js';
import { restoreBackup } from '../backup/restore.js';
import type { InstanceConfig } from '../config/types.js';
import { Instance } from '../engine/instance.js';
import { UsageError } from '../errors.js';
import { plural } from './format.js';
import { passwordFromEnv } from './password-env.js';
import { ProgressReport } from './progress.js';
import { tableLines } from './backup.js';
import { formatTable } from './table.js';

export interface RestoreCommandOptions {
  readonly input?: string;
  readonly passwordEnv?: string;
}

/**
 * `tablesync restore`: checks the whole file (password, integrity) before
 * it touches the database, then restores it in one transaction. Stop the
 * daemon first: the state tables are replaced under its feet otherwise.
 */
export async function restoreCommand(config: InstanceConfig, out: NodeJS.WriteStream | NodeJS.WritableStream, options: RestoreCommandOptions): Promise<number> {
  if (options.input === undefined) throw new UsageError('tablesync restore needs -i FILE: the backup to restore');
  const password = passwordFromEnv(options.passwordEnv);
  const file = resolve(options.input);
  // The password is checked before the database is even opened.
  const key = await unlockBackup(file, password, options.passwordEnv);
  const instance = await Instance.open(config);
  const progress = 'isTTY' in out && out.isTTY === true ? new ProgressReport(out, 'restored') : undefined;
  try {
    if (progress !== undefined) out.write(`checking ${file} from end to end before changing anything\n`);
    const report = await restoreBackup(
      instance,
      key,
      progress === undefined ? undefined : (p) => progress.update({ part: `restore: ${p.table}`, count: p.rows, total: p.total, done: p.done }),
    );
    progress?.end();
    const { header } = report;
    out.write(
      `restored ${file} (instance ${header.instance}, from ${header.dialect}, made ${header.createdAt}) into ${instance.database.target}: ` +
        `${plural(report.total, 'row')} in ${plural(report.tables.length, 'table')}\n`,
    );
    const restored = new Map(report.tables.map((t) => [t.name, t]));
    const removed = (name: string): string => {
      const count = restored.get(name)?.removed ?? 0;
      return count === 0 ? '' : `(${count} not in the backup removed)`;
    };
    out.write(`${formatTable(tableLines(header.tables, (name) => restored.get(name)?.rows ?? 0, removed))}\n`);
    out.write('capture and state tables are in place; start the daemon (tablesync run) when ready\n');
    return 0;
  } finally {
    progress?.end();
    await instance.close();
  }
}
