import type { InstanceConfig } from '../config/types.js';
import type { Database } from '../db/database.js';
import { UsageError } from '../errors.js';
import type { DatabaseSchema } from '../db/schema-types.js';
import type { Logger } from '../log.js';
import { SyncMapping } from '../mapping/sync-mapping.js';
import { UserDirectory } from '../mapping/users.js';
import { ReadAheadGate } from './read-ahead.js';

/** What every part of the engine needs to know about one instance. */
export interface EngineContext {
  readonly config: InstanceConfig;
  readonly database: Database;
  readonly schema: DatabaseSchema;
  readonly logger: Logger;
  readonly mappings: readonly SyncMapping[];
  readonly users: UserDirectory | undefined;
  /** Whether to read a batch's records ahead of its transaction now (read-ahead.ts): one judge for all the instance's syncs. */
  readonly readAhead: ReadAheadGate;
}

export function createEngineContext(config: InstanceConfig, database: Database, schema: DatabaseSchema, logger: Logger): EngineContext {
  return {
    config,
    database,
    schema,
    logger,
    mappings: config.syncs.map((sync) => new SyncMapping(sync)),
    users: config.users === undefined ? undefined : new UserDirectory(config.users),
    readAhead: new ReadAheadGate(database.adapter, config.database.readAhead),
  };
}

export function mappingFor(context: EngineContext, sync: string): SyncMapping {
  const mapping = context.mappings.find((m) => m.name === sync);
  if (mapping === undefined) {
    throw new UsageError(`${context.config.file} has no sync named "${sync}" (its syncs: ${context.mappings.map((m) => m.name).join(', ')})`);
  }
  return mapping;
}
