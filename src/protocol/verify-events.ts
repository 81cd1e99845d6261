import type { WireValue } from './batch.js';

/**
 * The events of `tablesync verify` (see src/engine/verify.ts). They travel
 * in the sync's ordinary numbered batches, so they are applied once, in
 * order, in the transaction that records the batch as applied, and an
 * answer is queued in that same transaction: a crash never loses one.
 *
 * The side that runs `verify` (the asker) sends requests; the other side
 * (the answerer) reduces its own records to digests from its own database
 * and sends replies. `id` is the verify run's id (32 hexadecimal digits),
 * not a record's: replies name the run they answer, and the asker drops
 * replies to a run it no longer waits for. Record ids are each side's own,
 * as everywhere in the protocol.
 */

/**
 * One chunk of the asker's records, in key order. The answerer looks up
 * which of its records it links to each of these ids, reduces them (ids,
 * links, deleted or not, the compared fields in wire form) to a SHA-256
 * digest the same way the asker reduced its own, and sends its records of
 * the chunk back only when the digests differ.
 */
export interface VerifyChunkEvent {
  readonly op: 'verify-chunk';
  readonly table: number;
  readonly id: string;
  /** The chunk's number in this run and table, from 0. */
  readonly chunk: number;
  /** Field numbers the asker compares (`both` on its side); the answerer compares those that are `both` on its side too. */
  readonly fields: readonly number[];
  /** The asker's digest of the chunk. */
  readonly digest: string;
  /** The asker's records of the chunk, in key order, but for those of `unsent`. */
  readonly ids: readonly string[];
  /**
   * Records of the chunk deleted on the asker's side before they were ever
   * linked: nothing to compare, unless the answerer links a record to one.
   */
  readonly unsent: readonly string[];
}

/** The answerer's side of one record of a chunk. */
export interface VerifyRecordState {
  /** The asker's id, as the request gave it. */
  readonly id: string;
  /** The answerer's record that its links give for that id. */
  readonly peerId?: string;
  /** `absent`: no link, or the linked record does not exist; `deleted`: by its status column. */
  readonly state: 'absent' | 'deleted' | 'live';
  /** A live record's compared fields as they travel, by field number. */
  readonly values?: Readonly<Record<string, WireValue>>;
}

/** The answer to a chunk; one too big for a batch travels in several pieces. */
export interface VerifyChunkReply {
  readonly op: 'verify-chunk-reply';
  readonly table: number;
  readonly id: string;
  readonly chunk: number;
  readonly piece: number;
  readonly pieces: number;
  /** The fields the answerer compared: those of the request that are `both` on its side too, in the request's order. */
  readonly fields?: readonly number[];
  /** Of `fields`, those whose column holds numbers on the answerer's side (compared as numbers: `10.50` is `10.5`). */
  readonly numeric?: readonly number[];
  /** The answerer's digest of the chunk, over `fields`. */
  readonly digest?: string;
  /** Only when the digests (or the fields) differ: the answerer's side of each record, in the request's order. */
  readonly records?: readonly VerifyRecordState[];
  /** Why the answerer could not verify this (a table it does not sync); nothing else is then set. */
  readonly error?: string;
}

/**
 * The answerer's records that no record of the asker's accounts for. Both
 * sides put the answerer's records into `groups` groups by a hash of their
 * id (no key order is shared between two databases); the asker sends, per
 * group, the digest of its links into the group, as (the answerer's id, its
 * own id) pairs. The answerer digests its own records the same way, as (its
 * id, the asker's id its link gives) pairs, and sends the pairs of the
 * groups that differ.
 */
export interface VerifyGroupsEvent {
  readonly op: 'verify-groups';
  readonly table: number;
  readonly id: string;
  readonly fields: readonly number[];
  readonly groups: number;
  readonly digests: readonly string[];
}

export interface VerifyGroupsReply {
  readonly op: 'verify-groups-reply';
  readonly table: number;
  readonly id: string;
  readonly piece: number;
  readonly pieces: number;
  /** The answerer's records in the table, deleted ones included. */
  readonly records?: number;
  /** Groups whose digests differ. */
  readonly differing?: number;
  /** The answerer's changes captured or sent and not yet acknowledged: differences may be among them. */
  readonly waiting?: number;
  /** The fields the answerer would compare (as in a chunk's reply), also for an empty table. */
  readonly fields?: readonly number[];
  /** The answerer's records of the differing groups: (its id, the asker's id its link gives, or null). Records deleted before they were ever linked are left out. */
  readonly pairs?: readonly (readonly [string, string | null])[];
  readonly error?: string;
}

/**
 * `--repair` for records only the answerer has: it queues each of these of
 * its records that it has not linked, to be sent at its next exchange (the
 * asker then creates or links them).
 */
export interface VerifyPushEvent {
  readonly op: 'verify-push';
  readonly table: number;
  readonly id: string;
  readonly chunk: number;
  readonly ids: readonly string[];
}

export interface VerifyPushReply {
  readonly op: 'verify-push-reply';
  readonly table: number;
  readonly id: string;
  readonly chunk: number;
  /** How many of the records it queued. */
  readonly queued?: number;
  readonly error?: string;
}

export type VerifyRequest = VerifyChunkEvent | VerifyGroupsEvent | VerifyPushEvent;
export type VerifyReply = VerifyChunkReply | VerifyGroupsReply | VerifyPushReply;
export type VerifyEvent = VerifyRequest | VerifyReply;

const verifyOps: ReadonlySet<string> = new Set<VerifyEvent['op']>([
  'verify-chunk',
  'verify-chunk-reply',
  'verify-groups',
  'verify-groups-reply',
  'verify-push',
  'verify-push-reply',
]);

export function isVerifyEvent(event: { readonly op: string }): event is VerifyEvent {
  return verifyOps.has(event.op);
}

export function isVerifyReply(event: VerifyEvent): event is VerifyReply {
  return event.op.endsWith('-reply');
}

/** The longest chunk a request may carry: the schema's limit, and `verify --chunk-rows`'s. */
export const maxVerifyChunkRows = 10_000;
/** Groups of the answerer's records at most, whatever the table's size. */
export const maxVerifyGroups = 10_000;
/** Pairs per piece of a groups reply at most. */
export const maxVerifyPairs = 100_000;
