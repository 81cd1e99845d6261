/**
 * Every failure tablesync reports on purpose is a TablesyncError: a stable
 * `code` that callers branch on (never the message text), a message that is
 * one plain sentence saying what was wrong and how to fix it, and whether
 * trying again later can help.
 *
 * Messages never contain a password: URLs are redacted before they are
 * quoted (see `redactUrl`).
 */
export abstract class TablesyncError extends Error {
  abstract readonly code: string;
  /** Whether the same operation may succeed later without anyone changing anything. */
  abstract readonly retryable: boolean;
  /** Exit code of the command line when this error ends a command: 1 runtime, 2 usage or configuration. */
  abstract readonly exitCode: 1 | 2;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** One problem found in a configuration file, with its path inside the file. */
export interface ConfigProblem {
  /** Path inside the file, such as `syncs[0].tables[1].fields[2].number`; empty for the whole file. */
  path: string;
  message: string;
  /** 1-based line in the file, when the path can be located. */
  line?: number;
}

/** A configuration file that cannot be used: it carries every problem found, not just the first. */
export class ConfigError extends TablesyncError {
  readonly code = 'TS_ERR_CONFIG';
  readonly retryable = false;
  readonly exitCode = 2;

  constructor(
    readonly file: string,
    readonly problems: readonly ConfigProblem[],
  ) {
    super(ConfigError.describe(file, problems));
  }

  static describe(file: string, problems: readonly ConfigProblem[]): string {
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
    const lines = problems.map((p) => `  - ${formatProblem(p)}`);
    return [`${file} has ${count}:`, ...lines].join('\n');
  }
}

export function formatProblem(problem: ConfigProblem): string {
  const where = problem.path === '' ? '' : `${problem.path}: `;
  const line = problem.line === undefined ? '' : ` (line ${problem.line})`;
  return `${where}${problem.message}${line}`;
}

/** The database could not be reached or refused us; usually fixed outside tablesync, so worth retrying. */
export class DatabaseConnectError extends TablesyncError {
  readonly code = 'TS_ERR_DB_CONNECT';
  readonly exitCode = 1;
  constructor(
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A statement tablesync issued failed in a way that is not the user's data (a bug or a lost connection). */
export class DatabaseError extends TablesyncError {
  readonly code = 'TS_ERR_DB';
  readonly retryable = true;
  readonly exitCode = 1;
}

/** The command line was used wrongly (unknown option, missing -c). */
export class UsageError extends TablesyncError {
  readonly code = 'TS_ERR_USAGE';
  readonly retryable = false;
  readonly exitCode = 2;
}

/** Replaces the password of a URL with `***` so that the URL can be shown or logged. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
  }
}
