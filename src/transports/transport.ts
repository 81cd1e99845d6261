/**
 * How batches travel between the two sides of one sync. The engine speaks
 * only this contract; each folder under src/transports/ implements it over
 * one medium and is the only code that imports that medium's library.
 *
 * Leaves out: what a batch means. A transport moves named byte strings and
 * never parses them.
 */

/** A batch on its way out: a name unique per sender and sequence, and its bytes. */
export interface OutgoingBatch {
  /** Safe as a file name: letters, digits, `.`, `-`, `_`. Sorting names sorts batches in sending order. */
  readonly name: string;
  readonly body: Buffer;
}

/** A batch that arrived and waits to be applied. */
export interface IncomingBatch {
  readonly name: string;
  readonly body: Buffer;
  /** Removes it for good; the engine calls this only after the batch's effect is committed. */
  done(): Promise<void>;
  /** Moves it aside for inspection, with the reason beside it; it is not offered again. */
  reject(reason: string): Promise<void>;
}

export interface Transport {
  /**
   * The largest batch body this transport carries. The engine splits its
   * batches to fit; a single change larger than this cannot travel here.
   */
  readonly maxBatchBytes: number;

  /** Whether this side can contact the peer by itself (a passive http side cannot: it only answers). */
  readonly reachesPeer: boolean;

  /**
   * Only for a side that does not reach its peer by itself (`reachesPeer` false): when the peer
   * last reached us (ms since the epoch), or undefined if it has not since the transport opened.
   * Where `reachesPeer` is true, an exchange that succeeds is the contact, and this is left out.
   */
  readonly peerCalledAt?: number | undefined;

  /** Hands a batch over durably (written in full under its final name) or throws. Sending the same name again replaces it. */
  send(batch: OutgoingBatch): Promise<void>;

  /** Whether a batch we sent is still waiting, unread, on the other side (so resending it is pointless). */
  isWaiting(name: string): Promise<boolean>;

  /** The batches waiting for us now, sorted by name. Never a half-written one. */
  receive(): Promise<IncomingBatch[]>;

  /**
   * Calls `listener` soon after new batches may have arrived, and once when watching has started (batches may
   * have arrived before). A medium without notifications may poll for this. The engine still polls on its own
   * schedule, so this only lowers latency.
   */
  onArrival(listener: () => void): void;

  /**
   * Leaves a description of this side (its table and field numbers, directions; see
   * src/protocol/description.ts) where the peer's `tablesync check` can read it. Replaces an earlier one.
   */
  publishDescription(body: Buffer): Promise<void>;

  /**
   * Checks that the peer, or the place both sides share, can be reached, without sending a batch:
   * resolves with a short phrase of what was found; throws a TablesyncError saying why not. A side
   * that cannot reach its peer by itself (`reachesPeer` false) resolves with a phrase saying so.
   */
  probe(): Promise<string>;

  /**
   * The peer's published description, or undefined if it has published none yet. Throws (a
   * TablesyncError saying why) when the peer, or the place it publishes to, cannot be reached:
   * this is how `check` tells whether the peer is reachable.
   */
  readPeerDescription(): Promise<Buffer | undefined>;

  /** Stops watching and releases connections; safe to call twice. Afterwards, `done` and `reject` may throw where they need a connection. */
  close(): Promise<void>;
}
