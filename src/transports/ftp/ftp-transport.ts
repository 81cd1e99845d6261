import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { posix } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { rootCertificates, type ConnectionOptions } from 'node:tls';
import { Client } from 'basic-ftp';
import type { FtpTransportConfig } from '../../config/types.js';
import { isBatchFileName } from '../batch-file-name.js';
import { ArrivalListeners } from '../arrival-listeners.js';
import type { IncomingBatch, OutgoingBatch, Transport } from '../transport.js';
import { TransportClosedError } from '../transport-closed-error.js';
import { ftpPolicy, type FtpPolicy } from './ftp-policy.js';
import { FtpTransportError } from './ftp-transport-error.js';

/** The slice of a logger the ftp transport uses; a pino Logger fits. */
export interface FtpTransportLogger {
  warn(obj: object, msg: string): void;
}

export interface FtpTransportOptions {
  /** Where skipped files, lost connections, failed arrival listings and listener exceptions are reported; default: nowhere. */
  readonly logger?: FtpTransportLogger;
  /**
   * A PEM file of certificates (one or more) trusted for explicit FTPS in
   * addition to the system's authorities: the instance's `tls.ca`. Read at
   * the first secure connection. Default: the system's authorities only.
   */
  readonly caFile?: string;
  /** Milliseconds between listings of the download folder while `onArrival` is in use; default `ftpPolicy.pollIntervalMs` (5000). */
  readonly pollIntervalMs?: number;
  /** Figures that replace those of `ftpPolicy`, such as shorter reconnection delays in tests. */
  readonly policy?: Partial<FtpPolicy>;
}

/** A directory entry as the server listed it. */
interface RemoteEntry {
  readonly name: string;
  readonly size: number;
  readonly isFile: boolean;
  readonly isDirectory: boolean;
  readonly isSymbolicLink: boolean;
}

/** The slice of basic-ftp's Client this transport uses. One client is one control connection, doing one thing at a time. */
interface FtpClient {
  readonly closed: boolean;
  connect(host: string, port: number): Promise<unknown>;
  useTLS(options: ConnectionOptions): Promise<unknown>;
  login(user: string, password: string): Promise<unknown>;
  useDefaultSettings(): Promise<void>;
  send(command: string): Promise<unknown>;
  pwd(): Promise<string>;
  cd(path: string): Promise<unknown>;
  list(path: string): Promise<RemoteEntry[]>;
  uploadFrom(source: Readable, toRemotePath: string): Promise<unknown>;
  downloadTo(destination: Writable, fromRemotePath: string): Promise<unknown>;
  rename(from: string, to: string): Promise<unknown>;
  remove(path: string): Promise<unknown>;
  close(): void;
}

/** What an operation does, for its error message: a phrase that follows "cannot", and the server path concerned. */
interface Doing {
  readonly action: string;
  readonly path: string;
  readonly role?: 'upload' | 'download';
}

/** Where each side leaves its description for the peer's `tablesync check`, as the folder transport does: a dotfile, so never taken for a batch. */
const descriptionFileName = '.tablesync-description.json';

/** Our own temporary names (see `#writeAtomically`), with the time the send started, so that the clean-up at first use touches nobody else's dotfiles. */
const tempNamePattern = /^\..+\.(\d{13,})\.[0-9a-f]{8}\.tmp$/;

const silentLogger: FtpTransportLogger = { warn: () => {} };

/**
 * Batches travel as files through two folders on one FTP server, to which
 * both sides connect as clients: ours (`upload`), where we write, and the
 * peer's (`download`), where we read. A file appears under its final name
 * only by renaming a temporary dotfile that was uploaded in full, so a
 * reader never sees half a batch; a batch is deleted only when the engine
 * says it is done.
 *
 * One control connection, opened at first use (explicit FTPS when the
 * configuration says `secure: true`, the server's certificate verified),
 * carries every operation, one after the other. A connection that the
 * server dropped, or that a restart of the server closed, is opened again
 * on the next operation; one lost in the middle of an operation is opened
 * again and the operation run once more. Both folders are created at first
 * use.
 *
 * FTP tells nobody about new files: `onArrival` lists the download folder
 * every `pollIntervalMs`. A file whose download has fewer or more bytes than
 * the listing said (the peer's server replacing it, someone writing it in
 * place) or that vanished between listing and download is skipped this
 * time, and offered once it is whole.
 */
