import { open, rename, rm } from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { createGunzip, createGzip } from 'node:zlib';
import { Decrypter, Encrypter, type Identity } from 'age-encryption';
import { TablesyncError, UsageError } from '../errors.js';
import { BackupFileError, BackupPasswordError } from './backup-error.js';
import { ageMagic } from './backup-format.js';

/**
 * The layers around a backup's JSON lines: gzip, then (with a password) age
 * encryption with a scrypt-derived key. Writing goes to a temporary file
 * renamed into place at the end, so a backup that failed half way leaves
 * nothing that looks like a backup. Reading is streamed too; every layer
 * checks itself (age's MACs per 64 KiB chunk and on the last one, gzip's
 * CRC and length), and the caller checks the lines' own SHA-256.
 */

/** The longest line a backup may hold: a stored batch of many megabytes fits; a damaged length field cannot eat the memory. */
const maxLineBytes = 256 * 1024 * 1024;

/** Writes `lines` to `file` (which must not exist), gzip-compressed and, with a password, encrypted. */
export async function writeBackupFile(file: string, lines: AsyncIterable<Buffer>, password: string | undefined): Promise<void> {
  const partial = `${file}.partial-${process.pid}`;
  // Backups hold the application's data: readable by their owner only.
  const output = createWriteStream(partial, { flags: 'wx', mode: 0o600 });
  const gzip = createGzip();
  try {
    if (password === undefined) {
      await pipeline(Readable.from(lines), gzip, output);
    } else {
      const encrypter = new Encrypter();
      encrypter.setPassphrase(password);
      const compressing = pipeline(Readable.from(lines), gzip);
      // Awaited below; this only keeps a failure that comes before then from counting as unhandled.
      compressing.catch(() => undefined);
      const encrypted = await encrypter.encrypt(Readable.toWeb(gzip) as unknown as ReadableStream<Uint8Array>);
      // A failure on either side ends both: the reader's error reaches the file through the streams, and a full disk stops the reader.
      await Promise.all([compressing, pipeline(Readable.fromWeb(encrypted as unknown as WebReadableStream<Uint8Array>), output)]);
    }
    const handle = await open(partial, 'r');
    await handle.sync().finally(() => handle.close());
    await rename(partial, file);
  } catch (err) {
    gzip.destroy();
    output.destroy();
    await rm(partial, { force: true });
    const { code, message } = err as { code?: string; message?: string };
    if (!(err instanceof TablesyncError) && code?.startsWith('E') === true && (err as { syscall?: string }).syscall !== undefined) {
      throw new BackupFileError(`cannot write the backup ${file}: ${message ?? code}`, { cause: err });
    }
    throw err;
  }
}

/** How to open one backup file: whether it is encrypted, and the key that opens it. */
export interface BackupKey {
  readonly file: string;
  readonly encrypted: boolean;
  /** age's file key, derived once from the password (scrypt takes a second or more), for every pass over the file. */
  readonly fileKey?: Uint8Array;
}

/**
 * Looks at the start of `file`: an encrypted backup needs the password,
 * which is checked here against age's header (its MAC); a wrong one is
 * refused before anything else is read.
 */
export async function unlockBackup(file: string, password: string | undefined, passwordSource: string | undefined): Promise<BackupKey> {
  const start = await readStart(file, 64 * 1024);
  if (!start.subarray(0, ageMagic.length).equals(ageMagic)) {
    if (start[0] !== 0x1f || start[1] !== 0x8b) throw new BackupFileError(`${file} is not a tablesync backup: it is neither gzip-compressed nor age-encrypted`);
    return { file, encrypted: false };
  }
  if (password === undefined) {
    throw new BackupPasswordError(`${file} is encrypted; give its password in an environment variable named by --password-env VAR`);
  }
  // The header ends with the line "--- <MAC>"; stanza lines start with "-> " and their bodies are base64, so this is the first "\n--- ".
  const macLine = start.indexOf('\n--- ');
  const headerEnd = macLine === -1 ? -1 : start.indexOf('\n', macLine + 1);
  if (headerEnd === -1) throw new BackupFileError(`${file} is damaged: its encryption header is incomplete`);
  const decrypter = new Decrypter();
  decrypter.addPassphrase(password);
  try {
    return { file, encrypted: true, fileKey: await decrypter.decryptHeader(start.subarray(0, headerEnd + 1)) };
  } catch (err) {
    const message = (err as Error).message;
    if (message.includes('no identity matched')) {
      throw new BackupPasswordError(`the password${passwordSource === undefined ? '' : ` in ${passwordSource}`} does not open ${file}: it was encrypted with another one`, { cause: err });
    }
    throw new BackupFileError(`${file} is damaged: its encryption header does not check out (${message})`, { cause: err });
  }
}

