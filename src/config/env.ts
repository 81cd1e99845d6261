import { parse as parseYamlScalar } from 'yaml';
import type { ConfigProblem } from '../errors.js';
import { formatPath, type DocPath } from './path.js';

const reference = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
const wholeReference = /^\$\{[A-Za-z_][A-Za-z0-9_]*\}$/;
/** Settings that take a number or true/false; everywhere else a variable stays text (a password of digits is still text). */
const typedSettings = new Set(['listen', 'port', 'secure', 'number', 'deleted', 'match']);

/**
 * Replaces `${NAME}` in every string of the document with the environment
 * variable NAME, so that passwords stay out of files. `$${` stands for a
 * literal `${`. A missing variable is a problem reported at its path.
 *
 * A string that is exactly one reference, in a setting that takes a number
 * or true/false, takes the variable's YAML type (`port: ${FTP_PORT}` becomes
 * a number), so that numbers can come from the environment too.
 */
export function substituteEnv(
  value: unknown,
  env: NodeJS.ProcessEnv,
  problems: ConfigProblem[],
  path: DocPath = [],
): unknown {
  if (typeof value === 'string') return substituteString(value, env, problems, path);
  if (Array.isArray(value)) return value.map((item, i) => substituteEnv(item, env, problems, [...path, i]));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = substituteEnv(item, env, problems, [...path, key]);
    return out;
  }
  return value;
}

function substituteString(text: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[], path: DocPath): unknown {
  let missing = false;
  const replaced = text.replace(reference, (match, name: string | undefined) => {
    if (name === undefined) return '${';
    const found = env[name];
    if (found === undefined) {
      problems.push({ path: formatPath(path), message: `environment variable ${name} is not set` });
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

function safeScalar(text: string): unknown {
  try {
    return parseYamlScalar(text);
  } catch {
    return text;
  }
}
