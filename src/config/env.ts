import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { parse as parseYamlScalar } from 'yaml';
import type { ConfigProblem } from '../errors.js';
import { formatPath, type DocPath } from './path.js';

const reference = /\$\$\{|\$\{file:([^}]*)\}|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
const wholeReference = /^\$\{(file:[^}]*|[A-Za-z_][A-Za-z0-9_]*)\}$/;
/** Any reference, to tell a secret written into the file from one that comes from elsewhere. */
const anyReference = /\$\{(file:[^}]*|[A-Za-z_][A-Za-z0-9_]*)\}/;
/** Settings that take a number or true/false; everywhere else a variable stays text (a password of digits is still text). */
const typedSettings = new Set(['listen', 'port', 'secure', 'number', 'deleted', 'match']);

/** Where the references of one file are resolved, and where what they find wrong goes. */
export interface Substitution {
  readonly env: NodeJS.ProcessEnv;
  readonly problems: ConfigProblem[];
  /** What does not stop tablesync but should be fixed: a secret file others can read. */
  readonly warnings: ConfigProblem[];
  /** The configuration file's folder: relative `${file:...}` paths start there. */
  readonly baseDir: string;
}

/**
 * Replaces, in every string of the document, `${NAME}` with the environment
 * variable NAME and `${file:PATH}` with the content of the file PATH (less
 * one trailing newline), so that passwords stay out of configuration files.
 * `$${` stands for a literal `${`. A missing variable, or a file that cannot
 * be read, is a problem reported at its path; a file readable by group or
 * others is a warning.
 *
 * A string that is exactly one reference, in a setting that takes a number
 * or true/false, takes the value's YAML type (`port: ${FTP_PORT}` becomes
 * a number), so that numbers can come from the environment too.
 */
export function substituteEnv(value: unknown, substitution: Substitution, path: DocPath = []): unknown {
  if (typeof value === 'string') return substituteString(value, substitution, path);
  if (Array.isArray(value)) return value.map((item, i) => substituteEnv(item, substitution, [...path, i]));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = substituteEnv(item, substitution, [...path, key]);
    return out;
  }
  return value;
}

/** Whether `text` takes anything from the environment or a file (rather than holding it literally). */
export function hasReference(text: string): boolean {
  return anyReference.test(text);
}

function substituteString(text: string, substitution: Substitution, path: DocPath): unknown {
  let missing = false;
  const replaced = text.replace(reference, (match, file: string | undefined, name: string | undefined) => {
    if (file === undefined && name === undefined) return '${';
    const found = file !== undefined ? readSecretFile(file, substitution, path) : substitution.env[name ?? ''];
    if (found === undefined) {
      if (name !== undefined) substitution.problems.push({ path: formatPath(path), message: `environment variable ${name} is not set` });
      missing = true;
      return match;
    }
    return found;
  });
  if (missing) return text;
  const setting = path.findLast((part) => typeof part === 'string');
  if (wholeReference.test(text) && typeof setting === 'string' && typedSettings.has(setting)) {
    const typed: unknown = safeScalar(replaced);
    if (typeof typed === 'number' || typeof typed === 'boolean') return typed;
  }
  return replaced;
}

/** The content of a `${file:PATH}` (one trailing newline dropped, as editors add one), or undefined with the problem reported. */
function readSecretFile(file: string, substitution: Substitution, path: DocPath): string | undefined {
  const where = formatPath(path);
  if (file === '') {
    substitution.problems.push({ path: where, message: '${file:} names no file; write ${file:/path/to/secret}' });
    return undefined;
  }
  const absolute = isAbsolute(file) ? file : resolve(substitution.baseDir, file);
  let content: string;
  try {
    content = readFileSync(absolute, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'it does not exist' : code === 'EACCES' ? "permission denied for the daemon's user" : (code ?? (err as Error).message);
    substitution.problems.push({ path: where, message: `cannot read ${absolute}, named by \${file:${file}}: ${why}` });
    return undefined;
  }
  const mode = readableByOthers(absolute);
  if (mode !== undefined) {
    substitution.warnings.push({
      path: where,
      message: `${absolute}, named by \${file:${file}}, can be read by ${mode.who} (mode ${mode.octal}); make it readable by the daemon's user only: chmod 600 ${absolute}`,
    });
  }
  return content.replace(/\r?\n$/, '');
}

/** Who else than the owner may read `file` by its permission bits, or undefined when no one (or on Windows, where the bits mean little). */
export function readableByOthers(file: string): { readonly who: string; readonly octal: string } | undefined {
  if (process.platform === 'win32') return undefined;
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch {
    return undefined;
  }
  const group = (mode & 0o040) !== 0;
  const others = (mode & 0o004) !== 0;
  if (!group && !others) return undefined;
  return { who: group && others ? 'its group and all other users' : group ? 'its group' : 'all other users', octal: `0${(mode & 0o777).toString(8)}` };
}

function safeScalar(text: string): unknown {
  try {
    return parseYamlScalar(text);
  } catch {
    return text;
  }
}
