/**
 * JSON Schema of a batch (protocol version 1). Every incoming batch is
 * checked against it before anything else looks at it; the limits keep a
 * hostile or broken peer from exhausting memory or the database.
 */
import { maxVerifyChunkRows, maxVerifyGroups, maxVerifyPairs } from './verify-events.js';

/** Longest text value accepted; larger values belong in files, not in sync fields. */
export const maxValueLength = 16 * 1024 * 1024;
export const maxEventsPerBatch = 100_000;

const fieldNumberKey = '^[1-9][0-9]{0,9}$';
const namePattern = '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$';
const versionPattern = '^(|[0-9]{16}\\.[0-9]{6}\\.[A-Za-z0-9][A-Za-z0-9._-]{0,62})$';
const originPattern = '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}/.{1,191}$';
const base64Pattern = '^[A-Za-z0-9+/]*={0,2}$';
const verifyRunPattern = '^[0-9a-f]{32}$';
const digestPattern = '^[0-9a-f]{64}$';

/** What each pattern means, in the words a refusal uses instead of the regular expression. */
export const patternMeanings: ReadonlyMap<string, string> = new Map([
  [fieldNumberKey, 'a field number (a whole number from 1)'],
  [namePattern, 'a name of 1 to 63 letters, digits, dots, dashes or underscores, starting with a letter or digit'],
  [versionPattern, 'a version such as 0001700000000000.000001.alpha, or empty'],
  [originPattern, 'a birthplace such as alpha/42 (an instance name, a slash, a record id)'],
  [base64Pattern, 'base64 text'],
  [verifyRunPattern, 'a run id (32 hexadecimal digits, lower case)'],
  [digestPattern, 'a SHA-256 digest (64 hexadecimal digits, lower case)'],
]);

const recordId = { type: 'string', minLength: 1, maxLength: 191 } as const;
const version = { type: 'string', maxLength: 96, pattern: versionPattern } as const;
/** Sequence numbers and times stay exact integers in JavaScript and in a BIGINT column. */
const counter = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const;

// anyOf, not oneOf: the kinds exclude each other anyway, and anyOf stops at the first that fits where
// oneOf tries all five for every value of every batch.
const wireValue = {
  anyOf: [
    { type: 'string', maxLength: maxValueLength },
    { type: 'number' },
    { type: 'boolean' },
    { type: 'null' },
    {
      type: 'object',
      additionalProperties: false,
      required: ['b64'],
      properties: { b64: { type: 'string', maxLength: maxValueLength, pattern: base64Pattern } },
    },
  ],
} as const;

const tableNumber = { type: 'integer', minimum: 1, maximum: 2147483647 } as const;

const upsertEvent = {
  type: 'object',
  additionalProperties: false,
  required: ['op', 'table', 'id', 'fields'],
  properties: {
    op: { const: 'upsert' },
    table: tableNumber,
    id: recordId,
    peerId: recordId,
    fields: {
      type: 'object',
      maxProperties: 1000,
      propertyNames: { pattern: fieldNumberKey },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['value', 'version', 'parent'],
        properties: { value: wireValue, version, parent: version },
      },
    },
    record: {
      type: 'object',
      maxProperties: 1000,
      propertyNames: { pattern: fieldNumberKey },
      additionalProperties: wireValue,
    },
    origin: { type: 'string', maxLength: 255, pattern: originPattern },
  },
} as const;

const initialEvent = {
  type: 'object',
  additionalProperties: false,
  required: ['op', 'table', 'id', 'origin', 'record', 'create'],
  properties: {
    op: { const: 'initial' },
    table: tableNumber,
    id: recordId,
    peerId: recordId,
    origin: { type: 'string', maxLength: 255, pattern: originPattern },
    record: {
      type: 'object',
      maxProperties: 1000,
      propertyNames: { pattern: fieldNumberKey },
      additionalProperties: wireValue,
    },
    create: { type: 'boolean' },
    deleted: { type: 'boolean' },
  },
} as const;

const linksEvent = {
  type: 'object',
  additionalProperties: false,
  required: ['op', 'table', 'pairs'],
  properties: {
    op: { const: 'links' },
    table: tableNumber,
    pairs: { type: 'array', maxItems: maxEventsPerBatch, items: { type: 'array', minItems: 2, maxItems: 2, items: recordId } },
  },
} as const;

const deleteEvent = {
  type: 'object',
  additionalProperties: false,
  required: ['op', 'table', 'id'],
  properties: { op: { const: 'delete' }, table: tableNumber, id: recordId, peerId: recordId },
} as const;

/*
 * tablesync verify's requests and replies (src/protocol/verify-events.ts). Lists are bounded by the
 * largest chunk verify reads (maxVerifyChunkRows) and the most groups it makes (maxVerifyGroups), so
 * that a peer cannot make this side hold or hash more than one chunk's worth per event.
 */
const verifyRun = { type: 'string', pattern: verifyRunPattern } as const;
const digest = { type: 'string', pattern: digestPattern } as const;
const verifyChunkNumber = { type: 'integer', minimum: 0, maximum: 2147483647 } as const;
const verifyPiece = { type: 'integer', minimum: 0, maximum: maxVerifyChunkRows } as const;
const verifyPieces = { type: 'integer', minimum: 1, maximum: maxVerifyChunkRows } as const;
const verifyFields = { type: 'array', maxItems: 1000, items: { type: 'integer', minimum: 1, maximum: 2147483647 } } as const;
const verifyIds = { type: 'array', maxItems: maxVerifyChunkRows, items: recordId } as const;
const verifyError = { type: 'string', minLength: 1, maxLength: 1000 } as const;

