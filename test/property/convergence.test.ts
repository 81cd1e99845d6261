/**
 * Property: guarantee 1 of DESIGN.md (convergence). Two instances of one
 * sync run in this process, each with its real database, capture triggers,
 * SyncSession and FolderTransport; the test carries the batch files between
 * their folders itself. fast-check generates what the application does on
 * either side (inserts, updates of single fields, soft deletes, edits of the
 * same field on both sides between exchanges), when each side exchanges, and
 * what the network does with each file (deliver now, late, twice, out of
 * order, or drop it: the sender resends after its small resendAfterMs).
 * Then changes stop, everything is delivered until nothing moves, and both
 * sides must hold the same records, linked one to one, with the same value
 * in every `both` field and the same soft-deleted state.
 *
 * Size: by default each test runs 20 scenarios (10 on MariaDB) of up to 60
 * steps, a few seconds per test. For a longer hunt, raise both:
 *
 *   TABLESYNC_PROPERTY_RUNS=500 TABLESYNC_PROPERTY_STEPS=150 npx vitest run test/property
 *
 * A failure prints fast-check's shrunk counterexample (each step as one
 * readable sentence), what diverged, both sides' rows and conflicts, and a
 * numbered trace of what the shrunk run did. The seed and path that
 * fast-check prints replay it:
 *
 *   TABLESYNC_PROPERTY_SEED=<seed> TABLESYNC_PROPERTY_PATH=<path> npx vitest run test/property
 */
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { it } from 'vitest';
import type { ConflictRule } from '../../src/config/types.js';
import { batchFiles, Wire } from '../support/batch-network.js';
import { createSqliteDatabase, describeEachDialect, type DialectCase } from '../support/databases.js';
import { fieldNumbers, openSyncPair, type AppRow, type FieldValue, type SyncPair, type SyncSide } from '../support/sync-pair.js';

function positiveEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a whole number of at least 1 (found ${JSON.stringify(text)})`);
  return value;
}

const runs = positiveEnv('TABLESYNC_PROPERTY_RUNS', 20);
const maxSteps = positiveEnv('TABLESYNC_PROPERTY_STEPS', 60);
const seedText = process.env.TABLESYNC_PROPERTY_SEED;
const seed = seedText === undefined || seedText === '' ? undefined : Number(seedText);
if (seed !== undefined && !Number.isInteger(seed)) throw new Error(`TABLESYNC_PROPERTY_SEED must be a whole number (found ${JSON.stringify(seedText)})`);
const path = process.env.TABLESYNC_PROPERTY_PATH || undefined;
/** Rounds of "deliver everything, exchange both sides" allowed after the last step before the test gives up. */
const settleRounds = 100;

// --- scenarios ----------------------------------------------------------------

type SideName = 'east' | 'west';

type Step =
  | { readonly kind: 'insert'; readonly side: SideName; readonly values: readonly FieldValue[] }
  | { readonly kind: 'update'; readonly side: SideName; readonly pick: number; readonly field: number; readonly value: FieldValue }
  | { readonly kind: 'delete'; readonly side: SideName; readonly pick: number }
  /** The same field of one linked record edited on both sides before either exchanges. */
  | { readonly kind: 'clash'; readonly pick: number; readonly field: number; readonly east: FieldValue; readonly west: FieldValue }
  | { readonly kind: 'exchange'; readonly side: SideName }
  /** Network steps act on the files `from` sent: deliver one now, hold one for `steps` steps, drop one, deliver a consumed one again, release all held in shuffled order. */
  | { readonly kind: 'deliver' | 'drop' | 'redeliver'; readonly from: SideName; readonly pick: number }
  | { readonly kind: 'hold'; readonly from: SideName; readonly pick: number; readonly steps: number }
  | { readonly kind: 'release'; readonly from: SideName; readonly seed: number };

interface Scenario {
  readonly resendAfterMs: number;
  readonly window: number;
  readonly fieldCount: number;
  readonly steps: readonly Step[];
}

const show = (value: FieldValue): string => (value === null ? 'NULL' : value);
const other = (side: SideName): SideName => (side === 'east' ? 'west' : 'east');

function describeStep(step: Step): string {
  switch (step.kind) {
    case 'insert':
      return `${step.side}: insert (${step.values.map(show).join(', ')})`;
    case 'update':
      return `${step.side}: update live record #${step.pick} field ${step.field} = ${show(step.value)}`;
    case 'delete':
      return `${step.side}: soft-delete live record #${step.pick}`;
    case 'clash':
      return `both: edit field ${step.field} of linked record #${step.pick}: east = ${show(step.east)}, west = ${show(step.west)}`;
    case 'exchange':
      return `${step.side}: exchange`;
    case 'deliver':
    case 'drop':
      return `net ${step.from}→${other(step.from)}: ${step.kind} in-flight file #${step.pick}`;
    case 'redeliver':
      return `net ${step.from}→${other(step.from)}: deliver consumed file #${step.pick} again`;
    case 'hold':
      return `net ${step.from}→${other(step.from)}: hold in-flight file #${step.pick} for ${step.steps} steps`;
    case 'release':
      return `net ${step.from}→${other(step.from)}: release held files in shuffled order (seed ${step.seed})`;
  }
}

