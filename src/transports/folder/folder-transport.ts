import { randomBytes } from 'node:crypto';
import { constants, type BigIntStats } from 'node:fs';
import { access, mkdir, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { FolderTransportConfig } from '../../config/types.js';
import { isBatchFileName } from '../batch-file-name.js';
import { ArrivalListeners } from '../arrival-listeners.js';
import type { IncomingBatch, OutgoingBatch, Transport } from '../transport.js';
import { TransportClosedError } from '../transport-closed-error.js';
import { folderPolicy } from './folder-policy.js';
import { FolderTransportError } from './folder-transport-error.js';

/** The slice of a logger the folder transport uses; a pino Logger fits. */
export interface FolderTransportLogger {
  warn(obj: object, msg: string): void;
}

export interface FolderTransportOptions {
  /** Milliseconds between listings of the download folder while `onArrival` is in use; default `folderPolicy.scanIntervalMs` (1000). */
  readonly scanIntervalMs?: number;
  /**
   * Whether to watch the download folder for file-system events as well as
   * scanning it; default true. False leaves only the periodic scan: for
   * mounts where events never arrive, or to spare inotify instances.
   */
  readonly watch?: boolean;
  /** Where unreadable batch files, watcher failures and listener exceptions are reported; default: nowhere. */
  readonly logger?: FolderTransportLogger;
}

/** Our own temporary names (see `send`), so that the clean-up at start never touches anyone else's dotfiles. */
const tempNamePattern = /^\..+\.\d+\.\d+\.[0-9a-f]{8}\.tmp$/;

/** Where each side leaves its description for the peer's `tablesync check`: a dotfile, so never taken for a batch. */
const descriptionFileName = '.tablesync-description.json';

const silentLogger: FolderTransportLogger = { warn: () => {} };

/** Sends so far in this process: with the pid, it keeps temporary names unique per process and call. */
let sendCount = 0;

/**
 * Batches travel as files through two folders: ours (`upload`), where we
 * write, and the peer's (`download`), where we read. A file appears under
 * its final name only by an atomic rename of a complete, fsynced temporary
 * file, so a reader never sees half a batch, and a batch is removed only
 * when the engine says it is done.
 *
 * Both folders are created at first use. A reader that finds a file it
 * cannot read skips it (and logs that once) rather than rejecting it, since
 * permissions can be fixed; a file that vanishes while being read was taken
 * or replaced by someone else and is skipped without a word.
 */
export class FolderTransport implements Transport {
  readonly maxBatchBytes = folderPolicy.maxBatchBytes;
  readonly reachesPeer = true;
  readonly #upload: string;
  readonly #download: string;
  readonly #scanIntervalMs: number;
  readonly #watch: boolean;
  readonly #logger: FolderTransportLogger;

  #folders: Promise<void> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  readonly #arrivals: ArrivalListeners;
  #watching: Promise<void> | undefined;
  #watcher: FSWatcher | undefined;
  #stopWaitingForWatcher: (() => void) | undefined;
  #scanTimer: NodeJS.Timeout | undefined;
  #scanning = false;
  #lastListing: ReadonlySet<string> | undefined;
  #lastScanProblem: string | undefined;
  /** Names already reported as unreadable, so that a file stuck that way is logged once, not once per poll. */
  readonly #unreadable = new Set<string>();

  constructor(config: FolderTransportConfig, options: FolderTransportOptions = {}) {
    this.#upload = resolve(config.upload);
    this.#download = resolve(config.download);
    this.#scanIntervalMs = options.scanIntervalMs ?? folderPolicy.scanIntervalMs;
    this.#watch = options.watch ?? true;
    this.#logger = options.logger ?? silentLogger;
    this.#arrivals = new ArrivalListeners('folder', this.#logger, folderPolicy.arrivalDelayMs);
  }

  async send(batch: OutgoingBatch): Promise<void> {
    this.#assertOpen('send a batch');
    this.#assertBatchName(batch.name);
    await this.#ensureFolders();
    await this.#writeAtomically(batch.name, batch.body, `write batch ${batch.name} into the upload folder`);
  }

  /** Changes nothing (unlike the other operations, which create missing folders). */
  async probe(): Promise<string> {
    this.#assertOpen('check the folders');
    const problem =
      (await folderProblem('upload', this.#upload, constants.W_OK | constants.X_OK, 'writable')) ??
      (await folderProblem('download', this.#download, constants.R_OK | constants.W_OK | constants.X_OK, 'readable and writable'));
    if (problem !== undefined) throw new FolderTransportError(problem, this.#download, undefined, true);
    return 'both folders exist and are usable';
  }

  async publishDescription(body: Buffer): Promise<void> {
    this.#assertOpen('publish the description');
    await this.#ensureFolders();
    await this.#writeAtomically(descriptionFileName, body, 'write this side\'s description into the upload folder');
  }

  async readPeerDescription(): Promise<Buffer | undefined> {
    this.#assertOpen('read the peer\'s description');
    await this.#ensureFolders();
    try {
      return await readFile(join(this.#download, descriptionFileName));
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw this.#fail(err, 'read the peer\'s description from the download folder', this.#download, 'download');
    }
  }

  /** Writes a complete, fsynced temporary file, then renames it into place: a reader never sees half of it. */
  async #writeAtomically(name: string, body: Buffer, doing: string): Promise<void> {
    const final = join(this.#upload, name);
    sendCount += 1;
    // The name is shortened so that a long name cannot push the temporary one past the file system's limit.
    const temp = join(this.#upload, `.${name.replace(/^\./, '').slice(0, 100)}.${process.pid}.${sendCount}.${randomBytes(4).toString('hex')}.tmp`);
    let handle: FileHandle | undefined;
    try {
      handle = await open(temp, 'wx');
      await handle.writeFile(body);
      await handle.sync();
      await handle.close();
      handle = undefined;
      await rename(temp, final);
    } catch (err) {
      await handle?.close().catch(() => {});
      await rm(temp, { force: true }).catch(() => {});
      throw this.#fail(err, doing, this.#upload);
    }
    await this.#syncFolder(this.#upload);
  }

  async isWaiting(name: string): Promise<boolean> {
    this.#assertOpen('check a sent batch');
    this.#assertBatchName(name);
    await this.#ensureFolders();
    try {
      return (await stat(join(this.#upload, name))).isFile();
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return false;
      throw this.#fail(err, `check whether batch ${name} is still waiting in the upload folder`, this.#upload);
    }
  }

  async receive(): Promise<IncomingBatch[]> {
    this.#assertOpen('receive batches');
    await this.#ensureFolders();
    const names = await this.#listBatchNames();
    const batches: IncomingBatch[] = [];
    for (const name of names) {
      const read = await this.#read(name);
      if (read !== undefined) batches.push(this.#incoming(name, read.body, read.identity));
    }
    // Forgetting names that are gone keeps the set small and lets a new file under an old name be reported again.
    const present = new Set(names);
    for (const name of this.#unreadable) if (!present.has(name)) this.#unreadable.delete(name);
    return batches;
  }

  /**
   * Calls `listener` (at most every `folderPolicy.arrivalDelayMs`) when a
   * batch file is added or replaced in the download folder, as chokidar
   * reports it, and when the periodic scan finds a name it had not seen.
   * Also calls it once when watching has started, since batches may have
   * arrived while nobody watched. A listener that throws is logged.
   */
  onArrival(listener: () => void): void {
    this.#assertOpen('watch for arrivals');
    this.#arrivals.add(listener);
    if (this.#watching === undefined) {
      this.#scanTimer = setInterval(() => void this.#scan(), this.#scanIntervalMs);
      this.#scanTimer.unref();
      this.#watching = this.#startWatcher().then(() => this.#scan());
    }
    this.#watching
      .then(() => this.#arrivals.signal())
      .catch((err: unknown) => this.#logger.warn({ err, folder: this.#download }, `watching ${this.#download} could not start`));
  }

  /**
   * Stops the watcher and timers. A `send` or `receive` already running
   * finishes; later ones throw TransportClosedError. `done()` and `reject()`
   * of batches received earlier still work, so that the batch in hand can be
   * finished during shutdown.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#scanTimer);
    this.#arrivals.close();
    this.#stopWaitingForWatcher?.();
    const watcher = this.#watcher;
    this.#watcher = undefined;
    await watcher?.close();
  }

  #describe(): string {
    return `folder transport (upload ${this.#upload}, download ${this.#download})`;
  }

  #assertOpen(operation: string): void {
    if (this.#closed) throw new TransportClosedError(this.#describe(), operation);
  }

  #assertBatchName(name: string): void {
    if (!isBatchFileName(name)) {
      throw new FolderTransportError(
        `batch name ${JSON.stringify(name)} is not a batch file name: it must start with a letter, digit, "-" or "_", ` +
          'hold only letters, digits, ".", "-" and "_", and end in ".json", or the peer would never read it.',
        join(this.#upload, name),
        undefined,
        false,
      );
    }
  }

  #ensureFolders(): Promise<void> {
    this.#folders ??= this.#createFolders().catch((err: unknown) => {
      // Forgotten, so that the next call tries again (a mount may come back, permissions may be fixed).
      this.#folders = undefined;
      throw err;
    });
    return this.#folders;
  }

  async #createFolders(): Promise<void> {
    for (const [role, folder] of [
      ['upload', this.#upload],
      ['download', this.#download],
    ] as const) {
      try {
        await mkdir(folder, { recursive: true });
        if (!(await stat(folder)).isDirectory()) throw Object.assign(new Error(`${folder} is not a directory`), { code: 'ENOTDIR' });
      } catch (err) {
        throw this.#fail(err, `create the ${role} folder ${folder}`, folder, role);
      }
    }
    await this.#removeStaleTemps();
  }

  /** Temporary files left by a crash mid-send would otherwise pile up: the peer never reads them and nobody else removes them. */
  async #removeStaleTemps(): Promise<void> {
    const names = await readdir(this.#upload).catch(() => [] as string[]);
    const before = Date.now() - folderPolicy.staleTempMs;
    for (const name of names) {
      if (!tempNamePattern.test(name)) continue;
      const path = join(this.#upload, name);
      try {
        if ((await stat(path)).mtimeMs < before) await rm(path, { force: true });
      } catch {
        // Another process may have finished or removed it meanwhile; a leftover is only untidy.
      }
    }
  }

  async #listBatchNames(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.#download);
    } catch (err) {
      throw this.#fail(err, 'list the download folder', this.#download, 'download');
    }
    // Plain code-unit order, not locale order: the contract says sorting names sorts batches in sending order.
    return names.filter(isBatchFileName).sort();
  }

  async #read(name: string): Promise<{ body: Buffer; identity: string } | undefined> {
    const path = join(this.#download, name);
    let handle: FileHandle | undefined;
    try {
      // Non-blocking, so that a FIFO someone left under a batch name is skipped below instead of hanging the read until a writer comes.
      handle = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
      // Sub-folders are told apart here rather than from the listing, because readdir's file types cost an lstat per entry on some network file systems.
      const stats = await handle.stat({ bigint: true });
      if (!stats.isFile()) return undefined;
      const body = await handle.readFile();
      this.#unreadable.delete(name);
      return { body, identity: fileIdentity(stats) };
    } catch (err) {
      const errno = errnoOf(err);
      // Gone between listing and reading: the peer replaced it, or another reader took it.
      if (errno === 'ENOENT' || errno === 'EISDIR') return undefined;
      if (!this.#unreadable.has(name)) {
        this.#unreadable.add(name);
        this.#logger.warn(
          { err, file: path, code: errno },
          `cannot read batch file ${path} (${errno ?? 'unknown error'}); skipping it until it can be read`,
        );
      }
      return undefined;
    } finally {
      await handle?.close().catch(() => {});
    }
  }

  /**
   * `done` and `reject` act only on the very file that was read: if the peer
   * has resent the batch since, the new file is a delivery of its own, to be
   * offered and judged again, not removed unread.
   */
  #incoming(name: string, body: Buffer, identity: string): IncomingBatch {
    const path = join(this.#download, name);
    let rejectedPath: string | undefined;
    return {
      name,
      body,
      done: async () => {
        try {
          if (await isSameFile(path, identity)) await rm(path);
        } catch (err) {
          if (errnoOf(err) === 'ENOENT') return;
          throw this.#fail(err, `delete batch file ${path}`, path);
        }
      },
      reject: async (reason: string) => {
        const rejectedFolder = join(this.#download, folderPolicy.rejectedFolder);
        try {
          if (rejectedPath === undefined || !(await exists(rejectedPath))) {
            // Taken by another reader, or replaced by a resend: there is nothing of ours to move aside.
            if (!(await isSameFile(path, identity))) return;
            await mkdir(rejectedFolder, { recursive: true });
            // Chosen once per batch, so that calling reject again finds the file where the first call put it.
            rejectedPath ??= await freeName(join(rejectedFolder, `${name}.${fileTimestamp(new Date())}`));
            try {
              await rename(path, rejectedPath);
            } catch (err) {
              if (errnoOf(err) === 'ENOENT') return;
              throw err;
            }
          }
          await writeFile(`${rejectedPath}.reason.txt`, `${reason}\n`);
        } catch (err) {
          throw this.#fail(err, `move batch file ${path} aside into ${rejectedFolder}`, path);
        }
      },
    };
  }

  /** Makes a rename durable: without it, a crash can forget the new name although the data was fsynced. */
  async #syncFolder(folder: string): Promise<void> {
    let handle: FileHandle | undefined;
    try {
      handle = await open(folder, 'r');
      await handle.sync();
    } catch (err) {
      const errno = errnoOf(err);
      if (errno !== undefined && folderPolicy.folderSyncUnsupportedCodes.has(errno)) return;
      throw this.#fail(err, `flush the upload folder ${folder} to disk`, folder);
    } finally {
      await handle?.close().catch(() => {});
    }
  }

  async #startWatcher(): Promise<void> {
    try {
      await this.#ensureFolders();
    } catch (err) {
      this.#logger.warn({ err }, `not watching ${this.#download} for arrivals: ${(err as Error).message}`);
      return;
    }
    if (this.#closed || !this.#watch) return;
    const watcher = watch(this.#download, {
      depth: 0,
      ignoreInitial: true,
      // Neither keeps the process alive nor delays events: files appear by rename, complete, so there is nothing to wait for.
      persistent: false,
      atomic: false,
      ignored: (path) => resolve(path) !== this.#download && !isBatchFileName(basename(path)),
    });
    this.#watcher = watcher;
    watcher.on('add', () => this.#arrivals.signal());
    watcher.on('change', () => this.#arrivals.signal());
    watcher.on('error', (err) => {
      this.#logger.warn({ err, folder: this.#download }, `watching ${this.#download} failed; arrivals are still found by scanning`);
    });
    await new Promise<void>((done) => {
      this.#stopWaitingForWatcher = done;
      watcher.once('ready', done);
    });
    this.#stopWaitingForWatcher = undefined;
  }

  /** The first scan only records what is there; later ones call the listeners when a name appears that was not there before. */
  async #scan(): Promise<void> {
    if (this.#closed || this.#scanning) return;
    this.#scanning = true;
    try {
      const names = new Set((await readdir(this.#download)).filter(isBatchFileName));
      const previous = this.#lastListing;
      this.#lastListing = names;
      this.#lastScanProblem = undefined;
      if (previous !== undefined && [...names].some((name) => !previous.has(name))) this.#arrivals.signal();
    } catch (err) {
      const errno = errnoOf(err) ?? 'unknown';
      // Reported when the problem starts or changes, not every second while it lasts.
      if (this.#lastScanProblem !== errno) {
        this.#lastScanProblem = errno;
        this.#logger.warn({ err, folder: this.#download }, `cannot list ${this.#download} to look for arrivals (${errno})`);
      }
    } finally {
      this.#scanning = false;
    }
  }

  /** Wraps a file-system error into one sentence: what failed, why, and what to do. */
  #fail(err: unknown, action: string, path: string, role?: 'upload' | 'download'): FolderTransportError {
    const errno = errnoOf(err);
    if (errno === 'ENOENT') this.#folders = undefined;
    const retryable =
      errno !== undefined &&
      (folderPolicy.retryableCodes.has(errno) || (process.platform === 'win32' && folderPolicy.retryableOnWindows.has(errno)));
    const setting = role === undefined ? '' : ` (the sync's transport.${role} setting)`;
    const code = errno === undefined ? '' : ` (${errno})`;
    const message = `cannot ${action}${setting}: ${explain(errno, path, err)}${code}.${fixFor(errno, path)}`;
    return new FolderTransportError(message, path, errno, retryable, { cause: err });
  }
}

function explain(errno: string | undefined, path: string, err: unknown): string {
  switch (errno) {
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ENOTDIR':
    case 'EEXIST':
      return `${path}, or a folder above it, is a file, not a folder`;
    case 'EROFS':
      return 'the file system is read-only';
    case 'ENOSPC':
      return 'the disk is full';
    case 'ENOENT':
      return `${path} no longer exists`;
    default:
      return err instanceof Error ? err.message : String(err);
  }
}

function fixFor(errno: string | undefined, path: string): string {
  switch (errno) {
    case 'EACCES':
    case 'EPERM':
      return ` Give the user running tablesync read and write access to ${path} (and its parent folders), or create it with that access.`;
    case 'ENOTDIR':
    case 'EEXIST':
      return ' Point the setting at a folder, or move the file out of the way.';
    case 'EROFS':
      return ' Mount it read-write, or choose a folder on a writable file system.';
    case 'ENOSPC':
      return ' Free some space; the next exchange tries again.';
    case 'ENOENT':
      return ' It is created again on the next attempt.';
    default:
      return '';
  }
}

function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** `20250102T030405.678Z`: sorts in time order and holds no `:`, which Windows forbids in file names. */
function fileTimestamp(at: Date): string {
  return at.toISOString().replace(/[-:]/g, '');
}

/** Changes whenever the file is replaced: a rename brings a new inode, created while the old one was still in use. */
function fileIdentity(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}`;
}

async function isSameFile(path: string, identity: string): Promise<boolean> {
  try {
    return fileIdentity(await stat(path, { bigint: true })) === identity;
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return false;
    throw err;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return false;
    throw err;
  }
}

/** `path`, or `path-2`, `path-3`... when a batch of the same name was rejected in the same millisecond. */
async function freeName(path: string): Promise<string> {
  let candidate = path;
  for (let n = 2; await exists(candidate); n += 1) candidate = `${path}-${n}`;
  return candidate;
}

async function folderProblem(setting: string, folder: string, mode: number, needs: string): Promise<string | undefined> {
  try {
    if (!(await stat(folder)).isDirectory()) return `the ${setting} folder ${folder} is not a folder`;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `the ${setting} folder ${folder} does not exist (tablesync run creates it at the first exchange)`;
    return `the ${setting} folder ${folder} cannot be examined (${code ?? (err as Error).message})`;
  }
  try {
    await access(folder, mode);
    return undefined;
  } catch {
    return `the ${setting} folder ${folder} is not ${needs} for this user`;
  }
}
