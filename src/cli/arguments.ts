import { UsageError } from '../errors.js';

/**
 * Parsers for option and argument values, for commander's `argParser`. A bad
 * value ends the command with a UsageError (exit 2) that names the option
 * and the value found.
 */

const largestNumber = 2_147_483_647;

/** A whole number from 1 to 2147483647, written in plain digits. */
export function positiveInteger(what: string): (value: string) => number {
  return (value) => {
    const number = /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(number) || number < 1 || number > largestNumber) {
      throw new UsageError(`${what} must be a whole number from 1 to ${largestNumber} (found ${JSON.stringify(value)})`);
    }
    return number;
  };
}

/** A record id as the application's table holds it: any text but the empty one (keys need not be numbers). */
export function recordId(what: string): (value: string) => string {
  return (value) => {
    if (value.trim() === '') throw new UsageError(`${what} must not be empty; give the record's key as the application's table holds it`);
    return value;
  };
}

export type KeepSide = 'ours' | 'theirs';

/** `--keep`: which side's value a resolved conflict keeps. Missing or anything else is a usage error. */
export function keepSide(value: string | undefined): KeepSide {
  if (value === undefined) {
    throw new UsageError('conflicts resolve needs --keep ours (keep this side\'s value) or --keep theirs (take the peer\'s value)');
  }
  if (value !== 'ours' && value !== 'theirs') throw new UsageError(`--keep must be ours or theirs (found ${JSON.stringify(value)})`);
  return value;
}

/** `--sync S --table N --id ID`: one record of one synced table. */
export interface RecordTarget {
  readonly sync: string;
  /** The table's number in the sync. */
  readonly table: number;
  /** Our record id (the table's key). */
  readonly id: string;
}
