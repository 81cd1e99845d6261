import { spawnSync } from 'node:child_process';
import { existsSync, type WriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { Writable } from 'node:stream';
import { FileSystem, FtpSrv, type FtpConnection } from 'ftp-srv';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FtpTransportConfig } from '../../src/config/types.js';
import { createTransport } from '../../src/transports/create-transport.js';
import { FolderTransport } from '../../src/transports/folder/folder-transport.js';
import { FtpTransport, type FtpTransportLogger, type FtpTransportOptions } from '../../src/transports/ftp/ftp-transport.js';
import { FtpTransportError } from '../../src/transports/ftp/ftp-transport-error.js';
import type { Transport } from '../../src/transports/transport.js';
import { describeTransportContract, type TransportPair } from './transport-contract.js';

/*
 * A real FTP server, in process: ftp-srv on 127.0.0.1, port 0, serving a
 * fresh temporary folder per test. Its file system can be told to
 * misbehave (stall an upload, lie about a size, lose a file between listing
 * and download, refuse to rename onto an existing file), so that the faults
 * the transport must survive are fixtures rather than timing accidents.
 */

const user = 'sync';
const password = 'correct-horse-battery';

/** What the server's file system does wrong, changeable while it runs and kept across restarts. */
interface Faults {
  /** Uploads whose file name matches take their first chunk, write it to disk, then hang, as on a server that stopped reading. */
  stallUploads: RegExp | undefined;
  /** Called once an upload hangs, its first chunk on disk. */
  onStall: (() => void) | undefined;
  /** Listings claim this many more bytes than the named file has. */
  readonly inflate: Map<string, number>;
  /** These files are deleted just before the server would send them: they vanish between listing and download. */
  readonly vanish: Set<string>;
  /** Renaming onto an existing file is refused, as some servers do. */
  refuseRenameOver: boolean;
  renameOverRefusals: number;
  /** The real files behind hanging uploads, closed when the server stops. */
  readonly hanging: WriteStream[];
}

type ListedStats = { name: string; size: number };

class MisbehavingFileSystem extends FileSystem {
  readonly #root: string;
  readonly #faults: Faults;

  constructor(connection: FtpConnection, root: string, faults: Faults) {
    super(connection, { root, cwd: '/' });
    this.#root = root;
    this.#faults = faults;
  }

  override async list(path?: string): Promise<ListedStats[]> {
    const stats = (await super.list(path)) as ListedStats[];
    for (const entry of stats) entry.size += this.#faults.inflate.get(entry.name) ?? 0;
    return stats;
  }

  override async read(fileName: string, options?: { start?: unknown }): Promise<unknown> {
    if (this.#faults.vanish.has(posix.basename(fileName))) await unlink(this.#local(fileName)).catch(() => {});
    return super.read(fileName, options);
  }

  override async rename(from: string, to: string): Promise<unknown> {
    if (this.#faults.refuseRenameOver && existsSync(this.#local(to))) {
      this.#faults.renameOverRefusals += 1;
      throw new Error('target exists');
    }
    return super.rename(from, to);
  }

  override write(fileName: string, options?: { append?: boolean; start?: unknown }): { stream: Writable; clientPath: string } {
    const real = super.write(fileName, options) as { stream: WriteStream; clientPath: string };
    const faults = this.#faults;
    if (faults.stallUploads?.test(posix.basename(fileName)) !== true) return real;
    faults.hanging.push(real.stream);
    let wrote = false;
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        // The second chunk is never acknowledged: the upload hangs until the server stops.
        if (wrote) return;
        wrote = true;
        real.stream.write(chunk, () => {
          done();
          faults.onStall?.();
        });
      },
    });
    return { stream, clientPath: real.clientPath };
  }

  #local(path: string): string {
    return join(this.#root, posix.resolve('/', path));
  }
}

const quietLog = {
  child: () => quietLog,
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  fatal: () => {},
};

