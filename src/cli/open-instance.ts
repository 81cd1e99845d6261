import type { InstanceConfig } from '../config/types.js';
import { createEngineContext, type EngineContext } from '../engine/context.js';
import { Instance } from '../engine/instance.js';
import { installedVersion, stateSchemaVersion } from '../db/state-tables.js';
import { UsageError } from '../errors.js';
import { createLogger } from '../log.js';
import { loadConfigs } from './config-option.js';

/**
 * What every command that works on one instance's state does first: one
 * `-c FILE`, the instance opened and checked, tablesync's state tables
 * present, and the database closed again whatever happens.
 */

/** Loads the one file a single-instance command takes; more or fewer is a usage error. */
export function singleConfig(files: readonly string[], command: string): InstanceConfig {
  if (files.length !== 1) {
    throw new UsageError(`tablesync ${command} works on one instance at a time and takes exactly one -c FILE (it was given ${files.length}); run it once per instance`);
  }
  const [config] = loadConfigs(files);
  if (config === undefined) throw new UsageError(`tablesync ${command} needs -c FILE`);
  return config;
}

/** Whether the database holds tablesync's state tables at the version this build writes. */
export async function stateIsCurrent(instance: Instance): Promise<boolean> {
  // A database tablesync never touched has no tablesync_meta: that is version 0, not an error.
  const version = await installedVersion(instance.database.kysely).catch(() => 0);
  return version === stateSchemaVersion;
}

/**
 * Opens the instance, builds the engine context (its logger writes warnings
 * and worse to stderr, so stdout stays the command's answer), runs `work`,
 * and closes the database.
 */
export async function withInstanceContext<T>(config: InstanceConfig, work: (context: EngineContext, instance: Instance) => Promise<T>): Promise<T> {
  const instance = await Instance.open(config);
  try {
    if (!(await stateIsCurrent(instance))) {
      throw new UsageError(
        `${instance.database.target} has no tablesync state of the current version yet; run tablesync setup -c ${config.file} (tablesync run does it too) first`,
      );
    }
    const logger = createLogger('warn', process.stderr).child({ instance: config.instance });
    return await work(createEngineContext(config, instance.database, instance.schema, logger), instance);
  } finally {
    await instance.close();
  }
}
