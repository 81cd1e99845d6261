import { Ajv } from 'ajv';
import { batchSchema } from './batch-schema.js';
import { protocolVersion, type Batch } from './batch.js';

const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true, discriminator: true });
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
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  if (size > maxBatchBytes) throw new BatchRefused(`the batch is ${size} bytes, more than the ${maxBatchBytes} accepted`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch (err) {
    throw new BatchRefused(`the batch is not valid JSON (${(err as Error).message}); it may be cut short`);
  }
  if (typeof parsed === 'object' && parsed !== null && 'protocol' in parsed && parsed.protocol !== protocolVersion) {
    throw new BatchRefused(`the batch speaks protocol ${JSON.stringify(parsed.protocol)}, this tablesync speaks ${protocolVersion}; upgrade the older side`);
  }
  if (!validate(parsed)) {
    const [error] = validate.errors ?? [];
    const where = error?.instancePath === '' || error === undefined ? 'the batch' : error.instancePath;
    throw new BatchRefused(`${where} ${error?.message ?? 'is not valid'}`);
  }
  return parsed as unknown as Batch;
}

export function encodeBatch(batch: Batch): Buffer {
  return Buffer.from(JSON.stringify(batch));
}
