import { isUtf8 } from 'node:buffer';
import { Ajv, type ErrorObject } from 'ajv';
import { batchSchema, patternMeanings } from './batch-schema.js';
import { protocolVersion, type Batch } from './batch.js';

// `verbose` keeps the offending value on each error, so that a refusal can say what it found.
const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true, discriminator: true, verbose: true });
const validate = ajv.compile(batchSchema);

/** Largest batch body accepted from any transport. */
export const maxBatchBytes = 256 * 1024 * 1024;

/** Why a batch was refused: kept with the batch for inspection. */
export class BatchRefused extends Error {
  readonly code = 'TS_ERR_BATCH_REFUSED';
}

/**
 * Parses and validates a batch's bytes. Throws BatchRefused with a reason
 * naming what was wrong and where; nothing else is trusted before this.
 */
export function decodeBatch(body: Buffer | string): Batch {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  if (bytes.length > maxBatchBytes) throw new BatchRefused(`the batch is ${bytes.length} bytes, more than the ${maxBatchBytes} accepted`);
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    throw new BatchRefused('the batch starts with a byte order mark (EF BB BF), which JSON does not allow; it was not written by tablesync');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new BatchRefused(`the batch is not valid JSON (${(err as Error).message}); it may be cut short`);
  }
  // Checked after parsing, so that a cut or garbled file still says "not valid JSON"; decoding alone would turn bad bytes into U+FFFD silently.
  if (!isUtf8(bytes)) throw new BatchRefused('the batch is not valid UTF-8: it holds bytes that encode no character, so its text would not arrive as sent');
  if (typeof parsed === 'object' && parsed !== null && 'protocol' in parsed && parsed.protocol !== protocolVersion) {
    throw new BatchRefused(`the batch speaks protocol ${shown(parsed.protocol)}, this tablesync speaks ${protocolVersion}; upgrade the older side`);
  }
  if (!validate(parsed)) throw new BatchRefused(explain(validate.errors ?? []));
  return parsed as unknown as Batch;
}

export function encodeBatch(batch: Batch): Buffer {
  return Buffer.from(JSON.stringify(batch));
}

const typeNames: Readonly<Record<string, string>> = {
  integer: 'a whole number',
  number: 'a number',
  string: 'text',
  boolean: 'true or false',
  object: 'a JSON object',
  array: 'a list (a JSON array)',
};

/** Errors that say a value is of none of the kinds a value can be, rather than a fitting kind gone wrong. */
const wrongKind = new Set(['type', 'anyOf', 'required', 'additionalProperties']);

const valueKinds = 'text, a number, true or false, null, or {"b64": base64 text}';

/**
 * One sentence for the first thing the schema found wrong: where (a JSON
 * pointer into the batch), what was expected, and what was found. ajv lists
 * a failed `anyOf` or `propertyNames` after the errors of its branches, so
 * the last error is the outermost one.
 */
function explain(errors: readonly ErrorObject[]): string {
  let error = errors[errors.length - 1];
  if (error === undefined) return 'the batch is not valid';
  if (error.keyword === 'anyOf') {
    // A branch whose type fitted (text too long, an object with a bad b64) says more than "matches none".
    const outer = error.instancePath;
    const fitted = errors.find((e) => !wrongKind.has(e.keyword) && (e.instancePath === outer || e.instancePath.startsWith(`${outer}/`)));
    if (fitted === undefined) return `${where(error)} must be ${valueKinds} (found ${shown(error.data)})`;
    error = fitted;
  }
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required':
      return `${where(error)} lacks the required property "${String(params.missingProperty)}"`;
    case 'additionalProperties':
      return `${where(error)} has an unknown property ${shown(params.additionalProperty)}`;
    case 'propertyNames':
      return `${where(error)} has a property named ${shown(params.propertyName)}, which is not ${patternMeanings.get(fieldNumberPattern(errors)) ?? 'allowed'}`;
    case 'pattern':
      return `${where(error)} must be ${patternMeanings.get(String(params.pattern)) ?? `text matching ${String(params.pattern)}`} (found ${shown(error.data)})`;
    case 'enum':
      return `${where(error)} must be one of ${(params.allowedValues as unknown[]).map(String).join(', ')} (found ${shown(error.data)})`;
    case 'type':
      return `${where(error)} must be ${typeNames[String(params.type)] ?? String(params.type)} (found ${shown(error.data)})`;
    case 'maxLength':
    case 'minLength':
      return `${where(error)} ${error.message ?? 'has the wrong length'} (found ${typeof error.data === 'string' ? error.data.length : '?'})`;
    default:
      return `${where(error)} ${error.message ?? 'is not valid'}${isScalar(error.data) ? ` (found ${shown(error.data)})` : ''}`;
  }
}

function where(error: ErrorObject): string {
  return error.instancePath === '' ? 'the batch' : error.instancePath;
}

/** The pattern that property names failed, reported by ajv as the error before `propertyNames`. */
function fieldNumberPattern(errors: readonly ErrorObject[]): string {
  const inner = errors.find((e) => e.keyword === 'pattern' && 'propertyName' in e);
  return String((inner?.params as { pattern?: string } | undefined)?.pattern);
}

function isScalar(value: unknown): boolean {
  return value === null || ['string', 'number', 'boolean'].includes(typeof value);
}

/** A found value, short: never the whole of a huge string, and never a walk through a deeply nested structure. */
function shown(value: unknown): string {
  if (typeof value === 'string') return value.length > 40 ? `${JSON.stringify(value.slice(0, 40))}… (${value.length} characters)` : JSON.stringify(value);
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  return String(value);
}
