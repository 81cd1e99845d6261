import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load-config.js';
import type { InstanceConfig, SyncConfig, TableConfig } from '../../src/config/types.js';
import { ConfigError } from '../../src/errors.js';

/**
 * The example configurations are documentation that users copy, so they must
 * load, and each `<name>-active.yaml` must agree with its `<name>-passive.yaml`
 * the way two real instances would have to.
 */

const examplesDir = fileURLToPath(new URL('../../config/examples/', import.meta.url));
const yamlFiles = readdirSync(examplesDir)
  .filter((name) => name.endsWith('.yaml'))
  .sort();

/** The environment variables each paired example reads; config/examples/README.md lists the same. */
const variablesNeeded: Record<string, readonly string[]> = {
  'http-active.yaml': ['HQ_SYNC_PASSWORD'],
  'http-passive.yaml': ['HQ_DB_PASSWORD', 'HQ_SYNC_PASSWORD'],
  'folder-active.yaml': [],
  'folder-passive.yaml': ['HQ_DB_PASSWORD'],
  'ftp-active.yaml': ['BRANCH_DB_PASSWORD', 'FTP_PASSWORD'],
  'ftp-passive.yaml': ['FTP_PASSWORD', 'HQ_DB_PASSWORD'],
};

// Made-up values, safe inside a URL.
const env: NodeJS.ProcessEnv = {
  HQ_SYNC_PASSWORD: 'hq-sync-secret',
  HQ_DB_PASSWORD: 'hq-db-secret',
  BRANCH_DB_PASSWORD: 'branch-db-secret',
  FTP_PASSWORD: 'ftp-secret',
};

function load(name: string, withEnv: NodeJS.ProcessEnv = env): InstanceConfig {
  return loadConfigFile(join(examplesDir, name), withEnv);
}

/** Why a load failed, as the user would read it; '' when it did not. */
function problemsOf(name: string, withEnv: NodeJS.ProcessEnv): string {
  try {
    load(name, withEnv);
    return '';
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
}

const pairNames = [
  ...new Set(yamlFiles.map((name) => /^(.+)-(active|passive)\.yaml$/.exec(name)?.[1]).filter((name) => name !== undefined)),
];

describe('config/examples', () => {
  it('holds the http, folder and ftp pairs', () => {
    expect(pairNames).toEqual(expect.arrayContaining(['http', 'folder', 'ftp']));
  });

  it.each(yamlFiles)('%s loads', (name) => {
    expect(problemsOf(name, env)).toBe('');
  });

  it.each(Object.entries(variablesNeeded))('%s reads exactly its listed environment variables', (name, variables) => {
    const missing = [...problemsOf(name, {}).matchAll(/environment variable (\w+) is not set/g)].map((m) => m[1]);
    expect([...new Set(missing)].sort()).toEqual([...variables].sort());
    // With only those variables set, nothing is missing.
    const just = Object.fromEntries(variables.map((variable) => [variable, env[variable]]));
    expect(problemsOf(name, just)).toBe('');
  });

  it('lists the variables of every paired example', () => {
    const paired = yamlFiles.filter((name) => /-(active|passive)\.yaml$/.test(name));
    expect(Object.keys(variablesNeeded).sort()).toEqual(paired);
  });
});

const pairs = pairNames.map((pair): [string, string] => [`${pair}-active.yaml`, `${pair}-passive.yaml`]);

describe.each(pairs)('config/examples/%s and %s', (activeFile, passiveFile) => {

  it('both exist', () => {
    expect(yamlFiles).toContain(activeFile);
    expect(yamlFiles).toContain(passiveFile);
  });

  // Loaded lazily so that a missing or broken file fails the tests above with its own message.
  const sides = (): { active: InstanceConfig; passive: InstanceConfig } => ({ active: load(activeFile), passive: load(passiveFile) });

  /** The syncs of both files, matched by name, each with the side it is on. */
  const syncPairs = (): { name: string; active: SyncConfig; passive: SyncConfig }[] => {
    const { active, passive } = sides();
    return active.syncs.map((sync) => {
      const peer = passive.syncs.find((candidate) => candidate.name === sync.name);
      if (peer === undefined) throw new Error(`${passiveFile} has no sync named ${sync.name}`);
      return { name: sync.name, active: sync, passive: peer };
    });
  };

  it('are two different instances with the same sync names', () => {
    const { active, passive } = sides();
    expect(active.instance).not.toBe(passive.instance);
    expect(active.syncs.map((s) => s.name).sort()).toEqual(passive.syncs.map((s) => s.name).sort());
  });

  it('take opposite roles and the same rules', () => {
    for (const { active, passive } of syncPairs()) {
      expect(active.mode).toBe('active');
      expect(passive.mode).toBe('passive');
      expect(passive.conflicts).toBe(active.conflicts);
      expect(passive.users).toBe(active.users);
      expect(passive.transport.type).toBe(active.transport.type);
    }
  });

  it('number the same tables and the same fields', () => {
    for (const { active, passive } of syncPairs()) {
      expect(numbers(passive.tables)).toEqual(numbers(active.tables));
      for (const table of active.tables) {
        const peer = tableNumbered(passive, table.number);
        expect(fieldNumbers(peer), `fields of table ${table.number}`).toEqual(fieldNumbers(table));
        expect([...peer.match].sort(), `match of table ${table.number}`).toEqual([...table.match].sort());
        expect(peer.status === undefined, `table ${table.number} has status: on both sides or on neither`).toBe(table.status === undefined);
      }
    }
  });

  it('never send a field from both sides nor take it on both sides, and agree on user fields', () => {
    for (const { active, passive } of syncPairs()) {
      for (const table of active.tables) {
        const peerTable = tableNumbered(passive, table.number);
        for (const field of table.fields) {
          const peer = peerTable.fields.find((candidate) => candidate.number === field.number);
          const where = `field ${field.number} (${field.column} / ${peer?.column ?? 'missing'})`;
          expect(peer, where).toBeDefined();
          if (peer === undefined) continue;
          if (field.direction === 'upload' || field.direction === 'download') {
            expect(peer.direction, where).not.toBe(field.direction);
          }
          expect(peer.type, where).toBe(field.type);
        }
      }
    }
  });

  it('meet at the same place', () => {
    const { passive: passiveInstance } = sides();
    for (const { active, passive } of syncPairs()) {
      const a = active.transport;
      const p = passive.transport;
      if (a.type === 'http' && p.type === 'http') {
        expect(a.url).toBeDefined();
        expect(p.password).toBe(a.password);
        expect(passiveInstance.listen?.port).toBe(Number(new URL(a.url ?? '').port));
      } else if (a.type === 'folder' && p.type === 'folder') {
        expect(p.upload).toBe(a.download);
        expect(p.download).toBe(a.upload);
      } else if (a.type === 'ftp' && p.type === 'ftp') {
        expect({ host: p.host, port: p.port, secure: p.secure }).toEqual({ host: a.host, port: a.port, secure: a.secure });
        expect(p.upload).toBe(a.download);
        expect(p.download).toBe(a.upload);
      }
    }
  });
});

function numbers(tables: readonly TableConfig[]): number[] {
  return tables.map((table) => table.number).sort((a, b) => a - b);
}

function fieldNumbers(table: TableConfig): number[] {
  return table.fields.map((field) => field.number).sort((a, b) => a - b);
}

function tableNumbered(sync: SyncConfig, number: number): TableConfig {
  const table = sync.tables.find((candidate) => candidate.number === number);
  if (table === undefined) throw new Error(`sync ${sync.name} has no table numbered ${number}`);
  return table;
}