/** Steps print as one readable line each in fast-check's counterexample. */
function readable(step: Step): Step {
  return Object.assign(step, { [fc.toStringMethod]: () => JSON.stringify(describeStep(step)) });
}

const sideArb = fc.constantFrom<SideName>('east', 'west');
const valueArb: fc.Arbitrary<FieldValue> = fc.oneof(
  { weight: 9, arbitrary: fc.nat(99).map((n) => `v${n}`) },
  { weight: 1, arbitrary: fc.constant(null) },
);
const pickArb = fc.nat(15);
const fieldArb = fc.nat(3);

const stepArb: fc.Arbitrary<Step> = fc
  .oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('insert' as const), side: sideArb, values: fc.array(valueArb, { minLength: 4, maxLength: 4 }) }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('update' as const), side: sideArb, pick: pickArb, field: fieldArb, value: valueArb }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), side: sideArb, pick: pickArb }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('clash' as const), pick: pickArb, field: fieldArb, east: valueArb, west: valueArb }) },
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('exchange' as const), side: sideArb }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('deliver' as const), from: sideArb, pick: pickArb }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('hold' as const), from: sideArb, pick: pickArb, steps: fc.integer({ min: 1, max: 8 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('release' as const), from: sideArb, seed: fc.nat(1000) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('redeliver' as const), from: sideArb, pick: pickArb }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), from: sideArb, pick: pickArb }) },
  )
  .map(readable);

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  resendAfterMs: fc.integer({ min: 0, max: 50 }),
  window: fc.integer({ min: 1, max: 8 }),
  fieldCount: fc.constantFrom(3, 4),
  // Lengths spread evenly up to maxSteps (fast-check's default bias would make most scenarios a handful of steps);
  // shrinking still goes down to a single step.
  steps: fc.noBias(fc.array(stepArb, { minLength: 1, maxLength: maxSteps, size: 'max' })),
});

// --- running a scenario ---------------------------------------------------------

interface World {
  readonly pair: SyncPair;
  readonly sides: Record<SideName, SyncSide>;
  /** Keyed by sender. */
  readonly wires: Record<SideName, Wire>;
  readonly trace: string[];
  step: number;
}

