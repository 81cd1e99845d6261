import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import net, { type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FileSystem, FtpSrv } from 'ftp-srv';

/**
 * What the end-to-end tests put between two daemons besides folders: free
 * loopback ports for http listeners, a private certificate authority for
 * https, and a real FTP server (ftp-srv, in the test's own process).
 */

/** A loopback port that was free a moment ago (bound on port 0, read, closed). */
export async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', resolve);
  });
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

// ---------------------------------------------------------------- certificates

export interface Certificates {
  /** The private authority's certificate: what the active side trusts as `tls.ca`. */
  readonly ca: string;
  /** The passive side's certificate for 127.0.0.1 and localhost, signed by that authority, and its key. */
  readonly cert: string;
  readonly key: string;
}

/** Makes a private CA and a server certificate for 127.0.0.1 in `dir` with the openssl command (about a tenth of a second). */
export async function makeCertificates(dir: string): Promise<Certificates> {
  const run = promisify(execFile);
  const file = (name: string): string => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', [
    'req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '2', '-subj', '/CN=tablesync e2e CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await run('openssl', ['req', ...ec, '-keyout', file('key.pem'), '-out', file('server.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(file('server.ext'), 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await run('openssl', [
    'x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial',
    '-out', file('cert.pem'), '-days', '2', '-extfile', file('server.ext'),
  ]);
  return { ca: file('ca.pem'), cert: file('cert.pem'), key: file('key.pem') };
}

// ---------------------------------------------------------------- FTP server

const quietLog = {
  child: () => quietLog,
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  fatal: () => {},
};

/**
 * A real FTP server in this process: ftp-srv on 127.0.0.1 serving `root`,
 * one user. `start()` listens on a port the system picks the first time and
 * on the same port after `stop()`, as a restarted server does; `stop()`
 * closes every connection at once, transfers in the middle included.
 */
export class TestFtpServer {
  readonly user = 'sync';
  readonly password = 'ftp-e2e-password';
  port = 0;
  /** Successful logins so far, over every run of the server. */
  logins = 0;
  /** How often the server was started. */
  starts = 0;
  #server: FtpSrv | undefined;

  constructor(readonly root: string) {}

  get running(): boolean {
    return this.#server !== undefined;
  }

  async start(): Promise<void> {
    if (this.#server !== undefined) return;
    const signals = ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const;
    const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]));
    const server = new FtpSrv({ url: `ftp://127.0.0.1:${this.port}`, pasv_url: '127.0.0.1', log: quietLog as never, tls: false });
    // ftp-srv makes each server exit the process on these signals; the test runner keeps its own.
    for (const signal of signals) {
      for (const listener of process.listeners(signal)) if (!before.get(signal)?.has(listener)) process.removeListener(signal, listener);
    }
    // Data connections on a port the system picks, rather than probing upwards from 1024, which races with parallel tests.
    (server as unknown as { getNextPasvPort(): Promise<number> }).getNextPasvPort = () => Promise.resolve(0);
    server.on('login', ({ connection, username, password }, resolve, reject) => {
      if (username === this.user && password === this.password) {
        this.logins += 1;
        resolve({ fs: new FileSystem(connection, { root: this.root, cwd: '/' }) });
      } else reject(new Error('Login incorrect.'));
    });
    server.on('client-error', () => {});
    // On the same port again after a stop: a socket of the old run may linger a moment.
    for (let attempt = 1; ; attempt += 1) {
      try {
        await server.listen();
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 50) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    this.port = ((server as unknown as { server: Server }).server.address() as AddressInfo).port;
    this.#server = server;
    this.starts += 1;
  }

  /** Closes every connection, those in the middle of a transfer included, and stops listening. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    await server?.close();
  }
}
