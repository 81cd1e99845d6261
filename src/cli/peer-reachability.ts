import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import type { TransportConfig } from '../config/types.js';

/**
 * Whether `status` can reach a sync's peer, found without sending anything.
 * The transports offer no probe of their own yet, so this looks at what
 * each transport would need: for a folder transport, that both folders
 * exist and that this process may write to ours and read from (and remove
 * applied batches from) the peer's.
 */
export interface PeerReachability {
  /** False when tablesync cannot tell (for a transport that is not built yet). */
  readonly checked: boolean;
  /** Null when not checked. */
  readonly reachable: boolean | null;
  /** One phrase: why not, or what was checked. */
  readonly detail: string;
}

export async function peerReachability(transport: TransportConfig): Promise<PeerReachability> {
  switch (transport.type) {
    case 'folder': {
      const problem =
        (await folderProblem('upload', transport.upload, constants.W_OK | constants.X_OK, 'writable')) ??
        (await folderProblem('download', transport.download, constants.R_OK | constants.W_OK | constants.X_OK, 'readable and writable'));
      return problem === undefined
        ? { checked: true, reachable: true, detail: 'both folders exist and are usable' }
        : { checked: true, reachable: false, detail: problem };
    }
    case 'http':
    case 'ftp':
      return { checked: false, reachable: null, detail: 'not checked (transport not built yet)' };
  }
}

async function folderProblem(setting: string, folder: string, mode: number, needs: string): Promise<string | undefined> {
  try {
    if (!(await stat(folder)).isDirectory()) return `the ${setting} folder ${folder} is not a folder`;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `the ${setting} folder ${folder} does not exist (tablesync run creates it at the first exchange)`;
    return `the ${setting} folder ${folder} cannot be examined (${code ?? (err as Error).message})`;
  }
  try {
    await access(folder, mode);
    return undefined;
  } catch {
    return `the ${setting} folder ${folder} is not ${needs} for this user`;
  }
}
