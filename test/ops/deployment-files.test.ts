import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { loadConfigFile, parseConfig } from '../../src/config/load-config.js';
import type { InstanceConfig } from '../../src/config/types.js';
import { Daemon } from '../../src/engine/daemon.js';
import { createLogger } from '../../src/log.js';
import { runCli } from '../support/cli.js';
import { describeWithDialects, dialectCase, type TestDatabase } from '../support/databases.js';
import { freePort } from '../support/servers.js';

/**
 * The files people deploy with: config/systemd/tablesync@.service,
 * docker/Dockerfile and docker/compose.yaml. Docker need not be installed:
 * the files are parsed, and what they run is checked against the real
 * command line (dist/), the real repository and tablesync's own loader.
 */

const root = fileURLToPath(new URL('../../', import.meta.url));
const dockerDir = join(root, 'docker');
const packageJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string>; scripts: Record<string, string> };

/**
 * Whether the built command line knows `argv` (a command and its options, as
 * a unit or an image runs it): `--help` after it must show that command's
 * help, listing every option used.
 */
async function expectRealCommand(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  expect(command, 'a command to run').toBeDefined();
  const help = await runCli([...argv, '--help']);
  expect(help.code, `tablesync ${argv.join(' ')} --help: ${help.stderr}`).toBe(0);
  expect(help.stdout).toMatch(new RegExp(`^Usage: tablesync ${command} `));
  for (const [i, token] of rest.entries()) {
    if (!token.startsWith('-')) continue;
    expect(help.stdout, `tablesync ${command} has the option ${token}`).toMatch(new RegExp(`(^|[ ,])${token.replace(/[-]/g, '\\-')}[ ,]`, 'm'));
    if (token === '-c' || token === '--config') expect(rest[i + 1], 'a file after -c').toMatch(/^\/.+\.yaml$/);
  }
}

// ---------------------------------------------------------------- systemd

/** The settings of a unit file, by section; a key given several times keeps every value. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section !== null) {
      current = new Map();
      sections.set(section[1] ?? '', current);
      continue;
    }
    const setting = /^([A-Za-z0-9]+)=(.*)$/.exec(line);
    if (setting === null || current === undefined) throw new Error(`line ${n + 1} of the unit is neither a section nor Key=value: ${line}`);
    const [, key = '', value = ''] = setting;
    current.set(key, [...(current.get(key) ?? []), value]);
  }
  return sections;
}

describe('config/systemd/tablesync@.service', () => {
  const file = join(root, 'config/systemd/tablesync@.service');
  const unit = parseUnit(readFileSync(file, 'utf8'));
  const service = unit.get('Service') ?? new Map<string, string[]>();
  const one = (key: string): string | undefined => {
    const values = service.get(key);
    expect(values?.length ?? 0, `Service.${key} given once`).toBeLessThanOrEqual(1);
    return values?.[0];
  };

  it('runs `tablesync run -c /etc/tablesync/<instance>.yaml`, a real command, from an absolute path', async () => {
    const [executable = '', ...args] = (one('ExecStart') ?? '').split(/\s+/);
    expect(isAbsolute(executable)).toBe(true);
    expect(basename(executable)).toBe(Object.keys(packageJson.bin)[0]);
    expect(args).toEqual(['run', '-c', '/etc/tablesync/%i.yaml']);
    await expectRealCommand(args.map((arg) => arg.replaceAll('%i', 'east')));
  });

  it('reloads with SIGHUP to the main process', () => {
    const [kill = '', ...args] = (one('ExecReload') ?? '').split(/\s+/);
    expect(isAbsolute(kill)).toBe(true);
    expect(basename(kill)).toBe('kill');
    expect(args).toEqual(['-HUP', '$MAINPID']);
  });

  it('runs as its own user, restarts on failure (not on a bad file), waits for the batch in hand, and is hardened', () => {
    expect(one('User')).toBe('tablesync');
    expect(one('Group')).toBe('tablesync');
    expect(one('Restart')).toBe('on-failure');
    expect(one('RestartPreventExitStatus')).toBe('2');
    expect(one('KillSignal') ?? 'SIGTERM').toBe('SIGTERM');
    expect(Number(one('TimeoutStopSec'))).toBeGreaterThanOrEqual(60);
    for (const [key, value] of Object.entries({ NoNewPrivileges: 'yes', ProtectSystem: 'strict', ProtectHome: 'yes', PrivateTmp: 'yes', PrivateDevices: 'yes' })) {
      expect(one(key), key).toBe(value);
    }
    expect((one('ReadWritePaths') ?? '').split(/\s+/)).toContain('/var/lib/tablesync');
    expect(one('StateDirectory')).toBe('tablesync');
    expect(one('EnvironmentFile')).toBe('-/etc/tablesync/%i.env');
    expect(unit.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
  });

  it('passes systemd-analyze verify, where systemd is installed', async ({ skip }) => {
    const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((path) => existsSync(path));
    if (analyze === undefined) skip('systemd-analyze is not installed');
    const dir = await mkdtemp(join(tmpdir(), 'tablesync-unit-'));
    try {
      const instance = join(dir, 'tablesync@east.service');
      await writeFile(instance, readFileSync(file));
      const result = await promisify(execFile)(analyze!, ['verify', '--man=no', instance]).then(
        ({ stderr }) => stderr,
        (err: { stderr?: string }) => err.stderr ?? '',
      );
      // The one finding allowed: tablesync is not installed on this machine.
      const findings = result.split('\n').filter((line) => line.trim() !== '' && !/Command \/\S*tablesync is not executable/.test(line));
      expect(findings).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------- Dockerfile

interface Instruction {
  readonly keyword: string;
  readonly args: string;
  readonly line: number;
}

/** Instructions with their continuation lines joined; comments and parser directives left out. */
function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let pending: { text: string; line: number } | undefined;
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && pending === undefined)) continue;
    const continued = line.endsWith('\\');
    const part = continued ? line.slice(0, -1).trim() : line;
    pending = pending === undefined ? { text: part, line: n + 1 } : { text: `${pending.text} ${part}`, line: pending.line };
    if (continued) continue;
    const match = /^(\S+)\s*(.*)$/.exec(pending.text);
    if (match !== null) instructions.push({ keyword: (match[1] ?? '').toUpperCase(), args: match[2] ?? '', line: pending.line });
    pending = undefined;
  }
  return instructions;
}