/**
 * Reads the backup's lines, decrypted and decompressed, and hands each to
 * `onLine` (awaited: a slow consumer slows the reading). Rejects with a
 * BackupFileError when a layer finds the file damaged or cut short; an
 * error thrown by `onLine` comes out as it is.
 */
export async function readBackupLines(key: BackupKey, onLine: (line: Buffer) => Promise<void> | void): Promise<void> {
  const raw = createReadStream(key.file);
  let source: Readable = raw;
  if (key.encrypted) {
    const fileKey = key.fileKey;
    if (fileKey === undefined) throw new Error('an encrypted backup is read with its file key (see unlockBackup)');
    const identity: Identity = { unwrapFileKey: () => fileKey };
    const decrypter = new Decrypter();
    decrypter.addIdentity(identity);
    try {
      const plain = await decrypter.decrypt(Readable.toWeb(raw) as unknown as ReadableStream<Uint8Array>);
      source = Readable.fromWeb(plain as unknown as WebReadableStream<Uint8Array>);
    } catch (err) {
      raw.destroy();
      throw layerError(key, err);
    }
  }
  // pipeline() may reject with the AbortError of a stage it destroyed rather than with the error that
  // started it all: keep the first real failure of each layer, and of the consumer, to report that.
  let consumerError: unknown;
  let layerFailure: unknown;
  const gunzip = createGunzip();
  for (const stream of [source, gunzip]) stream.on('error', (err) => (layerFailure ??= err));
  const consume = async (line: Buffer): Promise<void> => {
    try {
      await onLine(line);
    } catch (err) {
      consumerError ??= err;
      throw err;
    }
  };
  try {
    await pipeline(source, gunzip, async (gunzipped: AsyncIterable<Buffer>) => {
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      for await (const chunk of gunzipped) {
        let from = 0;
        for (let newline = chunk.indexOf(0x0a); newline !== -1; newline = chunk.indexOf(0x0a, from)) {
          const piece = chunk.subarray(from, newline + 1);
          const line = pending.length === 0 ? piece : Buffer.concat([...pending, piece]);
          pending = [];
          pendingBytes = 0;
          await consume(line);
          from = newline + 1;
        }
        if (from < chunk.length) {
          pending.push(chunk.subarray(from));
          pendingBytes += chunk.length - from;
          if (pendingBytes > maxLineBytes) throw new BackupFileError(`${key.file} is damaged: it holds a line longer than ${maxLineBytes / 1024 / 1024} MiB`);
        }
      }
      if (pendingBytes > 0) throw new BackupFileError(`${key.file} is damaged or cut short: its last line is incomplete`);
    });
  } catch (err) {
    throw layerError(key, consumerError ?? layerFailure ?? err);
  }
}

/** A failure of one of the file's layers → one sentence; our own errors and the consumer's pass through. */
function layerError(key: BackupKey, err: unknown): unknown {
  if (err instanceof TablesyncError) return err;
  const { code, message } = err as { code?: string; message?: string };
  if (code === 'ENOENT') return new BackupFileError(`${key.file} does not exist`, { cause: err });
  if (code !== undefined && code.startsWith('Z_')) {
    return new BackupFileError(`${key.file} is damaged or cut short: its compressed data does not check out (${message ?? code})`, { cause: err });
  }
  if (code !== undefined && code.startsWith('E')) return new BackupFileError(`cannot read ${key.file}: ${message ?? code}`, { cause: err });
  if (key.encrypted) {
    return new BackupFileError(`${key.file} is damaged or cut short: its encrypted data does not check out (${message ?? String(err)})`, { cause: err });
  }
  return err;
}

async function readStart(file: string, bytes: number): Promise<Buffer> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`${file} does not exist; give the backup file with -i FILE`, { cause: err });
    throw new BackupFileError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const buffer = Buffer.alloc(bytes);
    const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
