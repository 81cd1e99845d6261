/**
 * Groups items by a key, keeping their order. One array per key, appended
 * to: copying the array for each item (`[...old, item]`) made grouping a
 * 20,000-event batch quadratic.
 */
export function groupBy<K, T>(items: Iterable<T>, keyOf: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group === undefined) groups.set(key, [item]);
    else group.push(item);
  }
  return groups;
}

/** Adds `item` to the group of `key` in place (see groupBy for why not a copy). */
export function append<K, T>(groups: Map<K, T[]>, key: K, item: T): void {
  const group = groups.get(key);
  if (group === undefined) groups.set(key, [item]);
  else group.push(item);
}
