import type { ErrorObject } from 'ajv';
import type { ConfigProblem } from '../errors.js';
import { formatPath, pointerToPath } from './path.js';
import { closest } from './suggest.js';

/** Settings whose values must never be echoed back in a message. */
const secretKeys = new Set(['password', 'url']);

/**
 * Turns ajv's errors into one plain sentence each, at the path of the setting
 * concerned (for a missing setting, the path it should have).
 */
export interface ShapeProblem extends ConfigProblem {
  /** For a misspelt setting, the path of the setting it probably means. */
  readonly suggests?: string;
}

export function ajvProblems(errors: readonly ErrorObject[]): ShapeProblem[] {
  const problems: ShapeProblem[] = [];
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

function describe(error: ErrorObject): ShapeProblem {
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
      if (suggestion === undefined) {
        return { path: formatPath([...path, extra]), message: `is not a known setting (known settings here: ${known.join(', ')})` };
      }
      return {
        path: formatPath([...path, extra]),
        message: `is not a known setting (did you mean ${suggestion}?)`,
        suggests: formatPath([...path, suggestion]),
      };
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
  if (typeof value === 'string') {
    // A URL written where a mapping belongs (`database: mysql://crm:secret@…`) carries a password: hide it before cutting.
    const shown = value.replace(/\/\/([^:/@\s]*):\S*@/, '//$1:***@');
    return JSON.stringify(shown.length > 60 ? `${shown.slice(0, 57)}...` : shown);
  }
  return String(value);
}
