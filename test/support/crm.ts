import type { ConflictRule, UserMatch } from '../../src/config/types.js';
import type { TestDatabase } from './databases.js';
import type { DialectPair, SyncCluster, SyncInstance, SyncLink, TableSpec, TransportKind, UsersSpec } from './sync-harness.js';

/**
 * The small CRM that most end-to-end tests sync: the same clients under
 * different table and column names on each side, bound together only by
 * the field numbers (the active side's), as in config/examples.
 *
 * | no. | alpha (active): clients | beta (passive): customers | alpha's direction | beta's   |
 * |-----|-------------------------|---------------------------|-------------------|----------|
 * | 2   | name                    | company_name              | both              | both     |
 * | 3   | email                   | email_address (unique)    | both              | both     |
 * | 4   | phone                   | phone_number              | upload            | download |
 * | 5   | credit_limit            | credit                    | download          | upload   |
 * | 6   | notes                   | remarks                   | off               | both     |
 * | 7   | manager_id → users      | account_manager → staff   | both (user)       | both     |
 *
 * Deletes travel through the status columns: alpha's record_status
 * (1 live, 2 deleted), beta's state ('active', 'deleted').
 * Field 7 is configured only when a test asks for user references.
 */
export const syncName = 'head-office';

export function alphaClients(withManager: boolean): TableSpec {
  return {
    table: 'clients',
    number: 1,
    key: 'id',
    status: { column: 'record_status', deleted: 2 },
    fields: [
      { column: 'name', number: 2, direction: 'both' },
      { column: 'email', number: 3, direction: 'both' },
      { column: 'phone', number: 4, direction: 'upload' },
      { column: 'credit_limit', number: 5, direction: 'download' },
      { column: 'notes', number: 6, direction: 'off' },
      ...(withManager ? [{ column: 'manager_id', number: 7, direction: 'both', type: 'user' } as const] : []),
    ],
  };
}

export function betaCustomers(withManager: boolean): TableSpec {
  return {
    table: 'customers',
    number: 1,
    key: 'customer_id',
    status: { column: 'state', deleted: 'deleted' },
    fields: [
      { column: 'company_name', number: 2, direction: 'both' },
      { column: 'email_address', number: 3, direction: 'both' },
      { column: 'phone_number', number: 4, direction: 'download' },
      { column: 'credit', number: 5, direction: 'upload' },
      { column: 'remarks', number: 6, direction: 'both' },
      ...(withManager ? [{ column: 'account_manager', number: 7, direction: 'both', type: 'user' } as const] : []),
    ],
  };
}

const alphaUsers: UsersSpec = { table: 'users', key: 'id', login: 'login', fullName: 'full_name' };
const betaUsers: UsersSpec = { table: 'staff', key: 'staff_id', login: 'username', fullName: 'display_name' };

function alphaSchema(db: TestDatabase): string[] {
  return [
    `CREATE TABLE clients (id ${db.autoId}, name VARCHAR(80), email VARCHAR(120), phone VARCHAR(40), credit_limit INT, notes VARCHAR(200), ` +
      'manager_id INT, record_status INT NOT NULL DEFAULT 1)',
    'CREATE TABLE users (id INT PRIMARY KEY, login VARCHAR(40), full_name VARCHAR(80))',
  ];
}

function betaSchema(db: TestDatabase): string[] {
  return [
    `CREATE TABLE customers (customer_id ${db.autoId}, company_name VARCHAR(80), email_address VARCHAR(120), phone_number VARCHAR(40), credit INT, ` +
      "remarks VARCHAR(200), account_manager INT, state VARCHAR(10) NOT NULL DEFAULT 'active')",
    'CREATE UNIQUE INDEX customers_email ON customers (email_address)',
    'CREATE TABLE staff (staff_id INT PRIMARY KEY, username VARCHAR(40), display_name VARCHAR(80))',
  ];
}

export interface CrmPair {
  readonly alpha: SyncInstance;
  readonly beta: SyncInstance;
  readonly sync: SyncLink;
}

export interface CrmOptions {
  readonly conflicts?: ConflictRule;
  /** Syncs field 7 as a user reference, matched by this rule. */
  readonly users?: UserMatch;
  /** How the two daemons are connected; default `folder`. */
  readonly transport?: TransportKind;
  /** The sync's `every:`; default the harness's (250ms). */
  readonly every?: string;
}

/** Two instances, alpha (active) and beta (passive), with the CRM tables and one sync between them; not started. */
export async function createCrmPair(cluster: SyncCluster, pair: DialectPair, options: CrmOptions = {}): Promise<CrmPair> {
  const withManager = options.users !== undefined;
  const [alpha, beta] = await Promise.all([
    cluster.addInstance('alpha', { dialect: pair.active, schema: alphaSchema, ...(withManager ? { users: alphaUsers } : {}) }),
    cluster.addInstance('beta', { dialect: pair.passive, schema: betaSchema, ...(withManager ? { users: betaUsers } : {}) }),
  ]);
  const sync = cluster.connect(
    alpha,
    beta,
    {
      name: syncName,
      ...(options.conflicts === undefined ? {} : { conflicts: options.conflicts }),
      ...(options.users === undefined ? {} : { users: options.users }),
      ...(options.transport === undefined ? {} : { transport: options.transport }),
      ...(options.every === undefined ? {} : { every: options.every }),
    },
    { active: [alphaClients(withManager)], passive: [betaCustomers(withManager)] },
  );
  return { alpha, beta, sync };
}

/** One row by a column's value (the tests keep emails unique), values as text; undefined when there is none. */
export async function rowWhere(instance: SyncInstance, table: string, column: string, value: string | number): Promise<Record<string, string | null> | undefined> {
  const rows = await instance.query(`SELECT * FROM ${table} WHERE ${column} = ?`, [value]);
  if (rows.length > 1) throw new Error(`${instance.name} has ${rows.length} rows in ${table} with ${column} = ${value}; expected at most one`);
  const [row] = rows;
  return row === undefined ? undefined : Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v === null || v === undefined ? null : String(v)]));
}

export const alphaClient = (alpha: SyncInstance, email: string) => rowWhere(alpha, 'clients', 'email', email);
export const betaCustomer = (beta: SyncInstance, email: string) => rowWhere(beta, 'customers', 'email_address', email);

/** The key of the one client with that email, on each side. */
export async function alphaId(alpha: SyncInstance, email: string): Promise<string> {
  const id = (await alphaClient(alpha, email))?.id;
  if (id === undefined || id === null) throw new Error(`${alpha.name} has no client with email ${email}`);
  return id;
}

export async function betaId(beta: SyncInstance, email: string): Promise<string> {
  const id = (await betaCustomer(beta, email))?.customer_id;
  if (id === undefined || id === null) throw new Error(`${beta.name} has no customer with email ${email}`);
  return id;
}
