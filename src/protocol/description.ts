import { Ajv } from 'ajv';
import type { ConflictRule, Direction, InstanceConfig, SyncConfig, UserMatch } from '../config/types.js';
import { protocolVersion } from './batch.js';

/**
 * What one side of a sync says about itself, so that the other side's
 * `tablesync check` can compare the two: numbers and directions, never
 * names of tables or columns (those are each side's own business).
 */
export interface SideDescription {
  readonly protocol: typeof protocolVersion;
  readonly instance: string;
  readonly sync: string;
  readonly mode: 'active' | 'passive';
  readonly conflicts: ConflictRule;
  readonly users: UserMatch;
  readonly tables: readonly {
    readonly number: number;
    readonly deletes: boolean;
    readonly fields: readonly { readonly number: number; readonly direction: Direction; readonly type: 'value' | 'user' }[];
  }[];
}

export function describeSide(config: InstanceConfig, sync: SyncConfig): SideDescription {
  return {
    protocol: protocolVersion,
    instance: config.instance,
    sync: sync.name,
    mode: sync.mode,
    conflicts: sync.conflicts,
    users: sync.users,
    tables: sync.tables.map((table) => ({
      number: table.number,
      deletes: table.status !== undefined,
      fields: table.fields.map((field) => ({ number: field.number, direction: field.direction, type: field.type })),
    })),
  };
}

const validate = new Ajv({ strict: true }).compile({
  type: 'object',
  required: ['protocol', 'instance', 'sync', 'mode', 'conflicts', 'users', 'tables'],
  properties: {
    protocol: { type: 'integer' },
    instance: { type: 'string', maxLength: 63 },
    sync: { type: 'string', maxLength: 63 },
    mode: { enum: ['active', 'passive'] },
    conflicts: { enum: ['newest-wins', 'active-wins', 'passive-wins', 'manual'] },
    users: { enum: ['login', 'fullName', 'id'] },
    tables: {
      type: 'array',
      maxItems: 10_000,
      items: {
        type: 'object',
        required: ['number', 'deletes', 'fields'],
        properties: {
          number: { type: 'integer' },
          deletes: { type: 'boolean' },
          fields: {
            type: 'array',
            maxItems: 10_000,
            items: {
              type: 'object',
              required: ['number', 'direction', 'type'],
              properties: { number: { type: 'integer' }, direction: { enum: ['both', 'upload', 'download', 'off'] }, type: { enum: ['value', 'user'] } },
            },
          },
        },
      },
    },
  },
});

/** Parses a peer's description; undefined when it is not one this version understands. */
export function decodeDescription(body: Buffer): SideDescription | undefined {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    return validate(parsed) ? (parsed as SideDescription) : undefined;
  } catch {
    return undefined;
  }
}

export type FindingStatus = 'ok' | 'warn' | 'error';
export interface SideFinding {
  readonly status: FindingStatus;
  readonly subject: string;
  readonly detail: string;
}

const sends = (d: Direction): boolean => d === 'both' || d === 'upload';
const receives = (d: Direction): boolean => d === 'both' || d === 'download';

/**
 * Compares our side of a sync with the peer's description. Errors are what
 * makes batches refused or changes travel nowhere; warnings are legitimate
 * but often unintended.
 */
export function compareSides(ours: SideDescription, theirs: SideDescription): SideFinding[] {
  const findings: SideFinding[] = [];
  const error = (subject: string, detail: string): void => void findings.push({ status: 'error', subject, detail });
  const warn = (subject: string, detail: string): void => void findings.push({ status: 'warn', subject, detail });

  if (theirs.sync !== ours.sync) error('sync', `the peer describes sync "${theirs.sync}", not "${ours.sync}": are the folders or the address crossed with another sync?`);
  if (theirs.mode === ours.mode) error('roles', `both sides are ${ours.mode}; one side must be active and the other passive`);
  if (theirs.conflicts !== ours.conflicts) {
    error('conflicts', `we decide conflicts by ${ours.conflicts}, the peer by ${theirs.conflicts}: the two sides would keep different values`);
  }

  const theirTables = new Map(theirs.tables.map((t) => [t.number, t]));
  const ourTables = new Map(ours.tables.map((t) => [t.number, t]));
  for (const table of ours.tables) {
    const peer = theirTables.get(table.number);
    if (peer === undefined) {
      error(`table ${table.number}`, 'the peer does not sync this table number: our batches would be refused');
      continue;
    }
    if (table.deletes !== peer.deletes) {
      warn(
        `table ${table.number}`,
        table.deletes ? 'the peer has no status column: our deletes will not reach it' : 'we have no status column: the peer\'s deletes will not reach us',
      );
    }
    const peerFields = new Map(peer.fields.map((f) => [f.number, f]));
    for (const field of table.fields) {
      const subject = `table ${table.number} field ${field.number}`;
      const other = peerFields.get(field.number);
      if (other === undefined) {
        if (sends(field.direction)) error(subject, 'the peer does not know this field number: our batches would be refused');
        else warn(subject, 'the peer does not know this field number');
        continue;
      }
      if (field.type !== other.type) error(subject, `it is a ${field.type} field here and a ${other.type} field on the peer`);
      if (field.type === 'user' && ours.users !== theirs.users) {
        error(subject, `we match users by ${ours.users}, the peer by ${theirs.users}: references would not be found`);
      }
      const pair = `${field.direction} here, ${other.direction} on the peer`;
      if (!sends(field.direction) && !sends(other.direction) && field.direction !== 'off' && other.direction !== 'off') {
        error(subject, `${pair}: neither side sends, so nothing travels`);
      } else if (sends(field.direction) && sends(other.direction) && !receives(field.direction) && !receives(other.direction)) {
        error(subject, `${pair}: both sides send and neither takes the other's value`);
      } else if (field.direction === 'off' || other.direction === 'off') {
        warn(subject, `${pair}: paused`);
      } else if (sends(field.direction) && !receives(other.direction)) {
        warn(subject, `${pair}: the peer ignores our changes`);
      } else if (sends(other.direction) && !receives(field.direction)) {
        warn(subject, `${pair}: we ignore the peer's changes`);
      }
    }
    for (const other of peer.fields) {
      if (!table.fields.some((f) => f.number === other.number) && sends(other.direction)) {
        error(`table ${table.number} field ${other.number}`, 'the peer sends this field number, which we do not know: its batches would be refused');
      }
    }
  }
  for (const peer of theirs.tables) {
    if (!ourTables.has(peer.number)) error(`table ${peer.number}`, 'the peer syncs this table number, which we do not: its batches would be refused');
  }
  if (findings.length === 0) findings.push({ status: 'ok', subject: 'numbers', detail: `tables, fields and directions agree with ${theirs.instance}` });
  return findings;
}