async function perform(world: World, step: Step): Promise<void> {
  world.step += 1;
  world.trace.push(`${world.step}. ${describeStep(step)}`);
  const note = (text: string): void => void world.trace.push(`     ${text}`);
  for (const wire of Object.values(world.wires)) await wire.releaseDue(world.step);

  switch (step.kind) {
    case 'insert': {
      const side = world.sides[step.side];
      const id = await side.insert(step.values);
      note(`${side.shape.table}#${id} inserted`);
      return;
    }
    case 'update': {
      const side = world.sides[step.side];
      const ids = await side.liveIds();
      const id = ids[step.pick % Math.max(1, ids.length)];
      if (id === undefined) return note('no live record: nothing done');
      const field = step.field % side.fieldCount;
      await side.update(id, field, step.value);
      return note(`${side.shape.table}#${id}.${side.column(field)} = ${show(step.value)}`);
    }
    case 'delete': {
      const side = world.sides[step.side];
      const ids = await side.liveIds();
      const id = ids[step.pick % Math.max(1, ids.length)];
      if (id === undefined) return note('no live record: nothing done');
      await side.softDelete(id);
      return note(`${side.shape.table}#${id} soft-deleted`);
    }
    case 'clash': {
      const { east, west } = world.sides;
      const westLive = new Set(await west.liveIds());
      const eastLive = new Set(await east.liveIds());
      // A record is linked as soon as either side has linked it (the other may still wait for the batch that says so).
      const known = new Map<string, { local: string; peer: string }>();
      for (const l of await east.links()) known.set(`${l.local}:${l.peer}`, l);
      for (const l of await west.links()) known.set(`${l.peer}:${l.local}`, { local: l.peer, peer: l.local });
      const pairs = [...known.values()].filter((l) => eastLive.has(l.local) && westLive.has(l.peer));
      const link = pairs[step.pick % Math.max(1, pairs.length)];
      if (link === undefined) return note('no record linked and live on both sides: nothing done');
      const field = step.field % east.fieldCount;
      await east.update(link.local, field, step.east);
      await west.update(link.peer, field, step.west);
      return note(`${east.shape.table}#${link.local}.${east.column(field)} = ${show(step.east)}, ${west.shape.table}#${link.peer}.${west.column(field)} = ${show(step.west)}`);
    }
    case 'exchange': {
      const report = await world.sides[step.side].exchange();
      return note(`received ${report.received}, sent ${report.sent}, resent ${report.resent}, refused ${report.refused}`);
    }
    case 'deliver':
      if (!(await world.wires[step.from].deliver(step.pick))) note('nothing in flight');
      return;
    case 'drop':
      if (!(await world.wires[step.from].drop(step.pick))) note('nothing in flight');
      return;
    case 'redeliver':
      if (!(await world.wires[step.from].redeliver(step.pick))) note('nothing consumed yet');
      return;
    case 'hold':
      if (!(await world.wires[step.from].hold(step.pick, world.step + step.steps))) note('nothing in flight');
      return;
    case 'release':
      if (!(await world.wires[step.from].releaseShuffled(step.seed))) note('nothing held');
      return;
  }
}

/** Files anywhere between the two sides: in upload or download folders, or on the wires. */
async function filesUnderWay(world: World): Promise<string[]> {
  const out: string[] = [];
  for (const side of Object.values(world.sides)) {
    for (const folder of [side.upload, side.download]) out.push(...(await batchFiles(folder)).map((name) => `${folder}/${name}`));
  }
  for (const wire of Object.values(world.wires)) out.push(...wire.pending.map((p) => `${wire.label} pending ${p.name}`), ...wire.held.map((h) => `${wire.label} held ${h.packet.name}`));
  return out;
}

async function stateLine(side: SyncSide): Promise<string> {
  return `${side.name}: backlog ${JSON.stringify(await side.backlog())}, cursors ${JSON.stringify(await side.cursors())}`;
}

const settleMarker = '-- changes stop; everything in flight is delivered until nothing moves --';

/**
 * No more changes: delivers everything in flight and lets both sides
 * exchange, round after round, until nothing is left to send, to
 * acknowledge or to read. Unacknowledged batches whose files were dropped
 * come back once resendAfterMs has passed.
 */
async function settle(world: World, scenario: Scenario): Promise<string[]> {
  world.trace.push(settleMarker);
  for (let round = 1; round <= settleRounds; round++) {
    for (const name of ['east', 'west'] as const) {
      for (const wire of Object.values(world.wires)) await wire.flush();
      const report = await world.sides[name].exchange();
      if (report.received + report.sent + report.resent + report.refused > 0) {
        world.trace.push(`   round ${round}, ${name}: received ${report.received}, sent ${report.sent}, resent ${report.resent}, refused ${report.refused}`);
      }
    }
    for (const wire of Object.values(world.wires)) await wire.pull();
    const backlogs = await Promise.all(Object.values(world.sides).map((side) => side.backlog()));
    const underWay = await filesUnderWay(world);
    if (underWay.length === 0 && backlogs.every((b) => b.journal === 0 && b.outbox === 0 && b.batchesOut === 0)) return [];
    // Only unacknowledged batches whose files are gone remain: they are resent once resendAfterMs has passed.
    if (underWay.length === 0) await sleep(scenario.resendAfterMs + 1);
  }
  return [
    `the two sides did not settle within ${settleRounds} rounds of delivering everything and exchanging both sides`,
    `still under way on ${await stateLine(world.sides.east)}`,
    `still under way on ${await stateLine(world.sides.west)}`,
    `files under way: ${(await filesUnderWay(world)).join(', ') || 'none'}`,
  ];
}

const rowText = (side: SyncSide, row: AppRow): string =>
  `${side.shape.table}#${row.id} (${row.values.map(show).join(', ')}${row.deleted ? ', soft-deleted' : ''})`;

