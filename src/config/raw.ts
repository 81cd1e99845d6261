import type { ConflictRule, Direction, LogLevel, ReadAheadMode, UserMatch } from './types.js';

/**
 * The document as the JSON Schema guarantees it, defaults filled in, before
 * normalisation (durations still text, paths still relative).
 */
export interface RawField {
  column: string;
  number: number;
  direction: Direction;
  type: 'value' | 'user';
}

export interface RawTable {
  table: string;
  number: number;
  key: string;
  status?: { column: string; deleted: string | number };
  addedAt?: string;
  match: number[];
  fields: RawField[];
}

export type RawTransport =
  | { type: 'http'; url?: string; password: string }
  | { type: 'folder'; upload: string; download: string }
  | {
      type: 'ftp';
      host: string;
      port: number;
      user: string;
      password: string;
      secure: boolean;
      upload: string;
      download: string;
    };

export interface RawSync {
  name: string;
  mode: 'active' | 'passive';
  transport: RawTransport;
  every?: string;
  schedule?: string;
  conflicts: ConflictRule;
  users: UserMatch;
  tables: RawTable[];
}

export interface RawConfig {
  instance: string;
  database: { dialect: 'mysql' | 'sqlite' | 'postgres'; url?: string; file?: string; readAhead: ReadAheadMode };
  listen?: string | number;
  tls?: { cert?: string; key?: string; ca?: string };
  log: { level: LogLevel };
  health: { peerTimeout?: string };
  backups: { dir?: string };
  users?: { table: string; key: string; login?: string; fullName?: string };
  syncs: RawSync[];
}