interface Stage {
  readonly image: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

function stagesOf(instructions: readonly Instruction[]): Stage[] {
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'ARG' && stages.length === 0) {
      const [name = '', value = ''] = instruction.args.split('=');
      args.set(name, value);
    } else if (instruction.keyword === 'FROM') {
      const [image = '', as, name] = instruction.args.replace(/\$\{(\w+)\}/g, (_, arg: string) => args.get(arg) ?? '').split(/\s+/);
      stages.push({ image, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] });
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return stages;
}

/** The words of an exec-form (JSON) argument list. */
function execForm(instruction: Instruction | undefined): string[] {
  expect(instruction, 'an ENTRYPOINT and a CMD').toBeDefined();
  const value: unknown = JSON.parse(instruction!.args);
  expect(Array.isArray(value), `line ${instruction!.line} in exec form, so that the daemon is PID 1 and gets SIGTERM`).toBe(true);
  return value as string[];
}

describe('docker/Dockerfile', () => {
  const stages = stagesOf(parseDockerfile(readFileSync(join(dockerDir, 'Dockerfile'), 'utf8')));
  const build = stages[0]!;
  const runtime = stages.at(-1)!;
  const runs = (stage: Stage): string => stage.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args).join('\n');

  it('builds in one stage, with the toolchain better-sqlite3 needs, npm ci and tsc', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(build.name).toBe('build');
    for (const tool of ['python3', 'make', 'g++']) expect(runs(build)).toContain(tool);
    expect(runs(build)).toMatch(/npm ci\b/);
    expect(runs(build)).toMatch(/npm run build\b/);
    expect(packageJson.scripts.build).toMatch(/^tsc /);
    // Only production dependencies go on to the runtime stage.
    expect(runs(build)).toMatch(/npm prune --omit=dev\b/);
  });

  it('runs on node:20-slim, without the toolchain, as an unprivileged user', () => {
    expect(runtime.image).toBe('node:20-slim');
    expect(runs(runtime)).not.toMatch(/apt-get|g\+\+|npm (ci|install)/);
    const user = runtime.instructions.filter((i) => i.keyword === 'USER').at(-1);
    expect(user?.args).toBeDefined();
    expect(user?.args).not.toMatch(/^(root|0)$/);
  });

  it('gives the daemon the environment the systemd unit gives it (what the benchmark measures)', () => {
    const unitEnvironment = parseUnit(readFileSync(join(root, 'config/systemd/tablesync@.service'), 'utf8')).get('Service')?.get('Environment') ?? [];
    const imageEnvironment = runtime.instructions.filter((i) => i.keyword === 'ENV').map((i) => i.args);
    expect(unitEnvironment).toContain('NODE_OPTIONS=--max-semi-space-size=8');
    expect([...imageEnvironment].sort()).toEqual([...unitEnvironment].sort());
  });

  it('copies only files that exist in the repository, and stages that exist', () => {
    const names = new Set(stages.map((stage) => stage.name));
    const ignored = readFileSync(join(dockerDir, 'Dockerfile.dockerignore'), 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    for (const stage of stages) {
      for (const copy of stage.instructions.filter((i) => i.keyword === 'COPY')) {
        const words = copy.args.split(/\s+/);
        const from = words.find((word) => word.startsWith('--from='))?.slice('--from='.length);
        const paths = words.filter((word) => !word.startsWith('--'));
        const sources = paths.slice(0, -1);
        expect(sources.length, `line ${copy.line} copies something`).toBeGreaterThan(0);
        if (from !== undefined) {
          expect(names, `line ${copy.line}: stage ${from}`).toContain(from);
          continue;
        }
        // The build context is the repository's root (docker/compose.yaml: context ..).
        for (const source of sources) {
          expect(existsSync(join(root, source)), `line ${copy.line}: ${source} exists`).toBe(true);
          expect(ignored, `line ${copy.line}: ${source} is not left out of the context`).not.toContain(source);
        }
      }
    }
  });

  it('starts `tablesync run -c …`, a real command, through a link to the package bin', async () => {
    const entrypoint = execForm(runtime.instructions.find((i) => i.keyword === 'ENTRYPOINT'));
    const cmd = execForm(runtime.instructions.find((i) => i.keyword === 'CMD'));
    expect(entrypoint).toEqual(['tablesync']);
    expect(cmd.slice(0, 2)).toEqual(['run', '-c']);
    await expectRealCommand(cmd);
    const workdir = runtime.instructions.filter((i) => i.keyword === 'WORKDIR').at(-1)?.args ?? '';
    expect(runs(runtime)).toContain(`ln -s ${posix.join(workdir, packageJson.bin.tablesync ?? '')} /usr/local/bin/tablesync`);
    const copied = runtime.instructions.filter((i) => i.keyword === 'COPY').map((i) => i.args.split(/\s+/).at(-1));
    for (const needed of ['./dist', './node_modules', './']) expect(copied).toContain(needed);
  });
});

