/**
 * Names that the file-based transports (folder, ftp) send and offer: the
 * contract's safe characters, ending in `.json`, and never starting with a
 * dot, so that temporary files (`.<name>...tmp`), dotfiles such as the
 * description (`.tablesync-description.json`) and the `rejected/` folder are
 * never taken for batches. Both sides of a sync must agree on this rule,
 * whichever transport each side uses, so it lives here once.
 */
const batchNamePattern = /^[A-Za-z0-9_-][A-Za-z0-9._-]*\.json$/;

/** Whether `name` (a bare file name, no folder) is one a batch travels under. */
export function isBatchFileName(name: string): boolean {
  return batchNamePattern.test(name);
}
