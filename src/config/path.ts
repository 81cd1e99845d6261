/** A location inside a configuration document: property names and list indexes. */
export type DocPath = readonly (string | number)[];

/** `['syncs', 0, 'tables', 1, 'number']` → `syncs[0].tables[1].number`, as users see it in messages. */
export function formatPath(path: DocPath): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? part : `.${part}`;
  }
  return out;
}

/** ajv's JSON pointer (`/syncs/0/tables`) → a DocPath. */
export function pointerToPath(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((raw) => raw.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((part) => (/^(0|[1-9][0-9]*)$/.test(part) ? Number(part) : part));
}
