/**
 * What the benchmark must undo whatever happens: child processes to kill,
 * connections to close, databases to drop, folders to remove. Steps run
 * last-registered first (children die before their databases are dropped),
 * once, on a normal end, on an error, and on Ctrl-C or SIGTERM.
 */

type Step = { readonly what: string; readonly run: () => Promise<void> | void };

const steps: Step[] = [];
let running: Promise<void> | undefined;
let signalled = false;

/** Whether Ctrl-C or SIGTERM is stopping the benchmark: what fails from now on is its doing. */
export function interrupted(): boolean {
  return signalled;
}

/** Registers an undo step; returns a function that runs it now (and forgets it). */
export function onCleanup(what: string, run: () => Promise<void> | void): () => Promise<void> {
  const step: Step = { what, run };
  steps.push(step);
  return async () => {
    const index = steps.indexOf(step);
    if (index < 0) return;
    steps.splice(index, 1);
    await step.run();
  };
}

/** Runs every step still registered, newest first; a failing step is reported and the rest still run. */
export function cleanupAll(): Promise<void> {
  running ??= (async () => {
    while (steps.length > 0) {
      const step = steps.pop();
      if (step === undefined) break;
      try {
        await withTimeout(Promise.resolve().then(step.run), 60_000, step.what);
      } catch (err) {
        process.stderr.write(`cleanup: could not ${step.what}: ${(err as Error).message}\n`);
      }
    }
  })();
  return running;
}

/** On SIGINT or SIGTERM: undo everything, then exit 130 (143 for SIGTERM). A second signal exits at once. */
export function cleanupOnSignals(): void {
  const handler = (signal: NodeJS.Signals): void => {
    if (signalled) process.exit(1);
    signalled = true;
    process.stderr.write(`\n${signal}: stopping the benchmark, killing its daemons and dropping its databases...\n`);
    void cleanupAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
