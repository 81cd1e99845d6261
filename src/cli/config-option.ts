import type { Command } from 'commander';
import { loadConfigFile } from '../config/load-config.js';
import type { InstanceConfig } from '../config/types.js';
import { UsageError } from '../errors.js';

function databaseIdentity(config: InstanceConfig): string {
  if (config.database.file !== undefined) return `sqlite:${config.database.file}`;
  const url = new URL(config.database.url ?? '');
  return `${url.protocol}//${url.hostname}:${url.port || '3306'}${url.pathname}`;
}

/**
 * `-c FILE`, repeatable: several instances may share one process. Commands
 * that work on one instance (`single`) collect it the same way and refuse
 * more than one when they run (see open-instance.ts), with a clearer
 * sentence than commander's.
 */
export function withConfigOption(command: Command, options: { single?: boolean } = {}): Command {
  return command.requiredOption(
    '-c, --config <file>',
    options.single === true ? 'instance configuration file' : 'instance configuration file (repeat for several instances in one process)',
    (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
  );
}

/** Loads every file given with -c; the first bad file ends the command with its full report. */
export function loadConfigs(files: readonly string[]): InstanceConfig[] {
  const configs = files.map((file) => loadConfigFile(file));
  checkInstancesApart(configs);
  return configs;
}

/** Throws a UsageError when two of the files that share one process name the same instance or the same database. */
export function checkInstancesApart(configs: readonly InstanceConfig[]): void {
  const names = new Map<string, string>();
  const databases = new Map<string, string>();
  for (const config of configs) {
    const other = names.get(config.instance);
    if (other !== undefined) {
      throw new UsageError(`${config.file} and ${other} both declare instance "${config.instance}"; each instance needs its own name`);
    }
    names.set(config.instance, config.file);
    // Each file installs exactly its own capture triggers and drops the rest: two files on one database would undo each other.
    const database = databaseIdentity(config);
    const sharing = databases.get(database);
    if (sharing !== undefined) {
      throw new UsageError(`${config.file} and ${sharing} use the same database; one instance file per database, listing all its syncs`);
    }
    databases.set(database, config.file);
  }
}
