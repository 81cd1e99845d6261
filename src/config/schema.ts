/**
 * JSON Schema of the instance configuration file (DESIGN section 2).
 *
 * The schema checks shape and value ranges; rules that relate one part of the
 * file to another (unique numbers, the key never synced, …) live in
 * `rules.ts`, and rules that need the database in `check-database.ts`.
 *
 * `x-message` is our own keyword: the sentence shown when a `pattern` fails,
 * instead of ajv's regular expression.
 */

const identifier = {
  type: 'string',
  pattern: '^[A-Za-z_][A-Za-z0-9_$]{0,63}$',
  'x-message': 'must be a plain table or column name (letters, digits, _ and $; at most 64 characters)',
} as const;

const name = {
  type: 'string',
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$',
  'x-message': 'must be 1 to 63 letters, digits, dots, dashes or underscores, starting with a letter or digit',
} as const;

const number = { type: 'integer', minimum: 1, maximum: 2147483647 } as const;

const nonEmptyString = { type: 'string', minLength: 1 } as const;

/** Parsed by duration.ts; the same form wherever a setting takes a duration. */
const duration = {
  type: 'string',
  pattern: '^[0-9]+(ms|s|m|h)$',
  'x-message': 'must be a duration such as 250ms, 1s, 5m or 1h',
} as const;

const field = {
  type: 'object',
  additionalProperties: false,
  required: ['column', 'number'],
  properties: {
    column: identifier,
    number,
    direction: { enum: ['both', 'upload', 'download', 'off'], default: 'both' },
    type: { enum: ['value', 'user'], default: 'value' },
  },
} as const;

const table = {
  type: 'object',
  additionalProperties: false,
  required: ['table', 'number', 'key', 'fields'],
  properties: {
    table: identifier,
    number,
    key: identifier,
    status: {
      type: 'object',
      additionalProperties: false,
      required: ['column', 'deleted'],
      properties: {
        column: identifier,
        deleted: { type: ['string', 'integer'] },
      },
    },
    addedAt: identifier,
    match: { type: 'array', items: number, default: [] },
    fields: { type: 'array', minItems: 1, items: field },
  },
} as const;

const httpTransport = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'password'],
  properties: {
    type: { const: 'http' },
    url: {
      type: 'string',
      pattern: '^https?://[^\\s/]+',
      'x-message': 'must be an http:// or https:// address, such as https://hq.example.com:8470',
    },
    password: nonEmptyString,
  },
} as const;

const folderTransport = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'upload', 'download'],
  properties: {
    type: { const: 'folder' },
    upload: nonEmptyString,
    download: nonEmptyString,
  },
} as const;

const ftpTransport = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'host', 'user', 'password', 'upload', 'download'],
  properties: {
    type: { const: 'ftp' },
    host: nonEmptyString,
    port: { type: 'integer', minimum: 1, maximum: 65535, default: 21 },
    user: nonEmptyString,
    password: nonEmptyString,
    secure: { type: 'boolean', default: false },
    upload: nonEmptyString,
    download: nonEmptyString,
  },
} as const;

const sync = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'mode', 'transport', 'tables'],
  properties: {
    name,
    mode: { enum: ['active', 'passive'] },
    transport: {
      type: 'object',
      required: ['type'],
      properties: { type: { enum: ['http', 'folder', 'ftp'] } },
      discriminator: { propertyName: 'type' },
      oneOf: [httpTransport, folderTransport, ftpTransport],
    },
    every: duration,
    schedule: nonEmptyString,
    conflicts: { enum: ['newest-wins', 'active-wins', 'passive-wins', 'manual'], default: 'newest-wins' },
    users: { enum: ['login', 'fullName', 'id'], default: 'login' },
    tables: { type: 'array', minItems: 1, items: table },
  },
} as const;

export const configSchema = {
  $id: 'https://tablesync.dev/schema/config.json',
  type: 'object',
  additionalProperties: false,
  required: ['instance', 'database', 'syncs'],
  properties: {
    instance: name,
    database: {
      type: 'object',
      additionalProperties: false,
      required: ['dialect'],
      properties: {
        dialect: { enum: ['mysql', 'sqlite', 'postgres'] },
        url: nonEmptyString,
        file: nonEmptyString,
        readAhead: { enum: ['auto', 'always', 'never'], default: 'auto' },
      },
    },
    listen: {
      type: ['string', 'integer'],
      pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[^:\\s]*):[0-9]{1,5}$',
      'x-message': 'must be host:port, such as 0.0.0.0:8470 or :8470',
    },
    tls: {
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      properties: { cert: nonEmptyString, key: nonEmptyString, ca: nonEmptyString },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
      },
    },
    health: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // No default here: it depends on the syncs' `every` (see load-config.ts).
        peerTimeout: duration,
      },
    },
    backups: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { dir: nonEmptyString },
    },
    users: {
      type: 'object',
      additionalProperties: false,
      required: ['table', 'key'],
      properties: { table: identifier, key: identifier, login: identifier, fullName: identifier },
    },
    syncs: { type: 'array', minItems: 1, items: sync },
  },
} as const;