// ---------------------------------------------------------------- compose

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile?: string };
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
}

/** Compose's interpolation of `${NAME}`, `${NAME:-default}`, `${NAME-default}` and `$$`, in an environment. */
function interpolate(text: string, env: NodeJS.ProcessEnv): string {
  return text.replace(/\$\$|\$\{(\w+)(?:(:?-)([^}]*))?\}/g, (match, name: string | undefined, operator: string | undefined, fallback: string | undefined) => {
    if (match === '$$') return '$';
    const value = env[name!];
    if (operator === ':-' && (value === undefined || value === '')) return fallback ?? '';
    if (operator === '-' && value === undefined) return fallback ?? '';
    if (value === undefined) throw new Error(`compose needs ${name} in the environment, and gives it no default`);
    return value;
  });
}

const compose = parseYaml(readFileSync(join(dockerDir, 'compose.yaml'), 'utf8')) as { services: Record<string, ComposeService> };
const services = compose.services;
const isTablesync = (service: ComposeService): boolean => service.build !== undefined;
const tablesyncServices = Object.entries(services).filter(([, service]) => isTablesync(service));
const mariadbServices = Object.entries(services).filter(([, service]) => service.image?.startsWith('mariadb:') === true);

/** A service's environment as the container sees it, with nothing set in the shell that runs compose. */
function serviceEnv(service: ComposeService): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(service.environment ?? {}).map(([name, value]) => [name, interpolate(String(value), {})]));
}

