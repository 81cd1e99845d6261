import type { CaptureResult } from './capture.js';
import type { InitialSyncResult } from './initial-sync.js';
import type { DaemonMemory } from './pair.js';
import type { RawCopyResult } from './raw-copy.js';
import type { SteadyStateResult } from './steady-state.js';

export interface BenchResult {
  benchmark: 'tablesync';
  startedAt: string;
  finishedAt?: string;
  environment: Record<string, unknown>;
  options: Record<string, unknown>;
  generation?: { rows: number; seconds: number };
  initialSync?: InitialSyncResult;
  rawCopy?: RawCopyResult;
  initialOverRaw?: number;
  steadyState?: SteadyStateResult;
  daemons?: { a: DaemonMemory; b: DaemonMemory; exitCodes: { a: number | null; b: number | null } };
  capture?: CaptureResult;
  targets: Target[];
  logs: string | null;
  error?: string;
}

export interface Target {
  name: string;
  target: string;
  value: string;
  pass: boolean;
}

export const peakRssTargetMb = 256;

/** The targets that the issue holds us to, for whatever was measured. */
export function evaluateTargets(result: BenchResult): Target[] {
  const targets: Target[] = [];
  if (result.initialOverRaw !== undefined) {
    targets.push({ name: 'initial sync vs raw copy', target: '≥ 0.5 × raw', value: `${result.initialOverRaw.toFixed(2)} × raw`, pass: result.initialOverRaw >= 0.5 });
  }
  if (result.initialSync !== undefined) {
    targets.push({ name: 'initial sync: B equals A', target: 'every row, every field', value: result.initialSync.verified.ok ? 'yes' : describeInitialMismatch(result.initialSync), pass: result.initialSync.verified.ok });
  }
  if (result.daemons !== undefined) {
    for (const [side, memory] of [['A', result.daemons.a], ['B', result.daemons.b]] as const) {
      const peak = memory.peakRssMb ?? memory.maxSampledRssMb;
      targets.push({ name: `peak RSS, daemon ${side}`, target: `≤ ${peakRssTargetMb} MB`, value: peak === null ? 'unknown' : `${peak.toFixed(1)} MB`, pass: peak !== null && peak <= peakRssTargetMb });
    }
  }
  const steady = result.steadyState;
  if (steady !== undefined) {
    const p99 = steady.latency.visibleOnBMs.p99;
    const rateOk = steady.targetRate >= 2000 && steady.achievedRate >= 0.95 * steady.targetRate;
    targets.push({
      name: 'steady state p99 latency',
      target: '≤ 1000 ms at 2,000 changes/s',
      value: `${p99 === null ? '-' : p99.toFixed(0)} ms at ${steady.achievedRate.toLocaleString('en')}/s`,
      pass: p99 !== null && p99 <= 1000 && rateOk,
    });
    targets.push({ name: 'steady state missing changes', target: '0', value: String(steady.arrival.missingChanges), pass: steady.arrival.allArrived && steady.arrival.differingRows === 0 });
  }
  if (result.capture !== undefined) {
    targets.push({ name: 'capture overhead (with / without)', target: '≥ 0.7', value: result.capture.ratio.toFixed(2), pass: result.capture.ratio >= 0.7 });
  }
  return targets;
}

function describeInitialMismatch(r: InitialSyncResult): string {
  const v = r.verified;
  return `A ${v.rowsOnA}, B ${v.rowsOnB} rows, ${v.linkedRows} linked, ${v.differingRows} differing, checksum ${v.checksumMatches ? 'equal' : 'differs'}`;
}

