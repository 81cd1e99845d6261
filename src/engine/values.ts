import type { ColumnSchema } from '../db/schema-types.js';
import type { WireValue } from '../protocol/batch.js';

/** A value read from the database → how it travels. */
export function toWire(value: unknown): WireValue {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return { b64: Buffer.from(value).toString('base64') };
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return value;
  return JSON.stringify(value);
}

/** A value that arrived → a statement parameter for `column`. `checkWire` has accepted it. */
export function fromWire(value: WireValue, column: ColumnSchema): unknown {
  if (value === null) return null;
  if (typeof value === 'object') return Buffer.from(value.b64, 'base64');
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'number' && column.family === 'text') return String(value);
  return value;
}

const integerText = /^-?[0-9]+$/;
const numberText = /^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/;

/**
 * Whether a value that arrived can be written to `column` at all; a reason
 * when it cannot (the batch is then refused: a well-behaved peer never sends
 * that). A value the database may still refuse (too long, NULL into NOT
 * NULL) is not judged here: that change is parked instead.
 */
export function checkWire(value: WireValue, column: ColumnSchema): string | undefined {
  if (value === null) return undefined;
  const kind = typeof value === 'object' ? 'bytes' : typeof value;
  const fits = ((): boolean => {
    switch (column.family) {
      case 'integer':
        return (typeof value === 'number' && Number.isInteger(value)) || (typeof value === 'string' && integerText.test(value)) || typeof value === 'boolean';
      case 'decimal':
      case 'float':
        return (typeof value === 'number' && Number.isFinite(value)) || (typeof value === 'string' && numberText.test(value));
      case 'boolean':
        return typeof value === 'boolean' || value === 0 || value === 1 || value === '0' || value === '1';
      case 'binary':
        return kind === 'bytes' || kind === 'string';
      case 'text':
      case 'json':
        return kind === 'string' || kind === 'number';
      case 'datetime':
      case 'date':
      case 'time':
        return kind === 'string' || kind === 'number';
      default:
        return false;
    }
  })();
  if (fits) return undefined;
  const shown = kind === 'bytes' ? 'bytes' : kind === 'string' ? `the text ${JSON.stringify(String(value).slice(0, 40))}` : `${kind} ${String(value)}`;
  return `${column.name} (${column.dataType}) cannot hold ${shown}`;
}

/** Two values as the database returned them, compared as they would travel. */
export function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(toWire(a)) === JSON.stringify(toWire(b));
}
