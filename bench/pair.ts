import { randomBytes } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { BenchDatabase, createItemsTable, one } from './db.js';
import { syncName, writePairConfigs } from './configs.js';
import { CliProcess, connectedTo, memoryOf, RssSampler, serviceEnvironment, sleep } from './processes.js';
import { mb } from './stats.js';

export type Log = (message: string) => void;

export interface DaemonMemory {
  /** VmHWM read just before the daemon was stopped: its peak resident memory over its whole life. */
  peakRssMb: number | null;
  /** The largest VmRSS seen by sampling every 200 ms over its whole life. */
  maxSampledRssMb: number | null;
}

/**
 * The two instances: database A (active) and B (passive), each with the
 * `items` table (B's with an extra `synced_at` column that tablesync does
 * not know about), their files, and their daemons while they run.
 */
export class SyncPair {
  readonly files: { a: string; b: string };
  readonly sampler = new RssSampler(200);
  daemonA: CliProcess | undefined;
  daemonB: CliProcess | undefined;
  port = 0;

  private constructor(
    readonly a: BenchDatabase,
    readonly b: BenchDatabase,
    readonly dir: string,
    readonly log: Log,
    private readonly daemonOptions: { logLevel: string; cpuProfDir: string | undefined },
  ) {
    this.files = { a: join(dir, 'a.yaml'), b: join(dir, 'b.yaml') };
  }

  static async create(serverUrl: string, dir: string, log: Log, daemonOptions: { logLevel: string; cpuProfDir: string | undefined }): Promise<SyncPair> {
    const a = await BenchDatabase.create(serverUrl, 'a');
    const b = await BenchDatabase.create(serverUrl, 'b');
    const pair = new SyncPair(a, b, dir, log, daemonOptions);
    const ca = await a.connect();
    const cb = await b.connect();
    try {
      await ca.query(createItemsTable('items'));
      // Set by B's database when tablesync writes a row: the moment the change reached B.
      await cb.query(createItemsTable('items', ',\n  synced_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)'));
    } finally {
      await a.release(ca);
      await b.release(cb);
    }
    return pair;
  }

  get sync(): string {
    return syncName;
  }

  /** Where `--cpu-prof` profiles go, if it was given. */
  get cpuProfDir(): string | undefined {
    return this.daemonOptions.cpuProfDir;
  }

  /** `tablesync run` for one side, with the environment the systemd unit gives a daemon. */
  #daemon(label: string, configFile: string): CliProcess {
    const cpuProfDir = this.daemonOptions.cpuProfDir;
    return new CliProcess(label, ['run', '-c', configFile], { logFile: join(this.dir, `${label}.log`), env: serviceEnvironment(), ...(cpuProfDir === undefined ? {} : { cpuProfDir }) });
  }

    /** Starts B (passive, on a free loopback port), then A, and waits until both serve: B's /healthz, A's connection to B. */
  async startDaemons(): Promise<void> {
    this.port = await freePort();
    writePairConfigs(this.files, { aUrl: this.a.url, bUrl: this.b.url, port: this.port, password: randomBytes(18).toString('base64url'), logLevel: this.daemonOptions.logLevel });
    this.daemonB = this.#daemon('daemon-b', this.files.b);
    this.sampler.watch('daemon-b', this.daemonB.pid);
    await this.#waitFor('daemon B to answer /healthz', this.daemonB, async () => {
      try {
        const response = await fetch(`http://127.0.0.1:${this.port}/healthz`);
        return response.ok;
      } catch {
        return false;
      }
    });
    this.daemonA = this.#daemon('daemon-a', this.files.a);
    this.sampler.watch('daemon-a', this.daemonA.pid);
    const daemonA = this.daemonA;
    const connection = await this.a.connect();
    const started = Date.now();
    try {
      await this.#waitFor("daemon A's capture triggers and its connection to B", daemonA, async () => {
        const row = await one<{ n: number | string }>(
          connection,
          `SELECT COUNT(*) AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'items' AND TRIGGER_NAME LIKE 'tsync\\_%'`,
        );
        if (Number(row.n) < 3) return false;
        // Without /proc, a moment's grace for the first exchange instead.
        return connectedTo(daemonA.pid, this.port) ?? Date.now() - started > 3000;
      });
    } finally {
      await this.a.release(connection);
    }
  }

  async #waitFor(what: string, daemon: CliProcess, probe: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!daemon.running) throw new Error(`${daemon.label} exited while waiting for ${what}; see ${join(this.dir, `${daemon.label}.log`)}`);
      if (await probe()) return;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
      await sleep(100);
    }
  }

  /** Throws if a daemon died. */
  checkDaemons(): void {
    for (const daemon of [this.daemonA, this.daemonB]) {
      if (daemon !== undefined && !daemon.running) throw new Error(`${daemon.label} exited unexpectedly (code ${String(daemon.child.exitCode)}); see ${join(this.dir, `${daemon.label}.log`)}`);
    }
  }

  memoryNow(): { a: DaemonMemory; b: DaemonMemory } {
    const of = (daemon: CliProcess | undefined, name: string): DaemonMemory => {
      const memory = daemon === undefined ? undefined : memoryOf(daemon.pid);
      return { peakRssMb: mb(memory?.hwmKb), maxSampledRssMb: mb(this.sampler.maxKb(name)) };
    };
    this.sampler.sample();
    return { a: of(this.daemonA, 'daemon-a'), b: of(this.daemonB, 'daemon-b') };
  }

  /** Reads each daemon's VmHWM, then stops both (SIGTERM: they finish the work in hand). */
  async stopDaemons(): Promise<{ a: DaemonMemory; b: DaemonMemory; exitCodes: { a: number | null; b: number | null } }> {
    const memory = this.memoryNow();
    this.sampler.stop();
    // The active side first: stopping B under it would make A's exchange in hand fail.
    const a = (await this.daemonA?.stop()) ?? null;
    const b = (await this.daemonB?.stop()) ?? null;
    return { ...memory, exitCodes: { a, b } };
  }
}

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