/** The short table for people. */
export function humanTable(result: BenchResult): string {
  const n = (v: number | null | undefined, digits = 0): string => (v === null || v === undefined ? '-' : v.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits }));
  const lines: [string, string][] = [];
  const o = result.options;
  const env = result.environment;
  const parts = [`${n(o.rows as number)} rows`];
  if (result.steadyState !== undefined) parts.push(`steady ${String(o.steadySeconds)} s at ${n(o.rate as number)}/s`);
  parts.push(`MariaDB ${String(env.mariadb)} (InnoDB buffer pool ${String(env.innodbBufferPoolMb)} MB)`, `${String(env.cpus)} CPUs`, `load average ${String(env.loadAverageAtStart)} → ${String(env.loadAverageAtEnd ?? '?')}`);
  const daemonEnvironment = Object.entries((env.daemonEnvironment ?? {}) as Record<string, string>).map(([k, v]) => `${k}=${v}`);
  if (daemonEnvironment.length > 0) parts.push(`daemons run with the systemd unit's ${daemonEnvironment.join(' ')}`);
  const header = `tablesync benchmark: ${parts.join('; ')}`;
  if (result.initialSync !== undefined) {
    const r = result.initialSync;
    lines.push(['initial sync', `${n(r.rowsPerSecond)} rows/s (${n(r.rows)} rows in ${n(r.seconds, 1)} s)`]);
    lines.push(['  verified on B', r.verified.ok ? `yes (${n(r.verified.linkedRows)} rows, checksum equal)` : describeInitialMismatch(r)]);
    const settle = r.settle;
    const waiting = Object.entries(settle.backlog).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${n(v)}`).join(', ');
    lines.push(['  daemons settled after done', settle.complete ? `${n(settle.seconds, 1)} s later (A links ${n(settle.linksOnA)} rows)` : `NOT after ${n(settle.seconds, 0)} s (A links ${n(settle.linksOnA)}; waiting: ${waiting})`]);
    lines.push(['  max RSS during it: A / B / command', `${n(r.memory.daemonA.maxSampledRssMb, 1)} / ${n(r.memory.daemonB.maxSampledRssMb, 1)} / ${n(r.memory.initialSyncCommandMaxSampledRssMb, 1)} MB`]);
  }
  if (result.rawCopy !== undefined) {
    const r = result.rawCopy;
    lines.push(['raw copy', `${n(r.rowsPerSecond)} rows/s (${n(r.rows)} rows in ${n(r.seconds, 1)} s)${r.verified.checksumMatches ? '' : ', COPY DIFFERS'}`]);
  }
  if (result.steadyState !== undefined) {
    const s = result.steadyState;
    const d = s.latency.visibleOnBMs;
    const a = s.latency.appliedOnBMs;
    lines.push(['steady state rate', `${n(s.achievedRate)}/s achieved of ${n(s.targetRate)}/s (${n(s.changes)} changes, ${s.connections} connections)`]);
    lines.push(['  databases A + B at its start', `${n(s.databaseMb.a)} + ${n(s.databaseMb.b)} MB of rows and indexes; InnoDB buffer pool ${n(s.databaseMb.bufferPool)} MB`]);
    lines.push(['  pages read from the disk', `${n(s.diskPageReadsPerSecond)}/s over the load (A and B)`]);
    lines.push(['  latency p50 / p99 / max (visible on B)', `${n(d.p50)} / ${n(d.p99)} / ${n(d.max)} ms (${n(d.count)} changes)`]);
    lines.push(['  latency p50 / p99 / max (applied on B)', `${n(a.p50)} / ${n(a.p99)} / ${n(a.max)} ms`]);
    lines.push(['  arrived', s.arrival.allArrived ? `all (caught up ${n(s.arrival.catchUpSeconds, 1)} s after the load)` : `${n(s.arrival.missingChanges)} changes missing after ${n(s.arrival.waitedSeconds, 0)} s`]);
  }
  if (result.daemons !== undefined) {
    lines.push(['daemon peak RSS (VmHWM) A / B', `${n(result.daemons.a.peakRssMb, 1)} / ${n(result.daemons.b.peakRssMb, 1)} MB (sampled max ${n(result.daemons.a.maxSampledRssMb, 1)} / ${n(result.daemons.b.maxSampledRssMb, 1)})`]);
  }
  if (result.capture !== undefined) {
    const c = result.capture;
    lines.push(['capture: updates/s with / without', `${n(c.withCapture.updatesPerSecond)} / ${n(c.withoutCapture.updatesPerSecond)}`]);
  }
  const width = Math.max(...lines.map(([k]) => k.length), ...result.targets.map((t) => t.name.length)) + 2;
  const out = [header, ...lines.map(([k, v]) => `  ${k.padEnd(width)}${v}`)];
  if (result.targets.length > 0) {
    out.push('', '  targets:');
    const valueWidth = Math.max(...result.targets.map((t) => t.value.length)) + 2;
    const targetWidth = Math.max(...result.targets.map((t) => t.target.length)) + 2;
    for (const t of result.targets) out.push(`  ${t.name.padEnd(width)}${t.value.padEnd(valueWidth)}${t.target.padEnd(targetWidth)}${t.pass ? 'pass' : 'MISS'}`);
  }
  if (result.logs !== null) out.push('', `  logs: ${result.logs}`);
  if (result.error !== undefined) out.push('', `  FAILED: ${result.error}`);
  return out.join('\n');
}
