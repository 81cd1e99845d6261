import { readFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, type Document, type YAMLError } from 'yaml';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { ajvProblems } from './ajv-problems.js';
import { parseDuration } from './duration.js';
import { hasReference, readableByOthers, substituteEnv } from './env.js';
import { formatPath, pointerToPath, type DocPath } from './path.js';
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
  return parseConfig(text, file, env, dirname(absolute), { readableByOthers: readableByOthers(absolute) });
}

export interface ParseOptions {
  /** Who besides its owner can read the file, when anyone can: a password written into it is then warned about. */
  readonly readableByOthers?: { readonly who: string; readonly octal: string } | undefined;
}

/** As `loadConfigFile`, for text already in hand; `baseDir` is the file's folder, which anchors relative paths. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv, baseDir: string, options: ParseOptions = {}): InstanceConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // After the first syntax error the parser only guesses, so what it says next is noise; duplicate keys before it are real.
    const firstSyntaxError = doc.errors.findIndex((e) => e.code !== 'DUPLICATE_KEY');
    const errors = firstSyntaxError === -1 ? doc.errors : doc.errors.slice(0, firstSyntaxError + 1);
    throw new ConfigError(file, errors.map((error) => yamlProblem(error, text, lineCounter)));
  }
  const parsed: unknown = doc.toJS();
  if (parsed === null || parsed === undefined) {
    throw new ConfigError(file, [{ path: '', message: 'the file is empty; see config/examples/ for a starting point' }]);
  }

  const problems: ConfigProblem[] = [];
  const warnings: ConfigProblem[] = [];
  const substituted = substituteEnv(parsed, { env, problems, warnings, baseDir });
  if (options.readableByOthers !== undefined) warnings.push(...literalSecretWarnings(parsed, file, options.readableByOthers));
  // A setting whose variable is not set still holds `${NAME}`: what the schema or the rules say about that text is noise.
  const unset = new Set(problems.map((problem) => problem.path));
  const shapeProblems = validate(substituted)
    ? []
    : ajvProblems((validate.errors ?? []).filter((error) => !unset.has(formatPath(pointerToPath(error.instancePath)))));
  problems.push(...shapeProblems.map(({ path, message }) => ({ path, message })));
  // The rules run even when the shape is wrong, so that one report lists everything; where a
  // setting already has a problem, or the wrong shape trips a rule, the rules keep quiet.
  const covered = [...unset, ...shapeProblems.flatMap((problem) => [problem.path, ...(problem.suggests === undefined ? [] : [problem.suggests])])];
  problems.push(...rulesOnAnyShape(substituted).filter((problem) => !covered.some((path) => within(problem.path, path))));
  if (problems.length > 0) {
    throw new ConfigError(file, inFileOrder(locate(problems, doc, lineCounter)));
  }
  const config = normalise(substituted as unknown as RawConfig, resolve(baseDir, basename(file)), baseDir);
  return deepFreeze(warnings.length === 0 ? config : { ...config, warnings: inFileOrder(locate(warnings, doc, lineCounter)) });
}

/**
 * Passwords written into the file itself (a `password:` setting, or the
 * password part of `database.url`, without `${...}`): harmless in a file
 * only its owner reads, a leak in one that others can read.
 */
function literalSecretWarnings(document: unknown, file: string, readable: { readonly who: string; readonly octal: string }): ConfigProblem[] {
  const found: DocPath[] = [];
  const visit = (value: unknown, path: DocPath): void => {
    if (Array.isArray(value)) value.forEach((item, i) => visit(item, [...path, i]));
    else if (value !== null && typeof value === 'object') for (const [key, item] of Object.entries(value)) visit(item, [...path, key]);
    else if (typeof value === 'string' && !hasReference(value) && isSecretSetting(path, value)) found.push(path);
  };
  visit(document, []);
  return found.map((path) => ({
    path: formatPath(path),
    message: `is a password written in ${file}, which ${readable.who} can read (mode ${readable.octal}): chmod 600 ${file}, or take the password from \${NAME} or \${file:/path/to/secret}`,
  }));
}

