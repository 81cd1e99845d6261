import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * A process whose wall clock is shifted, by libfaketime (Debian: `apt-get
 * install faketime`): loaded with LD_PRELOAD, it shifts what the process
 * reads from the system clock, Date.now and SQLite's 'now' alike, so a
 * daemon and an application run under it are an instance on a machine
 * whose clock is off. Timers keep running on the real monotonic clock.
 */

/** The multi-threaded build (Node runs threads), wherever the distribution put it; undefined when faketime is not installed. */
export const fakeTimeLibrary: string | undefined = (() => {
  const folders = ['/usr/lib/faketime', '/usr/local/lib/faketime'];
  try {
    for (const entry of readdirSync('/usr/lib')) if (entry.endsWith('-linux-gnu')) folders.push(join('/usr/lib', entry, 'faketime'));
  } catch {
    // No /usr/lib: not Linux; faketime is not there either.
  }
  return folders.map((folder) => join(folder, 'libfaketimeMT.so.1')).find((file) => existsSync(file));
})();

/** The environment that runs a process `offset` away from the real clock (`+1h`, `-30s`: faketime's relative form). */
export function shiftedClock(offset: string): NodeJS.ProcessEnv {
  if (fakeTimeLibrary === undefined) throw new Error('libfaketime is not installed: apt-get install faketime');
  return { LD_PRELOAD: fakeTimeLibrary, FAKETIME: offset, FAKETIME_DONT_FAKE_MONOTONIC: '1' };
}

const require = createRequire(import.meta.url);

/**
 * Runs one statement on a SQLite file from a process of its own under
 * `env`: the application of an instance whose clock is shifted (the capture
 * triggers stamp changes with the writing process's clock). Resolves with
 * that process's Date.now(), to show the shift took.
 */
export async function sqliteExecIn(env: NodeJS.ProcessEnv, file: string, statement: string, params: readonly unknown[] = []): Promise<number> {
  const script = `
    const Database = require(process.argv[1]);
    const db = new Database(process.argv[2], { timeout: 30000 });
    db.prepare(process.argv[3]).run(...JSON.parse(process.argv[4]));
    db.close();
    process.stdout.write(String(Date.now()));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', script, require.resolve('better-sqlite3'), file, statement, JSON.stringify(params)], {
    env: { ...process.env, ...env },
  });
  return Number(stdout);
}