class TestFtpServer {
  readonly faults: Faults = {
    stallUploads: undefined,
    onStall: undefined,
    inflate: new Map(),
    vanish: new Set(),
    refuseRenameOver: false,
    renameOverRefusals: 0,
    hanging: [],
  };
  /** Every login attempt, and whether it came over TLS. */
  readonly logins: { username: string; secure: boolean }[] = [];
  port = 0;
  #server: FtpSrv | undefined;

  constructor(
    readonly root: string,
    private readonly tls?: { key: string; cert: string },
  ) {}

  /** Listens on a port the system picks the first time, and on the same port again after `stop()`: a restarted server. */
  async start(): Promise<void> {
    const signals = ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const;
    const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]));
    const server = new FtpSrv({ url: `ftp://127.0.0.1:${this.port}`, pasv_url: '127.0.0.1', log: quietLog, tls: this.tls ?? false });
    // ftp-srv makes each server exit the process on these signals; the test runner keeps its own.
    for (const signal of signals) {
      for (const listener of process.listeners(signal)) if (!before.get(signal)?.has(listener)) process.removeListener(signal, listener);
    }
    // Data connections on a port the system picks, rather than probing upwards from 1024, which races with parallel test files.
    (server as unknown as { getNextPasvPort(): Promise<number> }).getNextPasvPort = () => Promise.resolve(0);
    server.on('login', ({ connection, username, password: given }, resolve, reject) => {
      this.logins.push({ username, secure: connection.secure });
      if (username === user && given === password) resolve({ fs: new MisbehavingFileSystem(connection, this.root, this.faults) });
      else reject(new Error('Login incorrect.'));
    });
    await server.listen();
    this.port = ((server as unknown as { server: Server }).server.address() as AddressInfo).port;
    this.#server = server;
  }

  /** Closes every connection, hanging ones included, and stops listening. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    await server?.close();
    for (const stream of this.faults.hanging.splice(0)) stream.end();
  }
}

async function startServer(tls?: { key: string; cert: string }): Promise<TestFtpServer> {
  const server = new TestFtpServer(await mkdtemp(join(tmpdir(), 'tablesync-ftp-')), tls);
  await server.start();
  return server;
}

function ftpConfig(server: TestFtpServer, upload: string, download: string, overrides: Partial<FtpTransportConfig> = {}): FtpTransportConfig {
  return { type: 'ftp', host: '127.0.0.1', port: server.port, user, password, secure: false, upload, download, ...overrides };
}

/** A short poll, so that the contract's arrival test does not wait for the default five seconds. */
const fast: FtpTransportOptions = { pollIntervalMs: 100 };

interface Warning {
  readonly obj: Record<string, unknown>;
  readonly msg: string;
}

function collectingLogger(): FtpTransportLogger & { warnings: Warning[] } {
  const warnings: Warning[] = [];
  return { warnings, warn: (obj, msg) => warnings.push({ obj: obj as Record<string, unknown>, msg }) };
}

/** Two FTP clients of one server: `ours` uploads into /a-to-b, `peer` into /b-to-a. */
function ftpPair(server: TestFtpServer, options: FtpTransportOptions = fast, overrides: Partial<FtpTransportConfig> = {}): { ours: FtpTransport; peer: FtpTransport } {
  return {
    ours: new FtpTransport(ftpConfig(server, '/a-to-b', '/b-to-a', overrides), options),
    peer: new FtpTransport(ftpConfig(server, '/b-to-a', '/a-to-b', overrides), options),
  };
}

function disposer(server: TestFtpServer, transports: Transport[]): () => Promise<void> {
  return async () => {
    await Promise.all(transports.map((t) => t.close()));
    await server.stop();
    await rm(server.root, { recursive: true, force: true });
  };
}

const text = (s: string): Buffer => Buffer.from(s, 'utf8');
const received = async (side: Transport): Promise<string[]> => (await side.receive()).map((b) => `${b.name}=${b.body.toString('utf8')}`);

