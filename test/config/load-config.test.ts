import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseDuration } from '../../src/config/duration.js';
import { loadConfigFile, parseConfig } from '../../src/config/load-config.js';
import type { InstanceConfig } from '../../src/config/types.js';
import { ConfigError } from '../../src/errors.js';

/** Where the texts below pretend to live; parseConfig touches no file. */
const baseDir = '/srv/tablesync';

function parse(text: string, env: NodeJS.ProcessEnv = {}): InstanceConfig {
  return parseConfig(text, 'east.yaml', env, baseDir);
}

function refusal(text: string, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parse(text, env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('the configuration was accepted, but it should have been refused');
}

/** The smallest useful file: everything that has a default is left out. */
const minimal = `
instance: laptop-anna
database:
  dialect: sqlite
  file: /var/lib/tablesync/anna.sqlite
syncs:
  - name: hq
    mode: active
    transport:
      type: http
      url: https://hq.example.com:8470
      password: sync-pass
    tables:
      - table: clients
        number: 1
        key: id
        fields:
          - { column: name, number: 2 }
`;

/** A file with one sync whose transport is given as `transport`, indented for its place. */
function withTransport(transport: string, top = ''): string {
  return `
instance: laptop-anna
database:
  dialect: sqlite
  file: ./data/anna.sqlite
${top}syncs:
  - name: hq
    mode: active
    transport:
${transport}
    tables:
      - table: clients
        number: 1
        key: id
        fields:
          - { column: name, number: 2 }
`;
}

describe('defaults', () => {
  it('fills in every default and nothing else', () => {
    expect(parse(minimal)).toEqual({
      file: '/srv/tablesync/east.yaml',
      instance: 'laptop-anna',
      database: { dialect: 'sqlite', file: '/var/lib/tablesync/anna.sqlite', readAhead: 'auto' },
      log: { level: 'info' },
      health: { peerTimeoutMs: 300_000 },
      backups: { dir: '/srv/tablesync/backups' },
      syncs: [
        {
          name: 'hq',
          mode: 'active',
          transport: { type: 'http', url: 'https://hq.example.com:8470', password: 'sync-pass' },
          everyMs: 1000,
          conflicts: 'newest-wins',
          users: 'login',
          tables: [
            {
              table: 'clients',
              number: 1,
              key: 'id',
              match: [],
              fields: [{ column: 'name', number: 2, direction: 'both', type: 'value' }],
            },
          ],
        },
      ],
    });
  });

  it('leaves out listen, tls and users when the file has none', () => {
    const config = parse(minimal);
    expect(config).not.toHaveProperty('listen');
    expect(config).not.toHaveProperty('tls');
    expect(config).not.toHaveProperty('users');
    expect(config.syncs[0]).not.toHaveProperty('schedule');
  });

  it('gives an ftp transport port 21 and plain FTP', () => {
    const config = parse(
      withTransport(`      type: ftp
      host: ftp.example.com
      user: sync
      password: ftp-pass
      upload: /cb/upload
      download: /cb/download`),
    );
    expect(config.syncs[0]?.transport).toEqual({
      type: 'ftp',
      host: 'ftp.example.com',
      port: 21,
      user: 'sync',
      password: 'ftp-pass',
      secure: false,
      upload: '/cb/upload',
      download: '/cb/download',
    });
  });

  it('keeps what the file says over the defaults', () => {
    const config = parse(`
instance: branch-east
database:
  dialect: mysql
  url: mysql://crm:db-pass@127.0.0.1:3306/crm
  readAhead: never
log: { level: debug }
users: { table: users, key: id, login: login, fullName: full_name }
syncs:
  - name: hq
    mode: active
    transport: { type: http, url: "https://hq.example.com:8470", password: sync-pass }
    schedule: "*/5 * * * * *"
    conflicts: manual
    users: fullName
    tables:
      - table: clients
        number: 1
        key: id
        status: { column: record_status, deleted: 2 }
        addedAt: created_at
        match: [3]
        fields:
          - { column: name,       number: 2, direction: upload }
          - { column: email,      number: 3, direction: download }
          - { column: manager_id, number: 5, direction: off, type: user }
`);
    expect(config.log).toEqual({ level: 'debug' });
    expect(config.database).toEqual({ dialect: 'mysql', url: 'mysql://crm:db-pass@127.0.0.1:3306/crm', readAhead: 'never' });
    expect(config.users).toEqual({ table: 'users', key: 'id', login: 'login', fullName: 'full_name' });
    const sync = config.syncs[0];
    expect(sync).toMatchObject({ schedule: '*/5 * * * * *', conflicts: 'manual', users: 'fullName' });
    expect(sync).not.toHaveProperty('everyMs');
    expect(sync?.tables[0]).toEqual({
      table: 'clients',
      number: 1,
      key: 'id',
      status: { column: 'record_status', deleted: 2 },
      addedAt: 'created_at',
      match: [3],
      fields: [
        { column: 'name', number: 2, direction: 'upload', type: 'value' },
        { column: 'email', number: 3, direction: 'download', type: 'value' },
        { column: 'manager_id', number: 5, direction: 'off', type: 'user' },
      ],
    });
  });
});

describe('every', () => {
  it.each([
    ['250ms', 250],
    ['1s', 1000],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
  ])('every: %s is %d ms', (every, ms) => {
    const config = parse(minimal.replace('    tables:', `    every: ${every}\n    tables:`));
    expect(config.syncs[0]?.everyMs).toBe(ms);
    expect(parseDuration(every)).toBe(ms);
  });
});

describe('${VAR} substitution', () => {
  const ftp = `      type: ftp
      host: \${FTP_HOST}
      port: \${FTP_PORT}
      user: sync
      password: \${FTP_PASSWORD}
      secure: \${FTP_SECURE}
      upload: /cb/\${BRANCH}/upload
      download: /cb/$\${BRANCH}/download`;

  it('replaces references anywhere in a string, and a whole-string number or boolean takes its type', () => {
    const config = parse(withTransport(ftp), {
      FTP_HOST: 'ftp.example.com',
      FTP_PORT: '21',
      FTP_PASSWORD: 'ftp-pass',
      FTP_SECURE: 'true',
      BRANCH: 'east',
    });
    expect(config.syncs[0]?.transport).toEqual({
      type: 'ftp',
      host: 'ftp.example.com',
      port: 21,
      user: 'sync',
      password: 'ftp-pass',
      secure: true,
      upload: '/cb/east/upload',
      download: '/cb/${BRANCH}/download',
    });
  });

  it('keeps a password of digits as text', () => {
    const config = parse(withTransport(ftp), {
      FTP_HOST: 'ftp.example.com',
      FTP_PORT: '2121',
      FTP_PASSWORD: '123456',
      FTP_SECURE: 'false',
      BRANCH: 'east',
    });
    expect(config.syncs[0]?.transport).toMatchObject({ port: 2121, password: '123456', secure: false });
  });

  it('substitutes inside a URL and never substitutes twice', () => {
    const config = parse(
      `
instance: branch-east
database:
  dialect: mysql
  url: mysql://crm:\${DB_PASSWORD}@127.0.0.1:3306/crm
syncs:
  - name: hq
    mode: active
    transport: { type: http, url: "https://hq.example.com:8470", password: "\${HQ_SYNC_PASSWORD}" }
    tables:
      - { table: clients, number: 1, key: id, fields: [ { column: name, number: 2 } ] }
`,
      { DB_PASSWORD: 'p${HQ_SYNC_PASSWORD}', HQ_SYNC_PASSWORD: 'hq-pass' },
    );
    expect(config.database.url).toBe('mysql://crm:p${HQ_SYNC_PASSWORD}@127.0.0.1:3306/crm');
    expect(config.syncs[0]?.transport).toEqual({ type: 'http', url: 'https://hq.example.com:8470', password: 'hq-pass' });
  });

  it('takes a number for listen and for field numbers from the environment', () => {
    const config = parse(
      `
instance: hq
database: { dialect: sqlite, file: hq.sqlite }
listen: \${LISTEN_PORT}
syncs:
  - name: branch-east
    mode: passive
    transport: { type: http, password: sync-pass }
    tables:
      - table: clients
        number: \${CLIENTS_TABLE}
        key: id
        match: ["\${NAME_FIELD}"]
        fields:
          - { column: name, number: "\${NAME_FIELD}" }
`,
      { LISTEN_PORT: '8470', CLIENTS_TABLE: '1', NAME_FIELD: '2' },
    );
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 8470 });
    expect(config.syncs[0]?.tables[0]).toMatchObject({ number: 1, match: [2], fields: [{ column: 'name', number: 2 }] });
  });

  it('reports every missing variable at its path, and nothing the unfilled text would cause', () => {
    const error = refusal(
      withTransport(`      type: ftp
      host: ftp.example.com
      port: \${FTP_PORT}
      user: sync
      password: \${FTP_PASSWORD}
      upload: /cb/upload
      download: /cb/download`, 'listen: ${LISTEN}\n'),
    );
    expect(error.problems).toEqual([
      { path: 'listen', message: 'environment variable LISTEN is not set', line: 6 },
      { path: 'syncs[0].transport.port', message: 'environment variable FTP_PORT is not set', line: 13 },
      { path: 'syncs[0].transport.password', message: 'environment variable FTP_PASSWORD is not set', line: 15 },
    ]);
  });
});

