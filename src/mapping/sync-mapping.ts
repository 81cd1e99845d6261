import type { Direction, FieldConfig, SyncConfig, TableConfig } from '../config/types.js';

/** A field as the engine uses it: its configuration plus what may travel. */
export interface MappedField extends FieldConfig {
  /** Whether our changes to it are sent to the peer. */
  readonly sends: boolean;
  /** Whether the peer's changes to it are applied here. */
  readonly receives: boolean;
}

export interface MappedTable {
  readonly config: TableConfig;
  readonly number: number;
  readonly name: string;
  readonly key: string;
  readonly fields: readonly MappedField[];
  readonly fieldsByNumber: ReadonlyMap<number, MappedField>;
  readonly fieldsByColumn: ReadonlyMap<string, MappedField>;
}

const sends: Record<Direction, boolean> = { both: true, upload: true, download: false, off: false };
const receives: Record<Direction, boolean> = { both: true, upload: false, download: true, off: false };

/**
 * One sync's numbers ↔ this side's tables and columns. The peer names
 * tables and fields by number; only what this side's file names can be
 * touched.
 */
export class SyncMapping {
  readonly tablesByNumber: ReadonlyMap<number, MappedTable>;
  readonly tablesByName: ReadonlyMap<string, MappedTable>;

  constructor(readonly sync: SyncConfig) {
    const tables = sync.tables.map((table): MappedTable => {
      const fields = table.fields.map((field) => ({ ...field, sends: sends[field.direction], receives: receives[field.direction] }));
      return {
        config: table,
        number: table.number,
        name: table.table,
        key: table.key,
        fields,
        fieldsByNumber: new Map(fields.map((f) => [f.number, f])),
        fieldsByColumn: new Map(fields.map((f) => [f.column, f])),
      };
    });
    this.tablesByNumber = new Map(tables.map((t) => [t.number, t]));
    this.tablesByName = new Map(tables.map((t) => [t.name, t]));
  }

  get name(): string {
    return this.sync.name;
  }
}