export class FtpTransport implements Transport {
  readonly maxBatchBytes: number;
  readonly reachesPeer = true;
  readonly #host: string;
  readonly #port: number;
  readonly #user: string;
  readonly #password: string;
  readonly #secure: boolean;
  readonly #upload: string;
  readonly #download: string;
  /** `host:port`, as messages name the server. */
  readonly #server: string;
  readonly #policy: FtpPolicy;
  readonly #pollIntervalMs: number;
  readonly #caFile: string | undefined;
  readonly #logger: FtpTransportLogger;

  #client: FtpClient | undefined;
  #trust: Promise<ConnectionOptions> | undefined;
  #foldersReady = false;
  /** The end of the queue of operations: each waits for the one before, since one control connection does one thing at a time. */
  #tail: Promise<void> = Promise.resolve();
  #pending = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Ends a pause between connection attempts early, when the transport is closed. */
  #wake: (() => void) | undefined;

  readonly #arrivals: ArrivalListeners;
  #watching: Promise<void> | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #polling = false;
  /** The batch names of the download folder's latest listing, by `receive` or by the arrival poll. */
  #lastListing: { readonly names: ReadonlySet<string>; readonly at: number } | undefined;
  #lastPollProblem: string | undefined;
  /** Why each batch file was skipped by the latest `receive`, so that a file stuck the same way is reported, once. */
  #skipped = new Map<string, string>();
  readonly #reported = new Set<string>();

  constructor(config: FtpTransportConfig, options: FtpTransportOptions = {}) {
    this.#host = config.host;
    this.#port = config.port;
    this.#user = config.user;
    this.#password = config.password;
    this.#secure = config.secure;
    this.#upload = config.upload;
    this.#download = config.download;
    this.#server = `${config.host}:${config.port}`;
    this.#policy = { ...ftpPolicy, ...options.policy };
    this.#pollIntervalMs = options.pollIntervalMs ?? this.#policy.pollIntervalMs;
    this.#caFile = options.caFile;
    this.#logger = options.logger ?? silentLogger;
    this.#arrivals = new ArrivalListeners('ftp', this.#logger);
    this.maxBatchBytes = this.#policy.maxBatchBytes;
  }

  async send(batch: OutgoingBatch): Promise<void> {
    this.#assertOpen('send a batch');
    this.#assertBatchName(batch.name);
    await this.#writeAtomically(batch.name, batch.body, `write batch ${batch.name} into the upload folder ${this.#upload}`);
  }

  async publishDescription(body: Buffer): Promise<void> {
    this.#assertOpen('publish the description');
    await this.#writeAtomically(descriptionFileName, body, `write this side's description into the upload folder ${this.#upload}`);
  }

