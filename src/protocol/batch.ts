import type { VerifyEvent } from './verify-events.js';

/**
 * The batch: what one side sends the other, as JSON. Version 1.
 *
 * Numbers, not names, cross the wire: tables and fields are named by the
 * numbers of the sync's configuration; records by the sender's own id (and
 * the receiver's id, once the sender knows the link).
 *
 * A batch with `seq` ≥ 1 carries events and is applied exactly once, in
 * `seq` order. A batch with `seq` 0 only acknowledges. Every batch carries
 * `ack`: the highest `seq` of the receiver's batches that the sender has
 * applied, so the receiver can forget them.
 */
export const protocolVersion = 1;

/** A value as it travels: JSON scalars, and bytes as base64. */
export type WireValue = string | number | boolean | null | { readonly b64: string };

/** One field's new value with its version, and the version it replaced (its parent). */
export interface FieldChange {
  readonly value: WireValue;
  /** Unique per write: `<ms>.<counter>.<instance>`, ordered as text. */
  readonly version: string;
  /** The version the sender held before this write; '' for the value the record had when it was linked. */
  readonly parent: string;
}

export interface UpsertEvent {
  readonly op: 'upsert';
  readonly table: number;
  /** The sender's record id. */
  readonly id: string;
  /** The receiver's record id, when the sender knows the link. */
  readonly peerId?: string;
  /** Fields that changed, by field number. May be empty: the event then only confirms a link. */
  readonly fields: Readonly<Record<string, FieldChange>>;
  /**
   * Every field's current value, by field number, sent while the sender does
   * not know the receiver's id: lets the receiver create the record. Never
   * overwrites anything on the receiver.
   */
  readonly record?: Readonly<Record<string, WireValue>>;
  /**
   * Where the record was born: `<instance>/<its id there>`, sent with
   * `record`. A record that reaches an instance by two paths (in a ring) is
   * created once and linked the second time.
   */
  readonly origin?: string;
}

export interface DeleteEvent {
  readonly op: 'delete';
  readonly table: number;
  readonly id: string;
  readonly peerId?: string;
}

/**
 * A record sent by `tablesync initial-sync`: its values become the base both
 * sides agree on. The receiver finds its own record (by link, birthplace or
 * the table's `match:` fields) or creates one when `create` allows; a field
 * it has changed since the two were linked keeps its own, newer value.
 */
export interface InitialEvent {
  readonly op: 'initial';
  readonly table: number;
  readonly id: string;
  readonly peerId?: string;
  readonly origin: string;
  /** Values by field number: every field the sender sends, or the one field of a per-field initial sync. */
  readonly record: Readonly<Record<string, WireValue>>;
  /** Whether the receiver may create a record it does not have (a per-field initial sync does not, unless asked). */
  readonly create: boolean;
  /** The record is soft-deleted here: the receiver keeps or creates it in its own deleted status. */
  readonly deleted?: boolean;
}

/**
 * Links confirmed in bulk: each pair is (the sender's record id, the
 * receiver's record id). Sent for records the sender created or matched on
 * the receiver's behalf, so the receiver learns their ids without one
 * event per record.
 */
export interface LinksEvent {
  readonly op: 'links';
  readonly table: number;
  readonly pairs: readonly (readonly [string, string])[];
}

/**
 * Sent by `tablesync initial-sync` as the first event of its first batch of
 * rows for the sync: the receiver backs up its synced tables and its tablesync state
 * before it applies this batch, unless `backup` is false or those tables are
 * empty, and answers with an InitialStartReply. A receiver that cannot make
 * the backup applies nothing more from this peer until it can: the rows
 * behind it never overwrite data that was asked to be kept.
 */
export interface InitialStartEvent {
  readonly op: 'initial-start';
  /** This initial sync's id (32 hexadecimal digits), which the reply names. */
  readonly id: string;
  /** False when the sender was run with `--no-backup`. */
  readonly backup: boolean;
  /** The table numbers this initial sync sends. */
  readonly tables: readonly number[];
}

/** What the receiver did about the backup an InitialStartEvent asked for. */
export interface InitialStartReply {
  readonly op: 'initial-start-reply';
  readonly id: string;
  /** `taken`: a backup is at `file`; `empty`: the synced tables held no rows; `skipped`: not asked; `failed`: see `error` (the batch waits). */
  readonly outcome: 'taken' | 'empty' | 'skipped' | 'failed';
  /** The backup file, on the receiver's machine. */
  readonly file?: string;
  /** Rows in the backup. */
  readonly rows?: number;
  readonly error?: string;
}

export type InitialStartMessage = InitialStartEvent | InitialStartReply;

/** With `tablesync verify`'s requests and replies (verify-events.ts) and the initial sync's start, which write no application table. */
export type BatchEvent = UpsertEvent | DeleteEvent | InitialEvent | LinksEvent | VerifyEvent | InitialStartMessage;

/** Events that carry a record (or links) of a synced table. */
export type RecordEvent = Exclude<BatchEvent, VerifyEvent | InitialStartMessage>;

/** Events that name a table by its number: all but the initial sync's start and its answer. */
export type TableEvent = Exclude<BatchEvent, InitialStartMessage>;

export function isInitialStartMessage(event: { readonly op: string }): event is InitialStartMessage {
  return event.op === 'initial-start' || event.op === 'initial-start-reply';
}

export interface Batch {
  readonly protocol: typeof protocolVersion;
  readonly sync: string;
  /** The sending instance's name. */
  readonly from: string;
  readonly seq: number;
  readonly ack: number;
  /** The sender's clock when it built the batch (ms), to report clocks that disagree. */
  readonly sentAt: number;
  readonly events: readonly BatchEvent[];
}
