import { assertMatchesDatabase, type DatabaseFinding } from '../config/check-database.js';
import type { InstanceConfig } from '../config/types.js';
import { captureSpecs, installCapture, type CaptureReport } from '../db/capture.js';
import { Database } from '../db/database.js';
import type { DatabaseSchema } from '../db/schema-types.js';

/**
 * One configured instance with its database open and its configuration
 * checked against that database. Every command starts from here.
 */
export class Instance {
  private constructor(
    readonly config: InstanceConfig,
    readonly database: Database,
    readonly schema: DatabaseSchema,
    /** What will not stop tablesync but will fail later (see check-database). */
    readonly warnings: readonly DatabaseFinding[],
  ) {}

  /**
   * Connects and checks every table and column the file names. Throws
   * DatabaseConnectError (exit 1) or ConfigError (exit 2); the database is
   * closed again on failure.
   */
  static async open(config: InstanceConfig): Promise<Instance> {
    const database = await Database.open(config.database);
    try {
      const schema = await database.introspect();
      const warnings = assertMatchesDatabase(config, schema, database.target);
      return new Instance(config, database, schema, warnings);
    } catch (err) {
      await database.close();
      throw err;
    }
  }

  get name(): string {
    return this.config.instance;
  }

  /** Installs or upgrades state tables and capture triggers (what `setup` and `run` do first). */
  installCapture(): Promise<CaptureReport> {
    return installCapture(this.database, captureSpecs(this.config));
  }

  close(): Promise<void> {
    return this.database.close();
  }
}
