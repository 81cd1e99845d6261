import { tmpdir } from 'node:os';
import { parseConfig } from '../../src/config/load-config.js';
import type { InstanceConfig } from '../../src/config/types.js';
import type { TestDatabase } from './databases.js';

/** The `database:` section that points at a test database. */
export function databaseYaml(db: TestDatabase): string {
  return db.config.dialect === 'sqlite'
    ? `database:\n  dialect: sqlite\n  file: ${JSON.stringify(db.config.file)}\n`
    : `database:\n  dialect: ${db.config.dialect}\n  url: ${JSON.stringify(db.config.url)}\n`;
}

/**
 * A one-sync instance configuration over a test database; `tables` is the
 * YAML list under `tables:`, indented by six spaces.
 */
export function instanceYaml(db: TestDatabase, tables: string, instance = 'test-east'): string {
  return [
    `instance: ${instance}`,
    databaseYaml(db).trimEnd(),
    'syncs:',
    '  - name: hq',
    '    mode: active',
    '    transport: { type: folder, upload: ./out, download: ./in }',
    '    tables:',
    tables.replace(/\n$/, ''),
    '',
  ].join('\n');
}

export function instanceConfig(db: TestDatabase, tables: string, instance?: string): InstanceConfig {
  return parseConfig(instanceYaml(db, tables, instance), 'test.yaml', {}, tmpdir());
}