function isSecretSetting(path: DocPath, value: string): boolean {
  if (path[path.length - 1] === 'password') return value !== '';
  if (path.length !== 2 || path[0] !== 'database' || path[1] !== 'url') return false;
  try {
    return new URL(value).password !== '';
  } catch {
    return false;
  }
}

/** The parser quotes the token it choked on, which may be a password: the line says where instead. */
function yamlProblem(error: YAMLError, text: string, lineCounter: LineCounter): ConfigProblem {
  let message = (error.message.split('\n')[0] ?? error.code).replace(/: ".*"$/, '');
  if (error.code === 'DUPLICATE_KEY') {
    message = `${/^[^:\n]*/.exec(text.slice(error.pos[0]))?.[0].trim() ?? 'a key'} is given twice in the same mapping; keep one`;
  } else if (error.code === 'MULTIPLE_DOCS') {
    message = 'a second document starts here (after --- or ...); one file configures one instance';
  }
  return { path: '', message: `is not valid YAML: ${message}`, line: lineCounter.linePos(error.pos[0]).line };
}

function rulesOnAnyShape(document: unknown): ConfigProblem[] {
  try {
    return checkRules(document as RawConfig);
  } catch {
    return [];
  }
}

/** Whether `path` is `ancestor` or lies inside it (`syncs[0].tables` is within `syncs[0]`). */
function within(path: string, ancestor: string): boolean {
  return ancestor === '' || path === ancestor || path.startsWith(`${ancestor}.`) || path.startsWith(`${ancestor}[`);
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
      readAhead: raw.database.readAhead,
    },
    ...(raw.listen !== undefined && { listen: parseListen(raw.listen) }),
    ...(raw.tls !== undefined && {
      tls: Object.fromEntries(Object.entries(raw.tls).map(([setting, path]) => [setting, at(path)])),
    }),
    log: { level: raw.log.level },
    health: { peerTimeoutMs: peerTimeoutMs(raw) },
    backups: { dir: at(raw.backups.dir ?? 'backups') },
    ...(raw.users !== undefined && { users: raw.users }),
    syncs: raw.syncs.map((sync) => normaliseSync(sync, at)),
  };
}

const defaultPeerTimeoutMs = 5 * 60_000;

/** `health.peerTimeout`; by default 5 minutes, or three of the longest `every` if longer, so that /healthz does not fail between two exchanges. */
function peerTimeoutMs(raw: RawConfig): number {
  if (raw.health.peerTimeout !== undefined) return parseDuration(raw.health.peerTimeout);
  return Math.max(defaultPeerTimeoutMs, ...raw.syncs.map((sync) => 3 * (sync.every === undefined ? 0 : parseDuration(sync.every))));
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

/** Adds the line of each problem, from the nearest node of its path that exists in the document. */
function locate(problems: ConfigProblem[], doc: Document, lineCounter: LineCounter): ConfigProblem[] {
  return problems.map((problem) => {
    const path: DocPath = pointerToPath(problem.path === '' ? '' : `/${problem.path.replace(/\[(\d+)\]/g, '.$1').replace(/\./g, '/')}`);
    for (let length = path.length; length > 0; length--) {
      const start = startOf(doc, path.slice(0, length));
      if (start !== undefined) return { ...problem, line: lineCounter.linePos(start).line };
    }
    return problem;
  });
}

/** Where a setting is written: its key (a block value starts on the line after), or the list item. */
function startOf(doc: Document, path: DocPath): number | undefined {
  const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true);
  const last = path[path.length - 1];
  if (isMap(parent)) {
    const key = parent.items.find((pair) => isScalar(pair.key) && pair.key.value === last)?.key;
    return isScalar(key) ? key.range?.[0] : undefined;
  }
  if (isSeq(parent) && typeof last === 'number') {
    const item: unknown = parent.items[last];
    return isNode(item) ? item.range?.[0] : undefined;
  }
  return undefined;
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
