import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A network between two folder-transport sides that the test controls
 * file by file. Each side writes into its own upload folder; a `Wire`
 * takes those files off (so the sender sees them as read, as a peer would),
 * keeps them in flight, and writes them into the receiver's download folder
 * only when told: now, late, twice, out of order, or never.
 *
 * Files are carried as the bytes the sender wrote; a duplicate delivery
 * writes those original bytes again.
 */

/** The folder transport's batch file names (temporary files start with a dot). */
const batchFile = /^[A-Za-z0-9_-][A-Za-z0-9._-]*\.json$/;

export interface Packet {
  /** Order in which the wire took packets off the sender, for reports. */
  readonly serial: number;
  readonly name: string;
  readonly body: Buffer;
}

interface Held {
  readonly packet: Packet;
  /** The step at which the packet is delivered by itself. */
  readonly due: number;
}

/** Batch file names in a folder, sorted as the transport sorts them. */
export async function batchFiles(folder: string): Promise<string[]> {
  try {
    return (await readdir(folder)).filter((name) => batchFile.test(name)).sort();
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return [];
    throw err;
  }
}

/** A deterministic permutation of 0..n-1 from a seed (a small LCG), so that a shrunk counterexample replays the same order. */
export function permutation(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let state = (seed >>> 0) + 1;
  for (let i = n - 1; i > 0; i--) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const j = state % (i + 1);
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  return order;
}

/** One direction of the network: from `source` (the sender's upload folder) to `target` (the receiver's download folder). */
export class Wire {
  #serial = 0;
  /** Taken off the sender, not yet delivered, not held. */
  readonly pending: Packet[] = [];
  readonly held: Held[] = [];
  /** Every packet delivered so far, as it was sent: what a duplicate delivery copies again. */
  readonly delivered: Packet[] = [];

  constructor(
    readonly label: string,
    readonly source: string,
    readonly target: string,
    /** Receives one line per thing the wire does, for failure reports. */
    private readonly log: (line: string) => void,
  ) {}

  get inFlight(): number {
    return this.pending.length + this.held.length;
  }

  /** Takes every batch file the sender has written since the last pull off its upload folder. */
  async pull(): Promise<void> {
    for (const name of await batchFiles(this.source)) {
      const path = join(this.source, name);
      let body: Buffer;
      try {
        body = await readFile(path);
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOENT') continue;
        throw err;
      }
      await rm(path, { force: true });
      this.#serial += 1;
      this.pending.push({ serial: this.#serial, name, body });
    }
  }

  /** Writes a packet into the receiver's folder the way the transport does: complete, under its final name by a rename. */
  async #write(packet: Packet, how: string): Promise<void> {
    const temp = join(this.target, `.${packet.name}.${packet.serial}.net.tmp`);
    await writeFile(temp, packet.body);
    await rename(temp, join(this.target, packet.name));
    this.delivered.push(packet);
    this.log(`${this.label}: ${how} ${describePacket(packet)}`);
  }

  #take(pick: number): Packet | undefined {
    if (this.pending.length === 0) return undefined;
    const [packet] = this.pending.splice(pick % this.pending.length, 1);
    return packet;
  }

  /** Delivers the pick-th pending packet (modulo how many there are); false when nothing is pending. */
  async deliver(pick: number): Promise<boolean> {
    await this.pull();
    const packet = this.#take(pick);
    if (packet === undefined) return false;
    await this.#write(packet, 'delivered');
    return true;
  }

  /** Holds the pick-th pending packet back until step `due`. */
  async hold(pick: number, due: number): Promise<boolean> {
    await this.pull();
    const packet = this.#take(pick);
    if (packet === undefined) return false;
    this.held.push({ packet, due });
    this.log(`${this.label}: holding ${describePacket(packet)} until step ${due}`);
    return true;
  }

  /** Loses the pick-th pending packet for good. */
  async drop(pick: number): Promise<boolean> {
    await this.pull();
    const packet = this.#take(pick);
    if (packet === undefined) return false;
    this.log(`${this.label}: dropped ${describePacket(packet)}`);
    return true;
  }

  /** Delivers again, byte for byte, a packet delivered earlier that the receiver has consumed since. */
  async redeliver(pick: number): Promise<boolean> {
    const present = new Set(await batchFiles(this.target));
    const consumed = this.delivered.filter((p) => !present.has(p.name));
    if (consumed.length === 0) return false;
    const packet = consumed[pick % consumed.length] as Packet;
    await this.#write(packet, 'delivered again');
    return true;
  }

  /** Delivers the held packets whose time has come (at step `now`), in the order they were held. */
  async releaseDue(now: number): Promise<void> {
    for (let i = 0; i < this.held.length; ) {
      const entry = this.held[i] as Held;
      if (entry.due > now) {
        i += 1;
        continue;
      }
      this.held.splice(i, 1);
      await this.#write(entry.packet, 'delivered late');
    }
  }

  /** Delivers every held packet now, in an order shuffled by `seed`. */
  async releaseShuffled(seed: number): Promise<boolean> {
    if (this.held.length === 0) return false;
    const entries = this.held.splice(0);
    for (const i of permutation(entries.length, seed)) await this.#write((entries[i] as Held).packet, 'delivered out of order');
    return true;
  }

  /** Delivers everything in flight (held first, then pending), in the order it was sent. */
  async flush(): Promise<void> {
    await this.pull();
    const all = [...this.held.splice(0).map((h) => h.packet), ...this.pending.splice(0)].sort((a, b) => a.serial - b.serial);
    for (const packet of all) await this.#write(packet, 'delivered');
  }
}

/** `hq.east.000000000003.json #7 (seq 3, ack 2, 4 events)`: what a packet is, read from its bytes. */
export function describePacket(packet: Packet): string {
  try {
    const batch = JSON.parse(packet.body.toString('utf8')) as { seq?: number; ack?: number; events?: unknown[] };
    const what = batch.seq === 0 ? `ack ${batch.ack}` : `seq ${batch.seq}, ack ${batch.ack}, ${batch.events?.length ?? 0} events`;
    return `${packet.name} #${packet.serial} (${what})`;
  } catch {
    return `${packet.name} #${packet.serial}`;
  }
}