/** Everything that differs between the two sides once they have settled; empty when they converged. */
async function divergences(world: World): Promise<string[]> {
  const { east, west } = world.sides;
  const problems: string[] = [];
  const eastRows = new Map((await east.rows()).map((r) => [r.id, r]));
  const westRows = new Map((await west.rows()).map((r) => [r.id, r]));
  const eastLinks = await east.links();
  const westLinks = await west.links();

  for (const side of [east, west]) {
    const backlog = await side.backlog();
    if (backlog.parked > 0) problems.push(`${side.name} parked ${backlog.parked} change(s) that the database refused:\n      ${(await side.parked()).join('\n      ')}`);
    const rejected = await batchFiles(`${side.download}/rejected`);
    if (backlog.refused > 0 || rejected.length > 0) {
      problems.push(`${side.name} refused ${backlog.refused} batch(es) from its peer${rejected.length > 0 ? `: ${rejected.join(', ')}` : ''}`);
    }
  }

  // Links: the two sides' tables mirror each other, one to one, and name records that exist.
  const eastPairs = new Set(eastLinks.map((l) => `${l.local}↔${l.peer}`));
  const westPairs = new Set(westLinks.map((l) => `${l.peer}↔${l.local}`));
  for (const pair of eastPairs) if (!westPairs.has(pair)) problems.push(`east links clients#${pair.replace('↔', ' to customers#')}, west has no such link`);
  for (const pair of westPairs) if (!eastPairs.has(pair)) problems.push(`west links customers#${pair.split('↔')[1]} to clients#${pair.split('↔')[0]}, east has no such link`);
  for (const [side, links, rows, peerRows] of [
    [east, eastLinks, eastRows, westRows],
    [west, westLinks, westRows, eastRows],
  ] as const) {
    const peerName = side === east ? west : east;
    const byLocal = new Map<string, string[]>();
    const byPeer = new Map<string, string[]>();
    for (const l of links) {
      byLocal.set(l.local, [...(byLocal.get(l.local) ?? []), l.peer]);
      byPeer.set(l.peer, [...(byPeer.get(l.peer) ?? []), l.local]);
      if (!rows.has(l.local)) problems.push(`${side.name} links ${side.shape.table}#${l.local}, which does not exist`);
      if (!peerRows.has(l.peer)) problems.push(`${side.name} links to ${peerName.shape.table}#${l.peer}, which does not exist on ${peerName.name}`);
    }
    for (const [local, peers] of byLocal) if (peers.length > 1) problems.push(`${side.name} links ${side.shape.table}#${local} to several records: ${peers.join(', ')}`);
    for (const [peer, locals] of byPeer) if (locals.length > 1) problems.push(`${side.name} links several records (${locals.join(', ')}) to ${peerName.shape.table}#${peer}`);
    for (const row of rows.values()) {
      if (!byLocal.has(row.id)) problems.push(`${side.name} ${rowText(side, row)} is linked to nothing: ${peerName.name} does not have it`);
    }
  }
  if (eastRows.size !== westRows.size) problems.push(`east has ${eastRows.size} records, west ${westRows.size}`);

  // Values and soft-deleted state of every linked pair.
  for (const link of eastLinks) {
    const a = eastRows.get(link.local);
    const b = westRows.get(link.peer);
    if (a === undefined || b === undefined) continue;
    for (let i = 0; i < east.fieldCount; i++) {
      if (a.values[i] !== b.values[i]) {
        problems.push(
          `field ${fieldNumbers[i]} differs: east clients#${a.id}.${east.column(i)} = ${show(a.values[i] ?? null)}, ` +
            `west customers#${b.id}.${west.column(i)} = ${show(b.values[i] ?? null)}`,
        );
      }
    }
    if (a.deleted !== b.deleted) problems.push(`soft-deleted state differs: east ${rowText(east, a)}, west ${rowText(west, b)}`);
  }
  return problems;
}

async function report(world: World, scenario: Scenario, problems: readonly string[]): Promise<string> {
  const { east, west } = world.sides;
  const rows = async (side: SyncSide): Promise<string> => (await side.rows()).map((r) => rowText(side, r)).join('; ') || 'none';
  const conflicts = async (side: SyncSide): Promise<string> => (await side.conflicts()).map((c) => `\n    ${c}`).join('') || ' none';
  return [
    `east and west did not converge (resendAfterMs ${scenario.resendAfterMs}, window ${scenario.window}, ${scenario.fieldCount} fields):`,
    ...problems.map((p) => `  - ${p}`),
    `east rows: ${await rows(east)}`,
    `west rows: ${await rows(west)}`,
    `east links: ${(await east.links()).map((l) => `${l.local}→${l.peer}`).join(', ') || 'none'}`,
    `conflicts on east:${await conflicts(east)}`,
    `conflicts on west:${await conflicts(west)}`,
    'what the run did:',
    ...world.trace.map((line) => `  ${line}`),
  ].join('\n');
}