/** The file on this machine that a service mounts at `containerPath`. */
function mountedFile(service: ComposeService, containerPath: string): string {
  const volume = (service.volumes ?? []).map((v) => v.split(':')).find(([, target]) => target === containerPath);
  expect(volume, `a volume mounted at ${containerPath}`).toBeDefined();
  return resolve(dockerDir, volume![0]!);
}

/** The configuration file a tablesync service runs, and that file loaded the way the container loads it. */
function serviceConfig(service: ComposeService): { file: string; config: InstanceConfig } {
  const command = service.command ?? [];
  const file = mountedFile(service, command[command.indexOf('-c') + 1] ?? '');
  return { file, config: loadConfigFile(file, serviceEnv(service)) };
}

describe('docker/compose.yaml', () => {
  it('has two MariaDB services and two tablesync services, one active and one passive over http', () => {
    expect(mariadbServices).toHaveLength(2);
    expect(tablesyncServices).toHaveLength(2);
    const modes = tablesyncServices.map(([, service]) => serviceConfig(service).config.syncs.map((sync) => `${sync.transport.type} ${sync.mode}`));
    expect(modes.flat().sort()).toEqual(['http active', 'http passive']);
  });

  it('builds with docker/Dockerfile from the repository root', () => {
    for (const [name, service] of tablesyncServices) {
      const context = resolve(dockerDir, service.build!.context);
      expect(context, name).toBe(resolve(root));
      expect(existsSync(join(context, service.build!.dockerfile ?? 'Dockerfile')), name).toBe(true);
    }
  });

  it('runs a real command in each tablesync service, on a mounted file that tablesync loads with the environment compose gives it', async () => {
    for (const [name, service] of tablesyncServices) {
      expect(service.command?.slice(0, 2), name).toEqual(['run', '-c']);
      await expectRealCommand(service.command!);
      const { config } = serviceConfig(service);
      expect(dirname(config.file)).toBe(join(dockerDir, 'config'));
    }
  });

  it('fits the pieces together: databases, passwords, the sync, ports, health checks and seeds', () => {
    const loaded = tablesyncServices.map(([name, service]) => ({ name, service, ...serviceConfig(service) }));
    for (const { name, service, config } of loaded) {
      // The database is one of the MariaDB services, reached with the very credentials that service creates.
      const url = new URL(config.database.url ?? '');
      const db = services[url.hostname];
      expect(db?.image, `${name}'s database ${url.hostname} is a MariaDB service`).toMatch(/^mariadb:/);
      const dbEnv = serviceEnv(db!);
      expect([decodeURIComponent(url.username), decodeURIComponent(url.password), url.pathname.slice(1), url.port]).toEqual([
        dbEnv.MARIADB_USER,
        dbEnv.MARIADB_PASSWORD,
        dbEnv.MARIADB_DATABASE,
        '3306',
      ]);
      expect(service.depends_on?.[url.hostname]?.condition, `${name} waits for its database`).toBe('service_healthy');
      // /healthz is what the container's health check asks, on the port the file listens on and compose publishes.
      expect(config.listen?.port).toBeDefined();
      expect(service.healthcheck?.test.join(' ')).toContain(`http://127.0.0.1:${config.listen!.port}/healthz`);
      expect(service.ports?.some((port) => port.endsWith(`:${config.listen!.port}`)), `${name} publishes its listener`).toBe(true);
    }
    const active = loaded.find(({ config }) => config.syncs[0]?.mode === 'active')!;
    const passive = loaded.find(({ config }) => config.syncs[0]?.mode === 'passive')!;
    const [activeSync, passiveSync] = [active.config.syncs[0]!, passive.config.syncs[0]!];
    expect(activeSync.name).toBe(passiveSync.name);
    const target = new URL(activeSync.transport.type === 'http' ? (activeSync.transport.url ?? '') : '');
    expect([target.hostname, Number(target.port)]).toEqual([passive.name, passive.config.listen?.port]);
    expect(activeSync.transport.type === 'http' && activeSync.transport.password).toBe(passiveSync.transport.type === 'http' && passiveSync.transport.password);
    // The same numbers on both sides.
    const numbers = (config: InstanceConfig): number[][] => config.syncs[0]!.tables.map((table) => [table.number, ...table.fields.map((field) => field.number)]);
    expect(numbers(active.config)).toEqual(numbers(passive.config));
    for (const [name, db] of mariadbServices) {
      const seeds = (db.volumes ?? []).filter((volume) => volume.includes('/docker-entrypoint-initdb.d/'));
      expect(seeds.length, `${name} is seeded`).toBeGreaterThan(0);
      for (const seed of seeds) expect(existsSync(resolve(dockerDir, seed.split(':')[0]!)), seed).toBe(true);
    }
  });
});