/** Bytes that differ from one position to the next, so that a misplaced or missing chunk shows. */
function patterned(size: number): Buffer {
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i += 1) body[i] = (i * 31 + 7) % 256;
  return body;
}

describeTransportContract('ftp', async (): Promise<TransportPair> => {
  const server = await startServer();
  const { ours, peer } = ftpPair(server);
  return { ours, peer, dispose: disposer(server, [ours, peer]) };
});

describeTransportContract('ftp uploading, folder reading the same server folders', async (): Promise<TransportPair> => {
  const server = await startServer();
  const ours = new FtpTransport(ftpConfig(server, '/a-to-b', '/b-to-a'), fast);
  const peer = new FolderTransport({ type: 'folder', upload: join(server.root, 'b-to-a'), download: join(server.root, 'a-to-b') });
  return { ours, peer, dispose: disposer(server, [ours, peer]) };
});

describeTransportContract('folder uploading, ftp reading the same server folders', async (): Promise<TransportPair> => {
  const server = await startServer();
  const ours = new FolderTransport({ type: 'folder', upload: join(server.root, 'a-to-b'), download: join(server.root, 'b-to-a') });
  const peer = new FtpTransport(ftpConfig(server, '/b-to-a', '/a-to-b'), fast);
  return { ours, peer, dispose: disposer(server, [ours, peer]) };
});

