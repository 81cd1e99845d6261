import type { ErrorObject } from 'ajv';
import type { ConfigProblem } from '../errors.js';
import { formatPath, pointerToPath } from './path.js';

/** Settings whose values must never be echoed back in a message. */
const secretKeys = new Set(['password', 'url']);

/**
 * Turns ajv's errors into one plain sentence each, at the path of the setting
 * concerned (for a missing setting, the path it should have).
 */
export function ajvProblems(errors: readonly ErrorObject[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const seen = new Set<string>();
  const pathsWithErrors = new Set(errors.filter((e) => !isNoise(e)).map((e) => e.instancePath));
  for (const error of errors) {
    if (isNoise(error)) continue;
    // oneOf only repeats what its branches said; keep it when nothing more precise was said there.
    if (error.keyword === 'oneOf' && [...pathsWithErrors].some((p) => p !== error.instancePath && p.startsWith(error.instancePath))) continue;
    const problem = describe(error);
    const id = `${problem.path}\u0000${problem.message}`;
    if (seen.has(id)) continue;
    seen.add(id);
    problems.push(problem);
  }
  return problems;
}

function isNoise(error: ErrorObject): boolean {
  // The transport's `type` enum reports an unknown type already.
  return error.keyword === 'discriminator' || error.keyword === 'if';
}

function describe(error: ErrorObject): ConfigProblem {
  const path = pointerToPath(error.instancePath);
  const last = path[path.length - 1];
  const secret = typeof last === 'string' && secretKeys.has(last);
  const found = secret ? '' : ` (found ${show(error.data)})`;
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required':
      return { path: formatPath([...path, String(params.missingProperty)]), message: 'is required' };
    case 'additionalProperties': {
      const extra = String(params.additionalProperty);
      const known = Object.keys((error.parentSchema?.properties as Record<string, unknown> | undefined) ?? {});
      const suggestion = closest(extra, known);
      const hint = suggestion === undefined ? ` (known settings here: ${known.join(', ')})` : ` (did you mean ${suggestion}?)`;
      return { path: formatPath([...path, extra]), message: `is not a known setting${hint}` };
    }
    case 'enum':
      return {
        path: formatPath(path),
        message: `must be one of ${(params.allowedValues as unknown[]).map(String).join(', ')}${found}`,
      };
    case 'type':
      return { path: formatPath(path), message: `must be ${typeNames(String(params.type))}${found}` };
    case 'minimum':
      return { path: formatPath(path), message: `must be at least ${String(params.limit)}${found}` };
    case 'maximum':
      return { path: formatPath(path), message: `must be at most ${String(params.limit)}${found}` };
    case 'minItems':
      return { path: formatPath(path), message: 'must list at least one entry' };
    case 'minLength':
      return { path: formatPath(path), message: 'must not be empty' };
    case 'pattern': {
      const custom = error.parentSchema?.['x-message'];
      return { path: formatPath(path), message: `${typeof custom === 'string' ? custom : `must match ${String(params.pattern)}`}${found}` };
    }
    default:
      return { path: formatPath(path), message: error.message ?? 'is not valid' };
  }
}

function typeNames(types: string): string {
  const names: Record<string, string> = {
    string: 'text',
    integer: 'a whole number',
    number: 'a number',
    boolean: 'true or false',
    object: 'a mapping of settings',
    array: 'a list',
    null: 'empty',
  };
  return types
    .split(',')
    .map((type) => names[type] ?? type)
    .join(' or ');
}

function show(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  return String(value);
}

/** The known name nearest to a mistyped one, if it is close enough to be a typo. */
function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