const verifyChunkEvent = {
  type: 'object',
  additionalProperties: false,
  required: ['op', 'table', 'id', 'chunk', 'fields', 'digest', 'ids', 'unsent'],
  properties: { op: { const: 'verify-chunk' }, table: tableNumber, id: verifyRun, chunk: verifyChunkNumber, fields: verifyFields, digest, ids: verifyIds, unsent: verifyIds },
} as const;

const verifyChunkReply = {
  type: 'object',
  additionalProperties: false,
  required: ['op', 'table', 'id', 'chunk', 'piece', 'pieces'],
  properties: {
    op: { const: 'verify-chunk-reply' },
    table: tableNumber,
    id: verifyRun,
    chunk: verifyChunkNumber,
    piece: verifyPiece,
    pieces: verifyPieces,
    fields: verifyFields,
    numeric: verifyFields,
    digest,
    records: {
      type: 'array',
      maxItems: maxVerifyChunkRows,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'state'],
        properties: {
          id: recordId,
          peerId: recordId,
          state: { enum: ['absent', 'deleted', 'live'] },
          values: { type: 'object', maxProperties: 1000, propertyNames: { pattern: fieldNumberKey }, additionalProperties: wireValue },
        },
      },
    },
    error: verifyError,
  },
} as const;

const verifyGroupsEvent = {
  type: 'object',
  additionalProperties: false,
  required: ['op', 'table', 'id', 'fields', 'groups', 'digests'],
  properties: {
    op: { const: 'verify-groups' },
    table: tableNumber,
    id: verifyRun,
    fields: verifyFields,
    groups: { type: 'integer', minimum: 1, maximum: maxVerifyGroups },
    digests: { type: 'array', minItems: 1, maxItems: maxVerifyGroups, items: digest },
  },
} as const;

const verifyGroupsReply = {
  type: 'object',
  additionalProperties: false,
  required: ['op', 'table', 'id', 'piece', 'pieces'],
  properties: {
    op: { const: 'verify-groups-reply' },
    table: tableNumber,
    id: verifyRun,
    // A group reply is cut into pieces of pairs, as many as the answerer's table needs.
    piece: counter,
    pieces: { ...counter, minimum: 1 },
    records: counter,
    differing: { type: 'integer', minimum: 0, maximum: maxVerifyGroups },
    waiting: counter,
    fields: verifyFields,
    pairs: {
      type: 'array',
      maxItems: maxVerifyPairs,
      items: { type: 'array', minItems: 2, maxItems: 2, items: { anyOf: [recordId, { type: 'null' }] } },
    },
    error: verifyError,
  },
} as const;

const verifyPushEvent = {
  type: 'object',
  additionalProperties: false,
  required: ['op', 'table', 'id', 'chunk', 'ids'],
  properties: { op: { const: 'verify-push' }, table: tableNumber, id: verifyRun, chunk: verifyChunkNumber, ids: verifyIds },
} as const;

const verifyPushReply = {
  type: 'object',
  additionalProperties: false,
  required: ['op', 'table', 'id', 'chunk'],
  properties: { op: { const: 'verify-push-reply' }, table: tableNumber, id: verifyRun, chunk: verifyChunkNumber, queued: counter, error: verifyError },
} as const;

const initialStartEvent = {
  type: 'object',
  additionalProperties: false,
  required: ['op', 'id', 'backup', 'tables'],
  properties: {
    op: { const: 'initial-start' },
    id: verifyRun,
    backup: { type: 'boolean' },
    tables: { type: 'array', minItems: 1, maxItems: 1000, items: tableNumber },
  },
} as const;

const initialStartReply = {
  type: 'object',
  additionalProperties: false,
  required: ['op', 'id', 'outcome'],
  properties: {
    op: { const: 'initial-start-reply' },
    id: verifyRun,
    outcome: { enum: ['taken', 'empty', 'skipped', 'failed'] },
    file: { type: 'string', minLength: 1, maxLength: 4096 },
    rows: counter,
    error: { type: 'string', minLength: 1, maxLength: 4096 },
  },
} as const;

export const batchSchema = {
  $id: 'https://tablesync.dev/schema/batch-v1.json',
  type: 'object',
  additionalProperties: false,
  required: ['protocol', 'sync', 'from', 'seq', 'ack', 'sentAt', 'events'],
  properties: {
    protocol: { const: 1 },
    sync: { type: 'string', pattern: namePattern },
    from: { type: 'string', pattern: namePattern },
    seq: counter,
    ack: counter,
    sentAt: counter,
    events: {
      type: 'array',
      maxItems: maxEventsPerBatch,
      items: {
        type: 'object',
        required: ['op'],
        properties: {
          op: { enum: ['upsert', 'delete', 'initial', 'links', 'verify-chunk', 'verify-chunk-reply', 'verify-groups', 'verify-groups-reply', 'verify-push', 'verify-push-reply', 'initial-start', 'initial-start-reply'] },
        },
        discriminator: { propertyName: 'op' },
        oneOf: [
          upsertEvent,
          deleteEvent,
          initialEvent,
          linksEvent,
          verifyChunkEvent,
          verifyChunkReply,
          verifyGroupsEvent,
          verifyGroupsReply,
          verifyPushEvent,
          verifyPushReply,
          initialStartEvent,
          initialStartReply,
        ],
      },
    },
  },
} as const;
