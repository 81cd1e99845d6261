/**
 * JSON Schema of a batch (protocol version 1). Every incoming batch is
 * checked against it before anything else looks at it; the limits keep a
 * hostile or broken peer from exhausting memory or the database.
 */

/** Longest text value accepted; larger values belong in files, not in sync fields. */
export const maxValueLength = 16 * 1024 * 1024;
export const maxEventsPerBatch = 100_000;

const fieldNumberKey = '^[1-9][0-9]{0,9}$';
const recordId = { type: 'string', minLength: 1, maxLength: 191 } as const;
const version = { type: 'string', maxLength: 96, pattern: '^(|[0-9]{16}\\.[0-9]{6}\\.[A-Za-z0-9][A-Za-z0-9._-]{0,62})$' } as const;

const wireValue = {
  oneOf: [
    { type: 'string', maxLength: maxValueLength },
    { type: 'number' },
    { type: 'boolean' },
    { type: 'null' },
    {
      type: 'object',
      additionalProperties: false,
      required: ['b64'],
      properties: { b64: { type: 'string', maxLength: maxValueLength, pattern: '^[A-Za-z0-9+/]*={0,2}$' } },
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
    origin: { type: 'string', maxLength: 255, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}/.{1,191}$' },
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
    origin: { type: 'string', maxLength: 255, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}/.{1,191}$' },
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

export const batchSchema = {
  $id: 'https://tablesync.dev/schema/batch-v1.json',
  type: 'object',
  additionalProperties: false,
  required: ['protocol', 'sync', 'from', 'seq', 'ack', 'sentAt', 'events'],
  properties: {
    protocol: { const: 1 },
    sync: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' },
    from: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' },
    seq: { type: 'integer', minimum: 0 },
    ack: { type: 'integer', minimum: 0 },
    sentAt: { type: 'integer', minimum: 0 },
    events: {
      type: 'array',
      maxItems: maxEventsPerBatch,
      items: {
        type: 'object',
        required: ['op'],
        properties: { op: { enum: ['upsert', 'delete', 'initial', 'links'] } },
        discriminator: { propertyName: 'op' },
        oneOf: [upsertEvent, deleteEvent, initialEvent, linksEvent],
      },
    },
  },
} as const;