describeWithDialects('docker/compose.yaml on a real MariaDB', ['mysql'], () => {
  /** The statements of a seed file, as the MariaDB image runs them. */
  function statements(file: string): string[] {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => !line.trimStart().startsWith('--'))
      .join('\n')
      .split(/;\s*\n/)
      .map((statement) => statement.trim().replace(/;$/, ''))
      .filter((statement) => statement !== '');
  }

  it('the seeded databases and the two configuration files sync, as the containers would', async ({ onTestFinished }) => {
    const mysql = dialectCase('mysql');
    const databases: TestDatabase[] = [];
    const daemons: Daemon[] = [];
    onTestFinished(async () => {
      for (const daemon of daemons) await daemon.close();
      for (const db of databases) await db.drop();
    });
    const active = tablesyncServices.find(([, service]) => serviceConfig(service).config.syncs[0]?.mode === 'active')!;
    const passive = tablesyncServices.find(([, service]) => serviceConfig(service).config.syncs[0]?.mode === 'passive')!;
    const passivePort = await freePort();
    // The files log at info: kept out of the test's output.
    const quiet = new Writable({ write: (_chunk, _encoding, done) => done() });

    const sides: { connection: Awaited<ReturnType<TestDatabase['connect']>>; config: InstanceConfig }[] = [];
    for (const [name, service] of [passive, active]) {
      const { file, config } = serviceConfig(service);
      const db = await mysql.create();
      databases.push(db);
      const connection = await db.connect();
      onTestFinished(() => connection.close());
      const seedVolume = (services[new URL(config.database.url ?? '').hostname]?.volumes ?? []).find((volume) => volume.includes('/docker-entrypoint-initdb.d/'));
      for (const statement of statements(resolve(dockerDir, seedVolume!.split(':')[0]!))) await connection.exec(statement);
      // The file as it is, but for what only exists on the compose network: the database, the peer's address, the port.
      let text = readFileSync(file, 'utf8');
      const replace = (pattern: RegExp, replacement: string): void => {
        expect(text, `${name}: ${pattern}`).toMatch(pattern);
        text = text.replace(pattern, replacement);
      };
      replace(/url: mysql:\/\/\S+/, `url: ${JSON.stringify(db.config.url)}`);
      replace(/listen: \S+/, `listen: 127.0.0.1:${service === passive[1] ? passivePort : await freePort()}`);
      if (service === active[1]) replace(/url: http:\/\/\S+/, `url: http://127.0.0.1:${passivePort}`);
      const loaded = parseConfig(text, file, serviceEnv(service), dirname(file));
      const daemon = new Daemon([loaded], createLogger('warn', quiet));
      daemons.push(daemon);
      await daemon.start();
      sides.push({ connection, config: loaded });
    }
    const [hq, branch] = sides as [(typeof sides)[number], (typeof sides)[number]];
    const hqTable = hq.config.syncs[0]!.tables[0]!;
    const branchTable = branch.config.syncs[0]!.tables[0]!;
    const column = (table: typeof hqTable, number: number): string => table.fields.find((field) => field.number === number)!.column;

    await branch.connection.exec(`INSERT INTO ${branchTable.table} (${column(branchTable, 2)}, ${column(branchTable, 3)}) VALUES ('Babbage Engines', 'charles@babbage.example')`);
    await hq.connection.exec(`INSERT INTO ${hqTable.table} (${column(hqTable, 2)}, ${column(hqTable, 3)}) VALUES ('Boole Logic', 'george@boole.example')`);
    const names = async (side: typeof hq, table: typeof hqTable): Promise<string[]> =>
      (await side.connection.query<{ name: string }>(`SELECT ${column(table, 2)} AS name FROM ${table.table} ORDER BY name`)).map((row) => row.name);
    await expect.poll(() => names(hq, hqTable), { timeout: 30_000 }).toContain('Babbage Engines');
    await expect.poll(() => names(branch, branchTable), { timeout: 30_000 }).toContain('Boole Logic');
  });
});
