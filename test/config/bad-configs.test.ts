import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load-config.js';
import { ConfigError, type ConfigProblem } from '../../src/errors.js';

/**
 * The corpus of bad configuration files: each file holds one kind of mistake
 * (a few hold several, to show that every problem is reported at once), and
 * each case lists, word for word, every problem the loader must report.
 * A problem without a line is one whose path does not exist in the file.
 */
const folder = fileURLToPath(new URL('../fixtures/bad-configs/', import.meta.url));

const env: NodeJS.ProcessEnv = {
  DB_PASSWORD: 'db-Secret-4711',
  HQ_SYNC_PASSWORD: 'hq-Secret-4712',
  WEST_SYNC_PASSWORD: 'west-Secret-4713',
  FTP_PASSWORD: 'ftp-Secret-4714',
};
/** Passwords from the environment, plus the one written into database-url-not-a-mapping.yaml. */
const secrets = [...Object.values(env), 'hunter2'];

interface Case {
  file: string;
  /** The environment to load with, when it is not `env`. */
  env?: NodeJS.ProcessEnv;
  problems: ConfigProblem[];
}

const withoutDbPassword: NodeJS.ProcessEnv = { HQ_SYNC_PASSWORD: env.HQ_SYNC_PASSWORD };

const cases: Case[] = [
  {
    file: 'invalid-yaml.yaml',
    problems: [
      {
        path: '',
        message: 'is not valid YAML: Flow map in block collection must be sufficiently indented and end with a }',
        line: 7,
      },
    ],
  },
  {
    file: 'empty.yaml',
    problems: [{ path: '', message: 'the file is empty; see config/examples/ for a starting point' }],
  },
  {
    file: 'duplicate-key.yaml',
    problems: [{ path: '', message: 'is not valid YAML: every is given twice in the same mapping; keep one', line: 15 }],
  },
  {
    file: 'two-documents.yaml',
    problems: [
      {
        path: '',
        message:
          'is not valid YAML: a second document starts here (after --- or ...); one file configures one instance',
        line: 19,
      },
    ],
  },
  {
    file: 'env-reference-in-flow-mapping.yaml',
    problems: [{ path: '', message: 'is not valid YAML: Unexpected flow-map-start at node end', line: 10 }],
  },
  {
    file: 'unknown-setting-typo.yaml',
    problems: [{ path: 'lisen', message: 'is not a known setting (did you mean listen?)', line: 6 }],
  },
  {
    file: 'misspelt-fields.yaml',
    problems: [
      { path: 'syncs[0].tables[0].fields', message: 'is required', line: 14 },
      { path: 'syncs[0].tables[0].fileds', message: 'is not a known setting (did you mean fields?)', line: 17 },
    ],
  },
  {
    file: 'missing-instance.yaml',
    problems: [{ path: 'instance', message: 'is required' }],
  },
  {
    file: 'bad-instance-name.yaml',
    problems: [
      {
        path: 'instance',
        message:
          'must be 1 to 63 letters, digits, dots, dashes or underscores, starting with a letter or digit (found "branch east")',
        line: 2,
      },
    ],
  },
  {
    file: 'unknown-dialect.yaml',
    problems: [{ path: 'database.dialect', message: 'must be one of mysql, sqlite, postgres (found "oracle")', line: 4 }],
  },
  {
    file: 'sqlite-without-file.yaml',
    problems: [{ path: 'database.file', message: 'is required for a sqlite database (the path of its file)', line: 3 }],
  },
  {
    file: 'mysql-url-wrong-scheme.yaml',
    problems: [
      { path: 'database.url', message: 'must start with mysql:// for dialect mysql (found postgresql://)', line: 5 },
    ],
  },
  {
    file: 'mysql-url-without-database.yaml',
    problems: [
      { path: 'database.url', message: 'must name the database after the host, such as …@127.0.0.1:3306/crm', line: 5 },
    ],
  },
  {
    file: 'url-and-file.yaml',
    problems: [
      { path: 'database', message: 'give either url or file, not both', line: 3 },
      { path: 'database.file', message: 'is for sqlite; a mysql database takes url', line: 6 },
    ],
  },
  {
    file: 'database-url-not-a-mapping.yaml',
    problems: [
      { path: 'database', message: 'must be a mapping of settings (found "mysql://crm:***@127.0.0.1:3306/crm")', line: 4 },
    ],
  },
  {
    file: 'missing-env-variable.yaml',
    env: withoutDbPassword,
    problems: [{ path: 'database.url', message: 'environment variable DB_PASSWORD is not set', line: 5 }],
  },
  {
    file: 'missing-env-variable-for-port.yaml',
    problems: [{ path: 'syncs[0].transport.port', message: 'environment variable FTP_PORT is not set', line: 12 }],
  },
  {
    file: 'listen-port-out-of-range.yaml',
    problems: [{ path: 'listen', message: 'must have a port from 0 to 65535 (found 84700), such as 0.0.0.0:8470', line: 6 }],
  },
  {
    file: 'duplicate-field-number.yaml',
    problems: [
      {
        path: 'syncs[0].tables[1].fields[2].number',
        message: 'must be unique within the sync (3 is also the number of syncs[0].tables[0].fields[1])',
        line: 27,
      },
    ],
  },
  {
    file: 'duplicate-table-number.yaml',
    problems: [
      {
        path: 'syncs[0].tables[1].number',
        message: 'must be unique within the sync (1 is also the number of syncs[0].tables[0])',
        line: 20,
      },
    ],
  },
  {
    file: 'key-as-field.yaml',
    problems: [
      {
        path: 'syncs[0].tables[0].fields[0].column',
        message: "id is the table's key; keys are never synced, each side keeps its own record ids",
        line: 18,
      },
    ],
  },
  {
    file: 'status-as-field.yaml',
    problems: [
      {
        path: 'syncs[0].tables[0].fields[1].column',
        message: 'record_status is the status column; deletes travel through status:, so it cannot also be a synced field',
        line: 20,
      },
    ],
  },
  {
    file: 'user-field-without-users.yaml',
    problems: [
      {
        path: 'syncs[0].tables[0].fields[1].type',
        message: 'a user field needs the users: section at the top of the file',
        line: 20,
      },
    ],
  },
  {
    file: 'users-fullname-missing.yaml',
    problems: [
      {
        path: 'syncs[0].tables[0].fields[1].type',
        message: 'the sync matches users by fullName, so users.fullName must name that column',
        line: 24,
      },
    ],
  },
  {
    file: 'http-active-without-url.yaml',
    problems: [
      {
        path: 'syncs[0].transport.url',
        message: 'is required on the active side of an http sync (where the passive side listens)',
        line: 9,
      },
    ],
  },
  {
    file: 'http-passive-without-listen.yaml',
    problems: [{ path: 'listen', message: 'is required because syncs[0] ("branch-east") is a passive http sync' }],
  },
  {
    file: 'bad-direction.yaml',
    problems: [
      {
        path: 'syncs[0].tables[0].fields[1].direction',
        message: 'must be one of both, upload, download, off (found "down")',
        line: 19,
      },
    ],
  },
  {
    file: 'bad-every.yaml',
    problems: [
      { path: 'syncs[0].every', message: 'must be a duration such as 250ms, 1s, 5m or 1h (found "5 seconds")', line: 13 },
    ],
  },
  {
    file: 'every-and-schedule.yaml',
    problems: [{ path: 'syncs[0].schedule', message: 'give either every or schedule, not both', line: 14 }],
  },
  {
    file: 'bad-cron.yaml',
    problems: [
      {
        path: 'syncs[0].schedule',
        message: '"61 * * * * *" is not a valid cron expression (five fields, or six with seconds first, such as "*/5 * * * * *")',
        line: 13,
      },
    ],
  },
  {
    file: 'shape-and-rule-problems.yaml',
    problems: [
      {
        path: 'syncs[0].tables[0].fields[0].direction',
        message: 'must be one of both, upload, download, off (found "sideways")',
        line: 15,
      },
      {
        path: 'syncs[0].tables[0].fields[1].number',
        message: 'must be unique within the sync (2 is also the number of syncs[0].tables[0].fields[0])',
        line: 16,
      },
    ],
  },
  {
    file: 'every-too-fast.yaml',
    problems: [{ path: 'syncs[0].every', message: 'must be from 50ms to 24h (found 0s)', line: 10 }],
  },
  {
    file: 'folder-same-place-spelt-differently.yaml',
    problems: [
      {
        path: 'syncs[0].transport.download',
        message: 'must differ from upload: we would read back our own batches',
        line: 9,
      },
    ],
  },
  {
    file: 'added-at-is-a-field.yaml',
    problems: [{ path: 'syncs[0].tables[0].addedAt', message: 'created_at is a synced field; addedAt names a column of its own', line: 14 }],
  },
  {
    file: 'tls-cert-without-key.yaml',
    problems: [
      {
        path: 'tls.key',
        message: "is required with the other one: cert and key go together (give only ca to trust a peer's authority)",
        line: 7,
      },
    ],
  },
  {
    file: 'folder-upload-is-download.yaml',
    problems: [
      {
        path: 'syncs[0].transport.download',
        message: 'must differ from upload: we would read back our own batches',
        line: 12,
      },
    ],
  },
  {
    file: 'ftp-missing-host.yaml',
    problems: [{ path: 'syncs[0].transport.host', message: 'is required', line: 9 }],
  },
  {
    file: 'match-not-a-field.yaml',
    problems: [
      {
        path: 'syncs[0].tables[0].match[1]',
        message: '7 is not the number of a field of this table (its fields are 2, 3)',
        line: 17,
      },
    ],
  },
  {
    file: 'same-table-twice.yaml',
    problems: [
      {
        path: 'syncs[0].tables[1].table',
        message: 'clients is already synced by syncs[0].tables[0] in this sync',
        line: 19,
      },
    ],
  },
  {
    file: 'reserved-table-name.yaml',
    problems: [
      {
        path: 'syncs[0].tables[0].table',
        message: "names starting with tablesync_ are reserved for tablesync's own state",
        line: 14,
      },
    ],
  },
  {
    file: 'number-as-text.yaml',
    problems: [
      { path: 'syncs[0].tables[0].fields[0].number', message: 'must be a whole number (found "two")', line: 18 },
    ],
  },
  {
    file: 'same-table-different-keys.yaml',
    problems: [
      {
        path: 'syncs[1].tables[0].key',
        message: 'clients has key id in syncs[0].tables[0]; a table has one key in every sync',
        line: 28,
      },
    ],
  },
  {
    file: 'duplicate-sync-names.yaml',
    problems: [
      {
        path: 'syncs[1].name',
        message: '"hq" is already the name of syncs[0]; each sync needs its own name',
        line: 19,
      },
    ],
  },
  {
    file: 'several-problems.yaml',
    problems: [
      {
        path: 'log.level',
        message: 'must be one of fatal, error, warn, info, debug, trace, silent (found "verbose")',
        line: 6,
      },
      { path: 'syncs[0].every', message: 'must be a duration such as 250ms, 1s, 5m or 1h (found "1 minute")', line: 14 },
      {
        path: 'syncs[0].tables[0].fields[1].direction',
        message: 'must be one of both, upload, download, off (found "sideways")',
        line: 21,
      },
    ],
  },
  {
    file: 'several-rule-problems.yaml',
    problems: [
      {
        path: 'syncs[0].tables[0].fields[0].column',
        message: "id is the table's key; keys are never synced, each side keeps its own record ids",
        line: 18,
      },
      {
        path: 'syncs[1].transport.download',
        message: 'must differ from upload: we would read back our own batches',
        line: 25,
      },
    ],
  },
];