describe('ftp transport', () => {
  let server: TestFtpServer;
  let ours: FtpTransport;
  let peer: FtpTransport;
  const closers: Transport[] = [];

  beforeEach(async () => {
    server = await startServer();
    ({ ours, peer } = ftpPair(server));
    closers.push(ours, peer);
  });

  afterEach(async () => {
    await disposer(server, closers.splice(0))();
  });

  function track<T extends Transport>(transport: T): T {
    closers.push(transport);
    return transport;
  }

  it('is what createTransport builds for an ftp configuration', async () => {
    const transport = track(createTransport(ftpConfig(server, '/a-to-b', '/b-to-a')));
    expect(transport).toBeInstanceOf(FtpTransport);
    expect(transport.reachesPeer).toBe(true);
    expect(transport.maxBatchBytes).toBe(64 * 1024 * 1024);
    expect(await transport.receive()).toEqual([]);
  });

  it('creates nested and relative folders on the server at first use', async () => {
    const deep = track(new FtpTransport(ftpConfig(server, '/deep/er/out', 'relative/in')));
    await deep.send({ name: 'b-0001.json', body: text('one') });

    expect(await readFile(join(server.root, 'deep', 'er', 'out', 'b-0001.json'), 'utf8')).toBe('one');
    expect((await stat(join(server.root, 'relative', 'in'))).isDirectory()).toBe(true);
  });

  it('says which folder it cannot create, and where', async () => {
    await writeFile(join(server.root, 'blocked'), 'a file where a folder should be');
    const transport = track(new FtpTransport(ftpConfig(server, '/blocked/out', '/b-to-a')));

    const error = await transport.send({ name: 'b-0001.json', body: text('one') }).catch((err: unknown) => err);

    expect(error).toMatchObject({ code: 'TS_ERR_FTP', retryable: false, replyCode: 550, path: '/blocked/out' });
    expect((error as Error).message).toMatch(
      /^cannot create the upload folder \/blocked\/out on 127\.0\.0\.1:\d+ \(the sync's transport\.upload setting\): the server replied 550 .*\. Check that \/blocked\/out exists on the server and that the FTP user sync may list, read, write, rename and delete files there\.$/,
    );
  });

  it('runs concurrent operations one after the other on one connection', async () => {
    const names = Array.from({ length: 6 }, (_, i) => `b-000${i}.json`);
    const results = await Promise.all([
      ...names.map((name) => ours.send({ name, body: text(name) })),
      ours.isWaiting('b-0000.json'),
      ours.receive(),
      ours.publishDescription(text('{}')),
    ]);

    expect(results).toHaveLength(names.length + 3);
    expect((await peer.receive()).map((b) => b.name)).toEqual(names);
    expect(server.logins.filter((l) => l.username === user)).toHaveLength(2); // one for ours, one for peer
  });

  it('offers only complete batch files: never temporary files, dotfiles, other names or sub-folders', async () => {
    const download = join(server.root, 'a-to-b');
    await ours.send({ name: 'b-0001.json', body: text('one') });
    await writeFile(join(download, '.b-0002.json.tmp'), 'half of a bat');
    await writeFile(join(download, '.x.json.tmp'), '{');
    await writeFile(join(download, 'notes.txt'), 'not a batch');
    await writeFile(join(download, 'b-0003.json.part'), 'not a batch either');
    await mkdir(join(download, 'rejected'), { recursive: true });
    await writeFile(join(download, 'rejected', 'b-0000.json'), 'rejected before');
    await mkdir(join(download, 'folder.json'));

    expect(await received(peer)).toEqual(['b-0001.json=one']);
  });

  it('skips a file whose download is shorter than its listing, until it is whole, and reports one that stays so', async () => {
    const logger = collectingLogger();
    const reader = track(new FtpTransport(ftpConfig(server, '/b-to-a', '/a-to-b'), { logger }));
    await ours.send({ name: 'b-0001.json', body: text('one') });
    await ours.send({ name: 'b-0002.json', body: text('two') });
    server.faults.inflate.set('b-0001.json', 10);

    expect(await received(reader)).toEqual(['b-0002.json=two']);
    expect(logger.warnings).toEqual([]);
    // The same shortfall again: stuck, not a race with the peer; reported once.
    expect(await received(reader)).toEqual(['b-0002.json=two']);
    expect(await received(reader)).toEqual(['b-0002.json=two']);
    expect(logger.warnings).toHaveLength(1);
    expect(logger.warnings[0]?.msg).toMatch(/skipping batch file \/a-to-b\/b-0001\.json on 127\.0\.0\.1:\d+ .*3 bytes where the listing said 13/);

    server.faults.inflate.clear();
    expect(await received(reader)).toEqual(['b-0001.json=one', 'b-0002.json=two']);
  });

  it('skips a file that vanishes between listing and download and offers the rest', async () => {
    await ours.send({ name: 'b-0001.json', body: text('one') });
    await ours.send({ name: 'b-0002.json', body: text('two') });
    await ours.send({ name: 'b-0003.json', body: text('three') });
    server.faults.vanish.add('b-0002.json');

    expect(await received(peer)).toEqual(['b-0001.json=one', 'b-0003.json=three']);
  });

  it('replaces a batch on a server that refuses to rename onto an existing file', async () => {
    server.faults.refuseRenameOver = true;
    await ours.send({ name: 'b-0001.json', body: text('first') });
    await ours.send({ name: 'b-0001.json', body: text('second') });

    expect(server.faults.renameOverRefusals).toBe(1);
    expect(await received(peer)).toEqual(['b-0001.json=second']);
    expect((await readdir(join(server.root, 'a-to-b'))).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('moves a rejected batch into rejected/ with the reason beside it', async () => {
    await ours.send({ name: 'b-0001.json', body: text('not a batch') });
    const [bad] = await peer.receive();
    await bad?.reject('unexpected token');

    const rejected = join(server.root, 'a-to-b', 'rejected');
    const files = (await readdir(rejected)).sort();
    expect(files).toEqual([expect.stringMatching(/^b-0001\.json\.\d{8}T\d{6}\.\d{3}Z$/), expect.stringMatching(/^b-0001\.json\..*\.reason\.txt$/)]);
    expect(await readFile(join(rejected, files[0] ?? ''), 'utf8')).toBe('not a batch');
    expect(await readFile(join(rejected, files[1] ?? ''), 'utf8')).toBe('unexpected token\n');
    expect(await received(peer)).toEqual([]);
  });

  it('publishes a description that the peer reads, and never offers it as a batch', async () => {
    expect(await peer.readPeerDescription()).toBeUndefined();
    await ours.publishDescription(text('{"tables":[1]}'));
    await ours.publishDescription(text('{"tables":[1,2]}'));

    expect((await peer.readPeerDescription())?.toString('utf8')).toBe('{"tables":[1,2]}');
    expect(await received(peer)).toEqual([]);
  });

  it('removes its own temporary files left from an interrupted send long ago, and nothing else', async () => {
    const upload = join(server.root, 'a-to-b');
    await mkdir(upload, { recursive: true });
    const old = `.b-0001.json.${Date.now() - 2 * 60 * 60 * 1000}.0a1b2c3d.tmp`;
    const recent = `.b-0002.json.${Date.now()}.0a1b2c3d.tmp`;
    await Promise.all([old, recent, '.someone-elses.tmp'].map((name) => writeFile(join(upload, name), 'x')));

    expect(await ours.isWaiting('b-0001.json')).toBe(false);

    expect((await readdir(upload)).sort()).toEqual([recent, '.someone-elses.tmp'].sort());
  });

  it('refuses a batch name the peer would never read', async () => {
    await expect(ours.send({ name: '.hidden.json', body: text('x') })).rejects.toMatchObject({ code: 'TS_ERR_FTP', retryable: false });
    await expect(ours.send({ name: 'b-0001.txt', body: text('x') })).rejects.toThrow(/is not a batch file name/);
  });

  it('says clearly that the server refused the user or password, and tries only once', async () => {
    const wrong = 'not-the-password';
    const transport = track(new FtpTransport(ftpConfig(server, '/a-to-b', '/b-to-a', { password: wrong })));

    const error = await transport.receive().catch((err: unknown) => err);

    expect(error).toBeInstanceOf(FtpTransportError);
    expect(error).toMatchObject({ code: 'TS_ERR_FTP', retryable: false, replyCode: 530, server: `127.0.0.1:${server.port}` });
    expect((error as Error).message).toMatch(
      new RegExp(`^cannot log in to 127\\.0\\.0\\.1:${server.port} as sync: the server refused the user or password \\(530 Login incorrect\\.\\)\\. Check the sync's transport\\.user and transport\\.password\\.$`),
    );
    expect((error as Error).message).not.toContain(wrong);
    expect(server.logins).toHaveLength(1);
  });

  it('says that nothing listens where the configuration points, after a few attempts, and that a retry can help', async () => {
    const port = await freePort();
    const transport = track(new FtpTransport({ ...ftpConfig(server, '/a-to-b', '/b-to-a'), port }, { policy: { reconnectDelaysMs: [10, 10] } }));

    const error = await transport.readPeerDescription().catch((err: unknown) => err);

    expect(error).toMatchObject({ code: 'TS_ERR_FTP', retryable: true, errno: 'ECONNREFUSED' });
    expect((error as Error).message).toMatch(new RegExp(`^cannot connect to 127\\.0\\.0\\.1:${port}: nothing accepts connections there \\(ECONNREFUSED\\) \\(3 attempts\\)`));
    expect((error as Error).message).not.toContain(password);
  });

  it('reconnects to a server restarted between two operations', async () => {
    await ours.send({ name: 'b-0001.json', body: text('one') });
    expect(await received(peer)).toEqual(['b-0001.json=one']);

    await server.stop();
    await server.start();

    await ours.send({ name: 'b-0002.json', body: text('two') });
    expect(await received(peer)).toEqual(['b-0001.json=one', 'b-0002.json=two']);
    expect(server.logins).toHaveLength(4);
  });

  it('finishes an upload that a server restart interrupted, leaving no temporary file behind', async () => {
    const body = patterned(4 * 1024 * 1024);
    const logger = collectingLogger();
    const sender = track(new FtpTransport(ftpConfig(server, '/a-to-b', '/b-to-a'), { logger }));
    await sender.isWaiting('big.json'); // connected and folders made, so that the upload is what the restart interrupts
    const stalled = new Promise<void>((resolve) => {
      server.faults.onStall = resolve;
    });
    server.faults.stallUploads = /^\.big\.json\..*\.tmp$/;

    const sending = sender.send({ name: 'big.json', body });
    await stalled;
    server.faults.stallUploads = undefined;
    await server.stop();
    await server.start();
    await sending;

    expect(logger.warnings.map((w) => w.msg)).toEqual([
      `the connection to the FTP server 127.0.0.1:${server.port} was lost; reconnecting to write batch big.json into the upload folder /a-to-b`,
    ]);
    const [batch] = await peer.receive();
    expect(batch?.name).toBe('big.json');
    expect(batch?.body.equals(body)).toBe(true);
    expect(await readdir(join(server.root, 'a-to-b'))).toEqual(['big.json']);
  });

  it('leaves no final-named file when the server stops in the middle of an upload, and never offers the half', async () => {
    const body = patterned(4 * 1024 * 1024);
    const sender = track(new FtpTransport(ftpConfig(server, '/a-to-b', '/b-to-a'), { policy: { reconnectDelaysMs: [10, 10] } }));
    await sender.isWaiting('big.json');
    const stalled = new Promise<void>((resolve) => {
      server.faults.onStall = resolve;
    });
    server.faults.stallUploads = /^\.big\.json\..*\.tmp$/;

    const sending = sender.send({ name: 'big.json', body }).catch((err: unknown) => err);
    await stalled;
    await server.stop();
    const error = await sending;

    expect(error).toMatchObject({ code: 'TS_ERR_FTP', retryable: true });
    expect((error as Error).message).toMatch(/^cannot connect to 127\.0\.0\.1:\d+: nothing accepts connections there/);
    const upload = join(server.root, 'a-to-b');
    const left = await readdir(upload);
    expect(left).toEqual([expect.stringMatching(/^\.big\.json\.\d+\.[0-9a-f]{8}\.tmp$/)]);
    const half = (await stat(join(upload, left[0] ?? ''))).size;
    expect(half).toBeGreaterThan(0);
    expect(half).toBeLessThan(body.length);

    server.faults.stallUploads = undefined;
    await server.start();
    expect(await peer.receive()).toEqual([]);
    expect(await sender.isWaiting('big.json')).toBe(false);

    // The engine's next exchange sends it again.
    await sender.send({ name: 'big.json', body });
    const [batch] = await peer.receive();
    expect(batch?.body.equals(body)).toBe(true);
  });

  it('reports arrivals found by polling once the server is back', async () => {
    const logger = collectingLogger();
    const watcher = track(new FtpTransport(ftpConfig(server, '/b-to-a', '/a-to-b'), { pollIntervalMs: 50, logger }));
    let calls = 0;
    watcher.onArrival(() => {
      calls += 1;
    });
    await expect.poll(() => calls).toBe(1);

    await server.stop();
    await expect.poll(() => logger.warnings.length).toBeGreaterThan(0);
    // Refused at connecting, or lost in the middle of a listing that was under way when the server stopped.
    expect(logger.warnings[0]?.msg).toMatch(/^cannot look for arrivals: cannot (connect to|list the download folder \/a-to-b on) 127\.0\.0\.1:\d+/);
    await server.start();
    await ours.send({ name: 'b-0001.json', body: text('one') });

    await expect.poll(() => calls).toBeGreaterThan(1);
    expect(await received(watcher)).toEqual(['b-0001.json=one']);
  });

  it('refuses an explicit FTPS session with a server that offers no TLS', async () => {
    const transport = track(new FtpTransport(ftpConfig(server, '/a-to-b', '/b-to-a', { secure: true })));

    await expect(transport.receive()).rejects.toMatchObject({
      code: 'TS_ERR_FTP',
      retryable: false,
      message: expect.stringMatching(/^cannot open an explicit FTPS connection to 127\.0\.0\.1:\d+: the server refused AUTH TLS \(502 .*\)\. Enable TLS on the server, or set the sync's transport\.secure to false\.$/),
    });
  });
});

/** A loopback port that nothing listens on (it did a moment ago, so nothing else is likely to take it meanwhile). */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

describe.skipIf(!hasOpenssl)('ftp transport over explicit FTPS (needs the openssl command to make a certificate)', () => {
  let certDir: string;
  let tls: { key: string; cert: string };
  let caFile: string;

  beforeAll(async () => {
    certDir = await mkdtemp(join(tmpdir(), 'tablesync-ftps-'));
    const keyFile = join(certDir, 'key.pem');
    caFile = join(certDir, 'cert.pem');
    // Self-signed, made out to the loopback address the tests connect to.
    const made = spawnSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyFile, '-out', caFile, '-days', '2', '-subj', '/CN=tablesync test',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ]);
    if (made.status !== 0) throw new Error(`openssl could not make a certificate: ${made.stderr.toString()}`);
    tls = { key: await readFile(keyFile, 'utf8'), cert: await readFile(caFile, 'utf8') };
  });

  afterAll(async () => {
    await rm(certDir, { recursive: true, force: true });
  });

  describeTransportContract('ftp over explicit FTPS', async (): Promise<TransportPair> => {
    const server = await startServer(tls);
    // Through createTransport, as the daemon builds it: the instance's tls.ca arrives as caFile.
    const ours = createTransport(ftpConfig(server, '/a-to-b', '/b-to-a', { secure: true }), { caFile });
    const peer = new FtpTransport(ftpConfig(server, '/b-to-a', '/a-to-b', { secure: true }), { ...fast, caFile });
    return { ours, peer, dispose: disposer(server, [ours, peer]) };
  });

  it('logs in over TLS when the certificate is trusted through tls.ca', async () => {
    const server = await startServer(tls);
    const { ours, peer } = ftpPair(server, { caFile }, { secure: true });
    try {
      await ours.send({ name: 'b-0001.json', body: text('one') });
      expect(await received(peer)).toEqual(['b-0001.json=one']);
      expect(server.logins).toEqual([
        { username: user, secure: true },
        { username: user, secure: true },
      ]);
    } finally {
      await disposer(server, [ours, peer])();
    }
  });

  it('refuses a certificate that nothing vouches for, and says how to trust it', async () => {
    const server = await startServer(tls);
    const transport = new FtpTransport(ftpConfig(server, '/a-to-b', '/b-to-a', { secure: true }));
    try {
      const error = await transport.send({ name: 'b-0001.json', body: text('one') }).catch((err: unknown) => err);

      expect(error).toMatchObject({ code: 'TS_ERR_FTP', retryable: false, errno: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
      expect((error as Error).message).toMatch(
        /^cannot open an explicit FTPS connection to 127\.0\.0\.1:\d+: the server's certificate is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT: .*\)\. .*name that file as tls\.ca in the instance's configuration\.$/,
      );
      // Refused before the password was sent.
      expect(server.logins).toEqual([]);
      expect(existsSync(join(server.root, 'a-to-b'))).toBe(false);
    } finally {
      await disposer(server, [transport])();
    }
  });

  it('says when the tls.ca file cannot be read', async () => {
    const server = await startServer(tls);
    const missing = join(certDir, 'missing.pem');
    const transport = new FtpTransport(ftpConfig(server, '/a-to-b', '/b-to-a', { secure: true }), { caFile: missing });
    try {
      await expect(transport.receive()).rejects.toMatchObject({
        code: 'TS_ERR_FTP',
        retryable: false,
        message: expect.stringContaining(`the certificate file ${missing} (the instance's tls.ca setting) cannot be read (ENOENT)`),
      });
    } finally {
      await disposer(server, [transport])();
    }
  });
});