describe('paths', () => {
  let folder: string | undefined;
  afterEach(() => {
    if (folder !== undefined) rmSync(folder, { recursive: true, force: true });
    folder = undefined;
  });

  function write(text: string): string {
    folder = mkdtempSync(join(tmpdir(), 'tablesync-config-'));
    mkdirSync(join(folder, 'conf'));
    const file = join(folder, 'conf', 'anna.yaml');
    writeFileSync(file, text);
    return file;
  }

  it('resolves sqlite, folder and tls paths against the file\'s folder and leaves ftp paths alone', () => {
    const file = write(`
instance: laptop-anna
database: { dialect: sqlite, file: ./data/anna.sqlite }
listen: 127.0.0.1:8470
tls: { cert: tls/cert.pem, key: /etc/tablesync/key.pem, ca: ../ca.pem }
syncs:
  - name: hq
    mode: active
    transport: { type: folder, upload: spool/out, download: /var/spool/tablesync/in }
    tables:
      - { table: clients, number: 1, key: id, fields: [ { column: name, number: 2 } ] }
  - name: archive
    mode: active
    transport: { type: ftp, host: ftp.example.com, user: sync, password: ftp-pass, upload: cb/upload, download: ./cb/download }
    tables:
      - { table: clients, number: 1, key: id, fields: [ { column: name, number: 2 } ] }
`);
    const dir = join(folder ?? '', 'conf');
    const config = loadConfigFile(file, {});
    expect(config.file).toBe(file);
    expect(config.database.file).toBe(join(dir, 'data', 'anna.sqlite'));
    expect(config.tls).toEqual({ cert: join(dir, 'tls', 'cert.pem'), key: '/etc/tablesync/key.pem', ca: join(folder ?? '', 'ca.pem') });
    expect(config.syncs[0]?.transport).toEqual({ type: 'folder', upload: join(dir, 'spool', 'out'), download: '/var/spool/tablesync/in' });
    expect(config.syncs[1]?.transport).toMatchObject({ upload: 'cb/upload', download: './cb/download' });
  });

  it('records the absolute path of a file named relative to the working directory', () => {
    const file = write(minimal);
    const config = loadConfigFile(relative(process.cwd(), file), {});
    expect(config.file).toBe(file);
  });

  it('refuses a file that does not exist, naming it', () => {
    const missing = join(tmpdir(), 'tablesync-no-such-folder', 'east.yaml');
    let error: unknown;
    try {
      loadConfigFile(missing, {});
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([{ path: '', message: 'the file does not exist' }]);
    expect((error as ConfigError).exitCode).toBe(2);
    expect((error as ConfigError).message).toBe(`${missing} has 1 problem:\n  - the file does not exist`);
  });
});

describe('secrets: ${file:PATH}, and passwords others can read', () => {
  let folder = '';
  afterEach(() => rmSync(folder, { recursive: true, force: true }));

  /** A configuration file `text` (given the folder) in a fresh folder, with `files` beside it, each with its mode. */
  function write(text: string | ((dir: string) => string), mode: number, files: Record<string, [string, number]> = {}): string {
    folder = mkdtempSync(join(tmpdir(), 'tablesync-secrets-'));
    for (const [name, [content, fileMode]] of Object.entries(files)) {
      writeFileSync(join(folder, name), content);
      chmodSync(join(folder, name), fileMode);
    }
    const file = join(folder, 'east.yaml');
    writeFileSync(file, typeof text === 'string' ? text : text(folder));
    chmodSync(file, mode);
    return file;
  }

  const http = (password: string, url = 'https://hq.example.com:8470'): string => withTransport(`      type: http
      url: ${url}
      password: ${password}`);

  it('reads a password from a file named relative to the configuration, without its trailing newline, and never substitutes what it read', () => {
    const file = write(http('"${file:hq.pass}"'), 0o644, { 'hq.pass': ['s3cret-${HOME}\n', 0o600] });
    const config = loadConfigFile(file, {});
    expect(config.syncs[0]?.transport).toMatchObject({ password: 's3cret-${HOME}' });
    expect(config.warnings).toBeUndefined();
  });

  it('takes an absolute path too, anywhere in a string such as the database url', () => {
    const file = write(
      (dir) => `
instance: branch-east
database: { dialect: mysql, url: "mysql://crm:\${file:${join(dir, 'db.pass')}}@127.0.0.1:3306/crm" }
syncs:
  - { name: hq, mode: active, transport: { type: folder, upload: out, download: in }, tables: [ { table: clients, number: 1, key: id, fields: [ { column: name, number: 2 } ] } ] }
`,
      0o600,
      { 'db.pass': ['db-pass\r\n', 0o400] },
    );
    expect(loadConfigFile(file, {}).database.url).toBe('mysql://crm:db-pass@127.0.0.1:3306/crm');
  });

  it('warns when the password file can be read by its group or by others', () => {
    const file = write(http('"${file:hq.pass}"'), 0o600, { 'hq.pass': ['s3cret', 0o644] });
    const config = loadConfigFile(file, {});
    const pass = join(folder, 'hq.pass');
    expect(config.warnings).toEqual([
      {
        path: 'syncs[0].transport.password',
        message: `${pass}, named by \${file:hq.pass}, can be read by its group and all other users (mode 0644); make it readable by the daemon's user only: chmod 600 ${pass}`,
        line: 12,
      },
    ]);
    expect(JSON.stringify(config.warnings)).not.toContain('s3cret');
  });

  it('refuses a password file that cannot be read, saying which and why, at the setting\'s line', () => {
    const file = write(http('"${file:missing.pass}"'), 0o600);
    let error: unknown;
    try {
      loadConfigFile(file, {});
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      { path: 'syncs[0].transport.password', message: `cannot read ${join(folder, 'missing.pass')}, named by \${file:missing.pass}: it does not exist`, line: 12 },
    ]);
  });

  it('warns about a password written in a configuration file that others can read, and only then', () => {
    const literal = http('sync-pass', 'https://sync:url-pass@hq.example.com:8470');
    const open = loadConfigFile(write(literal, 0o640), {});
    expect(open.warnings?.map((w) => [w.path, w.line])).toEqual([['syncs[0].transport.password', 12]]);
    expect(open.warnings?.[0]?.message).toBe(
      `is a password written in ${join(folder, 'east.yaml')}, which its group can read (mode 0640): chmod 600 ${join(folder, 'east.yaml')}, or take the password from \${NAME} or \${file:/path/to/secret}`,
    );
    expect(JSON.stringify(open.warnings)).not.toContain('sync-pass');
    const dbUrl = `
instance: branch-east
database: { dialect: mysql, url: "mysql://crm:db-pass@127.0.0.1:3306/crm" }
syncs:
  - { name: hq, mode: active, transport: { type: http, url: "https://hq.example.com:8470", password: "\${HQ}" }, tables: [ { table: clients, number: 1, key: id, fields: [ { column: name, number: 2 } ] } ] }
`;
    expect(loadConfigFile(write(dbUrl, 0o604), { HQ: 'hq-pass' }).warnings?.map((w) => w.path)).toEqual(['database.url']);
    expect(loadConfigFile(write(literal, 0o600), {}).warnings, 'a file only its owner reads').toBeUndefined();
    expect(loadConfigFile(write(http('"${HQ}"'), 0o644), { HQ: 'hq-pass' }).warnings, 'a password from the environment').toBeUndefined();
  });
});