function configError(file: string, environment: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfigFile(file, environment);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`${file} was accepted, but it should have been refused`);
}

describe('bad configuration files', () => {
  it.each(cases)('$file', ({ file, env: caseEnv, problems }) => {
    const path = join(folder, file);
    const error = configError(path, caseEnv ?? env);

    expect(error.problems).toEqual(problems);
    expect(error.exitCode).toBe(2);
    expect(error.code).toBe('TS_ERR_CONFIG');
    expect(error.file).toBe(path);
    expect(error.message).toContain(file);
    for (const problem of problems) {
      expect(error.message).toContain(problem.path === '' ? problem.message : `${problem.path}: ${problem.message}`);
    }
    for (const secret of secrets) expect(error.message).not.toContain(secret);
  });

  it('has a case for every file in the corpus, and a file for every case', () => {
    const files = readdirSync(folder).filter((name) => name.endsWith('.yaml'));
    expect(cases.map((c) => c.file).sort()).toEqual(files.sort());
    expect(new Set(cases.map((c) => c.file)).size).toBe(cases.length);
  });

  it('reports the line of each problem in the message', () => {
    const error = configError(join(folder, 'several-problems.yaml'), env);
    expect(error.message.split('\n')).toEqual([
      `${join(folder, 'several-problems.yaml')} has 3 problems:`,
      '  - log.level: must be one of fatal, error, warn, info, debug, trace, silent (found "verbose") (line 6)',
      '  - syncs[0].every: must be a duration such as 250ms, 1s, 5m or 1h (found "1 minute") (line 14)',
      '  - syncs[0].tables[0].fields[1].direction: must be one of both, upload, download, off (found "sideways") (line 21)',
    ]);
  });
});
