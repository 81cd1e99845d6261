import type { SyncLink } from './sync-harness.js';

/**
 * Record links of table `number` of `link`, on either side, that point at a
 * record that does not exist: ours (the link outlived, or was written
 * without, the record it names) or the peer's. SyncLink.differences does not
 * see every such link: one between two records that are both gone, or whose
 * live side is the one still there, looks in step through the links alone.
 * Empty when there is none.
 */
export async function orphanLinks(link: SyncLink, number = 1): Promise<string[]> {
  const problems: string[] = [];
  for (const [side, peer] of [
    [link.active, link.passive],
    [link.passive, link.active],
  ] as const) {
    const own = side.table(link.name, number);
    const theirs = peer.table(link.name, number);
    const ours = new Set((await side.query<{ id: unknown }>(`SELECT ${own.key} AS id FROM ${own.table}`)).map((r) => String(r.id)));
    const peers = new Set((await peer.query<{ id: unknown }>(`SELECT ${theirs.key} AS id FROM ${theirs.table}`)).map((r) => String(r.id)));
    for (const [local, remote] of await side.links(link.name, number)) {
      if (!ours.has(local)) problems.push(`${side.name} links ${own.table} ${local}, which does not exist, to ${peer.name}'s ${remote}`);
      if (!peers.has(remote)) problems.push(`${side.name} links ${own.table} ${local} to ${peer.name}'s ${theirs.table} ${remote}, which does not exist`);
    }
  }
  return problems;
}