async function runScenario(eastDialect: DialectCase, westDialect: DialectCase, conflicts: ConflictRule, scenario: Scenario): Promise<void> {
  const pair = await openSyncPair(eastDialect, westDialect, {
    conflicts,
    fieldCount: scenario.fieldCount,
    policy: { resendAfterMs: scenario.resendAfterMs, window: scenario.window },
  });
  try {
    const trace: string[] = [];
    const log = (line: string): void => void trace.push(`     ${line}`);
    const { east, west } = pair;
    const world: World = {
      pair,
      sides: { east, west },
      wires: { east: new Wire('east→west', east.upload, west.download, log), west: new Wire('west→east', west.upload, east.download, log) },
      trace,
      step: 0,
    };
    let unsettled: string[];
    try {
      for (const step of scenario.steps) await perform(world, step);
      unsettled = await settle(world, scenario);
    } catch (err) {
      // The engine (or the harness) threw: the trace says at which step.
      const thrown = err instanceof Error ? (err.stack ?? err.message) : String(err);
      const when = trace.includes(settleMarker) ? 'settling' : `step ${world.step}`;
      throw new Error(`${when} threw ${thrown}\nwhat the run did:\n${trace.map((line) => `  ${line}`).join('\n')}`);
    }
    const problems = unsettled.length > 0 ? unsettled : await divergences(world);
    if (problems.length > 0) throw new Error(await report(world, scenario, problems));
  } finally {
    await pair.dispose();
  }
}

// --- the tests ----------------------------------------------------------------------

const sqlite: DialectCase = { dialect: 'sqlite', create: createSqliteDatabase };

/** fast-check's budget for one test: the runs asked for (a scenario takes well under a second), plus about a minute to shrink a failure. */
const timeLimitFor = (numRuns: number): number => 60_000 + numRuns * maxSteps * 25;
/** vitest's budget: fast-check's, plus time to report. */
const timeoutFor = (numRuns: number): number => timeLimitFor(numRuns) + 30_000;

/**
 * Scenarios still running. fast-check's time limit abandons a run in flight rather than stopping it; it is awaited
 * before the test ends, so that it still closes its databases and removes its folders.
 */
const running = new Set<Promise<void>>();

function tracked(work: Promise<void>): Promise<void> {
  running.add(work);
  return work.finally(() => running.delete(work));
}

async function checkConvergence(eastDialect: DialectCase, conflicts: ConflictRule, numRuns: number): Promise<void> {
  try {
    await fc.assert(
      fc.asyncProperty(scenarioArb, (scenario) => tracked(runScenario(eastDialect, sqlite, conflicts, scenario))),
      {
        numRuns,
        ...(seed === undefined ? {} : { seed }),
        ...(path === undefined ? {} : { path }),
        // Shrinking replays whole scenarios against fresh databases: bounded, so that a failure is reported in reasonable
        // time with the smallest scenario found so far. Runs that pass never come near it; if they do, that fails too.
        plugins: [fc.interruptAfterTimeLimit(timeLimitFor(numRuns), { failOnInterrupt: true })],
      },
    );
  } finally {
    await Promise.allSettled([...running]);
  }
}

// East (the active side) on each dialect in turn, west always on SQLite: [sqlite] is the SQLite↔SQLite pair,
// [mysql] the MariaDB↔SQLite pair (skipped without MariaDB, or failed under TABLESYNC_REQUIRE_MYSQL=1).
describeEachDialect('convergence of two instances (east on this dialect, west on SQLite)', (dialect) => {
  const numRuns = dialect.dialect === 'sqlite' ? runs : Math.max(1, Math.ceil(runs / 2));

  it('newest-wins: every linked pair ends equal whatever the network did', async () => {
    await checkConvergence(dialect, 'newest-wins', numRuns);
  }, timeoutFor(numRuns));

  it('active-wins: every linked pair ends equal whatever the network did', async () => {
    await checkConvergence(dialect, 'active-wins', numRuns);
  }, timeoutFor(numRuns));
});
