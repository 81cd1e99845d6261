import { UsageError } from '../errors.js';

/**
 * `--password-env VAR`: the password is read from the environment variable
 * VAR, never from the command line, where other users could see it in the
 * process list. Undefined without the option.
 */
export function passwordFromEnv(variable: string | undefined): string | undefined {
  if (variable === undefined) return undefined;
  const value = process.env[variable];
  if (value === undefined || value === '') {
    throw new UsageError(`--password-env names the environment variable ${variable}, which is ${value === undefined ? 'not set' : 'empty'}; set it to the password`);
  }
  return value;
}
