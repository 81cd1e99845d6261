import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onCleanup } from './cleanup.js';

/** The checkout: the nearest folder above this module whose package.json is tablesync's (the benchmark is compiled into node_modules/.cache). */
export function projectRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    try {
      if ((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }).name === 'tablesync') return dir;
    } catch {
      // No package.json here: go on up.
    }
    if (dirname(dir) === dir) throw new Error(`no tablesync checkout above ${fileURLToPath(import.meta.url)}`);
  }
}

/** The built command line (`npm run build`), run as users run it: a real child process. */
export const cliPath = join(projectRoot(), 'dist', 'cli', 'main.js');

/** The unit that runs a daemon in production; the benchmark's daemons get the environment it sets. */
export const serviceUnitPath = join(projectRoot(), 'config', 'systemd', 'tablesync@.service');

/**
 * The variables the systemd unit sets with `Environment=` lines: a daemon is
 * measured as it runs in production (the container sets the same ones).
 */
export function serviceEnvironment(unitFile = serviceUnitPath): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(unitFile, 'utf8').split('\n')) {
    const match = /^Environment=([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim());
    if (match?.[1] !== undefined && match[2] !== undefined) out[match[1]] = match[2];
  }
  return out;
}

export interface CliOptions {
  /** Where stdout and stderr go (appended). */
  readonly logFile: string;
  /** `node --cpu-prof` into this folder. */
  readonly cpuProfDir?: string;
  /** Variables set on top of the benchmark's own environment (a daemon gets the systemd unit's). */
  readonly env?: Readonly<Record<string, string>>;
}

/** A tablesync process: the daemon or a command, with its output appended to a log file and kept in memory (commands). */
export class CliProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #output = '';
  readonly #listeners = new Set<() => void>();
  readonly #forget: () => Promise<void>;

  constructor(
    readonly label: string,
    args: readonly string[],
    options: CliOptions,
    /** Keep stdout and stderr in memory too (for a command whose output is read). */
    capture = false,
  ) {
    let nodeArgs: string[] = [];
    if (options.cpuProfDir !== undefined) {
      const dir = join(options.cpuProfDir, label);
      mkdirSync(dir, { recursive: true });
      nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${dir}`];
    }
    const fd = openSync(options.logFile, 'a');
    this.child = spawn(process.execPath, [...nodeArgs, cliPath, ...args], {
      stdio: ['ignore', capture ? 'pipe' : fd, capture ? 'pipe' : fd],
      env: { ...process.env, ...options.env },
    });
    if (capture) {
      const collect = (chunk: Buffer): void => {
        writeSync(fd, chunk);
        this.#output += chunk.toString();
        for (const listener of this.#listeners) listener();
      };
      this.child.stdout?.on('data', collect);
      this.child.stderr?.on('data', collect);
    }
    this.exited = new Promise((resolve) =>
      this.child.on('close', (code, signal) => {
        closeSync(fd);
        resolve({ code, signal });
        for (const listener of this.#listeners) listener();
      }),
    );
    this.#forget = onCleanup(`kill ${label} (pid ${this.child.pid ?? '?'})`, () => this.kill());
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.label} did not start`);
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    return this.#output;
  }

  /** Resolves with the first match of `pattern` in the output; rejects if the process exits first or time runs out. */
  waitForOutput(pattern: RegExp, timeoutMs: number, onLine?: (line: string) => void): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      let seen = 0;
      const check = (): void => {
        if (onLine !== undefined) {
          const end = this.#output.lastIndexOf('\n') + 1;
          if (end > seen) {
            for (const line of this.#output.slice(seen, end).split(/[\r\n]+/)) if (line.trim() !== '') onLine(line);
            seen = end;
          }
        }
        const match = this.#output.match(pattern);
        if (match !== null) {
          done();
          resolve(match);
        } else if (!this.running) {
          done();
          reject(new Error(`${this.label} exited (code ${String(this.child.exitCode)}) before printing ${pattern}; output:\n${this.#output.slice(-4000)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label}: no ${pattern} after ${timeoutMs / 1000} s; output so far:\n${this.#output.slice(-4000)}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** SIGTERM, then SIGKILL if it is still there after `graceMs`; resolves the exit code. */
  async stop(graceMs = 30_000): Promise<number | null> {
    if (this.running) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const { code } = await this.exited;
    clearTimeout(timer);
    await this.#forget();
    return code;
  }

  async kill(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }
}

// ---------------------------------------------------------------- memory

export interface MemoryStatus {
  /** Resident set size now, in KiB. */
  rssKb: number;
  /** Peak resident set size (VmHWM), in KiB. */
  hwmKb: number;
}

/** VmRSS and VmHWM from /proc/<pid>/status (Linux); undefined when it cannot be read. */
export function memoryOf(pid: number): MemoryStatus | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1] ?? NaN);
    const out = { rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') };
    return Number.isFinite(out.rssKb) ? out : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Samples the resident memory of named processes every `intervalMs`,
 * keeping the largest value seen per name: over the process's life, and
 * since the last `startPhase()`.
 */
export class RssSampler {
  readonly #watched = new Map<string, number>();
  readonly #max = new Map<string, number>();
  readonly #phaseMax = new Map<string, number>();
  readonly #timer: NodeJS.Timeout;

  constructor(intervalMs = 200) {
    this.#timer = setInterval(() => this.sample(), intervalMs);
    this.#timer.unref();
  }

  watch(name: string, pid: number): void {
    this.#watched.set(name, pid);
    this.sample();
  }

  unwatch(name: string): void {
    this.sample();
    this.#watched.delete(name);
  }

  sample(): void {
    for (const [name, pid] of this.#watched) {
      const memory = memoryOf(pid);
      if (memory === undefined) continue;
      this.#max.set(name, Math.max(this.#max.get(name) ?? 0, memory.rssKb));
      this.#phaseMax.set(name, Math.max(this.#phaseMax.get(name) ?? 0, memory.rssKb));
    }
  }

  /** The largest RSS seen for `name` over its life, in KiB. */
  maxKb(name: string): number | undefined {
    return this.#max.get(name);
  }

  /** The largest RSS seen for `name` since the last startPhase(), in KiB. */
  phaseMaxKb(name: string): number | undefined {
    return this.#phaseMax.get(name);
  }

  startPhase(): void {
    this.#phaseMax.clear();
    this.sample();
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

// ---------------------------------------------------------------- sockets

/**
 * Whether process `pid` holds an established TCP connection to 127.0.0.1:`port`
 * (Linux: its socket inodes in /proc/<pid>/fd, matched in /proc/net/tcp).
 * Undefined when /proc cannot tell.
 */
export function connectedTo(pid: number, port: number): boolean | undefined {
  try {
    const inodes = new Set<string>();
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        const match = /^socket:\[(\d+)\]$/.exec(link);
        if (match?.[1] !== undefined) inodes.add(match[1]);
      } catch {
        // The descriptor closed meanwhile.
      }
    }
    const wanted = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
    for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // sl local remote state ... inode (10th field)
      if (fields[2] === wanted && fields[3] === '01' && fields[9] !== undefined && inodes.has(fields[9])) return true;
    }
    return false;
  } catch {
    return undefined;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