describe('listen', () => {
  it.each([
    [':8470', { host: '0.0.0.0', port: 8470 }],
    ['127.0.0.1:8470', { host: '127.0.0.1', port: 8470 }],
    ['0.0.0.0:9000', { host: '0.0.0.0', port: 9000 }],
    ['8470', { host: '0.0.0.0', port: 8470 }],
    ['"[::1]:8470"', { host: '::1', port: 8470 }],
    ['localhost:8470', { host: 'localhost', port: 8470 }],
  ])('listen: %s', (listen, expected) => {
    expect(parse(`listen: ${listen}\n${minimal}`).listen).toEqual(expected);
  });

  it('refuses a port above 65535', () => {
    expect(refusal(`listen: 70000\n${minimal}`).problems).toEqual([
      { path: 'listen', message: 'must have a port from 0 to 65535 (found 70000), such as 0.0.0.0:8470', line: 1 },
    ]);
  });

  it('refuses a host without a port', () => {
    expect(refusal(`listen: localhost\n${minimal}`).problems).toEqual([
      { path: 'listen', message: 'must be host:port, such as 0.0.0.0:8470 or :8470 (found "localhost")', line: 1 },
    ]);
  });
});

describe('database', () => {
  const withDatabase = (database: string): string => minimal.replace('database:\n  dialect: sqlite\n  file: /var/lib/tablesync/anna.sqlite\n', `database: ${database}\n`);

  it.each(['postgres://crm:db-pass@127.0.0.1:5432/crm', 'postgresql://crm@db.example.com/crm?schema=sales&sslmode=require'])('takes a postgres url: %s', (url) => {
    expect(parse(withDatabase(`{ dialect: postgres, url: "${url}" }`)).database).toEqual({ dialect: 'postgres', url, readAhead: 'auto' });
  });

  it.each([
    ['{ dialect: postgres, file: ./crm.sqlite }', 'database.url', 'is required for a postgres database, such as postgres://user:${DB_PASSWORD}@127.0.0.1:5432/crm'],
    ['{ dialect: postgres, url: "mysql://crm@127.0.0.1:5432/crm" }', 'database.url', 'must start with postgres:// (or postgresql://) for dialect postgres (found mysql://)'],
    ['{ dialect: postgres, url: "postgres://crm@127.0.0.1:5432" }', 'database.url', 'must name the database after the host, such as …@127.0.0.1:5432/crm'],
    ['{ dialect: postgres, url: "postgres://crm@127.0.0.1:5432/crm", readAhead: sometimes }', 'database.readAhead', 'must be one of auto, always, never (found "sometimes")'],
  ])('refuses %s', (database, path, message) => {
    expect(refusal(withDatabase(database)).problems.map((p) => ({ path: p.path, message: p.message }))).toEqual([{ path, message }]);
  });
});