  async readPeerDescription(): Promise<Buffer | undefined> {
    this.#assertOpen('read the peer\'s description');
    const path = posix.join(this.#download, descriptionFileName);
    return this.#operate({ action: `read the peer's description ${path}`, path, role: 'download' }, async (client) => {
      try {
        return await download(client, path);
      } catch (err) {
        // A permanent refusal of a file in a folder we could list: it is not there (yet).
        const code = replyCodeOf(err);
        if (code !== undefined && code >= 500) return undefined;
        throw err;
      }
    });
  }

  async probe(): Promise<string> {
    this.#assertOpen('reach the FTP server');
    await this.#operate({ action: `list the folders ${this.#upload} and ${this.#download}`, path: this.#download, role: 'download' }, async (client) => {
      await client.list(this.#upload);
      await client.list(this.#download);
    });
    return `logged in to ${this.#server}; both folders are there`;
  }

  async isWaiting(name: string): Promise<boolean> {
    this.#assertOpen('check a sent batch');
    this.#assertBatchName(name);
    return this.#operate(
      { action: `check whether batch ${name} is still waiting in the upload folder ${this.#upload}`, path: this.#upload, role: 'upload' },
      async (client) => (await client.list(this.#upload)).some((entry) => entry.name === name && isPlainFile(entry)),
    );
  }

  async receive(): Promise<IncomingBatch[]> {
    this.#assertOpen('receive batches');
    const folder = this.#download;
    const read = await this.#operate({ action: `take the batches from the download folder ${folder}`, path: folder, role: 'download' }, async (client) => {
      const entries = (await client.list(folder)).filter((entry) => isPlainFile(entry) && isBatchFileName(entry.name));
      this.#recordListing(entries);
      // Plain code-unit order, not locale order: the contract says sorting names sorts batches in sending order.
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const batches: { name: string; body: Buffer }[] = [];
      const skipped = new Map<string, string>();
      for (const entry of entries) {
        let body: Buffer;
        try {
          body = await download(client, posix.join(folder, entry.name));
        } catch (err) {
          // A lost connection fails the whole receive (and it is run again); a refusal skips this file only.
          if (replyCodeOf(err) === undefined) throw err;
          skipped.set(entry.name, `the server refused to send it (${this.#replyText(err)})`);
          continue;
        }
        if (body.length !== entry.size) {
          skipped.set(entry.name, `its download had ${body.length} bytes where the listing said ${entry.size}`);
          continue;
        }
        batches.push({ name: entry.name, body });
      }
      this.#noteSkipped(folder, skipped);
      return batches;
    });
    return read.map(({ name, body }) => this.#incoming(name, body));
  }

  /**
   * Calls `listener` when a listing of the download folder (every
   * `pollIntervalMs`, or by `receive`) shows a batch name that the one
   * before did not. Also calls it once when watching has started, since
   * batches may have arrived while nobody watched. A listener that throws is
   * logged.
   */
  onArrival(listener: () => void): void {
    this.#assertOpen('watch for arrivals');
    this.#arrivals.add(listener);
    if (this.#watching === undefined) {
      this.#watching = this.#poll();
      this.#pollTimer = setInterval(() => void this.#poll(), this.#pollIntervalMs);
      this.#pollTimer.unref();
    }
    void this.#watching.then(() => this.#arrivals.signal());
  }

  /**
   * Stops polling and refuses new operations, including `done()` and
   * `reject()` of batches received earlier (they would need a connection
   * again); operations already started or waiting in line finish first,
   * except that a pause between connection attempts is cut short. Then the
   * connection is closed.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#pollTimer);
    this.#arrivals.close();
    this.#wake?.();
    await this.#tail;
    this.#disconnect();
  }

  /** Uploads a complete temporary dotfile, then renames it into place: a reader never sees half of it. */
  #writeAtomically(name: string, body: Buffer, action: string): Promise<void> {
    const folder = this.#upload;
    const final = posix.join(folder, name);
    /** The temporary file of an attempt that a lost connection interrupted: removed by the next attempt. */
    let abandoned: string | undefined;
    return this.#operate({ action, path: folder, role: 'upload' }, async (client) => {
      if (abandoned !== undefined) await ignoringRefusal(client.remove(abandoned));
      const temp = posix.join(folder, temporaryName(name));
      abandoned = temp;
      try {
        await client.uploadFrom(Readable.from([body], { objectMode: false }), temp);
        await renameOver(client, temp, final);
      } catch (err) {
        if (!client.closed) await client.remove(temp).catch(() => {});
        throw err;
      }
      abandoned = undefined;
    });
  }

  /**
   * `done` and `reject` act on the name that was read. A resend under the
   * same name meanwhile carries the same batch (the engine resends what it
   * stored), except for the peer's acknowledgement, whose newer copy a
   * `done` may remove unread: the peer then resends what is unacknowledged,
   * and acknowledges again.
   */
  #incoming(name: string, body: Buffer): IncomingBatch {
    const folder = this.#download;
    const path = posix.join(folder, name);
    const rejectedFolder = posix.join(folder, this.#policy.rejectedFolder);
    let rejectedPath: string | undefined;
    return {
      name,
      body,
      done: async () => {
        this.#assertOpen(`finish batch ${name}`);
        await this.#operate({ action: `delete batch file ${path}`, path, role: 'download' }, async (client) => {
          try {
            await client.remove(path);
          } catch (err) {
            if (replyCodeOf(err) === undefined) throw err;
            // Gone already: done() twice, another reader, or a delete whose reply a lost connection swallowed.
            if ((await listNames(client, folder))?.has(name) !== false) throw err;
          }
        });
      },
      reject: async (reason: string) => {
        this.#assertOpen(`reject batch ${name}`);
        await this.#operate({ action: `move batch file ${path} aside into ${rejectedFolder}`, path, role: 'download' }, async (client) => {
          const moved = rejectedPath !== undefined && (await listNames(client, rejectedFolder))?.has(posix.basename(rejectedPath)) === true;
          if (!moved) {
            // Taken by another reader meanwhile: there is nothing of ours to move aside.
            if ((await listNames(client, folder))?.has(name) === false) return;
            await ignoringRefusal(client.send(`MKD ${rejectedFolder}`));
            // Chosen once per batch, so that calling reject again finds the file where the first call put it.
            rejectedPath ??= posix.join(rejectedFolder, await freeName(client, rejectedFolder, `${name}.${fileTimestamp(new Date())}`));
            await client.rename(path, rejectedPath);
          }
          await client.uploadFrom(Readable.from([Buffer.from(`${reason}\n`)], { objectMode: false }), `${rejectedPath}.reason.txt`);
        });
      },
    };
  }

  /**
   * Runs `work` after every operation queued before it, on a connection
   * opened if need be. When the connection is lost during `work`, it is
   * opened again and `work` runs once more. The arrival poll passes
   * `patient` = false: one connection attempt and no second run, so that it
   * never holds up the engine's own operations.
   */
  #operate<T>(doing: Doing, work: (client: FtpClient) => Promise<T>, patient = true): Promise<T> {
    this.#pending += 1;
    const run = this.#tail.then(() => this.#attempt(doing, work, patient));
    const settled = (): void => {
      this.#pending -= 1;
    };
    this.#tail = run.then(settled, settled);
    return run;
  }

  async #attempt<T>(doing: Doing, work: (client: FtpClient) => Promise<T>, patient: boolean): Promise<T> {
    let client = await this.#connection(patient);
    try {
      await this.#prepareFolders(client);
      return await work(client);
    } catch (err) {
      if (!isLost(err, client)) throw this.#fail(err, doing);
      this.#disconnect();
      if (!patient) throw this.#fail(err, doing);
      this.#logger.warn({ err, server: this.#server }, `the connection to the FTP server ${this.#server} was lost; reconnecting to ${doing.action}`);
      client = await this.#connection(patient);
      try {
        await this.#prepareFolders(client);
        return await work(client);
      } catch (again) {
        if (isLost(again, client)) this.#disconnect();
        throw this.#fail(again, doing, true);
      }
    }
  }

  /** The open connection, or a new one: up to `reconnectDelaysMs.length + 1` attempts when `patient`. */
  async #connection(patient: boolean): Promise<FtpClient> {
    if (this.#client !== undefined && !this.#client.closed) return this.#client;
    this.#disconnect();
    const delays = patient ? this.#policy.reconnectDelaysMs : [];
    for (let attempt = 1; ; attempt += 1) {
      const client: FtpClient = new Client(this.#policy.timeoutMs);
      let step: 'connect' | 'tls' | 'login' = 'connect';
      try {
        await client.connect(this.#host, this.#port);
        if (this.#secure) {
          step = 'tls';
          const trust = await this.#trusted();
          // The name is checked against the certificate, and sent (SNI) unless it is an address, for servers with several certificates.
          await client.useTLS({ ...trust, host: this.#host, servername: isIP(this.#host) === 0 ? this.#host : undefined });
        }
        step = 'login';
        await client.login(this.#user, this.#password);
        await client.useDefaultSettings();
        this.#client = client;
        return client;
      } catch (err) {
        client.close();
        const failure = this.#connectFailure(err, step, attempt);
        const delay = delays[attempt - 1];
        if (!failure.retryable || delay === undefined || this.#closed) throw failure;
        await this.#pause(delay);
        if (this.#closed) throw failure;
      }
    }
  }

  #disconnect(): void {
    this.#client?.close();
    this.#client = undefined;
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  /** The certificates to trust: the system's, plus the `caFile` when given (Node's `ca` option replaces the defaults, so both are listed). */
  #trusted(): Promise<ConnectionOptions> {
    const caFile = this.#caFile;
    if (caFile === undefined) return Promise.resolve({});
    this.#trust ??= readFile(caFile, 'utf8').then(
      (pem) => ({ ca: [...rootCertificates, pem] }),
      (err: unknown) => {
        this.#trust = undefined;
        throw new FtpTransportError(
          `cannot open an explicit FTPS connection to ${this.#server}: the certificate file ${caFile} (the instance's tls.ca setting) ` +
            `cannot be read (${errnoOf(err) ?? String(err)}). Point tls.ca at a readable PEM file, or remove it to trust the system's authorities only.`,
          { server: this.#server, path: caFile, errno: errnoOf(err), retryable: false },
          { cause: err },
        );
      },
    );
    return this.#trust;
  }

  /** Creates both folders at first use (and again after a refusal, since someone may have removed one), and removes stale temporary files. */
  async #prepareFolders(client: FtpClient): Promise<void> {
    if (this.#foldersReady) return;
    const home = await client.pwd();
    for (const [role, folder] of [
      ['upload', this.#upload],
      ['download', this.#download],
    ] as const) {
      // Created one level at a time, since servers differ on whether MKD creates parents; a refusal may mean it exists already.
      for (const ancestor of ancestorsAndSelf(folder)) await ignoringRefusal(client.send(`MKD ${ancestor}`));
      // Entering it is the one check that every server answers truthfully: some list a missing folder as an empty one.
      try {
        await client.cd(folder);
      } catch (err) {
        if (replyCodeOf(err) === undefined) throw err;
        throw this.#fail(err, { action: `create the ${role} folder ${folder}`, path: folder, role });
      }
      // Back to the login folder, from which relative folders are taken.
      await client.cd(home);
    }
    await this.#removeStaleTemps(client, await client.list(this.#upload));
    this.#foldersReady = true;
  }

  /** Temporary files left by an interrupted send would otherwise pile up: the peer never reads them and nobody else removes them. */
  async #removeStaleTemps(client: FtpClient, entries: readonly RemoteEntry[]): Promise<void> {
    const before = Date.now() - this.#policy.staleTempMs;
    for (const entry of entries) {
      const started = tempNamePattern.exec(entry.name)?.[1];
      if (started === undefined || Number(started) >= before) continue;
      // Another process of ours may have removed it meanwhile; a leftover is only untidy.
      await ignoringRefusal(client.remove(posix.join(this.#upload, entry.name)));
    }
  }

  #recordListing(entries: readonly RemoteEntry[]): void {
    this.#lastListing = { names: new Set(entries.filter(isPlainFile).map((e) => e.name).filter(isBatchFileName)), at: Date.now() };
  }

  /** Reports a file skipped twice in a row for the same reason (once, until it is taken or changes): once is a race with the peer, twice is stuck. */
  #noteSkipped(folder: string, skipped: Map<string, string>): void {
    for (const [name, reason] of skipped) {
      if (this.#skipped.get(name) !== reason || this.#reported.has(name)) continue;
      this.#reported.add(name);
      const path = posix.join(folder, name);
      this.#logger.warn({ file: path, server: this.#server }, `skipping batch file ${path} on ${this.#server} until it can be read whole: ${reason}`);
    }
    for (const name of this.#reported) if (!skipped.has(name)) this.#reported.delete(name);
    this.#skipped = skipped;
  }

  /** The first listing only records what is there; later ones call the listeners when a batch name appears that was not there before. */
  async #poll(): Promise<void> {
    const first = this.#lastListing === undefined;
    if (this.#closed || this.#polling) return;
    // Skipped while the connection is busy or a receive listed the folder recently: both already look at the folder.
    if (!first && (this.#pending > 0 || Date.now() - (this.#lastListing?.at ?? 0) < this.#pollIntervalMs)) return;
    this.#polling = true;
    const before = this.#lastListing?.names;
    const folder = this.#download;
    try {
      await this.#operate(
        { action: `list the download folder ${folder}`, path: folder, role: 'download' },
        async (client) => this.#recordListing(await client.list(folder)),
        false,
      );
      this.#lastPollProblem = undefined;
      const now = this.#lastListing?.names ?? new Set<string>();
      if (before !== undefined && [...now].some((name) => !before.has(name))) this.#arrivals.signal();
    } catch (err) {
      // Nothing known: whatever the next listing finds counts as arrived.
      this.#lastListing ??= { names: new Set(), at: 0 };
      const problem = (err as Error).message;
      // Reported when the problem starts or changes, not at every poll while it lasts.
      if (this.#lastPollProblem !== problem) {
        this.#lastPollProblem = problem;
        this.#logger.warn({ err, server: this.#server, folder }, `cannot look for arrivals: ${problem}`);
      }
    } finally {
      this.#polling = false;
    }
  }

  #describe(): string {
    return `ftp transport (${this.#server}, upload ${this.#upload}, download ${this.#download})`;
  }

  #assertOpen(operation: string): void {
    if (this.#closed) throw new TransportClosedError(this.#describe(), operation);
  }

  #assertBatchName(name: string): void {
    if (!isBatchFileName(name)) {
      throw new FtpTransportError(
        `batch name ${JSON.stringify(name)} is not a batch file name: it must start with a letter, digit, "-" or "_", ` +
          'hold only letters, digits, ".", "-" and "_", and end in ".json", or the peer would never read it.',
        { server: this.#server, path: posix.join(this.#upload, name), retryable: false },
      );
    }
  }

  /** Why connecting or logging in failed, in one sentence with the fix. */
  #connectFailure(err: unknown, step: 'connect' | 'tls' | 'login', attempts: number): FtpTransportError {
    if (err instanceof FtpTransportError) return err;
    const server = this.#server;
    const code = replyCodeOf(err);
    const errno = errnoOf(err);
    const tried = attempts === 1 ? '' : ` (${attempts} attempts)`;
    const failure = (message: string, retryable: boolean): FtpTransportError =>
      new FtpTransportError(message, { server, replyCode: code, errno, retryable }, { cause: err });
    if (code !== undefined) {
      const reply = this.#replyText(err);
      const retryable = this.#policy.retryableReplyCodes.has(code);
      if (step === 'login' && code === 530) {
        return failure(
          `cannot log in to ${server} as ${this.#user}: the server refused the user or password (${reply}). ` +
            'Check the sync\'s transport.user and transport.password.',
          false,
        );
      }
      if (step === 'tls' && !retryable) {
        return failure(
          `cannot open an explicit FTPS connection to ${server}: the server refused AUTH TLS (${reply}). ` +
            'Enable TLS on the server, or set the sync\'s transport.secure to false.',
          false,
        );
      }
      const doing = step === 'login' ? `log in to ${server} as ${this.#user}` : `connect to ${server}`;
      return failure(
        `cannot ${doing}: the server replied ${reply}${tried}.${retryable ? ' The next exchange tries again.' : ''}`,
        retryable,
      );
    }
    if (errno !== undefined && this.#policy.retryableSocketCodes.has(errno)) {
      return failure(
        `cannot connect to ${server}: ${explainSocket(errno)} (${errno})${tried}. Check that the FTP server is running and that the sync's ` +
          'transport.host and transport.port name it; the next exchange tries again.',
        true,
      );
    }
    if (errno === 'ENOTFOUND') {
      return failure(`cannot connect to ${server}: the host name ${this.#host} is not known (ENOTFOUND). Check the sync's transport.host.`, false);
    }
    if (step === 'tls' && errno !== undefined) {
      const detail = `${errno}: ${(err as Error).message}`;
      if (errno === 'ERR_TLS_CERT_ALTNAME_INVALID') {
        return failure(
          `cannot open an explicit FTPS connection to ${server}: the server's certificate is not made out to ${this.#host} (${detail}). ` +
            'Set the sync\'s transport.host to a name that the certificate lists.',
          false,
        );
      }
      return failure(
        `cannot open an explicit FTPS connection to ${server}: the server's certificate is not trusted (${detail}). ` +
          'If the server uses a self-signed or private certificate, put it (or the authority that signed it) in a PEM file and name ' +
          'that file as tls.ca in the instance\'s configuration.',
        false,
      );
    }
    // Closed or silent without a code: basic-ftp's timeouts and "server closed the connection".
    return failure(
      `cannot connect to ${server}: the server closed the connection or stopped answering (${(err as Error).message})${tried}. ` +
        'The next exchange tries again.',
      true,
    );
  }

  /** Wraps what went wrong during an operation into one sentence: what failed, why, and what to do. */
  #fail(err: unknown, doing: Doing, reconnected = false): FtpTransportError {
    if (err instanceof FtpTransportError) return err;
    const server = this.#server;
    const setting = doing.role === undefined ? '' : ` (the sync's transport.${doing.role} setting)`;
    const code = replyCodeOf(err);
    if (code !== undefined) {
      // The folder may have been removed on the server: it is created again on the next attempt.
      this.#foldersReady = false;
      const retryable = this.#policy.retryableReplyCodes.has(code);
      return new FtpTransportError(
        `cannot ${doing.action} on ${server}${setting}: the server replied ${this.#replyText(err)}.${this.#fixFor(code, retryable, doing.path)}`,
        { server, path: doing.path, replyCode: code, retryable },
        { cause: err },
      );
    }
    const again = reconnected ? ', and again after reconnecting' : '';
    return new FtpTransportError(
      `cannot ${doing.action} on ${server}${setting}: the connection was lost (${(err as Error).message})${again}. The next exchange tries again.`,
      { server, path: doing.path, errno: errnoOf(err), retryable: true },
      { cause: err },
    );
  }

  #fixFor(code: number, retryable: boolean, path: string): string {
    if (code === 452 || code === 552) return ' The server\'s disk or the user\'s quota is full; it frees up as the peer takes its batches, and the next exchange tries again.';
    if (code === 530) return ` The server no longer accepts ${this.#user}; check the sync's transport.user and transport.password.`;
    if (retryable) return ' The next exchange tries again.';
    return ` Check that ${path} exists on the server and that the FTP user ${this.#user} may list, read, write, rename and delete files there.`;
  }

  /** The server's reply, on one line, without the password should a server ever echo it. */
  #replyText(err: unknown): string {
    const text = ((err as Error).message.split(/\r?\n/)[0] ?? '').trim();
    return this.#password.length >= 4 ? text.split(this.#password).join('***') : text;
  }
}

/** Renames, replacing the target: servers differ on renaming onto an existing file, so the target is removed first where the server refuses. */
async function renameOver(client: FtpClient, from: string, to: string): Promise<void> {
  try {
    await client.rename(from, to);
  } catch (err) {
    if (replyCodeOf(err) === undefined) throw err;
    if ((await listNames(client, posix.dirname(to)))?.has(posix.basename(to)) !== true) throw err;
    await client.remove(to);
    await client.rename(from, to);
  }
}

async function download(client: FtpClient, path: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await client.downloadTo(
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        chunks.push(chunk);
        done();
      },
    }),
    path,
  );
  return Buffer.concat(chunks);
}

/** The names in a folder, or undefined when the server refuses to list it (it does not exist, or we may not). */
async function listNames(client: FtpClient, folder: string): Promise<Set<string> | undefined> {
  try {
    return new Set((await client.list(folder)).map((entry) => entry.name));
  } catch (err) {
    if (replyCodeOf(err) === undefined) throw err;
    return undefined;
  }
}

/** `name`, or `name-2`, `name-3`... when a batch of the same name was rejected in the same millisecond. */
async function freeName(client: FtpClient, folder: string, name: string): Promise<string> {
  const taken = (await listNames(client, folder)) ?? new Set<string>();
  let candidate = name;
  for (let n = 2; taken.has(candidate); n += 1) candidate = `${name}-${n}`;
  return candidate;
}

/** Waits for a command whose refusal is expected (the folder exists already, the file is gone), but not for a lost connection. */
async function ignoringRefusal(command: Promise<unknown>): Promise<void> {
  try {
    await command;
  } catch (err) {
    if (replyCodeOf(err) === undefined) throw err;
  }
}

/** `/a/b` gives `/a`, `/a/b`; `a/b` gives `a`, `a/b` (relative to the login folder). */
function ancestorsAndSelf(folder: string): string[] {
  const normal = posix.normalize(folder).replace(/\/+$/, '');
  const parts = normal.split('/');
  const paths: string[] = [];
  for (let i = 1; i <= parts.length; i += 1) {
    const path = parts.slice(0, i).join('/');
    if (path !== '' && path !== '.') paths.push(path);
  }
  return paths;
}

/** Files, and entries of a type the listing did not say; never folders or links. */
function isPlainFile(entry: RemoteEntry): boolean {
  return entry.isFile || (!entry.isDirectory && !entry.isSymbolicLink);
}

/** `.<name>.<milliseconds>.<random>.tmp`, shortened so that a long name cannot push it past the server's limit. */
function temporaryName(name: string): string {
  return `.${name.replace(/^\./, '').slice(0, 100)}.${Date.now()}.${randomBytes(4).toString('hex')}.tmp`;
}

/** `20250102T030405.678Z`: sorts in time order and holds no `:`, which some servers refuse in names. */
function fileTimestamp(at: Date): string {
  return at.toISOString().replace(/[-:]/g, '');
}

/** Whether the connection is gone: basic-ftp closes its client on any error but a server's reply, and 421 is the server closing. */
function isLost(err: unknown, client: FtpClient): boolean {
  if (err instanceof FtpTransportError) return false;
  return client.closed || replyCodeOf(err) === 421;
}

/** The server's FTP reply code, when the error is the server's refusal (basic-ftp's FTPError carries it as a number). */
function replyCodeOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  // basic-ftp gives "0" to errors of a client closed for a reason without a code.
  return typeof code === 'string' && code !== '0' ? code : undefined;
}

function explainSocket(errno: string): string {
  switch (errno) {
    case 'ECONNREFUSED':
      return 'nothing accepts connections there';
    case 'ETIMEDOUT':
      return 'the connection timed out';
    case 'ECONNRESET':
    case 'ECONNABORTED':
    case 'EPIPE':
      return 'the connection was cut';
    case 'EAI_AGAIN':
      return 'the name server did not answer';
    default:
      return 'the server cannot be reached';
  }
}
