export interface Distribution {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
}

/** Nearest-rank percentiles of `values` (sorted in place), rounded to 0.1. */
export function distribution(values: number[] | Float64Array): Distribution {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  const round = (v: number | undefined): number | null => (v === undefined ? null : Math.round(v * 10) / 10);
  const at = (p: number): number | null => (n === 0 ? null : round(sorted[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))]));
  let sum = 0;
  for (const v of sorted) sum += v;
  return { count: n, p50: at(50), p90: at(90), p99: at(99), max: n === 0 ? null : round(sorted[n - 1]), mean: n === 0 ? null : round(sum / n) };
}

export function perSecond(count: number, seconds: number): number {
  return Math.round(count / Math.max(seconds, 1e-6));
}

export function mb(kb: number | undefined): number | null {
  return kb === undefined || !Number.isFinite(kb) ? null : Math.round((kb / 1024) * 10) / 10;
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
