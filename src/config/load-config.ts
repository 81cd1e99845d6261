import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { LineCounter, parseDocument, type Document } from 'yaml';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { ajvProblems } from './ajv-problems.js';
import { substituteEnv } from './env.js';
import { pointerToPath, type DocPath } from './path.js';
import type { RawConfig, RawSync, RawTransport } from './raw.js';
import { checkRules } from './rules.js';
import { configSchema } from './schema.js';
import type { InstanceConfig, ListenConfig, SyncConfig, TransportConfig } from './types.js';

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true, discriminator: true, verbose: true });
ajv.addVocabulary(['x-message']);
const validate = ajv.compile(configSchema);

/**
 * Loads one instance configuration file: YAML, `${VAR}` substitution, the
 * JSON Schema, then the rules between settings. Throws a ConfigError listing
 * every problem found, each with its path and line; returns a frozen
 * configuration otherwise.
 */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): InstanceConfig {
  const absolute = resolve(file);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'the file does not exist' : `cannot be read (${(err as Error).message})`;
    throw new ConfigError(file, [{ path: '', message: reason }]);
  }
  return parseConfig(text, file, env, dirname(absolute));
}

/** As `loadConfigFile`, for text already in hand; `baseDir` anchors relative paths. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv, baseDir: string): InstanceConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({
        path: '',
        message: `is not valid YAML: ${e.message.split('\n')[0] ?? e.code}`,
        line: e.linePos?.[0].line,
      })),
    );
  }
  const parsed: unknown = doc.toJS();
  if (parsed === null || parsed === undefined) {
    throw new ConfigError(file, [{ path: '', message: 'the file is empty; see config/examples/ for a starting point' }]);
  }

  const problems: ConfigProblem[] = [];
  const substituted = substituteEnv(parsed, env, problems);
  if (!validate(substituted)) {
    problems.push(...ajvProblems(validate.errors ?? []));
  } else {
    problems.push(...checkRules(substituted as unknown as RawConfig));
  }
  if (problems.length > 0) {
    throw new ConfigError(file, inFileOrder(locate(problems, doc, lineCounter)));
  }
  return deepFreeze(normalise(substituted as unknown as RawConfig, resolve(baseDir, file), baseDir));
}

function normalise(raw: RawConfig, file: string, baseDir: string): InstanceConfig {
  const at = (path: string): string => resolve(baseDir, path);
  return {
    file,
    instance: raw.instance,
    database: {
      dialect: raw.database.dialect,
      ...(raw.database.url !== undefined && { url: raw.database.url }),
      ...(raw.database.file !== undefined && { file: at(raw.database.file) }),
    },
    ...(raw.listen !== undefined && { listen: parseListen(raw.listen) }),
    ...(raw.tls !== undefined && {
      tls: { cert: at(raw.tls.cert), key: at(raw.tls.key), ...(raw.tls.ca !== undefined && { ca: at(raw.tls.ca) }) },
    }),
    log: { level: raw.log.level },
    ...(raw.users !== undefined && { users: raw.users }),
    syncs: raw.syncs.map((sync) => normaliseSync(sync, at)),
  };
}

function normaliseSync(sync: RawSync, at: (path: string) => string): SyncConfig {
  const timing = sync.schedule !== undefined ? { schedule: sync.schedule } : { everyMs: parseDuration(sync.every ?? '1s') };
  return {
    name: sync.name,
    mode: sync.mode,
    transport: normaliseTransport(sync.transport, at),
    ...timing,
    conflicts: sync.conflicts,
    users: sync.users,
    tables: sync.tables,
  };
}

function normaliseTransport(transport: RawTransport, at: (path: string) => string): TransportConfig {
  // FTP folders are paths on the server, not on this machine: they stay as written.
  if (transport.type === 'folder') return { ...transport, upload: at(transport.upload), download: at(transport.download) };
  return transport;
}

function parseListen(listen: string | number): ListenConfig {
  if (typeof listen === 'number') return { host: '0.0.0.0', port: listen };
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host: host === '' ? '0.0.0.0' : host, port: Number(listen.slice(colon + 1)) };
}

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `250ms`, `1s`, `5m`, `1h` → milliseconds; the schema has already checked the form. */
export function parseDuration(text: string): number {
  const match = /^([0-9]+)(ms|s|m|h)$/.exec(text);
  if (match === null) throw new Error(`not a duration: ${text}`);
  return Number(match[1]) * (durationUnits[match[2] ?? 's'] ?? 1000);
}

/** Adds the line of each problem, from the nearest node of its path that exists in the document. */
function locate(problems: ConfigProblem[], doc: Document, lineCounter: LineCounter): ConfigProblem[] {
  return problems.map((problem) => {
    const path: DocPath = pointerToPath(problem.path === '' ? '' : `/${problem.path.replace(/\[(\d+)\]/g, '.$1').replace(/\./g, '/')}`);
    for (let length = path.length; length > 0; length--) {
      const node = doc.getIn(path.slice(0, length), true) as { range?: [number, number, number] } | undefined;
      if (node?.range !== undefined) return { ...problem, line: lineCounter.linePos(node.range[0]).line };
    }
    return problem;
  });
}

function inFileOrder(problems: ConfigProblem[]): ConfigProblem[] {
  return problems
    .map((problem, index) => ({ problem, index }))
    .sort((a, b) => (a.problem.line ?? 0) - (b.problem.line ?? 0) || a.index - b.index)
    .map(({ problem }) => problem);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const item of Object.values(value)) deepFreeze(item);
    Object.freeze(value);
  }
  return value;
}