describe('the result', () => {
  it('is frozen all the way down', () => {
    const config = parse(`
instance: branch-east
database: { dialect: sqlite, file: east.sqlite }
listen: :8470
tls: { cert: cert.pem, key: key.pem }
users: { table: users, key: id, login: login }
syncs:
  - name: hq
    mode: active
    transport: { type: ftp, host: ftp.example.com, user: sync, password: ftp-pass, upload: /up, download: /down }
    tables:
      - table: clients
        number: 1
        key: id
        status: { column: record_status, deleted: 2 }
        match: [2]
        fields:
          - { column: name, number: 2 }
          - { column: manager_id, number: 3, type: user }
`);
    const unfrozen: string[] = [];
    const visit = (value: unknown, path: string): void => {
      if (value === null || typeof value !== 'object') return;
      if (!Object.isFrozen(value)) unfrozen.push(path);
      for (const [key, item] of Object.entries(value)) visit(item, `${path}.${key}`);
    };
    visit(config, 'config');
    expect(unfrozen).toEqual([]);

    const sync = config.syncs[0];
    expect(() => {
      (config as { instance: string }).instance = 'other';
    }).toThrow(TypeError);
    expect(() => {
      (sync?.tables[0]?.fields as unknown[]).push({ column: 'x', number: 9 });
    }).toThrow(TypeError);
    expect(() => {
      (sync?.transport as { password: string }).password = 'changed';
    }).toThrow(TypeError);
  });

  it('does not share objects between two loads of the same text', () => {
    const first = parse(minimal);
    const second = parse(minimal);
    expect(second).toEqual(first);
    expect(second.syncs[0]).not.toBe(first.syncs[0]);
  });
});

