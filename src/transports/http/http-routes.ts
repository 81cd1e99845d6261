/**
 * The paths of the http API (documented at the top of http-listener.ts), built
 * by the active side and matched by the passive side in this one file, so
 * that the two cannot drift apart.
 */

/** The contract's safe characters, never starting with a dot: no name can be `.` or `..`, or hide a path. */
const batchNamePattern = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$/;

/** Whether `name` can travel as a batch name over http. */
export function isBatchName(name: string): boolean {
  return batchNamePattern.test(name);
}

/** What a path under `/v1/syncs/{sync}/` asks for. */
export type HttpRoute =
  | { readonly kind: 'inbox-item'; readonly name: string }
  | { readonly kind: 'outbox' }
  | { readonly kind: 'outbox-item'; readonly name: string }
  | { readonly kind: 'outbox-reject'; readonly name: string }
  | { readonly kind: 'active-description' }
  | { readonly kind: 'passive-description' }
  | { readonly kind: 'unknown' };

export interface ParsedTarget {
  readonly sync: string;
  readonly route: HttpRoute;
  readonly query: URLSearchParams;
  /** What the request's signature covers: the path from `/v1/` on, with the query, as received. */
  readonly signedPath: string;
}

export const healthPath = '/healthz';

/** Prometheus scrapes here; served only when the listener is given something to measure (the daemon's). */
export const metricsPath = '/metrics';

const enc = encodeURIComponent;

/** The paths the active side calls, from `/v1/` on. */
export const httpPaths = {
  inboxItem: (sync: string, name: string): string => `/v1/syncs/${enc(sync)}/inbox/${enc(name)}`,
  outbox: (sync: string, limits: { readonly maxBytes: number; readonly maxCount: number }): string =>
    `/v1/syncs/${enc(sync)}/outbox?max-bytes=${limits.maxBytes}&max-count=${limits.maxCount}`,
  outboxItem: (sync: string, name: string, version: string): string => `/v1/syncs/${enc(sync)}/outbox/${enc(name)}?version=${enc(version)}`,
  outboxReject: (sync: string, name: string, version: string): string =>
    `/v1/syncs/${enc(sync)}/outbox/${enc(name)}/reject?version=${enc(version)}`,
  activeDescription: (sync: string): string => `/v1/syncs/${enc(sync)}/descriptions/active`,
  passiveDescription: (sync: string): string => `/v1/syncs/${enc(sync)}/descriptions/passive`,
} as const;

/** The path part of a request target (`/a/b?c` or, from a proxy, `http://host/a/b?c`), with its query. */
export function targetPath(target: string): string {
  if (target.startsWith('/')) return target;
  try {
    const url = new URL(target);
    return `${url.pathname}${url.search}`;
  } catch {
    return target;
  }
}

/** Splits a request target under `/v1/syncs/{sync}/`; undefined for any other path. */
export function parseTarget(target: string): ParsedTarget | undefined {
  const signedPath = targetPath(target);
  const question = signedPath.indexOf('?');
  const path = question === -1 ? signedPath : signedPath.slice(0, question);
  const query = new URLSearchParams(question === -1 ? '' : signedPath.slice(question + 1));
  const segments = path.split('/').map(decodeSegment);
  const [empty, version, syncs, sync, ...rest] = segments;
  if (empty !== '' || version !== 'v1' || syncs !== 'syncs' || sync === undefined || sync === '') return undefined;
  return { sync, route: matchRoute(rest), query, signedPath };
}

function matchRoute(rest: readonly (string | undefined)[]): HttpRoute {
  const [first, second, third, ...more] = rest;
  if (more.length > 0) return { kind: 'unknown' };
  const named = second !== undefined && isBatchName(second);
  if (first === 'inbox' && named && third === undefined) return { kind: 'inbox-item', name: second };
  if (first === 'outbox' && second === undefined) return { kind: 'outbox' };
  if (first === 'outbox' && named && third === undefined) return { kind: 'outbox-item', name: second };
  if (first === 'outbox' && named && third === 'reject') return { kind: 'outbox-reject', name: second };
  if (first === 'descriptions' && second === 'active' && third === undefined) return { kind: 'active-description' };
  if (first === 'descriptions' && second === 'passive' && third === undefined) return { kind: 'passive-description' };
  return { kind: 'unknown' };
}

/** A segment with a broken %-escape matches nothing. */
function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}
