/** How the commands show times and stored values on a terminal. */

/** A time kept in milliseconds (a number, or a string where the database returns big integers as text). */
export type StoredTime = number | string;

export function isoTime(at: StoredTime): string {
  return new Date(Number(at)).toISOString();
}

/** Whole seconds from `at` to `now`; never negative, so a clock a little ahead does not show a time in the future. */
export function secondsSince(at: StoredTime, now: number): number {
  return Math.max(0, Math.round((now - Number(at)) / 1000));
}

/**
 * A value as it travelled (JSON text: `"Smith"`, `42`, `null`), shortened to
 * fit a table cell; strings keep their quotes so that `"42"` and `42` differ.
 */
export function storedValue(json: string | null, max = 40): string {
  const text = json ?? 'null';
  const line = text.replace(/[\r\n\t]/g, ' ');
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`;
}

export function plural(count: number, noun: string, nouns = `${noun}s`): string {
  return `${count} ${count === 1 ? noun : nouns}`;
}