describe('passwords never appear in a problem', () => {
  const secret = 'Pa55-w0rd-9182';

  function expectNoSecret(error: ConfigError, ...secrets: string[]): void {
    for (const s of secrets) {
      expect(error.message).not.toContain(s);
      for (const problem of error.problems) expect(problem.message).not.toContain(s);
    }
  }

  it('a password written as a number', () => {
    const error = refusal(withTransport(`      type: http
      url: https://hq.example.com:8470
      password: 918273645`));
    expect(error.problems).toEqual([{ path: 'syncs[0].transport.password', message: 'must be text', line: 12 }]);
    expectNoSecret(error, '918273645');
  });

  it('an http url that is not an address', () => {
    const error = refusal(withTransport(`      type: http
      url: htps://sync:${secret}@hq.example.com:8470
      password: sync-pass`));
    expect(error.problems).toEqual([
      {
        path: 'syncs[0].transport.url',
        message: 'must be an http:// or https:// address, such as https://hq.example.com:8470',
        line: 11,
      },
    ]);
    expectNoSecret(error, secret);
  });

  it('a database url with the wrong scheme, its password from the environment', () => {
    const error = refusal(
      `
instance: branch-east
database: { dialect: mysql, url: "mysq://crm:\${DB_PASSWORD}@127.0.0.1:3306/crm" }
syncs:
  - name: hq
    mode: active
    transport: { type: http, url: "https://hq.example.com:8470", password: sync-pass }
    tables:
      - { table: clients, number: 1, key: id, fields: [ { column: name, number: 2 } ] }
`,
      { DB_PASSWORD: secret },
    );
    expect(error.problems).toEqual([
      { path: 'database.url', message: 'must start with mysql:// for dialect mysql (found mysq://)', line: 3 },
    ]);
    expectNoSecret(error, secret);
  });

  it('a database url that cannot be read as a URL', () => {
    const error = refusal(
      `
instance: branch-east
database: { dialect: mysql, url: "mysql://crm:\${DB_PASSWORD}@127.0.0.1:port/crm" }
syncs:
  - name: hq
    mode: active
    transport: { type: http, url: "https://hq.example.com:8470", password: sync-pass }
    tables:
      - { table: clients, number: 1, key: id, fields: [ { column: name, number: 2 } ] }
`,
      { DB_PASSWORD: secret },
    );
    expect(error.problems).toEqual([
      {
        path: 'database.url',
        message: 'is not a valid URL; expected mysql://user:password@host:port/database',
        line: 3,
      },
    ]);
    expectNoSecret(error, secret);
  });

  it('a long URL written where a mapping belongs', () => {
    const long = `${secret}-${'x'.repeat(60)}`;
    const error = refusal(withTransport(`      mysql://crm:${long}@127.0.0.1:3306/crm`).replace('    transport:\n      mysql', '    transport: mysql'));
    expect(error.problems).toEqual([
      { path: 'syncs[0].transport', message: 'must be a mapping of settings (found "mysql://crm:***@127.0.0.1:3306/crm")', line: 9 },
    ]);
    expectNoSecret(error, secret, 'xxxxx');
  });

  it('a YAML syntax error before a password written in the file', () => {
    const error = refusal(
      withTransport(
        `      { type: ftp, port: \${FTP_PORT}, host: ftp.example.com, user: sync, password: ${secret}, upload: /up, download: /down }`,
      ).replace('    transport:\n      {', '    transport: {'),
    );
    expect(error.problems).toEqual([{ path: '', message: 'is not valid YAML: Unexpected flow-map-start at node end', line: 9 }]);
    expectNoSecret(error, secret);
  });

  it('a variable holding a password that is not set', () => {
    const error = refusal(withTransport(`      type: http
      url: https://hq.example.com:8470
      password: \${HQ_SYNC_PASSWORD}`));
    expect(error.problems).toEqual([
      { path: 'syncs[0].transport.password', message: 'environment variable HQ_SYNC_PASSWORD is not set', line: 12 },
    ]);
  });
});
